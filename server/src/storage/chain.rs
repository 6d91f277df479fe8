//! The hash chains that make the change log and the access log
//! tamper-evident, defined once for every backend.
//!
//! Each entry's hash is `SHA-256(previous hash ‖ canonical content)` in
//! lower-case hex, where the previous hash is that of the entry before it by
//! `seq` ([`GENESIS`] for the first) and the canonical content is a JSON
//! array of the entry's logical fields with object keys sorted and no
//! whitespace. The content is defined on the values, not on how a backend
//! stores them (SQLite keeps the JSON text as written, PostgreSQL's `jsonb`
//! would reorder keys), so the same entry hashes the same everywhere.
//!
//! An edited entry no longer matches its hash; a removed one breaks the
//! link of the entry after it; rewriting every later hash as well is
//! possible for someone with write access to the file, which is why
//! `clinic-server audit verify` prints the head hash: written down
//! elsewhere (a ticket, a printout) it anchors everything before it.
//!
//! With several writer processes (server instances on PostgreSQL) the
//! chain stays well defined because it follows `seq` order and each entry's
//! hash is computed in the transaction that assigns its `seq`, under the
//! lock that hands out the numbers (the change log: the sequence lock; the
//! access log: a lock of its own).

use super::{AccessRecord, Change, NewAccess};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The "previous hash" of the first entry of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `value` as canonical JSON: object keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn link(previous: &str, content: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(canonical_json(content).as_bytes());
    hex::encode(hasher.finalize())
}

/// The hash of change-log entry `c` following an entry with hash `previous`.
pub fn change_hash(previous: &str, c: &Change) -> String {
    let content = json!([
        "change",
        c.seq,
        c.table.as_str(),
        c.id,
        c.action.as_str(),
        c.actor_id,
        c.client_id,
        c.mutation_id,
        c.mutation,
        c.at.to_string(),
        c.before,
        c.after,
    ]);
    link(previous, &content)
}

/// The hash of access-log entry `entry` at `seq`, following an entry with
/// hash `previous`.
pub fn access_hash(previous: &str, seq: u64, entry: &NewAccess) -> String {
    let mut content = json!([
        "access",
        seq,
        entry.at.to_string(),
        entry.user_id,
        entry.client_id,
        entry.kind.as_str(),
        entry.patient_id,
        entry.table.as_str(),
        entry.row_ids,
    ]);
    // A reason (breaking the glass) is chained with the entry; entries
    // without one hash as they did before reasons existed.
    if let (Some(reason), Some(items)) = (&entry.reason, content.as_array_mut()) {
        items.push(json!(reason));
    }
    link(previous, &content)
}

/// The hash of a stored access record following `previous`.
pub fn access_record_hash(previous: &str, record: &AccessRecord) -> String {
    access_hash(previous, record.seq, &record.entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":0,"y":"é"}],"c":null}}"#)
            .expect("json");
        let b: Value =
            serde_json::from_str(r#"{ "a": {"c": null, "d": [1, {"y": "é", "z": 0}]}, "b": 1 }"#)
                .expect("json");
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"d":[1,{"y":"é","z":0}]},"b":1}"#
        );
    }

    #[test]
    fn a_hash_depends_on_the_previous_hash_and_every_field() {
        let c = Change {
            seq: 1,
            table: clinic_shared::model::Table::Patients,
            id: uuid::Uuid::nil(),
            action: clinic_shared::apply::Action::Create,
            before: None,
            after: json!({"first_name": "Ana"}),
            actor_id: None,
            client_id: None,
            mutation_id: None,
            mutation: "x".into(),
            at: clinic_shared::model::Timestamp::from_unix(0).expect("time"),
        };
        let h = change_hash(GENESIS, &c);
        assert_eq!(h.len(), 64);
        assert_ne!(h, change_hash(&h, &c), "the previous hash counts");
        let mut edited = c.clone();
        edited.after = json!({"first_name": "Ann"});
        assert_ne!(h, change_hash(GENESIS, &edited), "the content counts");
    }
}
