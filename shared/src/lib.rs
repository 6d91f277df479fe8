//! clinic-shared: the Clinic Sync domain model, its validation rules, the
//! mutation planner and the wire protocol. No I/O: every other crate (server,
//! client engine, desktop shell) builds on these types so that they agree on
//! what a valid patient, a permitted change and a well-formed message are.
//!
//! - [`model`]: tables, roles and the entity of each table.
//! - [`mutation`]: the intents clients send.
//! - [`validate`]: field rules; every error names its field.
//! - [`permissions`]: the role matrix.
//! - [`field_access`]: the field-level read matrix and the redaction of rows.
//! - [`care`]: whose clinical records a doctor receives; breaking the glass.
//! - [`apply`]: from an intent and current rows to row writes, with the
//!   clinic rules (shared by server and client).
//! - [`conflict`]: the field-conflict rule for updates based on an old version.
//! - [`protocol`]: HTTP bodies and WebSocket messages.
//! - [`codec`]: decoding untrusted JSON with errors that name the field.
//! - [`logging`]: which dependencies' log targets are capped, and why.
//! - [`password`]: Argon2id password hashes (server accounts, offline sign-in).
//! - [`fingerprint`]: certificate fingerprints as people compare them (clinic CA).
//! - [`time`]: the clinic's time zone: local days and times to UTC instants.

pub mod apply;
pub mod care;
pub mod codec;
pub mod conflict;
pub mod field_access;
pub mod fingerprint;
pub mod logging;
pub mod model;
pub mod mutation;
pub mod password;
pub mod permissions;
pub mod protocol;
pub mod time;
pub mod validate;
