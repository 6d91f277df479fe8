//! Decoding JSON from the wire with errors that name the offending field.
//!
//! serde_json alone reports "invalid type at line 1 column 48"; a person
//! fixing a client wants "mutations[3].mutation.args.date_of_birth". Every
//! decoder of untrusted input goes through [`decode`].

use crate::mutation::PendingMutation;
use crate::protocol::{ClientMessage, ErrorBody, ErrorCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

/// Most nesting serde_json accepts before refusing (its own recursion limit
/// is 128; we keep it and report it like any other error).
pub const MAX_DEPTH: usize = 128;

/// Longest error message and `field` path, in characters. serde_json
/// quotes the offending value or key in its messages (`invalid type: string
/// "…"`, ``unknown field `…` ``), and a path is made of the input's keys:
/// without a bound, a megabyte string in the wrong place came back as a
/// megabyte error. 400 keeps the deepest array path (128 × `[0]`) whole.
pub const MAX_ERROR_CHARS: usize = 400;

fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn bad_request(message: String, path: String) -> ErrorBody {
    let body = ErrorBody::new(ErrorCode::BadRequest, bounded(message));
    if path.is_empty() || path == "." {
        body
    } else {
        body.with_field(bounded(path))
    }
}

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
        bad_request(prefixed(kind, &inner), path)
    })?;
    de.end()
        .map_err(|e| bad_request(format!("trailing data: {e}"), String::new()))?;
    Ok(value)
}

/// `kind: error`, but serde's own "invalid value: …" (an unknown key of a
/// tagged enum) is not prefixed twice.
fn prefixed(kind: &str, inner: &serde_json::Error) -> String {
    let text = inner.to_string();
    if text.starts_with(kind) {
        text
    } else {
        format!("{kind}: {text}")
    }
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ErrorBody {
    let path = e.path().to_string();
    bad_request(prefixed("invalid value", &e.into_inner()), path)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloFields {
    token: String,
    client_id: Uuid,
    cursor: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushFields {
    request_id: u64,
    mutations: Vec<PendingMutation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingFields {
    nonce: u64,
}

/// Decodes a WebSocket [`ClientMessage`] with errors that name the field.
///
/// serde buffers internally tagged enums before it knows the variant, which
/// loses the path of an error inside; this reads the `type` first and then
/// decodes the rest as that variant, so a bad mutation argument is reported
/// as e.g. `mutations[2].mutation.args.start`.
pub fn decode_client_message(bytes: &[u8]) -> Result<ClientMessage, ErrorBody> {
    let value: Value = decode(bytes)?;
    let Value::Object(mut fields) = value else {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "a message must be a JSON object",
        ));
    };
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(
                ErrorBody::new(ErrorCode::BadRequest, "`type` must be a string").with_field("type"),
            );
        }
        None => {
            return Err(ErrorBody::new(ErrorCode::BadRequest, "missing `type`").with_field("type"));
        }
    };
    let rest = Value::Object(fields);
    match kind.as_str() {
        "hello" => {
            let f: HelloFields = serde_path_to_error::deserialize(rest).map_err(path_error)?;
            Ok(ClientMessage::Hello {
                token: f.token,
                client_id: f.client_id,
                cursor: f.cursor,
            })
        }
        "push" => {
            let f: PushFields = serde_path_to_error::deserialize(rest).map_err(path_error)?;
            Ok(ClientMessage::Push {
                request_id: f.request_id,
                mutations: f.mutations,
            })
        }
        "ping" => {
            let f: PingFields = serde_path_to_error::deserialize(rest).map_err(path_error)?;
            Ok(ClientMessage::Ping { nonce: f.nonce })
        }
        other => Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "unknown message type `{}` (expected hello, push or ping)",
                other.chars().take(40).collect::<String>()
            ),
        )
        .with_field("type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PushRequest;

    /// Regression (hostile-input suite): a huge value or key came back
    /// whole in the error message and `field`.
    #[test]
    fn errors_never_echo_a_huge_input() {
        let huge = "s".repeat(1024 * 1024);
        let cases = [
            format!("\"{huge}\""),
            format!(r#"{{"client_id":"{huge}","mutations":[]}}"#),
            format!(r#"{{"{huge}":1}}"#),
        ];
        let short = |e: ErrorBody| {
            assert!(
                e.message.chars().count() <= MAX_ERROR_CHARS + 1,
                "{}",
                e.message.len()
            );
            assert!(
                e.field
                    .as_ref()
                    .is_none_or(|f| f.chars().count() <= MAX_ERROR_CHARS + 1)
            );
        };
        for body in &cases {
            short(decode::<PushRequest>(body.as_bytes()).unwrap_err());
            short(decode_client_message(body.as_bytes()).unwrap_err());
        }
        let e =
            decode_client_message(format!(r#"{{"type":"ping","nonce":1,"{huge}":2}}"#).as_bytes())
                .unwrap_err();
        assert!(
            e.field
                .as_ref()
                .is_some_and(|f| f.chars().count() <= MAX_ERROR_CHARS + 1)
        );
    }

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
    fn websocket_messages_name_the_bad_field() {
        let bad_arg = br#"{"type":"push","request_id":1,"mutations":[{"mutation_id":1,"mutation":{"type":"adjust_stock","args":{"id":"01890a5d-ac96-774b-bcce-b302099a8057","delta":"lots"}}}]}"#;
        let err = decode_client_message(bad_arg).unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("mutations[0].mutation.args.delta")
        );
        let err = decode_client_message(br#"{"type":"ping","nonce":1,"extra":2}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("extra"));
        let err = decode_client_message(br#"{"type":"shout"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("type"));
        assert!(decode_client_message(b"[1]").is_err());
        let ok = decode_client_message(br#"{"nonce":7,"type":"ping"}"#).unwrap();
        assert_eq!(ok, ClientMessage::Ping { nonce: 7 });
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(decode::<serde_json::Value>(deep.as_bytes()).is_err());
    }
}
