//! The role permission matrix: who may see which tables and send which
//! mutations. The server checks it on every mutation and filters every row it
//! sends by it; the client uses it to hide what a role cannot do.
//!
//! | table             | admin | doctor | assistant | reception |
//! |-------------------|-------|--------|-----------|-----------|
//! | staff             | rw    | r      | r         | r         |
//! | patients          | rw    | rw¹    | r         | rw        |
//! | appointments      | rw    | rw     | r, status | rw        |
//! | treatment_records | r     | rw     | –         | –         |
//! | invoices          | rw    | –      | –         | rw        |
//! | payments          | rw    | –      | –         | rw        |
//! | inventory_items   | rw    | rw     | rw        | –         |
//! | referrals         | r, status | rw | –         | r, status |
//!
//! ¹ doctors register and edit patients but do not delete them.
//!
//! Reception never receives treatment records (clinical content) at all;
//! assistants see the schedule and move appointments along their status flow
//! (check-in, in progress) but do not book.

use crate::model::{Role, Table};
use crate::mutation::Mutation;

/// Whether `role` receives the rows of `table`.
pub fn can_read(role: Role, table: Table) -> bool {
    use Role::*;
    use Table::*;
    match table {
        Staff | Patients | Appointments => true,
        TreatmentRecords => matches!(role, Admin | Doctor),
        Invoices | Payments => matches!(role, Admin | Reception),
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

/// Whether `role` may send `mutation` at all (row-level rules come later).
pub fn can_mutate(role: Role, mutation: &Mutation) -> bool {
    use Mutation::*;
    use Role::*;
    match mutation {
        CreateStaff(_) | SetStaffRole(_) | SetStaffActive(_) => role == Admin,
        CreatePatient(_) | UpdatePatient(_) => matches!(role, Admin | Doctor | Reception),
        DeletePatient(_) => matches!(role, Admin | Reception),
        BookAppointment(_) | RescheduleAppointment(_) => matches!(role, Admin | Doctor | Reception),
        SetAppointmentStatus(_) => true,
        AddTreatmentRecord(_) | UpdateTreatmentRecord(_) => role == Doctor,
        CreateInvoice(_) | VoidInvoice(_) | RecordPayment(_) => matches!(role, Admin | Reception),
        CreateInventoryItem(_) | UpdateInventoryItem(_) | AdjustStock(_) => {
            matches!(role, Admin | Doctor | Assistant)
        }
        CreateReferral(_) => role == Doctor,
        SetReferralStatus(_) => matches!(role, Admin | Doctor | Reception),
    }
}

/// Whether `role` may read the change history of `table`'s records.
pub fn can_read_history(role: Role, table: Table) -> bool {
    matches!(role, Role::Admin | Role::Doctor) && can_read(role, table)
}

#[cfg(test)]
mod tests {
    use super::*;

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
