//! Every message a client can send the server, decoded from arbitrary bytes
//! through the shared codec exactly as the server does it: WebSocket frames
//! (`decode_client_message`) and HTTP bodies (`decode::<LoginRequest>`,
//! `decode::<PushRequest>`).
//!
//! Properties: decoding never panics; every refusal is a `bad_request` whose
//! message starts with one of the documented prefixes; and whatever decodes
//! survives an encode → decode round trip unchanged (what the server stores
//! and echoes is what it understood).

#![no_main]

use clinic_shared::codec::{decode, decode_client_message};
use clinic_shared::protocol::{ClientMessage, ErrorBody, ErrorCode, LoginRequest, PushRequest};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

const PREFIXES: [&str; 5] = [
    "malformed JSON",
    "truncated JSON",
    "invalid value",
    "could not read",
    "trailing data",
];

fn check_error(e: &ErrorBody, ws: bool) {
    assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
    assert!(!e.retryable, "{e:?}");
    let documented = PREFIXES.iter().any(|p| e.message.starts_with(p))
        || (ws
            && (e.message == "a message must be a JSON object"
                || e.message == "missing `type`"
                || e.message == "`type` must be a string"
                || e.message.starts_with("unknown message type")));
    assert!(documented, "undocumented error message: {e:?}");
}

fn round_trip<T>(value: &T, decoder: impl Fn(&[u8]) -> Result<T, ErrorBody>)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let encoded = serde_json::to_vec(value).expect("a decoded value encodes");
    let again = decoder(&encoded).unwrap_or_else(|e| panic!("re-decoding {value:?} failed: {e:?}"));
    assert_eq!(&again, value, "round trip changed the value");
}

fuzz_target!(|data: &[u8]| {
    match decode_client_message(data) {
        Ok(msg) => round_trip::<ClientMessage>(&msg, decode_client_message),
        Err(e) => check_error(&e, true),
    }
    match decode::<PushRequest>(data) {
        Ok(push) => round_trip(&push, decode::<PushRequest>),
        Err(e) => check_error(&e, false),
    }
    match decode::<LoginRequest>(data) {
        Ok(login) => round_trip(&login, decode::<LoginRequest>),
        Err(e) => check_error(&e, false),
    }
});
