//! What the server leaves lying around: its files are private to its user,
//! and its log, even at `RUST_LOG=trace`, holds no token, password or
//! record content.

#![allow(clippy::unwrap_used, missing_docs)]

use clinic_e2e::{Api, Launch, Logging, Server, Ws, applied_seq, http, login_raw};
use clinic_shared::model::Table;
use clinic_shared::mutation::{CreatePatient, Mutation};
use clinic_shared::protocol::{ClientMessage, LoginResponse, ServerMessage};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_and_database_files_are_private_and_loose_ones_are_fixed_on_start() {
    let mut server = Server::start_tls();
    let dir = server.dir.path().to_path_buf();
    // The server has written (demo seed, a sign-in): the WAL exists.
    Api::login(&server, "reception").await;
    let files = ["clinic.db", "clinic.db-wal", "clinic.db-shm"];
    let keys = [
        "tls/ca-key.pem",
        "tls/server-key.pem",
        "tls/ca.pem",
        "tls/server.pem",
    ];
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("tls")), 0o700);
    for f in files.iter().chain(&keys) {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }

    // Loosened by hand (a restore from backup, an old version): fixed at
    // the next start, with the server's own files only.
    server.kill();
    let set =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    set(&dir, 0o755);
    set(&dir.join("tls"), 0o755);
    for f in files.iter().chain(&keys) {
        set(&dir.join(f), 0o644);
    }
    let unrelated = dir.join("README.txt");
    std::fs::write(&unrelated, "not the server's").unwrap();
    set(&unrelated, 0o644);
    server.start_again();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("tls")), 0o700);
    for f in files.iter().chain(&keys) {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f} after restart");
    }
    assert_eq!(mode(&unrelated), 0o644, "other files are left alone");
    // And it serves.
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_trace_level_log_holds_no_token_password_or_record_content() {
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("server.log");
    let server = Server::launch(Launch {
        tls: true,
        log: Logging {
            rust_log: Some("trace".into()),
            stderr_to: Some(log_path.clone()),
        },
        ..Launch::default()
    });
    let password = "Quill-Harbor-7391-Sesame";
    let wrong_password = "Wrong-Lantern-5512-Orchid";
    let added = server.admin(
        &[
            "user",
            "add",
            "--username",
            "zed.q",
            "--display-name",
            "Zed Q",
            "--role",
            "reception",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    // A refused sign-in, then a good one.
    let refused = login_raw(&server.base, "zed.q", wrong_password).await;
    assert_eq!(refused.status(), 401);
    let response = login_raw(&server.base, "zed.q", password).await;
    assert_eq!(response.status(), 200);
    let login: LoginResponse = response.json().await.unwrap();
    let mut api = Api {
        http: http(),
        base: server.base.clone(),
        token: login.token.clone(),
        user: login.user.clone(),
        client_id: Uuid::now_v7(),
        next_mutation: 1,
    };

    // A patient over HTTP, pulled back (plain and long poll).
    let (first, last, phone) = ("Zebulonia", "Quernbottom", "+44 7700 900461");
    let id = Uuid::now_v7();
    let seq = applied_seq(
        &api.push_one(Mutation::CreatePatient(CreatePatient {
            id,
            first_name: first.into(),
            last_name: last.into(),
            date_of_birth: "1961-07-08".parse().unwrap(),
            phone: Some(phone.into()),
            email: None,
            address: None,
            sex: None,
            emergency_contact: None,
            emergency_phone: None,
            insurer: None,
            insurance_number: None,
            alerts: None,
        }))
        .await,
    );
    assert!(api.table(Table::Patients).await.contains_key(&id));
    let page = api.pull(seq - 1, 1).await;
    assert!(page.rows.iter().any(|r| r.id == id));

    // A WebSocket: hello with the token, catch-up with the patient, and a
    // push of another one over the socket.
    let mut ws = Ws::hello(&server, &api, seq - 1).await;
    let (rows, _) = ws.until_caught_up().await;
    assert!(rows.iter().any(|r| r.id == id));
    let ws_first = "Xanthippeia";
    let id2 = Uuid::now_v7();
    let pending = api.number(vec![Mutation::CreatePatient(CreatePatient {
        id: id2,
        first_name: ws_first.into(),
        last_name: last.into(),
        date_of_birth: "1962-01-02".parse().unwrap(),
        phone: None,
        email: None,
        address: None,
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    })]);
    ws.send(&ClientMessage::Push {
        request_id: 7,
        mutations: pending,
    })
    .await;
    loop {
        match ws.next().await {
            Some(ServerMessage::PushResult { results, .. }) => {
                applied_seq(&results[0].outcome);
                break;
            }
            Some(_) => continue,
            None => panic!("socket closed"),
        }
    }
    // A malformed frame quoting record-like content is answered, not logged.
    ws.send_text(&format!(
        "{{\"type\":\"push\",\"request_id\":\"{ws_first}\"}}"
    ))
    .await;
    loop {
        match ws.next().await {
            Some(ServerMessage::Error(_)) => break,
            Some(_) => continue, // the live `changes` of the push above
            None => panic!("socket closed before the error frame"),
        }
    }
    drop(ws);
    // A plain-HTTP request to the TLS port: answered, and logged at debug
    // (the proof below that the log really is verbose).
    let plain = http()
        .get(format!("http://{}/healthz", server.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    // Sign out (the token's last use).
    let out = api.post("/v1/logout").send().await.unwrap();
    assert_eq!(out.status(), 204);

    // Wait until the server has logged the socket's end: the log is complete
    // for everything above once that line is there.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("session closed") {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `session closed` in the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap_or(log);

    // The log is verbose and covers what happened (so the checks below
    // look at a real log: without the dependency caps, this very test finds
    // the bearer token in it, from tungstenite's trace of the `hello` frame)...
    assert!(
        log.contains("DEBUG clinic_server::tls: plain HTTP on the TLS port"),
        "debug lines present:\n{log}"
    );
    assert!(log.contains(&login.user.id.to_string()), "ids are logged");
    // ...and holds none of the secrets or contents.
    for (what, secret) in [
        ("the bearer token", login.token.as_str()),
        ("the password", password),
        ("the wrong password", wrong_password),
        ("a patient's first name", first),
        ("a patient's last name", last),
        ("a patient's phone", phone),
        ("a patient pushed over the socket", ws_first),
    ] {
        assert!(!log.contains(secret), "{what} is in the log");
    }
}
