//! What every scenario stands on: the real `clinic-server` binary started on
//! `127.0.0.1:0` over a data directory seeded through the server's own
//! storage code, real clients (`clinic_client::ClinicClient`, the facade the
//! desktop app uses) each with its own SQLite directory, protocol-level
//! WebSocket clients, and readings of `/proc`.

use anyhow::{Context, bail};
use clinic_client::{ClientConfig, ClinicClient, Connection, SyncConfig};
use clinic_server::admin::{self, ToolWrite};
use clinic_server::storage::Storage;
use clinic_shared::model::{Role, Staff, Table};
use clinic_shared::mutation::{CreatePatient, Mutation, PendingMutation};
use clinic_shared::protocol::{
    ClientMessage, LoginResponse, MutationOutcome, MutationResult, ServerMessage,
};
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Password of every benchmark account.
pub(crate) const PASSWORD: &str = "bench-password";
/// The front desk that writes (role reception).
pub(crate) const DESK: &str = "desk";
/// The doctor's workstation that reads (role doctor: sees patients,
/// appointments and treatment records).
pub(crate) const DOCTOR: &str = "doctor";

/// A WebSocket stream as tokio-tungstenite opens it.
pub(crate) type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The path of a workspace binary built next to this one
/// (`target/<profile>/`).
pub(crate) fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let dir = exe
        .parent()
        .context("the benchmark executable has no directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built; build it first (e.g. `cargo build --release -p clinic-server -p clinic-bench`)",
            path.display()
        );
    }
    Ok(path)
}

/// The bench accounts and doctors written into a fresh server database.
pub(crate) struct Seeded {
    /// Ids of every doctor (the `doctor` account first).
    pub doctors: Vec<Uuid>,
}

/// Creates the database in `dir` with the bench accounts (`desk`,
/// `doctor`, `admin`) and `extra_doctors` more doctor rows (no sign-in).
pub(crate) fn seed_accounts(storage: &dyn Storage, extra_doctors: usize) -> anyhow::Result<Seeded> {
    let clock = clinic_server::system_clock();
    admin::add_user(
        storage,
        DESK,
        "Front Desk",
        Role::Reception,
        PASSWORD,
        &clock,
    )?;
    let doctor = admin::add_user(storage, DOCTOR, "Dr. Bench", Role::Doctor, PASSWORD, &clock)?;
    admin::add_user(
        storage,
        "admin",
        "Bench Admin",
        Role::Admin,
        PASSWORD,
        &clock,
    )?;
    let mut doctors = vec![doctor.id];
    let mut rows = Vec::new();
    for i in 0..extra_doctors {
        let staff = Staff {
            id: Uuid::now_v7(),
            username: format!("doctor{}", i + 2),
            display_name: format!("Dr. Extra {}", i + 2),
            role: Role::Doctor,
            active: true,
        };
        doctors.push(staff.id);
        rows.push(ToolWrite {
            table: Table::Staff,
            id: staff.id,
            data: serde_json::to_value(&staff)?,
        });
    }
    if !rows.is_empty() {
        admin::write_rows(storage, "bench_seed", &rows, &[], &clock)?;
    }
    Ok(Seeded { doctors })
}

/// A running `clinic-server` process.
pub(crate) struct ServerProc {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
}

impl ServerProc {
    /// Starts `clinic-server serve` on `127.0.0.1:0` over `dir` (already
    /// seeded) and waits for its address line.
    pub(crate) fn start(dir: &Path, extra_args: &[&str]) -> anyhow::Result<ServerProc> {
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).context("creating the server log")?;
        let mut child = Command::new(sibling_binary("clinic-server")?)
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("CLINIC_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .context("starting clinic-server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "clinic-server did not print its address; see {}",
                    log.display()
                );
            }
        };
        let base = line
            .strip_prefix("clinic-server listening on ")
            .with_context(|| format!("unexpected first line from clinic-server: {line}"))?
            .to_owned();
        Ok(ServerProc { child, base, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("{}/v1/ws", self.base.replacen("http", "ws", 1))
    }

    /// Lines at WARN or ERROR level the server logged so far.
    pub(crate) fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// Stops the process (SIGKILL: nothing of it is measured afterwards).
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for the bench.
pub(crate) fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")
}

/// Signs in over HTTP.
pub(crate) async fn login(base: &str, username: &str) -> anyhow::Result<LoginResponse> {
    let response = http()?
        .post(format!("{base}/v1/login"))
        .json(&serde_json::json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .context("login request")?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "login as {username} failed: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    response.json().await.context("login answer")
}

/// The server's published head (`GET /healthz`).
pub(crate) async fn head(base: &str) -> anyhow::Result<u64> {
    let body: serde_json::Value = http()?
        .get(format!("{base}/healthz"))
        .send()
        .await
        .context("healthz")?
        .json()
        .await
        .context("healthz body")?;
    body.get("head")
        .and_then(serde_json::Value::as_u64)
        .context("healthz has no head")
}

/// Waits until the server's published head reaches `at_least`.
pub(crate) async fn wait_head(base: &str, at_least: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let now = head(base).await?;
        if now >= at_least {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server's head stayed at {now}, below {at_least}, for {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client (the facade the desktop app uses) with its own data
/// directory, its sync loop running or not.
pub(crate) struct EngineHandle {
    pub client: ClinicClient,
}

impl EngineHandle {
    /// Opens a client in `dir`, signs it in as `username` (a real sign-in:
    /// the server checks the password, the client keeps an Argon2id
    /// verifier for offline sign-in) and, if `run`, starts its sync loop.
    pub(crate) async fn start(
        dir: PathBuf,
        base: &str,
        username: &str,
        config: SyncConfig,
        run: bool,
    ) -> anyhow::Result<EngineHandle> {
        let client = ClinicClient::open(ClientConfig::new(dir).with_sync(config)).await?;
        let signed = client
            .sign_in(base, username, PASSWORD)
            .await
            .with_context(|| format!("signing a client in as {username}"))?;
        if signed.offline {
            bail!("the sign-in as {username} was only checked offline");
        }
        if run {
            client.start();
        }
        Ok(EngineHandle { client })
    }

    /// Waits until the first full sync is done and the client is live (or
    /// polling, when the WebSocket is off).
    pub(crate) async fn wait_synced(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut status = self.client.status();
        loop {
            let ready = {
                let s = status.borrow_and_update();
                matches!(s.connection, Connection::Live | Connection::Polling)
                    && s.initial_sync.is_none()
            };
            if ready && self.client.sync_state().await?.synced_once {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "a client did not finish its first sync in {limit:?} (status {:?})",
                    *status.borrow()
                );
            }
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(50)), status.changed()).await;
        }
    }

    /// Stops the sync loop and waits for it (at most 10 s).
    pub(crate) async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.stop()).await;
    }
}

/// Opens a WebSocket, says hello from `cursor`, and reads until
/// `caught_up`; returns the stream and the cursor.
pub(crate) async fn ws_hello(
    url: &str,
    token: &str,
    client_id: Uuid,
    cursor: u64,
) -> anyhow::Result<(WsStream, u64)> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .context("WebSocket connect timed out")?
    .context("WebSocket connect")?;
    let hello = ClientMessage::Hello {
        token: token.to_owned(),
        client_id,
        cursor,
    };
    ws.send(Message::Text(serde_json::to_string(&hello)?.into()))
        .await?;
    let mut cursor = cursor;
    loop {
        match ws_next(&mut ws, Duration::from_secs(60)).await? {
            ServerMessage::Welcome { .. } => {}
            ServerMessage::Changes { cursor: c, .. } => cursor = c,
            ServerMessage::CaughtUp { cursor: c } => return Ok((ws, c.max(cursor))),
            ServerMessage::Error(e) => bail!("server refused hello: {}", e.message),
            other => bail!("unexpected message during catch-up: {other:?}"),
        }
    }
}

/// The next decoded server message; an error when the socket closes or
/// nothing arrives within `limit`.
pub(crate) async fn ws_next(ws: &mut WsStream, limit: Duration) -> anyhow::Result<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(limit, ws.next())
            .await
            .context("no WebSocket message in time")?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).context("decoding a server message");
            }
            Some(Ok(Message::Close(_))) | None => bail!("the server closed the WebSocket"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("reading the WebSocket"),
        }
    }
}

/// A protocol-level writer: one client id over one WebSocket, pushing
/// numbered mutations and waiting for each `push_result`.
pub(crate) struct WsWriter {
    ws: WsStream,
    next_mutation: u64,
    request: u64,
}

impl WsWriter {
    /// Connects from `cursor` (the current head: no catch-up; the writer
    /// then receives the live stream like any desk).
    pub(crate) async fn connect(url: &str, token: &str, cursor: u64) -> anyhow::Result<WsWriter> {
        let client_id = Uuid::now_v7();
        let (ws, _) = ws_hello(url, token, client_id, cursor).await?;
        Ok(WsWriter {
            ws,
            next_mutation: 1,
            request: 0,
        })
    }

    /// Pushes `mutations` in one `push` and waits for the answer; every
    /// mutation must be applied.
    pub(crate) async fn push(&mut self, mutations: Vec<Mutation>) -> anyhow::Result<()> {
        let pending: Vec<PendingMutation> = mutations
            .into_iter()
            .map(|mutation| {
                let mutation_id = self.next_mutation;
                self.next_mutation += 1;
                PendingMutation {
                    mutation_id,
                    mutation,
                }
            })
            .collect();
        let count = pending.len();
        self.request += 1;
        let push = ClientMessage::Push {
            request_id: self.request,
            mutations: pending,
        };
        self.ws
            .send(Message::Text(serde_json::to_string(&push)?.into()))
            .await?;
        loop {
            match ws_next(&mut self.ws, Duration::from_secs(120)).await? {
                ServerMessage::PushResult {
                    request_id,
                    results,
                } if request_id == self.request => {
                    check_applied(&results, count)?;
                    return Ok(());
                }
                ServerMessage::Error(e) => bail!("push refused: {}", e.message),
                // Live changes (the writer sees its own and others' rows).
                _ => continue,
            }
        }
    }
}

fn check_applied(results: &[MutationResult], expected: usize) -> anyhow::Result<()> {
    if results.len() != expected {
        bail!("{} results for {expected} mutations", results.len());
    }
    for r in results {
        if !matches!(r.outcome, MutationOutcome::Applied { .. }) {
            bail!("mutation {} not applied: {:?}", r.mutation_id, r.outcome);
        }
    }
    Ok(())
}

/// A patient to register, with generated but plausible fields.
pub(crate) fn new_patient(id: Uuid, n: u64) -> Mutation {
    let data = crate::data::patient(id, n);
    Mutation::CreatePatient(CreatePatient {
        id,
        first_name: data.first_name,
        last_name: data.last_name,
        date_of_birth: data.date_of_birth,
        phone: data.phone,
        email: data.email,
        address: data.address,
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    })
}

/// Resident set now and its high-water mark, in KiB, of a process.
pub(crate) fn memory_kib(pid: &str) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Ok((
        field("VmRSS:").context("no VmRSS")?,
        field("VmHWM:").context("no VmHWM")?,
    ))
}

/// User + system CPU time of a process so far, in seconds.
pub(crate) fn cpu_secs(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at
    // field 3; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Bytes of a SQLite database with its WAL.
pub(crate) fn db_bytes(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).ok()
        })
        .map(|m| m.len())
        .sum()
}
