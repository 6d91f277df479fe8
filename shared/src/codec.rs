//! Decoding JSON from the wire with errors that name the offending field.
//!
//! serde_json alone reports "invalid type at line 1 column 48"; a person
//! fixing a client wants "mutations[3].mutation.args.date_of_birth". Every
//! decoder of untrusted input goes through [`decode`].

use crate::protocol::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;

/// Most nesting serde_json accepts before refusing (its own recursion limit
/// is 128; we keep it and report it like any other error).
pub const MAX_DEPTH: usize = 128;

/// Decodes `bytes` as `T`. On failure the error names the JSON path of the
/// problem (when there is one) and says what was wrong, without echoing
/// values.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let kind = match inner.classify() {
            serde_json::error::Category::Io => "could not read",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Eof => "truncated JSON",
            serde_json::error::Category::Data => "invalid value",
        };
        let body = ErrorBody::new(ErrorCode::BadRequest, format!("{kind}: {inner}"));
        if path.is_empty() || path == "." {
            body
        } else {
            body.with_field(path)
        }
    })?;
    de.end()
        .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, format!("trailing data: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PushRequest;

    #[test]
    fn names_the_bad_field() {
        let body = br#"{"client_id":"01890a5d-ac96-774b-bcce-b302099a8057","mutations":[{"mutation_id":1,"mutation":{"type":"create_patient","args":{"id":"01890a5d-ac96-774b-bcce-b302099a8057","first_name":"A","last_name":"B","date_of_birth":"1990-13-01"}}}]}"#;
        let err = decode::<PushRequest>(body).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert_eq!(
            err.field.as_deref(),
            Some("mutations[0].mutation.args.date_of_birth")
        );
    }

    #[test]
    fn truncated_and_unknown() {
        assert!(
            decode::<PushRequest>(b"{\"client_id\":")
                .unwrap_err()
                .message
                .contains("truncated")
        );
        let err =
            decode::<crate::protocol::ClientMessage>(br#"{"type":"launch_rockets"}"#).unwrap_err();
        assert!(err.message.contains("unknown variant"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(decode::<serde_json::Value>(deep.as_bytes()).is_err());
    }
}
