//! Logging that never carries secrets or patient data, whatever `RUST_LOG`
//! asks for.
//!
//! Our own `tracing` calls log ids (user, client, connection, sequence
//! numbers) and error kinds, never tokens, passwords or record contents.
//! Dependencies are not so careful at their most verbose levels: at `trace`,
//! tungstenite prints every WebSocket frame it reads or writes (so a
//! `hello` with its bearer token and every pushed patient), and hyper,
//! rustls and the database drivers print buffers, headers or statements.
//! So their targets are capped at `info` by a filter that is applied in
//! addition to `RUST_LOG` (both must let an event through): `RUST_LOG=trace`
//! or `RUST_LOG=tungstenite=trace` still cannot bring those lines back.
//! Events from the `log` crate (tungstenite, rustls) arrive with the
//! emitting module as target and are capped the same way.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Dependency targets capped at `info` (the list and its reasons are in
/// `clinic_shared::logging`, shared with the desk and the CLI).
pub use clinic_shared::logging::CAPPED_TARGETS;

/// The level [`CAPPED_TARGETS`] are held to.
pub const CAP: LevelFilter = LevelFilter::INFO;

/// `RUST_LOG`'s default when it is unset.
pub const DEFAULT_FILTER: &str = "info";

/// The cap filter: every target passes up to `trace`, except the capped
/// ones (and their modules), which pass up to [`CAP`].
pub fn dependency_caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED_TARGETS.iter().map(|t| (*t, CAP)))
}

/// Installs the stderr logger: `RUST_LOG` (default [`DEFAULT_FILTER`]) and
/// the dependency caps, both applied.
pub fn init() {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::registry()
        .with(dependency_caps())
        .with(env)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal, not in
                // journald or a log file.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracing::Level;

    #[test]
    fn capped_targets_and_their_modules_stop_at_info_and_ours_do_not() {
        let caps = dependency_caps();
        for target in [
            "tungstenite::protocol",
            "tokio_tungstenite",
            "hyper::proto::h1",
            "rustls::server::hs",
            "axum::rejection",
        ] {
            assert!(!caps.would_enable(target, &Level::DEBUG), "{target}");
            assert!(!caps.would_enable(target, &Level::TRACE), "{target}");
            assert!(caps.would_enable(target, &Level::INFO), "{target}");
        }
        assert!(caps.would_enable("clinic_server::ws", &Level::TRACE));
    }

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rust_log_cannot_lift_the_caps_even_when_it_names_the_target() {
        for rust_log in [
            "trace",
            "tungstenite=trace,clinic_server=trace",
            "tungstenite::protocol=trace,trace",
        ] {
            let buffer = Buffer::default();
            let out = buffer.clone();
            let subscriber = tracing_subscriber::registry()
                .with(dependency_caps())
                .with(EnvFilter::new(rust_log))
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(move || out.clone())
                        .with_ansi(false),
                );
            tracing::subscriber::with_default(subscriber, || {
                tracing::trace!(target: "tungstenite::protocol", "received frame SECRET-TOKEN");
                tracing::debug!(target: "hyper::proto", "SECRET-HEADER");
                tracing::info!(target: "tungstenite::protocol", "connection closed");
                tracing::trace!(target: "clinic_server::ws", "frame kind=text");
            });
            let text =
                String::from_utf8(buffer.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
                    .unwrap_or_default();
            assert!(!text.contains("SECRET"), "{rust_log}: {text}");
            assert!(
                text.contains("connection closed"),
                "{rust_log}: info still passes"
            );
            assert!(
                text.contains("frame kind=text"),
                "{rust_log}: our trace passes"
            );
        }
    }
}
