//! The server over real TLS: the real binary with a clinic CA from `tls
//! init` (or a certificate brought with `--tls-cert`), real rustls clients
//! that trust that CA, and the refusal of plain HTTP off loopback.

#![allow(clippy::unwrap_used, missing_docs)]

use clinic_e2e::{
    Api, Proxy, Server, WAIT, Ws, applied_seq, bin, http, run_with_stdin, trust_ca, untrusting_http,
};
use clinic_shared::model::Table;
use clinic_shared::mutation::{CreatePatient, Mutation};
use clinic_shared::protocol::ServerMessage;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn new_patient(first: &str) -> (Uuid, Mutation) {
    let id = Uuid::now_v7();
    let m = Mutation::CreatePatient(CreatePatient {
        id,
        first_name: first.into(),
        last_name: "Tls".into(),
        date_of_birth: "1980-02-03".parse().unwrap(),
        phone: None,
        email: None,
        address: None,
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    });
    (id, m)
}

#[tokio::test]
async fn login_push_pull_long_poll_and_a_live_websocket_work_over_tls() {
    let server = Server::start_tls();
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    assert!(server.ws_url().starts_with("wss://"));

    let mut reception = Api::login(&server, "reception").await;
    let doctor = Api::login(&server, "doctor").await;
    let (_, head) = doctor.pull_all(0).await;

    // A live WebSocket over wss: catch-up, then a change made by another client.
    let mut ws = Ws::hello(&server, &doctor, head).await;
    let (rows, _) = ws.until_caught_up().await;
    assert!(rows.is_empty(), "nothing past the head yet");

    // A long poll over https that is waiting when the change commits.
    let poller = {
        let doctor_pull = Api {
            http: http(),
            base: doctor.base.clone(),
            token: doctor.token.clone(),
            user: doctor.user.clone(),
            client_id: Uuid::now_v7(),
            next_mutation: 1,
        };
        tokio::spawn(async move {
            let started = Instant::now();
            let page = doctor_pull.pull(head, 20).await;
            (page, started.elapsed())
        })
    };
    // Let the long poll reach the server before the push (it waits up to 20 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (id, m) = new_patient("Over");
    let seq = applied_seq(&reception.push_one(m).await);

    let row = ws.until_row(|r| r.id == id).await;
    assert_eq!(row.version, seq);
    let (page, waited) = poller.await.unwrap();
    assert!(
        page.rows.iter().any(|r| r.id == id),
        "long poll returned the row"
    );
    assert!(
        waited < Duration::from_secs(10),
        "long poll returned on the commit, after {waited:?}"
    );

    // And a plain pull sees it too.
    let patients = reception.table(Table::Patients).await;
    assert_eq!(patients[&id].version, seq);

    // A push over the WebSocket.
    let (id2, m2) = new_patient("Socket");
    let mut doctor_ws_api = doctor;
    let pending = doctor_ws_api.number(vec![m2]);
    ws.send(&clinic_shared::protocol::ClientMessage::Push {
        request_id: 1,
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
            None => panic!("socket closed before the push result"),
        }
    }
    assert!(reception.table(Table::Patients).await.contains_key(&id2));
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_a_clear_400_and_the_server_keeps_serving() {
    let server = Server::start_tls();
    let plain = format!("http://{}/healthz", server.addr());
    let response = http().get(&plain).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert!(
        body["message"].as_str().unwrap().contains("HTTPS"),
        "{body}"
    );

    // Bytes that are neither HTTP nor TLS, and a TLS handshake cut short.
    for junk in [
        &b"\x00\x01\x02 garbage"[..],
        &b"\x16\x03\x01\x00\x05hello"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, junk)
            .await
            .unwrap();
        drop(s);
    }
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_clinic_ca_fails_the_handshake() {
    let server = Server::start_tls();
    let err = untrusting_http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect_err("an untrusted certificate must be refused");
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&format!("{e}; "));
        source = e.source();
    }
    assert!(
        chain.to_lowercase().contains("certificate"),
        "the error says why: {chain}"
    );

    // The same for a WebSocket client with an empty trust store.
    let connector = tokio_tungstenite::Connector::Rustls(clinic_e2e::tls_client_config(&[]));
    let ws = tokio_tungstenite::connect_async_tls_with_config(
        server.ws_url(),
        None,
        false,
        Some(connector),
    )
    .await;
    assert!(ws.is_err(), "wss without the CA must fail");

    // The refused handshakes did not hurt the server.
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_inspecting_proxy_can_refuse_websockets_over_tls_and_http_still_passes() {
    let server = Server::start_tls();
    let api = Api::login(&server, "doctor").await;
    let proxy = Proxy::start_tls(&server).await;
    assert!(proxy.url().starts_with("https://"));
    let ws_url = format!("{}/v1/ws", proxy.url().replacen("https", "wss", 1));

    let mut ws = Ws::connect_url(&ws_url).await;
    ws.send(&clinic_shared::protocol::ClientMessage::Hello {
        token: api.token.clone(),
        client_id: api.client_id,
        cursor: 0,
    })
    .await;
    assert!(matches!(
        ws.next().await,
        Some(ServerMessage::Welcome { .. })
    ));

    proxy.block_websocket(true);
    let connector = tokio_tungstenite::Connector::Rustls(clinic_e2e::trusting_tls_config());
    let refused =
        tokio_tungstenite::connect_async_tls_with_config(&ws_url, None, false, Some(connector))
            .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected the proxy's 403, got {other:?}"),
    }
    let through = http()
        .get(format!("{}/v1/pull?cursor=0&limit=1", proxy.url()))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), 200);
}

/// `clinic-server serve` started by hand, stdout line by line, stderr kept.
struct Serve {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    first_line: Option<String>,
}

impl Serve {
    fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut child = Command::new(bin("clinic-server"))
            .arg("--data-dir")
            .arg(dir)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = err_pipe.read_to_string(&mut buf);
            sink.lock().unwrap().push_str(&buf);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let first_line = rx.recv_timeout(WAIT).ok().flatten();
        Serve {
            child,
            stderr,
            first_line,
        }
    }

    /// Waits for the process to exit; its status and stderr.
    fn wait_exit(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the stderr reader finish.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.stderr.lock().unwrap().clone());
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn port(&self) -> u16 {
        let line = self.first_line.as_deref().expect("listening line");
        line.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_unless_insecure_http_and_tls_serves_there() {
    let dir = tempfile::tempdir().unwrap();
    // 0.0.0.0 listens on every address of this machine: not loopback; and
    // this machine's own LAN address, when it has one.
    let mut addresses = vec!["0.0.0.0".to_owned()];
    if let Ok(out) = Command::new("hostname").arg("-I").output() {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(ip) = text
            .split_whitespace()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        {
            addresses.push(ip.to_string());
        }
    }
    for address in &addresses {
        let refused = Serve::start(dir.path(), &["--listen", &format!("{address}:0")]);
        assert_eq!(refused.first_line, None, "nothing was served on {address}");
        let (status, stderr) = refused.wait_exit();
        assert!(!status.success());
        assert!(
            stderr.contains(&format!("refusing to serve plain HTTP on {address}:")),
            "{stderr}"
        );
        assert!(
            stderr.contains("tls init") && stderr.contains("--tls-cert"),
            "says what to do: {stderr}"
        );
    }
    eprintln!("refused plain HTTP on {addresses:?}");

    let insecure = Serve::start(dir.path(), &["--listen", "0.0.0.0:0", "--insecure-http"]);
    let line = insecure.first_line.clone().expect("served");
    assert!(
        line.starts_with("clinic-server listening on http://0.0.0.0:"),
        "{line}"
    );
    let health = http()
        .get(format!("http://127.0.0.1:{}/healthz", insecure.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(insecure);

    // With `tls init` done, the same address serves HTTPS, no flags needed.
    let init = run_with_stdin(
        Command::new(bin("clinic-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["tls", "init"]),
        None,
    );
    assert!(init.status.success());
    trust_ca(&std::fs::read(dir.path().join("tls/ca.pem")).unwrap());
    let tls = Serve::start(dir.path(), &["--listen", "0.0.0.0:0"]);
    let line = tls.first_line.clone().expect("served");
    assert!(
        line.starts_with("clinic-server listening on https://0.0.0.0:"),
        "{line}"
    );
    let health = http()
        .get(format!("https://127.0.0.1:{}/healthz", tls.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

fn openssl(args: &[&str]) -> Option<std::process::Output> {
    let out = Command::new("openssl").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

#[tokio::test]
async fn a_brought_certificate_serves_with_rsa_and_ed25519_keys_and_a_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    // The clinic's own PKI, made with openssl: a CA and, per key type, a
    // server certificate it signed.
    let p = |name: &str| certs.path().join(name).to_str().unwrap().to_owned();
    let made = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Own clinic PKI",
        "-keyout",
        &p("ca-key.pem"),
        "-out",
        &p("ca.pem"),
    ]);
    if made.is_none() {
        eprintln!("skipped: the openssl command is not installed (apt install openssl)");
        return;
    }
    trust_ca(&std::fs::read(p("ca.pem")).unwrap());
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for (name, newkey) in [("rsa", "rsa:2048"), ("ed25519", "ed25519")] {
        let cert = certs.path().join(format!("{name}.pem"));
        let key = certs.path().join(format!("{name}-key.pem"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            newkey,
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            &p(&format!("{name}.csr")),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let serve = Serve::start(
            dir.path(),
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        let line = serve
            .first_line
            .clone()
            .unwrap_or_else(|| panic!("{name}: not served"));
        assert!(
            line.starts_with("clinic-server listening on https://"),
            "{line}"
        );
        let health = http()
            .get(format!("https://127.0.0.1:{}/healthz", serve.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(health.status(), 200, "{name}");
    }
    // The RSA certificate with the Ed25519 key: refused at start, and why.
    let wrong = Serve::start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            certs.path().join("rsa.pem").to_str().unwrap(),
            "--tls-key",
            certs.path().join("ed25519-key.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(wrong.first_line, None);
    let (status, stderr) = wrong.wait_exit();
    assert!(!status.success());
    assert!(stderr.contains("cannot be used for TLS"), "{stderr}");
    // A certificate without its key is a usage error.
    let half = Serve::start(dir.path(), &["--tls-cert", "x.pem"]);
    let (status, stderr) = half.wait_exit();
    assert!(!status.success());
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[test]
fn tls_show_prints_the_fingerprint_openssl_computes_and_init_will_not_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let tool = |args: &[&str]| {
        run_with_stdin(
            Command::new(bin("clinic-server"))
                .arg("--data-dir")
                .arg(dir.path())
                .args(args),
            None,
        )
    };
    let missing = tool(&["tls", "show"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tls init"));

    let init = tool(&[
        "tls",
        "init",
        "--hostname",
        "desk-server.clinic.lan",
        "--ip",
        "192.0.2.7",
    ]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let init_out = String::from_utf8(init.stdout).unwrap();
    let show = tool(&["tls", "show"]);
    assert!(show.status.success());
    let show_out = String::from_utf8(show.stdout).unwrap();
    assert_eq!(init_out, show_out, "show prints what init printed");
    assert!(
        show_out.contains("desk-server.clinic.lan") && show_out.contains("192.0.2.7"),
        "{show_out}"
    );
    assert!(show_out.contains("valid until"), "{show_out}");

    let hex = show_out
        .lines()
        .find_map(|l| l.strip_prefix("CA fingerprint (SHA-256): "))
        .expect("fingerprint line")
        .to_owned();
    let short = show_out
        .lines()
        .find_map(|l| l.strip_prefix("CA fingerprint, to read aloud: "))
        .expect("short line");
    assert_eq!(short.split(' ').count(), 6);
    let ca = dir.path().join("tls/ca.pem");
    match openssl(&[
        "x509",
        "-in",
        ca.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]) {
        Some(out) => {
            let text = String::from_utf8(out.stdout).unwrap();
            let theirs = text.trim().split('=').nth(1).unwrap();
            assert_eq!(
                theirs, hex,
                "the fingerprint people compare is the certificate's"
            );
        }
        None => eprintln!("openssl not installed: fingerprint not cross-checked"),
    }
    if let Some(out) = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        dir.path().join("tls/server.pem").to_str().unwrap(),
    ]) {
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }

    let before = std::fs::read(&ca).unwrap();
    let again = tool(&["tls", "init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(&ca).unwrap(), before, "nothing replaced");

    let renew = tool(&["tls", "renew"]);
    assert!(renew.status.success());
    let renew_out = String::from_utf8(renew.stdout).unwrap();
    assert!(renew_out.contains(&hex), "same CA after renew");
    assert!(
        renew_out.contains("desk-server.clinic.lan"),
        "names kept: {renew_out}"
    );
}

/// Sends the HTTP/2 connection preface (and an empty SETTINGS frame) and
/// reads what comes back until the server closes. HTTP/2 would be served
/// without the header-read and idle timeouts, so the server speaks
/// HTTP/1.1 only: the preface gets an HTTP/1.1 error (or nothing) and the
/// connection is closed, never an HTTP/2 SETTINGS frame.
async fn answer_to_the_http2_preface<S>(mut stream: S) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    stream.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes an HTTP/2 connection at once")
        .ok();
    answer
}

fn assert_not_http2(answer: &[u8]) {
    // An HTTP/2 server's first frame is SETTINGS: type 4 at byte 3.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "not an HTTP/1.1 answer: {:?}",
        String::from_utf8_lossy(answer)
    );
}

#[tokio::test]
async fn http2_is_refused_on_plain_and_tls_ports_and_http1_keeps_serving() {
    let plain = Server::start();
    let tcp = tokio::net::TcpStream::connect(plain.addr()).await.unwrap();
    assert_not_http2(&answer_to_the_http2_preface(tcp).await);
    let health = http()
        .get(format!("{}/healthz", plain.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Over TLS with HTTP/2 asked for by prior knowledge (no ALPN needed).
    let server = Server::start_tls();
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(clinic_e2e::trusting_tls_config());
    let name = rustls::pki_types::ServerName::IpAddress(server.addr().ip().into());
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_not_http2(&answer_to_the_http2_preface(tls).await);
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
