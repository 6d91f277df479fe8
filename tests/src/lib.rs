//! End-to-end test harness: the real `clinic-server` and `clinic` binaries,
//! the server on 127.0.0.1:0 with a real SQLite file in a temporary
//! directory, real HTTP and WebSocket clients. Nothing is mocked. Waits are
//! on events (a line on stdout, a message on a socket), each bounded by a
//! timeout so a broken server fails the test instead of hanging it.
//!
//! The binaries are found next to the test executable (`target/<profile>/`);
//! `cargo test --workspace` builds them before running any test.
//!
//! TLS: [`Server::start_tls`] runs `clinic-server tls init` in the server's
//! data directory first, so the server serves `https`/`wss` with a clinic
//! CA of its own. That CA's certificate is added to the trust of every
//! client this harness makes in the process ([`http`], [`Ws`], [`Proxy`]),
//! exactly as a desk that was given `ca.pem` would trust it; nothing else is
//! trusted but the public web roots. [`untrusting_http`] is the client that
//! was never given the CA.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

pub mod pg;
pub mod raw;

use clinic_shared::model::{SyncRow, Table, Timestamp};
use clinic_shared::mutation::{Mutation, PendingMutation};
use clinic_shared::protocol::{
    ClientMessage, LoginResponse, MutationOutcome, MutationResult, PullResponse, PushRequest,
    PushResponse, ServerMessage,
};
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(20);

/// The path of a workspace binary built next to the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// A running server process over a data directory that outlives it.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub base: String,
    pub extra_args: Vec<String>,
    /// The clinic CA (`tls/ca.pem`) when the server speaks TLS.
    pub ca: Option<PathBuf>,
    /// `--database-url` when on PostgreSQL (else SQLite in `dir`).
    pub database_url: Option<String>,
    /// `http://…/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    log: Logging,
}

/// Where a server's log goes and at which level.
#[derive(Debug, Clone, Default)]
pub struct Logging {
    /// `RUST_LOG` for the server (default: `CLINIC_TEST_LOG`, else `warn`).
    pub rust_log: Option<String>,
    /// Append stderr to this file instead of the test's stderr.
    pub stderr_to: Option<PathBuf>,
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Extra `serve` arguments.
    pub extra: Vec<String>,
    /// Run `tls init` in the data directory first (serve `https`).
    pub tls: bool,
    /// Make the data directory inside this directory (a small file system
    /// in disk-full tests) instead of the system temp directory.
    pub parent: Option<PathBuf>,
    /// Logging.
    pub log: Logging,
    /// Serve from this PostgreSQL database (`--database-url`) instead of
    /// SQLite in the data directory; several servers may share one.
    pub database_url: Option<String>,
}

impl Server {
    /// Starts a server seeded with the demo clinic.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        Self::launch(Launch {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..Launch::default()
        })
    }

    /// Starts a server (seeding the demo clinic if the database is empty)
    /// on the PostgreSQL database at `url`; several may share one.
    pub fn start_pg(url: &str, extra: &[&str]) -> Server {
        Self::launch(Launch {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            database_url: Some(url.to_owned()),
            ..Launch::default()
        })
    }

    /// Starts a demo server over TLS with its own clinic CA (`tls init`),
    /// which every client of this harness then trusts.
    pub fn start_tls() -> Server {
        Self::start_tls_with(&[])
    }

    pub fn start_tls_with(extra: &[&str]) -> Server {
        Self::launch(Launch {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: true,
            ..Launch::default()
        })
    }

    pub fn launch(launch: Launch) -> Server {
        let dir = match &launch.parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("temp dir");
        let ca = launch.tls.then(|| {
            let out = run_with_stdin(
                Command::new(bin("clinic-server"))
                    .arg("--data-dir")
                    .arg(dir.path())
                    .args(["tls", "init"]),
                None,
            );
            assert!(
                out.status.success(),
                "tls init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ca = dir.path().join("tls").join("ca.pem");
            trust_ca(&std::fs::read(&ca).expect("read ca.pem"));
            ca
        });
        let (child, base, metrics_url) = spawn(
            dir.path(),
            "127.0.0.1:0",
            &launch.extra,
            &launch.log,
            launch.database_url.as_deref(),
        );
        Server {
            dir,
            child: Some(child),
            base,
            metrics_url,
            extra_args: launch.extra,
            ca,
            database_url: launch.database_url,
            log: launch.log,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("clinic.db")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .parse()
            .expect("server address")
    }

    pub fn ws_url(&self) -> String {
        format!("{}/v1/ws", self.base.replacen("http", "ws", 1))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Kills the process with SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Starts the server again on the same data directory and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let listen = self.addr().to_string();
        let (child, base, metrics_url) = spawn(
            self.dir.path(),
            &listen,
            &self.extra_args,
            &self.log,
            self.database_url.as_deref(),
        );
        self.child = Some(child);
        self.base = base;
        self.metrics_url = metrics_url;
    }

    /// SIGKILL, then start again on the same data directory and port.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Runs `clinic-server <args>` against this server's data directory
    /// (and its PostgreSQL database, if it has one).
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut command = Command::new(bin("clinic-server"));
        command.arg("--data-dir").arg(self.dir.path());
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        run_with_stdin(command.args(args), stdin)
    }
}

/// Runs a command, feeding `stdin`, and collects its output.
pub fn run_with_stdin(command: &mut Command, stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("command output")
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(
    dir: &Path,
    listen: &str,
    extra: &[String],
    log: &Logging,
    database: Option<&str>,
) -> (Child, String, Option<String>) {
    let rust_log = log
        .rust_log
        .clone()
        .or_else(|| std::env::var("CLINIC_TEST_LOG").ok())
        .unwrap_or_else(|| "warn".into());
    let stderr = match &log.stderr_to {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("server log file"),
        ),
        None => Stdio::inherit(),
    };
    let mut command = Command::new(bin("clinic-server"));
    command.arg("--data-dir").arg(dir);
    if let Some(url) = database {
        command.args(["--database-url", url]);
    }
    let mut child = command
        .args(["serve", "--listen", listen, "--demo"])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn clinic-server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        // The address, then (with --metrics-listen) the metrics' address.
        for _ in 0..2 {
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx.recv_timeout(WAIT).expect("server printed its address");
    let base = line
        .strip_prefix("clinic-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    let metrics_url = extra.iter().any(|a| a == "--metrics-listen").then(|| {
        let line = rx
            .recv_timeout(WAIT)
            .expect("server printed its metrics address");
        line.strip_prefix("clinic-server metrics on ")
            .unwrap_or_else(|| panic!("unexpected second line: {line}"))
            .to_owned()
    });
    (child, base, metrics_url)
}

/// A TCP proxy between clients and the server that can refuse WebSocket
/// upgrades (as some corporate proxies do) or cut every connection (a
/// network outage), for fault tests. Given several servers it is also a
/// load balancer: each new connection goes to the next server in turn, and
/// past one that refuses connections (a dead instance) to the one after.
///
/// In front of a TLS server ([`Proxy::start_tls`]) it behaves like an
/// inspecting corporate proxy: it terminates TLS with a certificate of the
/// same clinic CA (the server's own certificate and key, valid for
/// 127.0.0.1) so it can read the request head and refuse WebSocket
/// upgrades, and opens its own TLS connection to the server, verified
/// against the clinic CA. Clients see a `https` URL and a certificate they
/// trust, as they would through such a proxy.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
    tls: bool,
}

struct ProxyState {
    targets: std::sync::Mutex<Vec<std::net::SocketAddr>>,
    /// Round-robin position over `targets`.
    next_target: std::sync::atomic::AtomicUsize,
    block_websocket: std::sync::atomic::AtomicBool,
    down: std::sync::atomic::AtomicBool,
    conns: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// Delay added before forwarding each chunk, in milliseconds.
    latency_ms: std::sync::atomic::AtomicU64,
    /// While set, connections stay open but nothing is forwarded (a link
    /// that silently stops carrying data).
    stalled: std::sync::atomic::AtomicBool,
    /// Connections accepted so far.
    accepted: std::sync::atomic::AtomicU64,
}

/// Both ends of a proxied connection, TLS or not.
trait ProxyIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ProxyIo for T {}

/// TLS on both sides of a proxy.
#[derive(Clone)]
struct ProxyTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        Self::start_inner(vec![target], None).await
    }

    /// A proxy that spreads connections over `targets` (round robin,
    /// skipping targets that refuse).
    pub async fn start_balanced(targets: Vec<std::net::SocketAddr>) -> Proxy {
        Self::start_inner(targets, None).await
    }

    /// A proxy in front of a TLS server (see the type's documentation).
    pub async fn start_tls(server: &Server) -> Proxy {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let ca = server.ca.as_ref().expect("a TLS server");
        let tls_dir = ca.parent().expect("tls dir");
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls_dir.join("server.pem"))
                .expect("server.pem")
                .map(|c| c.expect("certificate"))
                .collect();
        let key = PrivateKeyDer::from_pem_file(tls_dir.join("server-key.pem")).expect("key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("proxy certificate");
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let ca_pem = std::fs::read(ca).expect("ca.pem");
        let tls = ProxyTls {
            acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config)),
            connector: tokio_rustls::TlsConnector::from(tls_client_config(&[ca_pem])),
        };
        Self::start_inner(vec![server.addr()], Some(tls)).await
    }

    async fn start_inner(targets: Vec<std::net::SocketAddr>, tls: Option<ProxyTls>) -> Proxy {
        use std::sync::atomic::Ordering;
        assert!(!targets.is_empty(), "a proxy needs a server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let state = std::sync::Arc::new(ProxyState {
            targets: std::sync::Mutex::new(targets),
            next_target: 0.into(),
            block_websocket: false.into(),
            down: false.into(),
            conns: std::sync::Mutex::new(Vec::new()),
            latency_ms: 0.into(),
            stalled: false.into(),
            accepted: 0.into(),
        });
        let st = state.clone();
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if st.down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let st2 = st.clone();
                let tls = tls.clone();
                let handle = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut inbound: Box<dyn ProxyIo> = match &tls {
                        Some(t) => match t.acceptor.accept(inbound).await {
                            Ok(s) => Box::new(s),
                            Err(_) => return,
                        },
                        None => Box::new(inbound),
                    };
                    // Read the request head to see whether it asks for a WebSocket.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match inbound.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    if st2.block_websocket.load(Ordering::SeqCst)
                        && text.contains("upgrade: websocket")
                    {
                        let _ = inbound
                            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        let _ = inbound.shutdown().await;
                        return;
                    }
                    let Some((tcp, target)) = st2.connect_target().await else {
                        return;
                    };
                    let mut outbound: Box<dyn ProxyIo> = match &tls {
                        Some(t) => {
                            let name = rustls::pki_types::ServerName::IpAddress(target.ip().into());
                            match t.connector.connect(name, tcp).await {
                                Ok(s) => Box::new(s),
                                Err(_) => return,
                            }
                        }
                        None => Box::new(tcp),
                    };
                    if outbound.write_all(&head).await.is_err() {
                        return;
                    }
                    let (in_read, in_write) = tokio::io::split(inbound);
                    let (out_read, out_write) = tokio::io::split(outbound);
                    tokio::join!(
                        pump(in_read, out_write, st2.clone()),
                        pump(out_read, in_write, st2)
                    );
                });
                st.conns.lock().unwrap().push(handle.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            task,
            tls: is_tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Refuse (true) or pass (false) WebSocket upgrade requests.
    pub fn block_websocket(&self, block: bool) {
        self.state
            .block_websocket
            .store(block, std::sync::atomic::Ordering::SeqCst);
        if block {
            self.cut();
        }
    }

    /// Cuts every open connection (new ones go through unless `down`).
    pub fn cut(&self) {
        for c in self.state.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// A network outage: cut everything and refuse new connections (true),
    /// or restore (false).
    pub fn set_down(&self, down: bool) {
        self.state
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.cut();
        }
    }
}

impl ProxyState {
    /// A connection to the next target that accepts one, and its address.
    async fn connect_target(&self) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
        let targets = self.targets.lock().unwrap().clone();
        let first = self
            .next_target
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..targets.len() {
            let target = targets[(first + i) % targets.len()];
            if let Ok(stream) = tokio::net::TcpStream::connect(target).await {
                return Some((stream, target));
            }
        }
        None
    }
}

/// Forwards one direction of a proxied connection, honouring the injected
/// latency and stalls; shuts the write side down at end of input.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    st: std::sync::Arc<ProxyState>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Injected faults: hold the data while the link is stalled, then
        // delay it by the current latency.
        while st.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let latency = st.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        // TLS writers buffer: push each chunk out as it comes.
        if to.flush().await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    /// Delays every forwarded chunk by `latency` (zero: no delay), on open
    /// and new connections alike.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.state
            .latency_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// A link that stops carrying data without closing (true), or carries
    /// it again (false): what a dead NAT entry or a pulled cable looks like
    /// to both ends until their own timeouts fire.
    pub fn set_stalled(&self, stalled: bool) {
        self.state
            .stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }

    /// Replaces the servers new connections go to (open ones stay).
    pub fn set_targets(&self, targets: Vec<std::net::SocketAddr>) {
        assert!(!targets.is_empty(), "a proxy needs a server");
        *self.state.targets.lock().unwrap() = targets;
    }

    /// Connections this proxy has accepted and forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.state
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// An HTTP client signed in as one user, with its own client id and
/// mutation counter.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub user: clinic_shared::model::Staff,
    pub client_id: Uuid,
    pub next_mutation: u64,
}

/// Clinic CA certificates (PEM) made by servers of this test process.
static TRUSTED_CAS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Adds a clinic CA (PEM) to what this harness's clients trust.
pub fn trust_ca(pem: &[u8]) {
    let mut cas = TRUSTED_CAS.lock().unwrap();
    if !cas.iter().any(|c| c == pem) {
        cas.push(pem.to_vec());
    }
}

/// Every clinic CA this process's servers use, as one PEM bundle written to
/// `path` (for clients that take a CA file: the engine, the CLI, the desk).
pub fn write_trusted_cas(path: &Path) -> PathBuf {
    std::fs::write(path, trusted_cas().concat()).expect("write the CA bundle");
    path.to_path_buf()
}

fn trusted_cas() -> Vec<Vec<u8>> {
    TRUSTED_CAS.lock().unwrap().clone()
}

/// An HTTP client that trusts the clinic CAs of this process's servers.
pub fn http() -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(90));
    for pem in trusted_cas() {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(&pem).expect("clinic CA certificate"),
        );
    }
    builder.build().expect("client")
}

/// An HTTP client that was never given a clinic CA (public roots only).
pub fn untrusting_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A rustls client configuration trusting exactly `cas` (PEM), speaking
/// HTTP/1.1 (what the server offers, and what WebSockets upgrade from).
pub fn tls_client_config(cas: &[Vec<u8>]) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for pem in cas {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// The rustls client configuration trusting this process's clinic CAs.
pub fn trusting_tls_config() -> std::sync::Arc<rustls::ClientConfig> {
    tls_client_config(&trusted_cas())
}

/// The server's `GET /healthz` answer (change head, WebSocket sessions).
pub async fn healthz(base: &str) -> serde_json::Value {
    http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz answers")
        .json()
        .await
        .expect("healthz is JSON")
}

pub async fn login_raw(base: &str, username: &str, password: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/v1/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request")
}

impl Api {
    pub async fn login(server: &Server, username: &str) -> Api {
        let response = login_raw(&server.base, username, "demo").await;
        assert_eq!(response.status(), 200, "login {username}");
        let login: LoginResponse = response.json().await.expect("login body");
        Api {
            http: http(),
            base: server.base.clone(),
            token: login.token,
            user: login.user,
            client_id: Uuid::now_v7(),
            next_mutation: 1,
        }
    }

    /// Same user and client, pointed at a restarted server.
    pub fn rebase(&mut self, server: &Server) {
        // Pooled connections went down with the old process.
        self.http = http();
        self.base = server.base.clone();
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Numbers the mutations with this client's next ids.
    pub fn number(&mut self, mutations: Vec<Mutation>) -> Vec<PendingMutation> {
        mutations
            .into_iter()
            .map(|mutation| {
                let mutation_id = self.next_mutation;
                self.next_mutation += 1;
                PendingMutation {
                    mutation_id,
                    mutation,
                }
            })
            .collect()
    }

    pub async fn push_pending(&self, mutations: Vec<PendingMutation>) -> Vec<MutationResult> {
        let request = PushRequest {
            client_id: self.client_id,
            mutations,
        };
        let response = self
            .post("/v1/push")
            .json(&request)
            .send()
            .await
            .expect("push");
        let status = response.status();
        let text = response.text().await.expect("push body");
        assert_eq!(status, 200, "push failed: {text}");
        serde_json::from_str::<PushResponse>(&text)
            .expect("push response")
            .results
    }

    pub async fn push(&mut self, mutations: Vec<Mutation>) -> Vec<MutationResult> {
        let pending = self.number(mutations);
        self.push_pending(pending).await
    }

    /// Pushes one mutation and returns its outcome.
    pub async fn push_one(&mut self, mutation: Mutation) -> MutationOutcome {
        let mut results = self.push(vec![mutation]).await;
        assert_eq!(results.len(), 1);
        results.remove(0).outcome
    }

    pub async fn pull(&self, cursor: u64, wait: u64) -> PullResponse {
        let response = self
            .get(&format!(
                "/v1/pull?cursor={cursor}&wait={wait}&client_id={}",
                self.client_id
            ))
            .send()
            .await
            .expect("pull");
        assert_eq!(response.status(), 200);
        response.json().await.expect("pull body")
    }

    /// Pulls every page from `cursor`; returns the rows and the final cursor.
    pub async fn pull_all(&self, mut cursor: u64) -> (Vec<SyncRow>, u64) {
        let mut rows = Vec::new();
        loop {
            let page = self.pull(cursor, 0).await;
            rows.extend(page.rows);
            cursor = page.cursor;
            if !page.more {
                return (rows, cursor);
            }
        }
    }

    /// The current rows of a table visible to this user, by id.
    pub async fn table(&self, table: Table) -> std::collections::BTreeMap<Uuid, SyncRow> {
        let (rows, _) = self.pull_all(0).await;
        let mut map = std::collections::BTreeMap::new();
        for row in rows.into_iter().filter(|r| r.table == table) {
            map.insert(row.id, row);
        }
        map
    }
}

/// Waits until the server counts more than `before` long-polls waiting
/// (`/healthz`), so what a test does next happens while they wait.
pub async fn until_pulls_waiting(base: &str, before: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let waiting = healthz(base).await["waiting_pulls"].as_u64();
        if waiting.is_some_and(|n| n > before) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the long-poll never started waiting (waiting_pulls {waiting:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn applied_seq(outcome: &MutationOutcome) -> u64 {
    match outcome {
        MutationOutcome::Applied { seq } => *seq,
        other => panic!("expected applied, got {other:?}"),
    }
}

pub fn rejection(outcome: &MutationOutcome) -> &clinic_shared::protocol::Rejection {
    match outcome {
        MutationOutcome::Rejected { rejection } => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A WebSocket session.
pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn connect(server: &Server) -> Ws {
        Ws::connect_url(&server.ws_url()).await
    }

    /// Connects to a `ws://` or `wss://` URL; `wss` trusts the clinic CAs
    /// of this process's servers.
    pub async fn connect_url(url: &str) -> Ws {
        let connector = tokio_tungstenite::Connector::Rustls(trusting_tls_config());
        let (stream, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
                .await
                .expect("ws connect");
        Ws { stream }
    }

    /// Connects and says hello; returns after `welcome`.
    pub async fn hello(server: &Server, api: &Api, cursor: u64) -> Ws {
        let mut ws = Ws::connect(server).await;
        ws.send(&ClientMessage::Hello {
            token: api.token.clone(),
            client_id: api.client_id,
            cursor,
        })
        .await;
        match ws.next().await {
            Some(ServerMessage::Welcome { .. }) => ws,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        let text = serde_json::to_string(msg).expect("encode");
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("ws send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// The next server message; `None` when the socket closes. Panics after
    /// [`WAIT`] without one.
    pub async fn next(&mut self) -> Option<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a ws message in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("server message"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("unexpected binary frame"),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            }
        }
    }

    /// Reads until `caught_up`; returns every row received.
    pub async fn until_caught_up(&mut self) -> (Vec<SyncRow>, u64) {
        let mut rows = Vec::new();
        loop {
            match self.next().await {
                Some(ServerMessage::Changes { rows: r, .. }) => rows.extend(r),
                Some(ServerMessage::CaughtUp { cursor }) => return (rows, cursor),
                other => panic!("expected catch-up, got {other:?}"),
            }
        }
    }

    /// Reads `changes` messages until one contains a row matching `pred`.
    pub async fn until_row(&mut self, pred: impl Fn(&SyncRow) -> bool) -> SyncRow {
        loop {
            match self.next().await {
                Some(ServerMessage::Changes { rows, .. }) => {
                    if let Some(row) = rows.into_iter().find(&pred) {
                        return row;
                    }
                }
                Some(_) => continue,
                None => panic!("socket closed before the expected row arrived"),
            }
        }
    }
}

/// Ids of the demo clinic's doctors, by username.
pub async fn staff_id(api: &Api, username: &str) -> Uuid {
    let staff = api.table(Table::Staff).await;
    staff
        .values()
        .find(|r| {
            r.data
                .as_ref()
                .and_then(|d| d.get("username"))
                .and_then(|u| u.as_str())
                == Some(username)
        })
        .map(|r| r.id)
        .unwrap_or_else(|| panic!("no staff {username}"))
}

/// Runs the real `clinic` CLI on its data dir with `--json`, trusting the
/// test CA (written beside the dir), and returns its output.
pub fn clinic_cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let ca = write_trusted_cas(&dir.with_extension("ca.pem"));
    let mut command = Command::new(bin("clinic"));
    command
        .arg("--data-dir")
        .arg(dir)
        .env("CLINIC_CA_FILE", ca)
        .arg("--json")
        .args(args);
    run_with_stdin(&mut command, stdin)
}

/// [`clinic_cli`] that must succeed: its JSON answer (`Null` for none).
pub fn clinic_cli_ok(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = clinic_cli(dir, args, None);
    assert!(
        out.status.success(),
        "clinic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Signs the CLI on `dir` in to `server` as `user` (the demo password).
pub fn clinic_cli_sign_in(server: &Server, dir: &Path, user: &str) {
    let out = clinic_cli(
        dir,
        &[
            "--server",
            &server.base,
            "login",
            "--username",
            user,
            "--password-stdin",
        ],
        Some("demo\n"),
    );
    assert!(
        out.status.success(),
        "{user} signs in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
