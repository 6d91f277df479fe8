//! A sequence of operations on a local client mirror
//! (`clinic_client::internals::SyncMirror`: the mirror's own operations, run
//! synchronously on this thread; feature `internals`), driven by the fuzz
//! input: local mutations of every kind with values from pools of edge cases
//! (empty, too long, non-ASCII, extreme numbers, unknown and deleted ids), server answers to them (applied, rejected, retry, for
//! right and wrong ids), server row batches (new versions, tombstones,
//! stale and complete or partial pages, acknowledgements) and role changes.
//!
//! Invariants checked after every step:
//! - nothing panics, and no operation fails except a local refusal;
//! - a refused mutation queues nothing; an accepted one queues exactly one;
//! - the cursor never moves back except on a role change (which resets it);
//! - with nothing pending, the visible rows equal the confirmed rows;
//! - at the end, `PRAGMA integrity_check` is ok.

#![no_main]

use clinic_client::ClientError;
use clinic_client::internals::SyncMirror;
use clinic_shared::model::{Role, Staff, SyncRow, Table};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::{
    ErrorBody, ErrorCode, MutationOutcome, MutationResult, RejectCode, Rejection,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use uuid::Uuid;

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[usize::from(self.byte()) % items.len()].clone()
    }
    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0193_9f00_0000_7000_8000_0000_0000_0000 | n)
}

const ADMIN: u128 = 1;
const DOCTOR: u128 = 2;
const PATIENTS: [u128; 3] = [0x10, 0x11, 0x12];
const ITEMS: [u128; 2] = [0x20, 0x21];
const APPOINTMENT: u128 = 0x30;
const RECORD: u128 = 0x40;
const INVOICE: u128 = 0x50;
const REFERRAL: u128 = 0x60;

fn strings() -> Vec<Value> {
    vec![
        json!(""),
        json!("   "),
        json!("Ana"),
        json!("Ünïcødé 名前 🙂"),
        json!("+1 555 010 2030"),
        json!("12"),
        json!("ana@example.org"),
        json!("x".repeat(101)),
        json!("y".repeat(2_001)),
        json!("a\u{0}b"),
        Value::Null,
    ]
}

fn ints() -> Vec<Value> {
    vec![
        json!(0),
        json!(1),
        json!(-1),
        json!(3),
        json!(250),
        json!(-1_000_001),
        json!(1_000_000),
        json!(100_000_001),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
    ]
}

fn times() -> Vec<Value> {
    vec![
        json!("2026-11-23T09:00:00Z"),
        json!("2026-11-23T09:30:00Z"),
        json!("2026-11-23T10:00:00+01:00"),
        json!("2026-11-24T09:00:00Z"),
        json!("1970-01-01T00:00:00Z"),
        json!("9999-12-31T23:59:59Z"),
    ]
}

struct Gen {
    next_id: u128,
}

impl Gen {
    fn id(&mut self, input: &mut Input, pool: &[u128]) -> Value {
        let b = input.byte();
        if b % 4 == 0 {
            self.next_id += 1;
            json!(uuid(self.next_id))
        } else {
            json!(uuid(pool[usize::from(b) % pool.len()]))
        }
    }

    fn any_id(&mut self, input: &mut Input) -> Value {
        let all = [
            ADMIN,
            DOCTOR,
            PATIENTS[0],
            PATIENTS[1],
            PATIENTS[2],
            ITEMS[0],
            ITEMS[1],
            APPOINTMENT,
            RECORD,
            INVOICE,
            REFERRAL,
            0xFFFF,
        ];
        self.id(input, &all)
    }

    /// A mutation built from the input; `None` when the values picked do not
    /// even decode as a mutation (the server would refuse the frame).
    fn mutation(&mut self, input: &mut Input, mirror: &SyncMirror) -> Option<Mutation> {
        let s = strings();
        let n = ints();
        let t = times();
        let kind = input.byte() % 19;
        let base = |table: Table, id: &Value, input: &mut Input| -> Value {
            let visible = id
                .as_str()
                .and_then(|i| i.parse().ok())
                .and_then(|i| mirror.get(table, i).ok().flatten())
                .map_or(0, |r| r.version);
            match input.byte() % 4 {
                0 => json!(0),
                1 => json!(visible.saturating_sub(1)),
                _ => json!(visible),
            }
        };
        let (name, args) = match kind {
            0 => (
                "create_staff",
                json!({"id": self.any_id(input), "username": input.pick(&s), "display_name": input.pick(&s),
                       "role": input.pick(&["admin", "doctor", "assistant", "reception"]),
                       "password": input.pick(&["short", "long enough password"])}),
            ),
            1 => (
                "set_staff_role",
                json!({"id": self.id(input, &[ADMIN, DOCTOR]), "role": input.pick(&["admin", "doctor", "assistant", "reception"])}),
            ),
            2 => (
                "set_staff_active",
                json!({"id": self.id(input, &[ADMIN, DOCTOR]), "active": input.flag()}),
            ),
            3 => (
                "create_patient",
                json!({"id": self.any_id(input), "first_name": input.pick(&s), "last_name": input.pick(&s),
                       "date_of_birth": input.pick(&["1980-04-02", "2999-01-01", "1900-02-28"]),
                       "phone": input.pick(&s), "email": input.pick(&s), "address": input.pick(&s)}),
            ),
            4 => {
                let id = self.id(input, &PATIENTS);
                let mut fields = serde_json::Map::new();
                for key in ["first_name", "last_name", "phone", "email", "address"] {
                    if input.flag() {
                        fields.insert(key.into(), input.pick(&s));
                    }
                }
                (
                    "update_patient",
                    json!({"id": id, "base_version": base(Table::Patients, &id, input), "fields": fields}),
                )
            }
            5 => {
                let id = self.id(input, &PATIENTS);
                (
                    "delete_patient",
                    json!({"id": id, "base_version": base(Table::Patients, &id, input)}),
                )
            }
            6 => (
                "book_appointment",
                json!({"id": self.any_id(input), "patient_id": self.id(input, &PATIENTS), "doctor_id": self.id(input, &[DOCTOR, ADMIN]),
                       "start": input.pick(&t), "end": input.pick(&t), "reason": input.pick(&s)}),
            ),
            7 => {
                let id = self.id(input, &[APPOINTMENT]);
                let mut args = json!({"id": id, "base_version": base(Table::Appointments, &id, input),
                                      "start": input.pick(&t), "end": input.pick(&t)});
                if input.flag() {
                    args["doctor_id"] = self.id(input, &[DOCTOR, ADMIN]);
                }
                ("reschedule_appointment", args)
            }
            8 => (
                "set_appointment_status",
                json!({"id": self.id(input, &[APPOINTMENT]),
                       "status": input.pick(&["scheduled", "checked_in", "in_progress", "completed", "cancelled", "no_show"])}),
            ),
            9 => (
                "add_treatment_record",
                json!({"id": self.any_id(input), "patient_id": self.id(input, &PATIENTS), "appointment_id": Value::Null,
                       "notes": input.pick(&s), "diagnosis": input.pick(&s), "procedures": [input.pick(&s)],
                       "recorded_at": input.pick(&t)}),
            ),
            10 => {
                let id = self.id(input, &[RECORD]);
                (
                    "update_treatment_record",
                    json!({"id": id, "base_version": base(Table::TreatmentRecords, &id, input),
                                                   "fields": {"notes": input.pick(&s)}}),
                )
            }
            11 => (
                "create_invoice",
                json!({"id": self.any_id(input), "patient_id": self.id(input, &PATIENTS), "appointment_id": Value::Null,
                       "lines": [{"description": input.pick(&s), "quantity": input.pick(&n), "unit_price_cents": input.pick(&n)}],
                       "issued_at": input.pick(&t)}),
            ),
            12 => ("void_invoice", json!({"id": self.id(input, &[INVOICE])})),
            13 => (
                "record_payment",
                json!({"id": self.any_id(input), "invoice_id": self.id(input, &[INVOICE]), "amount_cents": input.pick(&n),
                       "method": input.pick(&["cash", "card", "transfer", "insurance"]), "paid_at": input.pick(&t)}),
            ),
            14 => (
                "create_inventory_item",
                json!({"id": self.any_id(input), "name": input.pick(&s), "unit": input.pick(&s),
                       "quantity": input.pick(&n), "reorder_level": input.pick(&n)}),
            ),
            15 => {
                let id = self.id(input, &ITEMS);
                (
                    "update_inventory_item",
                    json!({"id": id, "base_version": base(Table::InventoryItems, &id, input),
                                                 "fields": {"name": input.pick(&s), "reorder_level": input.pick(&n)}}),
                )
            }
            16 => (
                "adjust_stock",
                json!({"id": self.id(input, &ITEMS), "delta": input.pick(&n), "reason": input.pick(&s)}),
            ),
            17 => (
                "create_referral",
                json!({"id": self.any_id(input), "patient_id": self.id(input, &PATIENTS), "referred_to": input.pick(&s),
                       "reason": input.pick(&s), "urgency": input.pick(&["routine", "urgent"]), "created_at": input.pick(&t)}),
            ),
            _ => (
                "set_referral_status",
                json!({"id": self.id(input, &[REFERRAL]),
                       "status": input.pick(&["draft", "sent", "accepted", "completed", "cancelled"])}),
            ),
        };
        serde_json::from_value(json!({"type": name, "args": args})).ok()
    }
}

fn staff(id: u128, username: &str, role: Role) -> Staff {
    Staff {
        id: uuid(id),
        username: username.into(),
        display_name: username.into(),
        role,
        active: true,
    }
}

/// The server's side, just enough of it: a gap-free sequence and the rows
/// it may send.
struct Server {
    head: u64,
    answered: u64,
}

impl Server {
    fn row(&mut self, table: Table, id: u128, data: Value, deleted: bool) -> SyncRow {
        self.head += 1;
        SyncRow {
            table,
            id: uuid(id),
            version: self.head,
            deleted,
            data: (!deleted).then_some(data),
        }
    }

    fn seed(&mut self) -> Vec<SyncRow> {
        let mut rows = vec![
            self.row(
                Table::Staff,
                ADMIN,
                serde_json::to_value(staff(ADMIN, "admin", Role::Admin)).unwrap_or_default(),
                false,
            ),
            self.row(
                Table::Staff,
                DOCTOR,
                serde_json::to_value(staff(DOCTOR, "doctor", Role::Doctor)).unwrap_or_default(),
                false,
            ),
        ];
        for (i, p) in PATIENTS.into_iter().enumerate() {
            let data = patient(p, i);
            rows.push(self.row(Table::Patients, p, data, false));
        }
        for it in ITEMS {
            rows.push(self.row(Table::InventoryItems, it, item(it, 5), false));
        }
        rows.push(self.row(
            Table::Appointments,
            APPOINTMENT,
            appointment("2026-11-23T09:00:00Z"),
            false,
        ));
        rows.push(self.row(
            Table::TreatmentRecords,
            RECORD,
            json!({"id": uuid(RECORD), "patient_id": uuid(PATIENTS[0]), "doctor_id": uuid(DOCTOR), "appointment_id": null,
                   "notes": "n", "diagnosis": "d", "procedures": [], "recorded_at": "2026-11-23T09:00:00Z"}),
            false,
        ));
        rows.push(self.row(
            Table::Invoices,
            INVOICE,
            json!({"id": uuid(INVOICE), "patient_id": uuid(PATIENTS[0]), "appointment_id": null,
                   "lines": [{"description": "visit", "quantity": 1, "unit_price_cents": 5000}],
                   "total_cents": 5000, "paid_cents": 0, "status": "open", "issued_at": "2026-11-23T09:00:00Z"}),
            false,
        ));
        rows.push(self.row(
            Table::Referrals,
            REFERRAL,
            json!({"id": uuid(REFERRAL), "patient_id": uuid(PATIENTS[0]), "referring_doctor_id": uuid(DOCTOR),
                   "referred_to": "Cardiology", "reason": "r", "urgency": "routine", "status": "draft",
                   "created_at": "2026-11-23T09:00:00Z"}),
            false,
        ));
        rows
    }
}

fn patient(id: u128, i: usize) -> Value {
    json!({"id": uuid(id), "first_name": (["Ana", "Bo", "Cy"][i % 3]), "last_name": "Seed", "date_of_birth": "1980-05-17",
           "phone": null, "email": null, "address": null})
}

fn item(id: u128, quantity: i64) -> Value {
    json!({"id": uuid(id), "name": "Gloves", "unit": "box", "quantity": quantity, "reorder_level": 3})
}

fn appointment(start: &str) -> Value {
    json!({"id": uuid(APPOINTMENT), "patient_id": uuid(PATIENTS[1]), "doctor_id": uuid(DOCTOR),
           "start": start, "end": "2026-11-23T11:00:00Z", "status": "scheduled", "reason": null})
}

fn fail(what: &str, e: &ClientError) -> ! {
    panic!("{what} failed: {e}")
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data, pos: 0 };
    // On tmpfs where there is one: the mirror syncs every transaction, and a
    // disk would make this a few runs a second.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let mut mirror = SyncMirror::open(dir.path()).expect("open mirror");
    let roles = [Role::Admin, Role::Doctor, Role::Assistant, Role::Reception];
    let role = input.pick(&roles);
    mirror
        .sign_in("http://fuzz", "token", &staff(ADMIN, "admin", role))
        .unwrap_or_else(|e| fail("sign_in", &e));
    let mut server = Server {
        head: 0,
        answered: 0,
    };
    let seed = server.seed();
    mirror
        .apply_remote(&seed, server.head, None, true)
        .unwrap_or_else(|e| fail("seed", &e));
    let mut generator = Gen { next_id: 0x1000 };
    let mut steps = 0;
    while !input.done() && steps < 64 {
        steps += 1;
        let cursor_before = mirror.cursor().unwrap_or_else(|e| fail("cursor", &e));
        let mut reset = false;
        match input.byte() % 8 {
            0..=2 => {
                let Some(m) = generator.mutation(&mut input, &mirror) else {
                    continue;
                };
                let before = mirror
                    .pending()
                    .unwrap_or_else(|e| fail("pending", &e))
                    .len();
                match mirror.mutate(&m) {
                    Ok(_) => {
                        let after = mirror
                            .pending()
                            .unwrap_or_else(|e| fail("pending", &e))
                            .len();
                        assert_eq!(after, before + 1, "accepted {m:?}");
                    }
                    Err(ClientError::Rejected(_)) => {
                        let after = mirror
                            .pending()
                            .unwrap_or_else(|e| fail("pending", &e))
                            .len();
                        assert_eq!(after, before, "a refused mutation was queued: {m:?}");
                    }
                    Err(e) => panic!("mutate {m:?} failed: {e}"),
                }
            }
            3 => {
                // The server answers the oldest unsent mutations (and, now and
                // then, ids it was never sent).
                let unsent = mirror.unsent(4).unwrap_or_else(|e| fail("unsent", &e));
                let mut results = Vec::new();
                for pm in &unsent {
                    let outcome = match input.byte() % 4 {
                        0 | 1 => {
                            server.head += 1;
                            MutationOutcome::Applied { seq: server.head }
                        }
                        2 => MutationOutcome::Rejected {
                            rejection: Rejection::new(
                                RejectCode::Conflict,
                                "someone else changed it",
                            ),
                        },
                        _ => MutationOutcome::Retry {
                            error: ErrorBody::new(ErrorCode::Unavailable, "busy"),
                        },
                    };
                    server.answered = server.answered.max(pm.mutation_id);
                    results.push(MutationResult {
                        mutation_id: pm.mutation_id,
                        outcome,
                    });
                }
                if input.flag() {
                    results.push(MutationResult {
                        mutation_id: u64::from(input.byte()) + 1000,
                        outcome: MutationOutcome::Applied { seq: server.head },
                    });
                }
                mirror
                    .apply_results(&results)
                    .unwrap_or_else(|e| fail("apply_results", &e));
            }
            4 | 5 => {
                // A batch of server rows: a page or a live batch.
                let mut rows = Vec::new();
                for _ in 0..(input.byte() % 4) {
                    let row = match input.byte() % 6 {
                        0 => {
                            let p = input.pick(&PATIENTS);
                            let deleted = input.byte() % 5 == 0;
                            server.row(
                                Table::Patients,
                                p,
                                patient(p, usize::from(input.byte())),
                                deleted,
                            )
                        }
                        1 => {
                            let it = input.pick(&ITEMS);
                            let q = i64::from(input.byte());
                            server.row(Table::InventoryItems, it, item(it, q), false)
                        }
                        2 => server.row(
                            Table::Appointments,
                            APPOINTMENT,
                            appointment("2026-11-23T10:00:00Z"),
                            false,
                        ),
                        3 => {
                            // A row created by one of this client's mutations.
                            let id = generator
                                .next_id
                                .saturating_sub(u128::from(input.byte() % 4));
                            server.row(Table::Patients, id, patient(id, 0), false)
                        }
                        4 => server.row(
                            Table::Staff,
                            DOCTOR,
                            serde_json::to_value(staff(DOCTOR, "doctor", Role::Doctor))
                                .unwrap_or_default(),
                            false,
                        ),
                        _ => {
                            server.head += 1; // a change this role cannot see
                            continue;
                        }
                    };
                    rows.push(row);
                }
                let ack = input.flag().then_some(server.answered);
                let complete = input.flag();
                mirror
                    .apply_remote(&rows, server.head, ack, complete)
                    .unwrap_or_else(|e| fail("apply_remote", &e));
            }
            6 => {
                // A late, stale answer (a long poll overtaken by a live batch).
                let stale = server.head.saturating_sub(u64::from(input.byte() % 8));
                mirror
                    .apply_remote(&[], stale, None, input.flag())
                    .unwrap_or_else(|e| fail("stale apply_remote", &e));
            }
            _ => {
                let role = input.pick(&roles);
                mirror
                    .change_role(&staff(ADMIN, "admin", role))
                    .unwrap_or_else(|e| fail("change_role", &e));
                reset = true;
            }
        }
        let cursor = mirror.cursor().unwrap_or_else(|e| fail("cursor", &e));
        assert!(
            reset || cursor >= cursor_before,
            "cursor went back: {cursor_before} -> {cursor}"
        );
        if mirror
            .pending()
            .unwrap_or_else(|e| fail("pending", &e))
            .is_empty()
        {
            let visible = mirror.dump(true).unwrap_or_else(|e| fail("dump", &e));
            let confirmed = mirror.dump(false).unwrap_or_else(|e| fail("dump", &e));
            assert_eq!(
                visible, confirmed,
                "nothing pending, yet visible != confirmed"
            );
        }
    }
    mirror
        .integrity_check()
        .unwrap_or_else(|e| fail("integrity_check", &e));
});
