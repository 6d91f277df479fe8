//! The values the facade hands to front ends. The desktop UI's TypeScript
//! types are generated from these (ts-rs, `ui/src/bindings`), so the UI and
//! the engine cannot disagree on a shape.

use clinic_shared::model::{
    Appointment, InventoryItem, Invoice, Patient, Payment, Referral, Staff, Table, Timestamp,
    TreatmentRecord,
};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::Rejection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// This user's own mutation, applied locally.
    Local,
    /// Rows received from the server.
    Remote,
    /// The server refused a mutation; its effects were rolled back.
    Rejection,
    /// The session changed (sign-in, sign-out, role change).
    Session,
}

/// "These rows changed": sent after every commit that changes visible rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct StoreEvent {
    /// What caused it.
    pub origin: ChangeOrigin,
    /// Tables with changed visible rows.
    pub tables: Vec<Table>,
    /// The changed rows (capped; a large batch lists only its tables).
    pub rows: Vec<(Table, Uuid)>,
    /// The mirror's cursor after the commit.
    pub cursor: u64,
}

impl StoreEvent {
    /// "Everything may have changed" (a sign-in, a missed event).
    pub fn everything(origin: ChangeOrigin) -> StoreEvent {
        StoreEvent {
            origin,
            tables: Table::ALL.to_vec(),
            rows: vec![],
            cursor: 0,
        }
    }
}

/// A visible row of any table, untyped (tools and tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Row {
    /// Table.
    pub table: Table,
    /// Id.
    pub id: Uuid,
    /// Version of the confirmed row underneath (0 if created locally).
    pub version: u64,
    /// Whether a pending local change shapes this row.
    pub pending: bool,
    /// The entity (a JSON object of the table's entity type).
    #[ts(type = "Record<string, any>")]
    pub data: Value,
}

/// A visible row with its entity typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Entity<T> {
    /// Id.
    pub id: Uuid,
    /// Version of the confirmed row underneath (0 if created locally):
    /// the base version of an edit.
    pub version: u64,
    /// Whether a pending local change shapes this row.
    pub pending: bool,
    /// The entity.
    pub data: T,
}

/// A patient's chart: what the user may see about one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Chart {
    /// The patient.
    pub patient: Entity<Patient>,
    /// Appointments, newest first.
    pub appointments: Vec<Entity<Appointment>>,
    /// Treatment records (doctors and admins only), newest first.
    pub treatment_records: Vec<Entity<TreatmentRecord>>,
    /// Invoices (reception and admins only), newest first.
    pub invoices: Vec<Entity<Invoice>>,
    /// Payments of those invoices, newest first.
    pub payments: Vec<Entity<Payment>>,
    /// Referrals, newest first.
    pub referrals: Vec<Entity<Referral>>,
    /// Whether this desk holds the patient's clinical text (see
    /// `clinic_shared::care`).
    pub care: ChartCare,
}

/// What a doctor's desk holds of a patient's clinical text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ChartCare {
    /// Some treatment records or referrals arrived without their clinical
    /// fields: the patient is not (or was not, when they arrived) in the
    /// doctor's care. The desk asks the server again
    /// ([`crate::ClinicClient::clinical_records`]); if the server says
    /// `not_in_care`, the doctor may break the glass.
    pub withheld: bool,
    /// When this desk's glass grant for the patient ends, if one is in force.
    #[ts(optional)]
    pub grant_ends_at: Option<Timestamp>,
}

/// Every row of one table, typed, for the screens that list them.
pub type Entities<T> = Vec<Entity<T>>;

/// The staff list.
pub type StaffList = Entities<Staff>;
/// The inventory.
pub type Inventory = Entities<InventoryItem>;

/// What a local mutation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Receipt {
    /// The mutation's id.
    pub mutation_id: u64,
    /// The rows it changed locally.
    pub rows: Vec<(Table, Uuid)>,
}

/// A mutation waiting for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct PendingEntry {
    /// Its id.
    pub mutation_id: u64,
    /// The intent.
    pub mutation: Mutation,
    /// When it was made (local clock).
    pub created_at: Timestamp,
    /// The server applied it at this sequence number; waiting for the mirror
    /// to catch up to it.
    pub applied_seq: Option<u64>,
}

/// A mutation the server refused, kept until the user dismisses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct RejectedEntry {
    /// Its id.
    pub mutation_id: u64,
    /// The intent, so it can be edited and retried.
    pub mutation: Mutation,
    /// Why.
    pub rejection: Rejection,
    /// When the answer arrived.
    pub rejected_at: Timestamp,
}

/// Who this installation is and whom it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Identity {
    /// This installation's client id (new for every user who signs in here).
    pub client_id: Uuid,
    /// The server's base URL.
    pub server_url: Option<String>,
    /// The signed-in user, if any (kept while the token is dropped).
    pub user: Option<Staff>,
    /// Whether the user is signed in (with a token, or offline against this
    /// machine's verifier).
    pub signed_in: bool,
    /// Signed in against this machine's verifier while the server could not
    /// be reached: no server session yet (the sync loop asks for one).
    pub offline: bool,
    /// The screen is locked: the user's data is hidden until their password
    /// is entered again.
    pub locked: bool,
    /// The server asks this user for a new password before anything else
    /// (an administrator's reset, or one below the policy): nothing syncs
    /// until [`crate::ClinicClient::change_password`].
    pub must_change_password: bool,
}

/// The server was restored from a backup since this desk last synced: it
/// started over from the restored data and sent its queued changes again.
/// Shown once, until dismissed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ServerRestored {
    /// When this desk noticed.
    pub noticed_at: Timestamp,
    /// Changes of this desk that were sent again.
    pub resent: u64,
}

/// This desk's copy of the clinic's data (its mirror) was found damaged
/// when the desk started: the damaged file was set aside (kept, for IT),
/// the mirror was rebuilt and re-syncs from the server, and the unsent
/// changes that could still be read were kept and will be sent. Shown once,
/// until dismissed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct MirrorRebuilt {
    /// When the damage was found.
    pub noticed_at: Timestamp,
    /// Unsent changes that were read back and will be sent.
    pub kept: u64,
    /// The unsent changes that could not be read, one line each in words
    /// (what kind of record, and the patient's name when that could be
    /// read): they are lost and must be entered again.
    pub lost: Vec<String>,
    /// The list of unsent changes could not be read at all: how many were
    /// lost is not known (any change not yet sent may be).
    pub lost_unknown: bool,
    /// Records opened here whose viewing could not be reported to the
    /// clinic's access log (read back from the damaged file: none lost
    /// when 0).
    pub views_lost: u64,
    /// Where the damaged file was put (the full path, for IT).
    pub aside: String,
}

impl MirrorRebuilt {
    /// The notice in staff sentences; `noticed` is [`Self::noticed_at`] as
    /// the person reads it (in the clinic's zone). The desk's UI says the
    /// same (`ui/src/lib/format.ts`, `rebuiltSentence`).
    pub fn sentence(&self, noticed: &str) -> String {
        let mut s = format!(
            "This desk's copy of the clinic's data was damaged and has been rebuilt from \
             the server (found {noticed})."
        );
        match self.kept {
            0 => {}
            1 => s.push_str(" 1 unsent change was kept and will be sent."),
            n => s.push_str(&format!(" {n} unsent changes were kept and will be sent.")),
        }
        match self.lost.len() {
            0 => {}
            1 => s.push_str(&format!(
                " 1 unsent change could not be read and is lost: {}. Please enter it again.",
                self.lost[0]
            )),
            n => s.push_str(&format!(
                " {n} unsent changes could not be read and are lost: {}. Please enter them again.",
                self.lost.join("; ")
            )),
        }
        if self.lost_unknown {
            s.push_str(
                " The list of changes not yet sent could not be read: any change made on \
                 this desk that is missing after the reload is lost; please enter it again.",
            );
        }
        if self.views_lost > 0 {
            s.push_str(&format!(
                " {} record view{} could not be reported to the clinic's access log.",
                self.views_lost,
                if self.views_lost == 1 { "" } else { "s" }
            ));
        }
        s.push_str(&format!(
            " The damaged file was kept for IT: {}.",
            self.aside
        ));
        s
    }
}

/// Counts for the status line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct QueueStats {
    /// Mutations not yet confirmed.
    pub pending: u64,
    /// Creation time of the oldest of them.
    pub oldest_pending: Option<Timestamp>,
    /// Rejections not yet dismissed.
    pub rejected: u64,
    /// The mirror's cursor.
    pub cursor: u64,
}

/// How the client is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// Opening a connection.
    Connecting,
    /// Live over the WebSocket.
    Live,
    /// Syncing by HTTP long-poll (WebSocket unavailable).
    Polling,
    /// The server cannot be reached; the next attempt is due.
    Offline {
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// No valid sign-in: changes are held until the user signs in again.
    SignedOut,
    /// The sync loop is not running.
    Stopped,
}

/// What the UI shows about sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SyncStatus {
    /// Connection state.
    pub connection: Connection,
    /// Last time anything arrived from the server.
    pub last_synced_at: Option<Timestamp>,
    /// Changes not yet confirmed.
    pub pending: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_pending_secs: Option<u64>,
    /// Rejections not yet dismissed.
    pub rejected: u64,
    /// Progress of the first full sync, while it runs.
    pub initial_sync: Option<InitialSync>,
    /// The mirror's cursor.
    pub cursor: u64,
    /// The last error, for a tooltip.
    pub last_error: Option<String>,
    /// When the client last tried to reach the server (successfully or not).
    pub last_attempt_at: Option<Timestamp>,
    /// The server was restored from a backup (until the person dismisses
    /// the notice).
    pub server_restored: Option<ServerRestored>,
    /// This desk's mirror was found damaged at start and rebuilt (until the
    /// person dismisses the notice).
    pub mirror_rebuilt: Option<MirrorRebuilt>,
}

impl Default for SyncStatus {
    fn default() -> Self {
        SyncStatus {
            connection: Connection::Stopped,
            last_synced_at: None,
            pending: 0,
            oldest_pending_secs: None,
            rejected: 0,
            initial_sync: None,
            cursor: 0,
            last_error: None,
            last_attempt_at: None,
            server_restored: None,
            mirror_rebuilt: None,
        }
    }
}

/// Progress of a first full sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct InitialSync {
    /// Rows received so far.
    pub rows: u64,
    /// Cursor reached.
    pub cursor: u64,
    /// Server head when it started.
    pub head: u64,
}

/// A document saved for printing, and whether the system's PDF viewer
/// was asked to open it (where the person prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Printout {
    /// Where the PDF is (the signed-in user's own folder).
    pub path: String,
    /// Whether a PDF viewer was started on it.
    pub opened: bool,
}

/// The signed-in identity and the sync status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SessionInfo {
    /// Who and where.
    pub identity: Identity,
    /// How sync stands.
    pub status: SyncStatus,
    /// The clinic's time zone (IANA name): every time on screen is shown
    /// and typed in it. The server's setting once it was heard from, else
    /// this machine's zone.
    pub time_zone: String,
}

/// How a desk behaves on this computer, as IT set it up (the desktop app
/// reads it from its environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct DeskSettings {
    /// Seconds without a key press or click before the screen locks; 0
    /// never locks by itself.
    pub idle_lock_seconds: u32,
}

impl Default for DeskSettings {
    fn default() -> DeskSettings {
        // Ten minutes: long enough for a consultation at the desk, short
        // enough that a desk left in a busy waiting room hides its charts.
        DeskSettings {
            idle_lock_seconds: 600,
        }
    }
}

/// A request for free slots near a wanted time, for a patient with a doctor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SlotQuery {
    /// The doctor.
    pub doctor_id: Uuid,
    /// The patient (their other appointments count too).
    pub patient_id: Uuid,
    /// The wanted start.
    pub start: Timestamp,
    /// The wanted length, in minutes.
    pub minutes: u32,
    /// How many slots to suggest.
    pub count: u32,
    /// An appointment being moved (its own slot does not count as taken).
    #[serde(default)]
    #[ts(optional)]
    pub moving: Option<Uuid>,
    /// Only slots at or after `start`, earliest first ("the next free half
    /// hour with Dr. Sato"), instead of the nearest ones around it.
    #[serde(default)]
    #[ts(optional)]
    pub from_start: Option<bool>,
}

/// A free slot: the doctor and the patient are both free then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct FreeSlot {
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
}

/// The outcome of one [`crate::ClinicClient::sync_once`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SyncReport {
    /// Mutations the server applied.
    pub applied: u64,
    /// Mutations the server rejected.
    pub rejected: u64,
    /// Rows received.
    pub rows: u64,
    /// Cursor at the end.
    pub cursor: u64,
    /// Mutations still queued.
    pub pending: u64,
}

/// What became of one local change after an attempt to send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// The server applied it and this mirror holds its effects.
    Confirmed,
    /// The server refused it; its effects were rolled back.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
    /// Not answered yet (offline, or slower than the wait): it stays queued
    /// and is sent by the next sync.
    Queued {
        /// Why it is still queued, for a person.
        reason: String,
    },
}

/// Internal sync bookkeeping, for support tools and tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// Highest server sequence number applied.
    pub cursor: u64,
    /// Cursor up to which the mirror holds every change.
    pub settled: u64,
    /// Highest mutation id the server said it processed.
    pub server_ack: u64,
    /// Whether a full catch-up completed since the mirror (re)started.
    pub synced_once: bool,
    /// The highest mutation id this client has handed out.
    pub assigned: u64,
}

/// One row of a dump: table, id, version, deleted, data.
pub type DumpRow = (Table, Uuid, u64, bool, Option<Value>);

/// A change in words, for telling a person about it (e.g. which changes
/// were lost): what it does and to whom, without clinical content.
pub fn describe_mutation(m: &Mutation) -> String {
    match m {
        Mutation::CreateStaff(a) => format!("new staff account {}", a.username),
        Mutation::SetStaffRole(_) => "a staff member's role".into(),
        Mutation::SetStaffActive(a) if a.active => "enabling a staff account".into(),
        Mutation::SetStaffActive(_) => "disabling a staff account".into(),
        Mutation::CreatePatient(a) => format!("new patient {} {}", a.first_name, a.last_name),
        Mutation::UpdatePatient(_) => "a change to a patient's details".into(),
        Mutation::DeletePatient(_) => "removing a patient".into(),
        Mutation::ArchivePatient(_) => "archiving a patient".into(),
        Mutation::RestorePatient(_) => "bringing back an archived patient".into(),
        Mutation::BookAppointment(a) => format!("an appointment at {}", a.start),
        Mutation::RescheduleAppointment(a) => format!("moving an appointment to {}", a.start),
        Mutation::SetAppointmentStatus(a) => {
            format!(
                "an appointment marked {}",
                a.status.as_str().replace('_', " ")
            )
        }
        Mutation::AddTreatmentRecord(_) => "a new treatment record".into(),
        Mutation::UpdateTreatmentRecord(_) => "a change to a treatment record".into(),
        Mutation::HandOverTreatmentRecord(_) => "handing a treatment record over".into(),
        Mutation::CreateInvoice(a) if a.draft => "a new draft invoice".into(),
        Mutation::CreateInvoice(_) => "a new invoice".into(),
        Mutation::VoidInvoice(_) => "voiding an invoice".into(),
        Mutation::UpdateInvoiceLines(_) => "a change to a draft invoice's lines".into(),
        Mutation::IssueInvoice(_) => "issuing an invoice".into(),
        Mutation::RefundPayment(a) => format!(
            "a refund of {}.{:02}",
            a.amount_cents / 100,
            a.amount_cents.rem_euclid(100)
        ),
        Mutation::CreatePriceItem(a) => format!("new price list entry {}", a.code),
        Mutation::UpdatePriceItem(_) => "a change to the price list".into(),
        Mutation::RecordPayment(a) => format!(
            "a payment of {}.{:02}",
            a.amount_cents / 100,
            a.amount_cents.rem_euclid(100)
        ),
        Mutation::CreateInventoryItem(a) => format!("new stock item {}", a.name),
        Mutation::UpdateInventoryItem(_) => "a change to a stock item".into(),
        Mutation::AdjustStock(a) => format!("a stock change of {:+}", a.delta),
        Mutation::CreateReferral(_) => "a new referral".into(),
        Mutation::SetReferralStatus(_) => "a referral's status".into(),
    }
}
