//! End-to-end test harness: the real `clinic-server` and `clinic` binaries,
//! the server on 127.0.0.1:0 with a real SQLite file in a temporary
//! directory, real HTTP and WebSocket clients. Nothing is mocked. Waits are
//! on events (a line on stdout, a message on a socket), each bounded by a
//! timeout so a broken server fails the test instead of hanging it.
//!
//! The binaries are found next to the test executable (`target/<profile>/`);
//! `cargo test --workspace` builds them before running any test.

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
    /// `--database-url` when on PostgreSQL (else SQLite in `dir`).
    pub database_url: Option<String>,
}

impl Server {
    /// Starts a server seeded with the demo clinic.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let extra_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, base) = spawn(dir.path(), "127.0.0.1:0", &extra_args, None);
        Server {
            dir,
            child: Some(child),
            base,
            extra_args,
            database_url: None,
        }
    }

    /// Starts a server (seeding the demo clinic if the database is empty)
    /// on the PostgreSQL database at `url`; several may share one.
    pub fn start_pg(url: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let extra_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, base) = spawn(dir.path(), "127.0.0.1:0", &extra_args, Some(url));
        Server {
            dir,
            child: Some(child),
            base,
            extra_args,
            database_url: Some(url.to_owned()),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("clinic.db")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
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
        let (child, base) = spawn(
            self.dir.path(),
            &listen,
            &self.extra_args,
            self.database_url.as_deref(),
        );
        self.child = Some(child);
        self.base = base;
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

    /// Runs `clinic-server <args>` against this server's data directory.
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

fn spawn(dir: &Path, listen: &str, extra: &[String], database: Option<&str>) -> (Child, String) {
    let mut command = Command::new(bin("clinic-server"));
    command.arg("--data-dir").arg(dir);
    if let Some(url) = database {
        command.args(["--database-url", url]);
    }
    let mut child = command
        .args(["serve", "--listen", listen, "--demo"])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("CLINIC_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn clinic-server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx.recv_timeout(WAIT).expect("server printed its address");
    let base = line
        .strip_prefix("clinic-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, base)
}

/// A TCP proxy between clients and the server that can refuse WebSocket
/// upgrades (as some corporate proxies do) or cut every connection (a
/// network outage), for fault tests. Given several servers it is also a
/// load balancer: each new connection goes to the next server in turn, and
/// past one that refuses connections (a dead instance) to the one after.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
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

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        Self::start_balanced(vec![target]).await
    }

    /// A proxy that spreads connections over `targets` (round robin,
    /// skipping targets that refuse).
    pub async fn start_balanced(targets: Vec<std::net::SocketAddr>) -> Proxy {
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
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if st.down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let st2 = st.clone();
                let handle = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
                        return;
                    }
                    let Some(mut outbound) = st2.connect_target().await else {
                        return;
                    };
                    if outbound.write_all(&head).await.is_err() {
                        return;
                    }
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, st2.clone()),
                        pump(out_read, in_write, st2)
                    );
                });
                st.conns.lock().unwrap().push(handle.abort_handle());
            }
        });
        Proxy { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
    /// A connection to the next target that accepts one.
    async fn connect_target(&self) -> Option<tokio::net::TcpStream> {
        let targets = self.targets.lock().unwrap().clone();
        let first = self
            .next_target
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..targets.len() {
            let target = targets[(first + i) % targets.len()];
            if let Ok(stream) = tokio::net::TcpStream::connect(target).await {
                return Some(stream);
            }
        }
        None
    }
}

/// Forwards one direction of a proxied connection, honouring the injected
/// latency and stalls; shuts the write side down at end of input.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
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

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
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
        let (stream, _) = tokio_tungstenite::connect_async(server.ws_url())
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
