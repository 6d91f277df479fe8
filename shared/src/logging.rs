//! Which log targets every Clinic Sync binary caps, whatever `RUST_LOG`
//! asks for, so that logs never carry tokens, passwords, keys or patient
//! data. Our own `tracing` calls log ids and error kinds only; dependencies
//! are not so careful at their most verbose levels. Each binary applies a
//! filter holding these targets (and their modules) at `info` in addition
//! to `RUST_LOG` (both must let an event through), so `RUST_LOG=trace` or
//! `RUST_LOG=tungstenite=trace` cannot bring those lines back.

/// Dependency targets capped at `info`, with why.
pub const CAPPED_TARGETS: &[&str] = &[
    // WebSocket frames, payloads included (a `hello` with its token, every
    // pushed patient), at trace.
    "tungstenite",
    "tokio_tungstenite",
    // Connection buffers and headers (Authorization) at trace.
    "hyper",
    "hyper_util",
    "h2",
    "tower_http",
    // Rejection bodies (which can quote the JSON that failed) at trace.
    "axum",
    // Handshake details and buffers at trace.
    "rustls",
    "tokio_rustls",
    // Statements with their parameters at debug/trace (PostgreSQL backend).
    "tokio_postgres",
    "postgres",
    "sqlx",
    // Requests and bodies at trace (the client's HTTP).
    "reqwest",
    // D-Bus messages, including the secrets passed to and from the OS key
    // store, at trace (the desk's mirror keys).
    "zbus",
    "secret_service",
    "keyring",
];
