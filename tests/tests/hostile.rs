//! Hostile input against the running server (issue 5, part 2), as one
//! table of cases: malformed and truncated JSON, unknown message types,
//! wrong field types, huge strings, deep nesting, oversized frames and
//! bodies, invalid UTF-8, raw HTTP protocol abuse, slowloris-style slow
//! requests, WebSocket protocol violations and clients that never read,
//! replayed and forged tokens, other users' client and mutation ids, and
//! mutations beyond the caller's role.
//!
//! Every case is sent to one real server (concurrently, each on its own
//! connection) and must get its expected answer: an HTTP status with the
//! right `ErrorBody` code, a WebSocket error frame (and a close where the
//! protocol says so), a refused mutation, or a closed connection. Error
//! messages never echo the input (they stay short even for megabyte
//! inputs). Afterwards the server must still serve a normal client (login,
//! pull, a WebSocket session that receives a live change), the change head
//! and every table's row count must be unchanged by the hostile cases, and
//! the server's resident memory must have stayed within 128 MiB of its
//! baseline throughout (all cases run at once, several of them with inputs
//! at the 1 MiB size limits, each parsed on its own worker; growths of 36
//! and 66 MiB were seen on a loaded 2-core machine).
//!
//! What the server e2e tests (server/tests/server.rs) already cover is not
//! repeated here: the push-body cases of
//! `malformed_and_oversized_input_is_answered_and_the_server_keeps_serving`,
//! a subscriber that never reads under a heavy write load, and a `hello`
//! with another user's client id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clinic_e2e::raw::{self, RawOutcome, RawWs, RssSampler, WsEvent, op};
use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::protocol::{
    ErrorBody, ErrorCode, MutationOutcome, PushResponse, RejectCode, ServerMessage,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How a case is sent.
enum Send {
    /// An HTTP/1.1 request (with `Authorization: Bearer <token>` if given).
    Http {
        method: &'static str,
        path: String,
        token: Option<String>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Raw bytes on a fresh TCP connection.
    Raw(Vec<u8>),
    /// Raw bytes, one chunk at a time with a pause between (slow clients).
    Paced(Vec<Vec<u8>>, Duration),
    /// A WebSocket: an optional proper `hello` (then the catch-up is read),
    /// then these raw frames.
    Ws {
        hello: Option<String>,
        frames: Vec<Vec<u8>>,
    },
    /// A WebSocket session with a tiny receive buffer that sends pings as
    /// fast as it can and never reads the pongs.
    WsNeverReads { token: String },
    /// Many connections that each send half a request head and then
    /// nothing, held open while a normal client signs in and reads.
    SlowlorisCrowd(usize),
}

/// The answer a case must get.
enum Expect {
    /// An HTTP status with an `ErrorBody` of this code (and field).
    Error(u16, ErrorCode, Option<&'static str>),
    /// One of these statuses from the HTTP layer (no `ErrorBody` needed).
    Status(&'static [u16]),
    /// One of these statuses, or the connection closed without an answer.
    StatusOrClosed(&'static [u16]),
    /// Closed without an answer, within this time.
    Closed(Duration),
    /// `200` for a push of one mutation, with this outcome.
    Outcome(Out),
    /// A WebSocket `error` frame with this code, then (true) a close, or
    /// (false) the session goes on and answers a `ping`.
    WsError(ErrorCode, bool),
    /// The WebSocket ends (close frame or dropped) without an error frame.
    WsDropped,
    /// A WebSocket `push_result` with one result of this outcome.
    WsOutcome(Out),
    /// The server cuts the connection within this time.
    CutOff(Duration),
    /// Other clients are served within this time while the case runs.
    ServesMeanwhile(Duration),
}

#[derive(Clone, Copy, Debug)]
enum Out {
    Rejected(RejectCode),
    Retry(ErrorCode),
    Applied(u64),
}

struct Case {
    name: String,
    kind: &'static str,
    send: Send,
    expect: Expect,
}

/// Who and what the cases refer to.
struct Ctx {
    base: String,
    reception: String,
    assistant: String,
    doctor: String,
    admin: String,
    signed_out: String,
    reception_id: Uuid,
    admin_id: Uuid,
    patient: Uuid,
    appointment: Uuid,
    item: Uuid,
    victim_client: Uuid,
    victim_seq: u64,
    victim_body: Vec<u8>,
}

fn req(
    kind: &'static str,
    name: &str,
    method: &'static str,
    path: impl Into<String>,
    token: Option<&str>,
    body: impl Into<Vec<u8>>,
    expect: Expect,
) -> Case {
    Case {
        name: name.into(),
        kind,
        send: Send::Http {
            method,
            path: path.into(),
            token: token.map(str::to_owned),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        },
        expect,
    }
}

fn case(kind: &'static str, name: &str, send: Send, expect: Expect) -> Case {
    Case {
        name: name.into(),
        kind,
        send,
        expect,
    }
}

fn push_body(client: Uuid, mutation_id: u64, mutation: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "client_id": client,
        "mutations": [{"mutation_id": mutation_id, "mutation": mutation}],
    }))
    .unwrap()
}

fn ws_push(request_id: u64, mutation_id: u64, mutation: Value) -> Vec<u8> {
    raw::ws_text(
        &json!({"type": "push", "request_id": request_id,
                "mutations": [{"mutation_id": mutation_id, "mutation": mutation}]})
        .to_string(),
    )
}

fn new_patient(address: &str) -> Value {
    json!({"type": "create_patient", "args": {
        "id": Uuid::now_v7(), "first_name": "Hostile", "last_name": "Input",
        "date_of_birth": "1980-01-01", "phone": null, "email": null, "address": address}})
}

fn cases(c: &Ctx) -> Vec<Case> {
    use ErrorCode::*;
    let fresh = Uuid::now_v7;
    let rec = Some(c.reception.as_str());
    let mb = 1024 * 1024;
    let mut v = vec![
        // --- Malformed, truncated, mistyped JSON (login and push bodies) ---
        req("json", "login: not JSON", "POST", "/v1/login", None, "{{", Expect::Error(400, BadRequest, None)),
        req("json", "login: truncated", "POST", "/v1/login", None, r#"{"username":"rec"#, Expect::Error(400, BadRequest, None)),
        req("json", "login: wrong types", "POST", "/v1/login", None, r#"{"username":5,"password":[]}"#, Expect::Error(400, BadRequest, Some("username"))),
        req("json", "login: unknown field", "POST", "/v1/login", None, r#"{"username":"a","password":"b","admin":true}"#, Expect::Error(400, BadRequest, Some("admin"))),
        req("json", "login: invalid UTF-8", "POST", "/v1/login", None, b"{\"username\":\"\xff\xfe\",\"password\":\"x\"}".to_vec(), Expect::Error(400, BadRequest, None)),
        req("json", "login: deep nesting", "POST", "/v1/login", None, format!(r#"{{"username":{}"#, "[".repeat(100_000)), Expect::Error(400, BadRequest, None)),
        req("json", "login: empty body", "POST", "/v1/login", None, "", Expect::Error(400, BadRequest, None)),
        req("json", "login: null", "POST", "/v1/login", None, "null", Expect::Error(400, BadRequest, None)),
        req("json", "login: trailing data", "POST", "/v1/login", None, r#"{"username":"a","password":"b"} {}"#, Expect::Error(400, BadRequest, None)),
        req("json", "login: NUL in username", "POST", "/v1/login", None, r#"{"username":"recep\u0000tion","password":"demo"}"#, Expect::Error(401, Unauthorized, None)),
        req("json", "push: mutation id over u64", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":18446744073709551616,"mutation":{}}}]}}"#, fresh(), new_patient("x")),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation_id"))),
        req("json", "push: negative mutation id", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":-1,"mutation":{}}}]}}"#, fresh(), new_patient("x")),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation_id"))),
        req("json", "push: fractional mutation id", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":1.5,"mutation":{}}}]}}"#, fresh(), new_patient("x")),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation_id"))),
        req("json", "push: NaN literal", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":NaN}}]}}"#, fresh()), Expect::Error(400, BadRequest, None)),
        req("json", "push: duplicate key", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","client_id":"{}","mutations":[]}}"#, fresh(), fresh()), Expect::Error(400, BadRequest, None)),
        req("json", "push: client id not a UUID", "POST", "/v1/push", rec,
             r#"{"client_id":"'; DROP TABLE patients; --","mutations":[]}"#, Expect::Error(400, BadRequest, Some("client_id"))),
        req("json", "push: wrong type in args", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"adjust_stock","args":{"id": c.item, "delta":"lots","reason":null}})),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.args.delta"))),
        req("json", "push: unknown field in args", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"delete_patient","args":{"id": c.patient, "base_version": 1, "evil": true}})),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.args.evil"))),
        req("json", "push: impossible date", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"create_patient","args":{"id": fresh(), "first_name":"A","last_name":"B","date_of_birth":"2024-02-30"}})),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.args.date_of_birth"))),
        req("json", "push: timestamp out of range", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"book_appointment","args":{"id": fresh(), "patient_id": c.patient, "doctor_id": c.admin_id,
                 "start":"9999999-01-01T00:00:00Z","end":"2026-01-01T00:00:00Z","reason":null}})),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.args.start"))),
        req("json", "push: quantity over u32", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"create_invoice","args":{"id": fresh(), "patient_id": c.patient, "appointment_id": null,
                 "lines":[{"description":"x","quantity": 4_294_967_296_u64,"unit_price_cents":1}],"issued_at":"2026-01-01T00:00:00Z"}})),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.args.lines[0].quantity"))),
        req("json", "push: amount over i64", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":1,"mutation":{{"type":"record_payment","args":{{"id":"{}","invoice_id":"{}","amount_cents":9223372036854775808,"method":"cash","paid_at":"2026-01-01T00:00:00Z"}}}}}}]}}"#, fresh(), fresh(), fresh()),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.args.amount_cents"))),
        req("json", "push: lone surrogate escape", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":1,"mutation":{{"type":"create_patient","args":{{"id":"{}","first_name":"\ud800","last_name":"B","date_of_birth":"1980-01-01"}}}}}}]}}"#, fresh(), fresh()),
             Expect::Error(400, BadRequest, None)),
        req("json", "push: deep nesting inside args", "POST", "/v1/push", rec,
             format!(r#"{{"client_id":"{}","mutations":[{{"mutation_id":1,"mutation":{{"type":"create_patient","args":{}}}}}]}}"#, fresh(), "{\"a\":".repeat(300)),
             Expect::Error(400, BadRequest, None)),
        req("json", "push: a 1 MB unknown key", "POST", "/v1/push", rec,
             format!(r#"{{"{}":1}}"#, "k".repeat(mb - 16)), Expect::Error(400, BadRequest, None)),
        req("json", "push: a 1 MB string as the body", "POST", "/v1/push", rec,
             format!("\"{}\"", "s".repeat(mb - 16)), Expect::Error(400, BadRequest, None)),
        // --- Huge values and oversized bodies ---
        req("size", "login: 500 KB username", "POST", "/v1/login", None,
             json!({"username": "u".repeat(500_000), "password": "demo"}).to_string(), Expect::Error(401, Unauthorized, None)),
        req("size", "login: 1000 KB password", "POST", "/v1/login", None,
             json!({"username": "reception", "password": "p".repeat(1_000_000)}).to_string(), Expect::Error(401, Unauthorized, None)),
        req("size", "push: 900 KB address", "POST", "/v1/push", rec,
             push_body(fresh(), 1, new_patient(&"A".repeat(900_000))), Expect::Outcome(Out::Rejected(RejectCode::Validation))),
        req("size", "push: 501 mutations", "POST", "/v1/push", rec,
             serde_json::to_vec(&json!({"client_id": fresh(), "mutations": (1..=501).map(|i| json!({"mutation_id": i, "mutation": new_patient("x")})).collect::<Vec<_>>()})).unwrap(),
             Expect::Error(413, PayloadTooLarge, Some("mutations"))),
        req("size", "push: 3 MiB body", "POST", "/v1/push", rec, vec![b' '; 3 * mb], Expect::StatusOrClosed(&[413])),
        case("size", "push: Content-Length of 100 GB, no body", Send::Raw(format!(
            "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100000000000\r\n\r\n{{", c.reception).into_bytes()),
            Expect::Error(413, PayloadTooLarge, None)),
        case("size", "push: 2 MiB chunked body", Send::Raw({
            let mut b = format!("POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n", c.reception).into_bytes();
            for _ in 0..32 { b.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes()); b.extend(std::iter::repeat_n(b' ', 65536)); b.extend_from_slice(b"\r\n"); }
            b.extend_from_slice(b"0\r\n\r\n");
            b
        }), Expect::StatusOrClosed(&[413])),
        // --- Queries and paths ---
        req("query", "pull: cursor over u64", "GET", "/v1/pull?cursor=18446744073709551616", rec, "", Expect::Error(400, BadRequest, None)),
        req("query", "pull: limit 0", "GET", "/v1/pull?cursor=0&limit=0", rec, "", Expect::Error(422, InvalidField, Some("limit"))),
        req("query", "pull: wait 61", "GET", "/v1/pull?cursor=0&wait=61", rec, "", Expect::Error(422, InvalidField, Some("wait"))),
        req("query", "pull: unknown parameter", "GET", "/v1/pull?cursor=0&evil=1", rec, "", Expect::Error(400, BadRequest, None)),
        req("query", "pull: client id not a UUID", "GET", "/v1/pull?cursor=0&client_id=%00%ff", rec, "", Expect::Error(400, BadRequest, None)),
        req("query", "history: SQL in the id", "GET", "/v1/history/patients/'%20OR%201=1--", Some(&c.admin), "", Expect::Error(422, InvalidField, Some("id"))),
        req("query", "history: unknown table", "GET", format!("/v1/history/sqlite_master/{}", c.patient), Some(&c.admin), "", Expect::Error(404, NotFound, None)),
        req("query", "path traversal", "GET", "/v1/../../etc/passwd", rec, "", Expect::Error(404, NotFound, None)),
        req("query", "wrong method on push", "DELETE", "/v1/push", rec, "", Expect::Error(405, BadRequest, None)),
        // --- Forged and replayed tokens ---
        req("token", "forged token", "GET", "/v1/me", Some(&"ab".repeat(32)), "", Expect::Error(401, Unauthorized, None)),
        req("token", "signed-out token replayed (me)", "GET", "/v1/me", Some(&c.signed_out), "", Expect::Error(401, Unauthorized, None)),
        req("token", "signed-out token replayed (push)", "POST", "/v1/push", Some(&c.signed_out),
             push_body(fresh(), 1, new_patient("x")), Expect::Error(401, Unauthorized, None)),
        req("token", "signed-out token replayed (pull)", "GET", "/v1/pull?cursor=0", Some(&c.signed_out), "", Expect::Error(401, Unauthorized, None)),
        req("token", "a valid token's prefix", "GET", "/v1/me", Some(&c.reception[..63]), "", Expect::Error(401, Unauthorized, None)),
        req("token", "64 KB token", "GET", "/v1/me", Some(&"f".repeat(65_536)), "", Expect::Error(401, Unauthorized, None)),
        req("token", "SQL in the token", "GET", "/v1/me", Some("' OR '1'='1"), "", Expect::Error(401, Unauthorized, None)),
        // The scheme is case-insensitive (RFC 9110 §11.1).
        case("token", "lowercase bearer scheme", Send::Http { method: "GET", path: "/v1/me".into(), token: None,
             headers: vec![("Authorization".into(), format!("bearer {}", c.reception))], body: vec![] }, Expect::Status(&[200])),
        case("token", "basic credentials", Send::Http { method: "GET", path: "/v1/me".into(), token: None,
             headers: vec![("Authorization".into(), "Basic cmVjZXB0aW9uOmRlbW8=".into())], body: vec![] }, Expect::Error(401, Unauthorized, None)),
        case("token", "empty bearer", Send::Http { method: "GET", path: "/v1/me".into(), token: None,
             headers: vec![("Authorization".into(), "Bearer ".into())], body: vec![] }, Expect::Error(401, Unauthorized, None)),
        case("token", "invalid UTF-8 in the token", Send::Raw(
             b"GET /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\xfd\r\n\r\n".to_vec()),
             Expect::Error(401, Unauthorized, None)),
        // --- Other users' client and mutation ids ---
        req("ids", "another user replays a processed push", "POST", "/v1/push", Some(&c.admin), c.victim_body.clone(),
             Expect::Error(403, Forbidden, Some("client_id"))),
        req("ids", "another user continues a client's mutation ids", "POST", "/v1/push", Some(&c.assistant),
             push_body(c.victim_client, 2, json!({"type":"adjust_stock","args":{"id": c.item, "delta": -1, "reason": null}})),
             Expect::Error(403, Forbidden, Some("client_id"))),
        req("ids", "another user pulls with a client's id", "GET", format!("/v1/pull?cursor=0&client_id={}", c.victim_client), Some(&c.doctor), "",
             Expect::Error(403, Forbidden, Some("client_id"))),
        req("ids", "a processed mutation id reused for another mutation", "POST", "/v1/push", rec,
             push_body(c.victim_client, 1, json!({"type":"delete_patient","args":{"id": c.patient, "base_version": 1}})),
             Expect::Outcome(Out::Rejected(RejectCode::MutationIdReused))),
        req("ids", "the owner replays its processed push", "POST", "/v1/push", rec, c.victim_body.clone(),
             Expect::Outcome(Out::Applied(c.victim_seq))),
        req("ids", "an unknown field in the mutation envelope", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"create_patient","args":{"id": fresh(), "first_name":"A","last_name":"B","date_of_birth":"1980-01-01"},"extra":42})),
             Expect::Error(400, BadRequest, Some("mutations[0].mutation.extra"))),
        req("ids", "mutation id 0", "POST", "/v1/push", rec, push_body(fresh(), 0, new_patient("x")), Expect::Outcome(Out::Retry(InvalidField))),
        // --- Mutations beyond the caller's role ---
        req("role", "reception writes a treatment record", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"add_treatment_record","args":{"id": fresh(), "patient_id": c.patient, "appointment_id": null,
                 "notes":"n","diagnosis":"d","procedures":[],"recorded_at":"2026-01-01T00:00:00Z"}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "reception creates an admin account", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"create_staff","args":{"id": fresh(), "username":"mallory","display_name":"M","role":"admin","password":"correct horse battery"}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "reception makes itself admin", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"set_staff_role","args":{"id": c.reception_id, "role":"admin"}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "reception adjusts stock", "POST", "/v1/push", rec,
             push_body(fresh(), 1, json!({"type":"adjust_stock","args":{"id": c.item, "delta": -1, "reason": null}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "assistant registers a patient", "POST", "/v1/push", Some(&c.assistant),
             push_body(fresh(), 1, new_patient("x")), Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "assistant cancels an appointment", "POST", "/v1/push", Some(&c.assistant),
             push_body(fresh(), 1, json!({"type":"set_appointment_status","args":{"id": c.appointment, "status":"cancelled"}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "doctor deletes a patient", "POST", "/v1/push", Some(&c.doctor),
             push_body(fresh(), 1, json!({"type":"delete_patient","args":{"id": c.patient, "base_version": 1}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "doctor issues an invoice", "POST", "/v1/push", Some(&c.doctor),
             push_body(fresh(), 1, json!({"type":"create_invoice","args":{"id": fresh(), "patient_id": c.patient, "appointment_id": null,
                 "lines":[{"description":"x","quantity":1,"unit_price_cents":100}],"issued_at":"2026-01-01T00:00:00Z"}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "doctor disables the admin", "POST", "/v1/push", Some(&c.doctor),
             push_body(fresh(), 1, json!({"type":"set_staff_active","args":{"id": c.admin_id, "active": false}})),
             Expect::Outcome(Out::Rejected(RejectCode::Forbidden))),
        req("role", "assistant reads history", "GET", format!("/v1/history/patients/{}", c.patient), Some(&c.assistant), "", Expect::Error(403, Forbidden, None)),
        req("role", "reception reads history", "GET", format!("/v1/history/patients/{}", c.patient), rec, "", Expect::Error(403, Forbidden, None)),
        // --- Raw HTTP protocol abuse ---
        case("http", "binary garbage", Send::Raw(b"\x00\x01\x02\xff\xfe\r\n\r\n".to_vec()), Expect::StatusOrClosed(&[400])),
        case("http", "invalid UTF-8 in the path", Send::Raw(b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()), Expect::StatusOrClosed(&[400, 404])),
        case("http", "100 KB request line", Send::Raw(format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(100_000)).into_bytes()),
             Expect::StatusOrClosed(&[400, 404, 414, 431])),
        case("http", "1 MiB header block", Send::Raw(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(mb)).into_bytes()),
             Expect::StatusOrClosed(&[400, 431])),
        case("http", "5000 headers", Send::Raw(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-H: v\r\n".repeat(5000)).into_bytes()),
             Expect::StatusOrClosed(&[400, 431])),
        case("http", "negative Content-Length", Send::Raw(b"POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}".to_vec()), Expect::StatusOrClosed(&[400])),
        case("http", "Content-Length and chunked together", Send::Raw(
             b"POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec()),
             Expect::StatusOrClosed(&[400])),
        case("http", "bad chunk size", Send::Raw(b"POST /v1/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec()),
             Expect::StatusOrClosed(&[400])),
        case("http", "WebSocket path without an upgrade", Send::Raw(raw::request("GET", "/v1/ws", &[], b"")), Expect::Status(&[400, 426])),
        case("http", "WebSocket upgrade with a bad version", Send::Raw(
             b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAA\r\nSec-WebSocket-Version: 99\r\n\r\n".to_vec()),
             Expect::Status(&[400, 426])),
        // --- Slow clients ---
        case("slow", "idle connection that sends nothing", Send::Paced(vec![], Duration::ZERO), Expect::Closed(Duration::from_secs(15))),
        case("slow", "slowloris: one header line a second", Send::Paced(
             std::iter::once(b"GET /healthz HTTP/1.1\r\n".to_vec()).chain((0..40).map(|i| format!("X-{i}: v\r\n").into_bytes())).collect(),
             Duration::from_secs(1)), Expect::Closed(Duration::from_secs(15))),
        case("slow", "slow body: one byte a second", Send::Paced({
             let mut chunks = vec![format!("POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n", c.reception).into_bytes()];
             chunks.extend((0..60).map(|_| b" ".to_vec()));
             chunks
        }, Duration::from_secs(1)), Expect::Status(&[408])),
        case("slow", "300 half-open requests", Send::SlowlorisCrowd(300), Expect::ServesMeanwhile(Duration::from_secs(10))),
        // --- WebSocket before hello ---
        case("ws", "first frame binary", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 0, op::BINARY, b"{}", true)] }, Expect::WsError(BadRequest, true)),
        case("ws", "hello with a forged token", Send::Ws { hello: None, frames: vec![raw::ws_text(&json!({"type":"hello","token":"ab".repeat(32),"client_id":fresh(),"cursor":0}).to_string())] },
             Expect::WsError(Unauthorized, true)),
        case("ws", "hello with a signed-out token", Send::Ws { hello: None, frames: vec![raw::ws_text(&json!({"type":"hello","token":c.signed_out,"client_id":fresh(),"cursor":0}).to_string())] },
             Expect::WsError(Unauthorized, true)),
        case("ws", "hello with a 900 KB token", Send::Ws { hello: None, frames: vec![raw::ws_text(&json!({"type":"hello","token":"t".repeat(900_000),"client_id":fresh(),"cursor":0}).to_string())] },
             Expect::WsError(Unauthorized, true)),
        case("ws", "hello with a mistyped cursor", Send::Ws { hello: None, frames: vec![raw::ws_text(&json!({"type":"hello","token":c.reception,"client_id":fresh(),"cursor":"zero"}).to_string())] },
             Expect::WsError(BadRequest, true)),
        case("ws", "hello with an unknown field", Send::Ws { hello: None, frames: vec![raw::ws_text(&json!({"type":"hello","token":c.reception,"client_id":fresh(),"cursor":0,"role":"admin"}).to_string())] },
             Expect::WsError(BadRequest, true)),
        case("ws", "hello never sent", Send::Ws { hello: None, frames: vec![] }, Expect::WsError(BadRequest, true)),
        case("ws", "invalid UTF-8 text frame", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 0, op::TEXT, b"{\"type\":\"\xff\"}", true)] }, Expect::WsDropped),
        case("ws", "unmasked client frame", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 0, op::TEXT, b"{}", false)] }, Expect::WsDropped),
        case("ws", "reserved bits set", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 7, op::TEXT, b"{}", true)] }, Expect::WsDropped),
        case("ws", "200-byte ping frame", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 0, op::PING, &[7; 200], true)] }, Expect::WsDropped),
        case("ws", "fragmented control frame", Send::Ws { hello: None, frames: vec![raw::ws_frame(false, 0, op::PING, b"x", true)] }, Expect::WsDropped),
        case("ws", "unknown opcode", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 0, 0x3, b"{}", true)] }, Expect::WsDropped),
        case("ws", "continuation without a start", Send::Ws { hello: None, frames: vec![raw::ws_frame(true, 0, op::CONTINUATION, b"{}", true)] }, Expect::WsDropped),
        case("ws", "frame header claiming 2^62 bytes", Send::Ws { hello: None, frames: vec![raw::ws_frame_claiming(true, 0, op::TEXT, b"{", true, 1 << 62)] }, Expect::WsDropped),
        case("ws", "1.25 MiB message in 64 KiB fragments", Send::Ws { hello: None, frames: (0..20).map(|i| {
             raw::ws_frame(i == 19, 0, if i == 0 { op::TEXT } else { op::CONTINUATION }, &[b' '; 65536], true)
        }).collect() }, Expect::WsDropped),
        // --- WebSocket after hello: refused frames, the session goes on ---
        case("ws", "deep nesting frame", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(&"[".repeat(200_000))] }, Expect::WsError(BadRequest, false)),
        case("ws", "100 KB unknown message type", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(&json!({"type": "x".repeat(100_000)}).to_string())] },
             Expect::WsError(BadRequest, false)),
        case("ws", "truncated frame", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(r#"{"type":"push","request_id":1,"mutations":[{"#)] }, Expect::WsError(BadRequest, false)),
        case("ws", "push with a mistyped argument", Send::Ws { hello: rec.map(str::to_owned), frames: vec![ws_push(1, 1, json!({"type":"adjust_stock","args":{"id": c.item, "delta":"lots","reason":null}}))] },
             Expect::WsError(BadRequest, false)),
        case("ws", "push of 501 mutations", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(&json!({"type":"push","request_id":1,
             "mutations": (1..=501).map(|i| json!({"mutation_id": i, "mutation": new_patient("x")})).collect::<Vec<_>>()}).to_string())] },
             Expect::WsError(PayloadTooLarge, false)),
        case("ws", "push of no mutations", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(r#"{"type":"push","request_id":1,"mutations":[]}"#)] },
             Expect::WsError(InvalidField, false)),
        case("ws", "second hello", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(&json!({"type":"hello","token":c.admin,"client_id":fresh(),"cursor":0}).to_string())] },
             Expect::WsError(BadRequest, false)),
        case("ws", "binary frame in a session", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_frame(true, 0, op::BINARY, &[0xff; 64], true)] },
             Expect::WsError(BadRequest, false)),
        case("ws", "push beyond the role", Send::Ws { hello: Some(c.assistant.clone()), frames: vec![ws_push(1, 1, new_patient("x"))] },
             Expect::WsOutcome(Out::Rejected(RejectCode::Forbidden))),
        case("ws", "push with mutation id 0", Send::Ws { hello: rec.map(str::to_owned), frames: vec![ws_push(1, 0, new_patient("x"))] },
             Expect::WsOutcome(Out::Retry(InvalidField))),
        case("ws", "push with a 900 KB address", Send::Ws { hello: rec.map(str::to_owned), frames: vec![ws_push(1, 1, new_patient(&"A".repeat(900_000)))] },
             Expect::WsOutcome(Out::Rejected(RejectCode::Validation))),
        case("ws", "invalid UTF-8 in a session", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_frame(true, 0, op::TEXT, b"\xc3\x28", true)] }, Expect::WsDropped),
        case("ws", "2 MiB frame in a session", Send::Ws { hello: rec.map(str::to_owned), frames: vec![raw::ws_text(&" ".repeat(2 * mb))] }, Expect::WsDropped),
        case("ws", "a client that never reads", Send::WsNeverReads { token: c.reception.clone() }, Expect::CutOff(Duration::from_secs(60))),
    ];
    // Every documented field limit, over by one, through one push each.
    for (field, len) in [("first_name", 101), ("last_name", 101), ("address", 2001)] {
        let mut m = new_patient("x");
        m["args"][field] = json!("n".repeat(len));
        v.push(req(
            "size",
            &format!("push: {field} of {len} characters"),
            "POST",
            "/v1/push",
            rec,
            push_body(fresh(), 1, m),
            Expect::Outcome(Out::Rejected(RejectCode::Validation)),
        ));
    }
    let _ = &c.base;
    v
}

fn check_error_body(body: &[u8], code: ErrorCode, field: Option<&str>) -> Result<(), String> {
    let e: ErrorBody = serde_json::from_slice(body).map_err(|_| {
        format!(
            "not an ErrorBody: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )
    })?;
    if e.code != code {
        return Err(format!(
            "code {:?}, expected {code:?} ({})",
            e.code, e.message
        ));
    }
    if e.retryable != code.retryable() {
        return Err(format!("retryable {} for {code:?}", e.retryable));
    }
    if let Some(f) = field
        && e.field.as_deref() != Some(f)
    {
        return Err(format!("field {:?}, expected {f}", e.field));
    }
    // Never the input echoed back: messages stay short whatever was sent.
    let limit = clinic_shared::codec::MAX_ERROR_CHARS + 1;
    if e.message.chars().count() > limit
        || e.field.as_ref().is_some_and(|f| f.chars().count() > limit)
    {
        return Err(format!(
            "an error {} bytes long (field {:?} bytes)",
            e.message.len(),
            e.field.as_ref().map(String::len)
        ));
    }
    Ok(())
}

fn check_outcome(outcome: &MutationOutcome, want: Out) -> Result<(), String> {
    match (outcome, want) {
        (MutationOutcome::Rejected { rejection }, Out::Rejected(code))
            if rejection.code == code =>
        {
            Ok(())
        }
        (MutationOutcome::Retry { error }, Out::Retry(code)) if error.code == code => Ok(()),
        (MutationOutcome::Applied { seq }, Out::Applied(s)) if *seq == s => Ok(()),
        (got, want) => Err(format!("outcome {got:?}, expected {want:?}")),
    }
}

async fn run_http(addr: SocketAddr, bytes: Vec<u8>, expect: &Expect) -> Result<(), String> {
    run_paced(addr, vec![bytes], Duration::ZERO, expect).await
}

async fn run_paced(
    addr: SocketAddr,
    chunks: Vec<Vec<u8>>,
    pace: Duration,
    expect: &Expect,
) -> Result<(), String> {
    let deadline = match expect {
        Expect::Closed(d) => *d,
        _ => Duration::from_secs(45),
    };
    let outcome = raw::exchange(addr, chunks, pace, deadline).await;
    match (expect, &outcome) {
        (
            Expect::Error(status, code, field),
            RawOutcome::Reply {
                status: got, body, ..
            },
        ) if got == status => check_error_body(body, *code, *field),
        (Expect::Status(ok) | Expect::StatusOrClosed(ok), RawOutcome::Reply { status, .. })
            if ok.contains(status) =>
        {
            Ok(())
        }
        (Expect::StatusOrClosed(_), RawOutcome::Closed { .. }) => Ok(()),
        (Expect::Closed(within), RawOutcome::Closed { after }) if after <= within => Ok(()),
        (
            Expect::Outcome(want),
            RawOutcome::Reply {
                status: 200, body, ..
            },
        ) => {
            let r: PushResponse =
                serde_json::from_slice(body).map_err(|e| format!("push response: {e}"))?;
            if r.results.len() != 1 {
                return Err(format!("{} results", r.results.len()));
            }
            check_outcome(&r.results[0].outcome, *want)
        }
        (_, RawOutcome::Reply { status, body, .. }) => Err(format!(
            "got {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
        (_, other) => Err(format!("got {other:?}")),
    }
}

/// Says hello properly and reads the catch-up.
async fn hello(ws: &mut RawWs, token: &str) -> Result<(), String> {
    let hello =
        json!({"type":"hello","token":token,"client_id":Uuid::now_v7(),"cursor":0}).to_string();
    ws.send(&raw::ws_text(&hello)).await;
    loop {
        match ws.next_text(WAIT).await {
            WsEvent::Text(t) => match serde_json::from_str::<ServerMessage>(&t) {
                Ok(ServerMessage::CaughtUp { .. }) => return Ok(()),
                Ok(ServerMessage::Welcome { .. } | ServerMessage::Changes { .. }) => continue,
                other => return Err(format!("during hello: {other:?}")),
            },
            other => return Err(format!("during hello: {other:?}")),
        }
    }
}

/// The next server message that is not a live `changes` batch.
async fn next_reply(ws: &mut RawWs, deadline: Duration) -> Result<ServerMessage, WsEvent> {
    loop {
        match ws.next_text(deadline).await {
            WsEvent::Text(t) => match serde_json::from_str::<ServerMessage>(&t) {
                Ok(ServerMessage::Changes { .. }) => continue,
                Ok(m) => return Ok(m),
                Err(_) => return Err(WsEvent::Text(t)),
            },
            other => return Err(other),
        }
    }
}

async fn run_ws(
    addr: SocketAddr,
    hello_token: Option<String>,
    frames: Vec<Vec<u8>>,
    expect: &Expect,
) -> Result<(), String> {
    let mut ws = RawWs::connect(addr).await;
    if let Some(token) = &hello_token {
        hello(&mut ws, token).await?;
    }
    for f in &frames {
        if !ws.send(f).await {
            break; // the server already dropped us: the reads below say how
        }
    }
    let deadline = Duration::from_secs(15);
    match expect {
        Expect::WsError(code, closes) => {
            let e = match next_reply(&mut ws, deadline).await {
                Ok(ServerMessage::Error(e)) => e,
                other => return Err(format!("expected an error frame, got {other:?}")),
            };
            check_error_body(&serde_json::to_vec(&e).unwrap(), *code, None)?;
            if *closes {
                match ws.next_text(deadline).await {
                    WsEvent::Close(Some(1008)) | WsEvent::Eof => Ok(()),
                    other => Err(format!(
                        "expected close 1008 after the error, got {other:?}"
                    )),
                }
            } else {
                ws.send(&raw::ws_text(r#"{"type":"ping","nonce":99}"#))
                    .await;
                match next_reply(&mut ws, deadline).await {
                    Ok(ServerMessage::Pong { nonce: 99 }) => Ok(()),
                    other => Err(format!("the session did not go on: {other:?}")),
                }
            }
        }
        Expect::WsDropped => match next_reply(&mut ws, deadline).await {
            Err(WsEvent::Close(_) | WsEvent::Eof) => Ok(()),
            other => Err(format!("expected the connection to end, got {other:?}")),
        },
        Expect::WsOutcome(want) => match next_reply(&mut ws, deadline).await {
            Ok(ServerMessage::PushResult { results, .. }) if results.len() == 1 => {
                check_outcome(&results[0].outcome, *want)
            }
            other => Err(format!("expected a push_result, got {other:?}")),
        },
        _ => Err("not a WebSocket expectation".into()),
    }
}

/// A session that pings as fast as it can and never reads: the server must
/// cut it off (send timeout) instead of buffering pongs for it.
async fn run_never_reads(addr: SocketAddr, token: &str, within: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut ws = RawWs::connect(addr).await;
    hello(&mut ws, token).await?;
    // From here on nothing is read.
    let batch: Vec<u8> = (0..2000)
        .flat_map(|i| raw::ws_text(&format!(r#"{{"type":"ping","nonce":{i}}}"#)))
        .collect();
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, ws.stream.write_all(&batch)).await {
            Err(_) => return Err(format!("still connected after {within:?} of not reading")),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(())) => continue,
        }
    }
}

/// Holds `n` connections with half a request head each, and meanwhile signs
/// in and pulls as a normal client.
async fn run_crowd(addr: SocketAddr, base: &str, n: usize, within: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .map_err(|e| e.to_string())?;
        held.push(s);
    }
    let started = Instant::now();
    let login = login_raw(base, "doctor", "demo").await;
    if login.status() != 200 {
        return Err(format!("login answered {}", login.status()));
    }
    let health = http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if health.status() != 200 {
        return Err(format!("healthz answered {}", health.status()));
    }
    let took = started.elapsed();
    drop(held);
    if took > within {
        return Err(format!("a normal client waited {took:?}"));
    }
    Ok(())
}

async fn run_case(
    addr: SocketAddr,
    base: String,
    case: Case,
) -> (String, &'static str, Result<(), String>) {
    let Case {
        name,
        kind,
        send,
        expect,
    } = case;
    let result = match send {
        Send::Http {
            method,
            path,
            token,
            headers,
            body,
        } => {
            let mut h: Vec<(String, String)> = headers;
            if let Some(t) = token {
                h.push(("Authorization".into(), format!("Bearer {t}")));
            }
            let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_http(addr, raw::request(method, &path, &hr, &body), &expect).await
        }
        Send::Raw(bytes) => run_http(addr, bytes, &expect).await,
        Send::Paced(chunks, pace) => run_paced(addr, chunks, pace, &expect).await,
        Send::Ws { hello, frames } => run_ws(addr, hello, frames, &expect).await,
        Send::WsNeverReads { token } => match expect {
            Expect::CutOff(within) => run_never_reads(addr, &token, within).await,
            _ => Err("bad table entry".into()),
        },
        Send::SlowlorisCrowd(n) => match expect {
            Expect::ServesMeanwhile(within) => run_crowd(addr, &base, n, within).await,
            _ => Err("bad table entry".into()),
        },
    };
    (name, kind, result)
}

/// Every row the admin can see, counted by table, and the cursor reached.
async fn snapshot(admin: &Api) -> (BTreeMap<String, usize>, u64) {
    let (rows, cursor) = admin.pull_all(0).await;
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts
            .entry(format!(
                "{:?}{}",
                r.table,
                if r.deleted { " (deleted)" } else { "" }
            ))
            .or_default() += 1;
    }
    (counts, cursor)
}

async fn head(base: &str) -> u64 {
    healthz(base).await["head"].as_u64().expect("head")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_is_answered_and_the_server_keeps_serving() {
    let server = Server::start();
    let addr = server.addr();
    let mut reception = Api::login(&server, "reception").await;
    let assistant = Api::login(&server, "assistant").await;
    let doctor = Api::login(&server, "doctor").await;
    let admin = Api::login(&server, "admin").await;
    let gone = Api::login(&server, "reception").await;
    assert_eq!(gone.post("/v1/logout").send().await.unwrap().status(), 204);

    // A client whose first mutation was applied: its ids are the target of
    // the replay cases.
    let victim_body = push_body(reception.client_id, 1, new_patient("Victim"));
    let response = reception
        .post("/v1/push")
        .header("content-type", "application/json")
        .body(victim_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let victim_seq =
        applied_seq(&response.json::<PushResponse>().await.unwrap().results[0].outcome);
    reception.next_mutation = 2;

    let first = |m: BTreeMap<Uuid, clinic_shared::model::SyncRow>| {
        *m.iter().find(|(_, r)| !r.deleted).expect("a row").0
    };
    let ctx = Ctx {
        base: server.base.clone(),
        reception: reception.token.clone(),
        assistant: assistant.token.clone(),
        doctor: doctor.token.clone(),
        admin: admin.token.clone(),
        signed_out: gone.token.clone(),
        reception_id: reception.user.id,
        admin_id: admin.user.id,
        patient: first(admin.table(Table::Patients).await),
        appointment: *admin
            .table(Table::Appointments)
            .await
            .iter()
            .find(|(_, r)| r.data.as_ref().is_some_and(|d| d["status"] == "scheduled"))
            .expect("a scheduled appointment")
            .0,
        item: first(admin.table(Table::InventoryItems).await),
        victim_client: reception.client_id,
        victim_seq,
        victim_body,
    };

    let (counts_before, cursor_before) = snapshot(&admin).await;
    let head_before = head(&server.base).await;
    assert_eq!(cursor_before, head_before);
    let rss_before = server.rss_kib();
    let sampler = RssSampler::start(server.pid(), Duration::from_millis(20));

    let table = cases(&ctx);
    let total = table.len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for case in table {
        tasks.push(tokio::spawn(run_case(addr, server.base.clone(), case)));
    }
    let mut failures = Vec::new();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tasks {
        let (name, kind, result) = t.await.expect("case task");
        *by_kind.entry(kind).or_default() += 1;
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    let took = started.elapsed();
    eprintln!(
        "hostile: {total} cases in {took:.1?} ({by_kind:?}), {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} hostile cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing was written by any of it.
    let (counts_after, cursor_after) = snapshot(&admin).await;
    assert_eq!(
        head(&server.base).await,
        head_before,
        "the change head moved"
    );
    assert_eq!(cursor_after, cursor_before);
    assert_eq!(counts_after, counts_before, "row counts changed");

    // Memory stayed bounded throughout.
    let peak = sampler.peak().max(server.rss_kib());
    drop(sampler);
    let grown = peak.saturating_sub(rss_before);
    eprintln!("hostile: server RSS baseline {rss_before} KiB, peak {peak} KiB (+{grown} KiB)");
    assert!(grown < 128 * 1024, "server memory grew by {grown} KiB");

    // A normal client is still served: sign in, pull, and a WebSocket
    // session that receives a live change.
    let mut writer = Api::login(&server, "reception").await;
    let reader = Api::login(&server, "doctor").await;
    let (_, cursor) = reader.pull_all(0).await;
    assert_eq!(cursor, head_before);
    let mut ws = Ws::hello(&server, &reader, cursor).await;
    ws.until_caught_up().await;
    let m: clinic_shared::mutation::Mutation =
        serde_json::from_value(new_patient("AfterTheStorm")).unwrap();
    let seq = applied_seq(&writer.push_one(m).await);
    assert_eq!(seq, head_before + 1);
    let row = ws
        .until_row(|r| r.table == Table::Patients && r.version == seq)
        .await;
    assert_eq!(row.data.unwrap()["first_name"], "Hostile");
}
