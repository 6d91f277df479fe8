// Generated from clinic_shared::permissions by `cargo test -p clinic-shared`
// (permissions::tests::the_desk_matrix_is_generated). Do not edit by hand.
import type { AppointmentStatus } from "./AppointmentStatus";
import type { Mutation } from "./Mutation";
import type { ReferralStatus } from "./ReferralStatus";
import type { Role } from "./Role";
import type { Table } from "./Table";

export interface RolePermissions {
  read: readonly Table[];
  send: readonly Mutation["type"][];
  history: readonly Table[];
  appointmentStatuses: readonly AppointmentStatus[];
  correctThePast: boolean;
  readAudit: boolean;
  /** Fields of readable tables this role does not receive (clinical text). */
  withheld: Partial<Record<Table, readonly string[]>>;
}

export const PERMISSIONS: Record<Role, RolePermissions> = {
  admin: {
    read: ["staff", "patients", "appointments", "treatment_records", "invoices", "payments", "inventory_items", "referrals", "price_items"],
    send: ["create_staff", "set_staff_role", "set_staff_active", "create_patient", "update_patient", "delete_patient", "archive_patient", "restore_patient", "book_appointment", "reschedule_appointment", "set_appointment_status", "hand_over_treatment_record", "create_invoice", "void_invoice", "record_payment", "update_invoice_lines", "issue_invoice", "refund_payment", "create_price_item", "update_price_item", "create_inventory_item", "update_inventory_item", "adjust_stock", "set_referral_status"],
    history: ["staff", "patients", "appointments", "treatment_records", "invoices", "payments", "inventory_items", "referrals", "price_items"],
    appointmentStatuses: ["scheduled", "checked_in", "in_progress", "completed", "cancelled", "no_show"],
    correctThePast: true,
    readAudit: true,
    withheld: {},
  },
  doctor: {
    read: ["staff", "patients", "appointments", "treatment_records", "inventory_items", "referrals"],
    send: ["create_patient", "update_patient", "book_appointment", "reschedule_appointment", "set_appointment_status", "add_treatment_record", "update_treatment_record", "create_inventory_item", "update_inventory_item", "adjust_stock", "create_referral", "set_referral_status"],
    history: ["staff", "patients", "appointments", "treatment_records", "inventory_items", "referrals"],
    appointmentStatuses: ["scheduled", "checked_in", "in_progress", "completed", "cancelled", "no_show"],
    correctThePast: false,
    readAudit: false,
    withheld: {},
  },
  assistant: {
    read: ["staff", "patients", "appointments", "inventory_items"],
    send: ["set_appointment_status", "create_inventory_item", "update_inventory_item", "adjust_stock"],
    history: [],
    appointmentStatuses: ["checked_in", "in_progress"],
    correctThePast: false,
    readAudit: false,
    withheld: {},
  },
  reception: {
    read: ["staff", "patients", "appointments", "invoices", "payments", "referrals", "price_items"],
    send: ["create_patient", "update_patient", "delete_patient", "archive_patient", "restore_patient", "book_appointment", "reschedule_appointment", "set_appointment_status", "create_invoice", "void_invoice", "record_payment", "update_invoice_lines", "issue_invoice", "refund_payment", "set_referral_status"],
    history: [],
    appointmentStatuses: ["scheduled", "checked_in", "in_progress", "completed", "cancelled", "no_show"],
    correctThePast: false,
    readAudit: false,
    withheld: { referrals: ["reason"] },
  },
};

/** The steps a referral may take from each status. */
export const REFERRAL_STEPS: Record<ReferralStatus, readonly ReferralStatus[]> = {
  draft: ["sent", "cancelled"],
  sent: ["accepted", "cancelled"],
  accepted: ["completed", "cancelled"],
  completed: [],
  cancelled: [],
};
