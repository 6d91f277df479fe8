//! The role permission matrix: who may see which tables and send which
//! mutations. The server checks it on every mutation and filters every row it
//! sends by it; the client uses it to hide what a role cannot do.
//!
//! | table             | admin | doctor | assistant | reception |
//! |-------------------|-------|--------|-----------|-----------|
//! | staff             | rw    | r      | r         | r         |
//! | patients          | rw    | rw¹    | r         | rw        |
//! | appointments      | rw    | rw     | r, status | rw        |
//! | treatment_records | r, hand over² | rw³ | –    | –         |
//! | invoices          | rw    | –      | –         | rw        |
//! | payments          | rw    | –      | –         | rw        |
//! | inventory_items   | rw    | rw     | rw        | –         |
//! | referrals         | r, status | rw | –         | r, status |
//! | price_items       | rw    | –      | –         | r         |
//!
//! ¹ doctors register and edit patients but do not archive (or delete) them.
//! ² an admin hands a record over to another doctor (the one grant there is).
//! ³ a doctor edits only the records they are responsible for: their own, or
//!   one handed over to them (the planner's rule, [`crate::apply`]).
//!
//! Within a table, [`crate::field_access`] decides field by field what each
//! role receives (reception gets referrals without their clinical reason).
//!
//! The desk's copy of this matrix (`ui/src/bindings/permissions.ts`) is
//! generated from these functions by a test, never written by hand.
//!
//! Reception never receives treatment records (clinical content) at all;
//! assistants see the schedule and move appointments along their status flow
//! (check-in, in progress) but do not book.

use crate::model::{AppointmentStatus, ReferralStatus, Role, Table};
use crate::mutation::Mutation;

/// Whether `role` receives the rows of `table`.
pub fn can_read(role: Role, table: Table) -> bool {
    use Role::*;
    use Table::*;
    match table {
        Staff | Patients | Appointments => true,
        TreatmentRecords => matches!(role, Admin | Doctor),
        Invoices | Payments | PriceItems => matches!(role, Admin | Reception),
        InventoryItems => matches!(role, Admin | Doctor | Assistant),
        Referrals => matches!(role, Admin | Doctor | Reception),
    }
}

/// The tables `role` receives.
pub fn readable_tables(role: Role) -> Vec<Table> {
    Table::ALL
        .into_iter()
        .filter(|t| can_read(role, *t))
        .collect()
}

/// Whether `role` may send mutations of this kind (a [`Mutation::kind`]
/// name) at all; row-level rules come later. Unknown kinds: no one.
pub fn can_send(role: Role, kind: &str) -> bool {
    use Role::*;
    match kind {
        "create_staff" | "set_staff_role" | "set_staff_active" => role == Admin,
        "create_patient" | "update_patient" => matches!(role, Admin | Doctor | Reception),
        "delete_patient" | "archive_patient" | "restore_patient" => {
            matches!(role, Admin | Reception)
        }
        "book_appointment" | "reschedule_appointment" => matches!(role, Admin | Doctor | Reception),
        "set_appointment_status" => true,
        "add_treatment_record" | "update_treatment_record" => role == Doctor,
        "hand_over_treatment_record" => role == Admin,
        "create_invoice"
        | "void_invoice"
        | "record_payment"
        | "update_invoice_lines"
        | "issue_invoice"
        | "refund_payment" => matches!(role, Admin | Reception),
        "create_price_item" | "update_price_item" => role == Admin,
        "create_inventory_item" | "update_inventory_item" | "adjust_stock" => {
            matches!(role, Admin | Doctor | Assistant)
        }
        "create_referral" => role == Doctor,
        "set_referral_status" => matches!(role, Admin | Doctor | Reception),
        _ => false,
    }
}

/// Whether `role` may move an appointment to `status`: assistants check
/// patients in and start treatments, nothing else (not even an undo).
pub fn can_set_status(role: Role, status: AppointmentStatus) -> bool {
    role != Role::Assistant
        || matches!(
            status,
            AppointmentStatus::CheckedIn | AppointmentStatus::InProgress
        )
}

/// Whether `role` may book or move an appointment into the past, as an
/// explicit, audited correction (`correction: true`).
pub fn can_correct_the_past(role: Role) -> bool {
    role == Role::Admin
}

/// Whether `role` may send `mutation` at all (row-level rules come later).
pub fn can_mutate(role: Role, mutation: &Mutation) -> bool {
    let correction = match mutation {
        Mutation::BookAppointment(a) => a.correction,
        Mutation::RescheduleAppointment(a) => a.correction,
        _ => false,
    };
    can_send(role, mutation.kind()) && (!correction || can_correct_the_past(role))
}

/// Whether `role` may read the change history of `table`'s records.
pub fn can_read_history(role: Role, table: Table) -> bool {
    matches!(role, Role::Admin | Role::Doctor) && can_read(role, table)
}

/// Whether `role` may read the audit logs: who accessed a patient's
/// records, sign-ins (an administrator's job, never a colleague's).
pub fn can_read_audit(role: Role) -> bool {
    role == Role::Admin
}

/// The matrix as the desk needs it, as TypeScript: per role, the tables it
/// receives, the mutation kinds it may send, the tables whose history it may
/// read, the appointment statuses it may set and whether it may correct the
/// past. Written to `ui/src/bindings/permissions.ts` by this crate's tests.
pub fn typescript_matrix() -> String {
    use std::fmt::Write;
    let list = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let statuses = [
        AppointmentStatus::Scheduled,
        AppointmentStatus::CheckedIn,
        AppointmentStatus::InProgress,
        AppointmentStatus::Completed,
        AppointmentStatus::Cancelled,
        AppointmentStatus::NoShow,
    ];
    let mut out = String::from(
        "// Generated from clinic_shared::permissions by `cargo test -p clinic-shared`\n\
         // (permissions::tests::the_desk_matrix_is_generated). Do not edit by hand.\n\
         import type { AppointmentStatus } from \"./AppointmentStatus\";\n\
         import type { Mutation } from \"./Mutation\";\n\
         import type { ReferralStatus } from \"./ReferralStatus\";\n\
         import type { Role } from \"./Role\";\n\
         import type { Table } from \"./Table\";\n\n\
         export interface RolePermissions {\n  \
         read: readonly Table[];\n  \
         send: readonly Mutation[\"type\"][];\n  \
         history: readonly Table[];\n  \
         appointmentStatuses: readonly AppointmentStatus[];\n  \
         correctThePast: boolean;\n  \
         readAudit: boolean;\n  \
         /** Fields of readable tables this role does not receive (clinical text). */\n  \
         withheld: Partial<Record<Table, readonly string[]>>;\n}\n\n\
         export const PERMISSIONS: Record<Role, RolePermissions> = {\n",
    );
    for role in Role::ALL {
        let read = readable_tables(role)
            .iter()
            .map(|t| t.to_string())
            .collect();
        let send = Mutation::KINDS
            .iter()
            .filter(|k| can_send(role, k))
            .map(|k| (*k).to_owned())
            .collect();
        let history = Table::ALL
            .into_iter()
            .filter(|t| can_read_history(role, *t))
            .map(|t| t.to_string())
            .collect();
        let steps = statuses
            .into_iter()
            .filter(|s| can_set_status(role, *s))
            .map(|s| s.as_str().to_owned())
            .collect();
        let withheld = Table::ALL
            .into_iter()
            .filter_map(|t| {
                let fields = crate::field_access::withheld_fields(role, t);
                (!fields.is_empty()).then(|| {
                    let fields = fields.into_iter().map(str::to_owned).collect();
                    format!("{t}: [{}]", list(fields))
                })
            })
            .collect::<Vec<_>>()
            .join(", ");
        let withheld = if withheld.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{ {withheld} }}")
        };
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "  {role}: {{\n    read: [{}],\n    send: [{}],\n    history: [{}],\n    appointmentStatuses: [{}],\n    correctThePast: {},\n    readAudit: {},\n    withheld: {withheld},\n  }},\n",
            list(read),
            list(send),
            list(history),
            list(steps),
            can_correct_the_past(role),
            can_read_audit(role)
        );
    }
    out.push_str("};\n");
    // The referral flow (`ReferralStatus::can_become`, which the planner
    // checks on both sides): the desk offers only these next steps.
    out.push_str(
        "\n/** The steps a referral may take from each status. */\n\
         export const REFERRAL_STEPS: Record<ReferralStatus, readonly ReferralStatus[]> = {\n",
    );
    for from in ReferralStatus::ALL {
        let next = ReferralStatus::ALL
            .into_iter()
            .filter(|to| from.can_become(*to))
            .map(|to| to.as_str().to_owned())
            .collect();
        let _ = writeln!(out, "  {}: [{}],", from.as_str(), list(next));
    }
    out.push_str("};\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the desk's copy of the matrix next to the ts-rs bindings
    /// (`TS_RS_EXPORT_DIR`, set in `.cargo/config.toml`), as ts-rs does for
    /// the types: `scripts/test.sh` fails if the committed file differs.
    #[test]
    fn the_desk_matrix_is_generated() {
        let text = typescript_matrix();
        assert!(text.contains("reception: {"));
        assert!(text.contains("\"archive_patient\""));
        let dir = std::env::var("TS_RS_EXPORT_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/src/bindings").to_owned()
        });
        let path = std::path::Path::new(&dir).join("permissions.ts");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).unwrap();
        }
    }

    #[test]
    fn assistants_do_not_register_patients_or_undo() {
        assert!(!can_send(Role::Assistant, "create_patient"));
        assert!(!can_send(Role::Assistant, "update_patient"));
        assert!(!can_send(Role::Doctor, "archive_patient"));
        assert!(can_send(Role::Reception, "archive_patient"));
        assert!(can_set_status(
            Role::Assistant,
            AppointmentStatus::CheckedIn
        ));
        assert!(!can_set_status(
            Role::Assistant,
            AppointmentStatus::Scheduled
        ));
        assert!(can_set_status(
            Role::Reception,
            AppointmentStatus::Scheduled
        ));
        assert!(!can_send(Role::Admin, "no_such_mutation"));
    }

    #[test]
    fn every_kind_is_sendable_by_someone() {
        for kind in Mutation::KINDS {
            assert!(Role::ALL.into_iter().any(|r| can_send(r, kind)), "{kind}");
        }
    }

    #[test]
    fn reception_never_reads_clinical_content() {
        assert!(!can_read(Role::Reception, Table::TreatmentRecords));
        assert!(!readable_tables(Role::Reception).contains(&Table::TreatmentRecords));
    }

    #[test]
    fn every_table_is_readable_by_someone_and_admin_reads_all() {
        for t in Table::ALL {
            assert!(can_read(Role::Admin, t), "{t}");
        }
    }
}
