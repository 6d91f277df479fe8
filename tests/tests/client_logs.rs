//! The client's logs at the most verbose level carry no token, password or
//! patient data: the real `clinic` CLI with `RUST_LOG=trace`, over TLS,
//! signing in, writing a patient, syncing and watching live (run under
//! `scripts/with-keyring.sh`).

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn trace_logs_of_the_cli_hold_no_secret_and_no_patient() {
    let server = Server::start_tls();
    let password = "Violet-Harbour-Lantern-2231";
    let out = server.admin(
        &[
            "user",
            "add",
            "--username",
            "loggy",
            "--display-name",
            "Lo Gy",
            "--role",
            "reception",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = write_trusted_cas(&dir.path().with_extension("ca.pem"));
    let clinic = |args: &[&str], stdin: Option<&str>| {
        run_with_stdin(
            Command::new(bin("clinic"))
                .arg("--data-dir")
                .arg(dir.path())
                .env("CLINIC_CA_FILE", &ca)
                .env("RUST_LOG", "trace")
                .args(args),
            stdin,
        )
    };
    let mut stderr = Vec::new();
    let login = clinic(
        &[
            "--server",
            &server.base,
            "login",
            "--username",
            "loggy",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    stderr.extend(login.stderr);
    let add = clinic(
        &[
            "patients",
            "add",
            "--first-name",
            "Ximena",
            "--last-name",
            "Quarrington",
            "--date-of-birth",
            "1966-06-06",
            "--phone",
            "+1 555 246 8101",
        ],
        None,
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    stderr.extend(add.stderr);
    let sync = clinic(&["sync"], None);
    assert!(sync.status.success());
    stderr.extend(sync.stderr);
    // Live: a WebSocket `hello` (with the token) and a live batch.
    let mut watch = Command::new(bin("clinic"))
        .arg("--data-dir")
        .arg(dir.path())
        .env("CLINIC_CA_FILE", &ca)
        .env("RUST_LOG", "trace")
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("watch goes live");
        if line.contains("\"live\"") {
            break;
        }
    }
    let second = clinic(
        &[
            "patients",
            "add",
            "--first-name",
            "Yorick",
            "--last-name",
            "Quarrington",
            "--date-of-birth",
            "1967-07-07",
        ],
        None,
    );
    assert!(second.status.success());
    stderr.extend(second.stderr);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the live batch arrives");
        if line.contains("\"changes\"") && line.contains("remote") {
            break;
        }
    }
    watch.kill().unwrap();
    let output = watch.wait_with_output().unwrap();
    stderr.extend(output.stderr);

    let log = String::from_utf8_lossy(&stderr);
    // Trace logging was on: the client's own debug lines are there.
    assert!(log.contains("local mutation queued"), "{log}");
    for secret in [password, "Quarrington", "Ximena", "246 8101"] {
        assert!(!log.contains(secret), "the log holds `{secret}`");
    }
    let token_shaped = log
        .as_bytes()
        .windows(64)
        .any(|w| w.iter().all(|b| b.is_ascii_hexdigit()));
    assert!(!token_shaped, "the log holds something shaped like a token");
}
