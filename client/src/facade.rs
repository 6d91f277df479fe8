//! [`ClinicClient`]: the one way into the client. Front ends (the desktop
//! shell, the CLI, benchmarks, tests) call its use cases; the layers behind
//! it (session, mirror, reads, sync, transport) are private.

use crate::clock::{Clock, IdSource, SystemClock, V7Ids};
use crate::error::{ClientError, ClientResult};
use crate::session::keys::{OsKeyStore, SecretStore};
use crate::sync::SyncConfig;
use crate::transport::tls::Trust;
use crate::transport::{NetTransport, Transport};
use crate::types::{
    Chart, ChartCare, Delivery, DumpRow, Entity, FreeSlot, Identity, MirrorRebuilt, PendingEntry,
    QueueStats, Receipt, RejectedEntry, Row, SessionInfo, SlotQuery, StoreEvent, SyncReport,
    SyncState, SyncStatus,
};
use crate::users::{Open, Users};
use clinic_shared::fingerprint::Fingerprint;
use clinic_shared::model::{
    Appointment, InventoryItem, Invoice, Patient, Referral, Staff, Table, Timestamp,
};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::{
    AccessLogResponse, ErrorCode, HistoryResponse, PasswordChangeResponse, Rejection,
};
use clinic_shared::time::{ClinicZone, LocalInstant};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// How to open a client.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where the local database lives (one per user of the machine, one per
    /// running instance).
    pub data_dir: PathBuf,
    /// How sync behaves (timeouts, backoff, WebSocket or not).
    pub sync: SyncConfig,
    /// How the server is reached; `None` is the real network.
    pub transport: Option<Arc<dyn Transport>>,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Where new row ids come from.
    pub ids: Arc<dyn IdSource>,
    /// CA certificate files (PEM) to trust besides the public CAs and the
    /// clinic CAs confirmed on this machine: what IT hands out with a
    /// clinic's own CA (`--ca`, `CLINIC_CA_FILE`).
    pub ca_files: Vec<PathBuf>,
    /// Where the mirrors' keys are kept; `None` is the OS key store.
    pub secrets: Option<Arc<dyn SecretStore>>,
}

impl ClientConfig {
    /// The defaults for a data directory: real network, system clock.
    pub fn new(data_dir: impl Into<PathBuf>) -> ClientConfig {
        ClientConfig {
            data_dir: data_dir.into(),
            sync: SyncConfig::default(),
            transport: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(V7Ids),
            ca_files: Vec::new(),
            secrets: None,
        }
    }

    /// Also trusting these CA files.
    pub fn with_ca_files(mut self, files: Vec<PathBuf>) -> ClientConfig {
        self.ca_files = files;
        self
    }

    /// With these sync settings.
    pub fn with_sync(mut self, sync: SyncConfig) -> ClientConfig {
        self.sync = sync;
        self
    }

    /// With this transport instead of the network.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> ClientConfig {
        self.transport = Some(transport);
        self
    }

    /// With this clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ClientConfig {
        self.clock = clock;
        self
    }
}

/// The default data directory of the client on this platform.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "ClinicSync", "clinic")
        .map(|d| d.data_dir().to_path_buf())
}

/// Where a sign-in ended up.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SignInResult {
    /// Who signed in.
    pub user: Staff,
    /// Checked against this machine's verifier because the server could not
    /// be reached: work goes on locally, the server is asked later.
    pub offline: bool,
    /// The server asks for a new password before anything else
    /// ([`ClinicClient::change_password`]).
    pub must_change_password: bool,
}

struct Inner {
    users: Users,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    /// The network transport, when it is the one in use (pinning).
    net: Option<Arc<NetTransport>>,
    runner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The Clinic Sync client: a local mirror of the clinic's data that every
/// read and write uses at once, kept in step with the server in the
/// background. Cloning shares it.
#[derive(Clone)]
pub struct ClinicClient {
    inner: Arc<Inner>,
}

impl ClinicClient {
    /// Opens the client on `config.data_dir`: the last user's encrypted
    /// mirror opens at once when the OS key store has its key; otherwise it
    /// stays locked until they sign in. A damaged or locked database is an
    /// error. Sync does not start until [`ClinicClient::start`] (or
    /// [`ClinicClient::run`]).
    pub async fn open(config: ClientConfig) -> ClientResult<ClinicClient> {
        let net = match config.transport {
            Some(_) => None,
            None => Some(Arc::new(NetTransport::new(
                config.sync.request_timeout,
                Trust::new(config.ca_files.clone(), Some(&config.data_dir)),
            )?)),
        };
        let transport: Arc<dyn Transport> = match (&config.transport, &net) {
            (Some(t), _) => t.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => return Err(ClientError::Stopped("transport")),
        };
        let secrets = config.secrets.unwrap_or_else(|| Arc::new(OsKeyStore));
        let users = Users::start(
            config.data_dir,
            config.sync,
            config.clock.clone(),
            config.ids.clone(),
            transport,
            secrets,
        )
        .await?;
        // The status holds the mirror's notices (a rebuilt mirror, a
        // restored server) from the start, before any sync.
        if let Some(open) = users.current() {
            open.sync.refresh_status(None).await;
        }
        Ok(ClinicClient {
            inner: Arc::new(Inner {
                users,
                clock: config.clock,
                ids: config.ids,
                net,
                runner: Mutex::new(None),
            }),
        })
    }

    fn runner(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::JoinHandle<()>>> {
        self.inner.runner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_user(&self) -> ClientResult<Arc<Open>> {
        self.inner.users.open()
    }

    // ---- session ----

    /// Signs in (see the session rules: online, or offline for a user with
    /// a mirror on this machine) and wakes the sync loop. Another user than
    /// the open one switches mirrors: the previous user's queue stays theirs.
    pub async fn sign_in(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<SignInResult> {
        let signed_in = self
            .inner
            .users
            .sign_in(server_url, username, password)
            .await?;
        Ok(SignInResult {
            user: signed_in.user,
            offline: signed_in.offline,
            must_change_password: signed_in.must_change_password,
        })
    }

    /// Signs out: ends the session on the server and removes this user's
    /// data (mirror, key file, key store entry) from this machine. Refused
    /// while changes are unsent, unless `discard_pending`.
    pub async fn sign_out(&self, discard_pending: bool) -> ClientResult<()> {
        self.inner.users.sign_out(discard_pending).await
    }

    /// Locks the screen: reads and writes are refused until
    /// [`ClinicClient::unlock`] with the same user's password, or another
    /// user signs in. Sync goes on meanwhile.
    pub fn lock(&self) {
        self.inner.users.lock();
    }

    /// Unlocks with the signed-in user's password.
    pub async fn unlock(&self, password: &str) -> ClientResult<()> {
        self.inner.users.unlock(password).await
    }

    /// Changes the signed-in user's password (checked here against the
    /// clinic's password rules first, then by the server, which ends the
    /// account's other sessions). This computer's copy of their data opens
    /// with the new password from then on.
    pub async fn change_password(
        &self,
        current: &str,
        new: &str,
    ) -> ClientResult<PasswordChangeResponse> {
        let mut errors = clinic_shared::validate::Errors::new();
        clinic_shared::validate::password("new_password", new, &mut errors);
        if let Err(fields) = errors.finish() {
            let why = fields
                .first()
                .map_or_else(String::new, |f| format!(": it {}", f.message));
            return Err(ClientError::Invalid(format!(
                "The new password cannot be used{why}."
            )));
        }
        if new == current {
            return Err(ClientError::Invalid(
                "The new password must be different from the current one.".into(),
            ));
        }
        match self.inner.users.change_password(current, new).await {
            Err(ClientError::Server(body)) if body.field.as_deref() == Some("current_password") => {
                Err(ClientError::Invalid(
                    "That is not your current password. Type it again (the password you \
                     signed in with today)."
                        .into(),
                ))
            }
            Err(ClientError::Server(body)) if body.code == ErrorCode::RateLimited => {
                Err(ClientError::Invalid(
                    "Too many wrong passwords: your account is locked for a few minutes. \
                     Try again later."
                        .into(),
                ))
            }
            other => other,
        }
    }

    /// Who is signed in here (or who was, when their data is locked).
    pub async fn identity(&self) -> ClientResult<Identity> {
        let users = &self.inner.users;
        let locked = users.locked();
        match users.current() {
            Some(open) => {
                let stored = open.mirror.identity().await?;
                let offline = stored.token.is_none() && open.session.signed_in_offline();
                Ok(Identity {
                    client_id: stored.client_id,
                    server_url: stored.server_url,
                    user: stored.user,
                    signed_in: stored.token.is_some() || offline,
                    offline,
                    locked,
                    must_change_password: open.session.must_change_password(),
                })
            }
            None => {
                let desk = users.desk();
                let last = desk.last_user.and_then(|id| {
                    desk.users.get(&id).map(|k| {
                        (
                            k.server_url.clone(),
                            Staff {
                                id,
                                username: k.username.clone(),
                                display_name: k.display_name.clone(),
                                role: k.role,
                                active: true,
                            },
                        )
                    })
                });
                Ok(Identity {
                    client_id: Uuid::nil(),
                    server_url: last.as_ref().map(|(s, _)| s.clone()),
                    user: last.map(|(_, u)| u),
                    signed_in: false,
                    offline: false,
                    locked,
                    must_change_password: false,
                })
            }
        }
    }

    /// Who is signed in, how sync stands and the clinic's time zone, in
    /// one answer.
    pub async fn session_info(&self) -> ClientResult<SessionInfo> {
        Ok(SessionInfo {
            identity: self.identity().await?,
            status: self.status_now(),
            time_zone: self.clinic_zone().await?.name().to_owned(),
        })
    }

    /// Trusts the certificate `server_url` presented when it was refused
    /// ([`ClientError::UntrustedServer`]), once the person has compared
    /// `fingerprint` (as the refusal showed it, or as they typed it from
    /// the server's printout) with the server's. Refused when it does not
    /// match what the server presented.
    pub fn trust_server(&self, server_url: &str, fingerprint: &str) -> ClientResult<()> {
        let confirmed: Fingerprint = fingerprint.parse().map_err(
            |e: clinic_shared::fingerprint::ParseFingerprintError| {
                ClientError::Invalid(e.to_string())
            },
        )?;
        let Some(net) = &self.inner.net else {
            return Err(ClientError::Invalid(
                "this client does not use the network transport".into(),
            ));
        };
        let server = server_url.trim().trim_end_matches('/');
        if net.pin(server, &confirmed)? {
            tracing::info!(fingerprint = %confirmed.hex(), "server certificate trusted on this computer");
            Ok(())
        } else {
            Err(ClientError::Invalid(
                "that fingerprint is not the one the server presented: do not go on, and tell \
                 IT (someone may be between this computer and the server)"
                    .into(),
            ))
        }
    }

    // ---- time ----

    /// The clinic's time zone: the server's setting as last heard (sign-in,
    /// `welcome`), else this machine's zone, else UTC. Every time a person
    /// sees or types is in it.
    pub async fn clinic_zone(&self) -> ClientResult<ClinicZone> {
        let stored = match self.inner.users.open() {
            Ok(open) => open.mirror.time_zone().await?,
            // Signed out or locked: the machine's zone until someone signs in.
            Err(_) => None,
        };
        if let Some(zone) = stored.and_then(|name| ClinicZone::parse(&name).ok()) {
            return Ok(zone);
        }
        Ok(jiff::tz::TimeZone::try_system()
            .ok()
            .and_then(|tz| tz.iana_name().map(str::to_owned))
            .and_then(|name| ClinicZone::parse(&name).ok())
            .unwrap_or_else(ClinicZone::utc))
    }

    /// The instant a person means by `time` on `date` in the clinic's zone
    /// (daylight-saving changes handled: see [`ClinicZone::instant`]).
    pub async fn local_instant(
        &self,
        date: chrono::NaiveDate,
        time: chrono::NaiveTime,
    ) -> ClientResult<LocalInstant> {
        self.clinic_zone()
            .await?
            .instant(date, time)
            .map_err(|e| ClientError::Invalid(e.to_string()))
    }

    /// Keeps a printout (`name`: a file name such as `day-sheet-2026-12-03.pdf`)
    /// for the desk to open with the system's PDF viewer, which prints it:
    /// in the signed-in user's own folder (0700; the file 0600), removed
    /// with their data at sign-out. Printouts older than a day are removed
    /// first, so that patient names do not pile up on a shared computer.
    pub async fn save_printout(&self, name: &str, pdf: &[u8]) -> ClientResult<PathBuf> {
        let user = self
            .identity()
            .await?
            .user
            .ok_or(ClientError::NotSignedIn)?;
        let dir = self.inner.users.user_dir(user.id).join("printouts");
        crate::printing::save(&dir, name, pdf)
    }

    /// Now, by this client's clock (the injected one in tests).
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Today's date in the clinic's zone (by the injected clock).
    pub async fn today(&self) -> ClientResult<chrono::NaiveDate> {
        self.clinic_zone()
            .await?
            .date_of(self.inner.clock.now())
            .map_err(|e| ClientError::Invalid(e.to_string()))
    }

    /// Whether the user signed in offline and no token was had yet.
    pub fn signed_in_offline(&self) -> bool {
        self.inner
            .users
            .current()
            .is_some_and(|o| o.session.signed_in_offline())
    }

    // ---- sync ----

    /// Runs the sync loop until [`ClinicClient::stop`]: live when it can,
    /// polling when it cannot, waiting for a sign-in when there is none, and
    /// following a switch of user.
    pub async fn run(&self) {
        self.inner.users.resume();
        self.inner.users.run().await;
    }

    /// Starts the sync loop on the current tokio runtime (once).
    pub fn start(&self) {
        let mut runner = self.runner();
        if runner.as_ref().is_none_or(|r| r.is_finished()) {
            self.inner.users.resume();
            let me = self.clone();
            *runner = Some(tokio::spawn(async move { me.inner.users.run().await }));
        }
    }

    /// Stops the sync loop and waits for it.
    pub async fn stop(&self) {
        self.inner.users.stop();
        let task = self.runner().take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the sync loop ended abnormally");
        }
    }

    /// Stops sync and closes this computer's database connections, waiting
    /// until they are closed; call it before the process exits (a
    /// connection still closing while the process exits can crash it in
    /// SQLCipher's exit handler). Afterwards the client is signed out in
    /// memory; the next [`ClinicClient::open`] reopens the data.
    pub async fn close(&self) {
        self.stop().await;
        self.inner.users.close().await;
    }

    /// Asks the sync loop to push and pull now.
    pub fn sync_now(&self) {
        if let Some(open) = self.inner.users.current() {
            open.sync.wake();
        }
    }

    /// One round over HTTP: push everything pending, pull until caught up.
    pub async fn sync_once(&self) -> ClientResult<SyncReport> {
        self.open_user()?.sync.sync_once().await
    }

    /// Watches the sync status.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.inner.users.status.subscribe()
    }

    /// The sync status now.
    pub fn status_now(&self) -> SyncStatus {
        self.inner.users.status.borrow().clone()
    }

    /// An event after every commit that changes what the user sees (and
    /// on sign-in, switch, lock and sign-out).
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.users.events.subscribe()
    }

    // ---- writes ----

    /// A new row id (UUIDv7).
    pub fn new_id(&self) -> Uuid {
        self.inner.ids.new_id()
    }

    /// Applies a change locally at once (checked by the same rules the
    /// server applies) and queues it for the server. A change the rules
    /// refuse is `Rejected` and nothing is queued.
    pub async fn mutate(&self, mutation: Mutation) -> ClientResult<Receipt> {
        let open = self.open_user()?;
        let receipt = open.mirror.mutate(mutation).await?;
        // The status line's counts follow off the caller's path: they are
        // two more trips to the mirror's thread, behind whatever sync sent.
        let sync = open.sync.clone();
        tokio::spawn(async move { sync.refresh_status(None).await });
        open.sync.wake();
        Ok(receipt)
    }

    /// Sends what is queued now and says what became of `mutation_id`
    /// within `wait`: confirmed, refused (with why), or still queued.
    pub async fn deliver(&self, mutation_id: u64, wait: Duration) -> ClientResult<Delivery> {
        let queued = |reason: String| Ok(Delivery::Queued { reason });
        match tokio::time::timeout(wait, self.sync_once()).await {
            Err(_) => return queued("the server did not answer in time".into()),
            Ok(Err(e)) if e.retryable() => return queued(e.to_string()),
            Ok(Err(ClientError::Auth(m))) => return queued(format!("sign in again: {m}")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        if let Some(r) = self
            .rejected()
            .await?
            .into_iter()
            .find(|r| r.mutation_id == mutation_id)
        {
            return Ok(Delivery::Rejected {
                rejection: r.rejection,
            });
        }
        if self
            .pending()
            .await?
            .iter()
            .any(|p| p.mutation_id == mutation_id)
        {
            return queued("the server has not confirmed it yet".into());
        }
        Ok(Delivery::Confirmed)
    }

    // ---- review ----

    /// Every change not yet confirmed, oldest first.
    pub async fn pending(&self) -> ClientResult<Vec<PendingEntry>> {
        self.open_user()?.mirror.pending().await
    }

    /// Changes the server refused, not yet dismissed.
    pub async fn rejected(&self) -> ClientResult<Vec<RejectedEntry>> {
        self.open_user()?.mirror.rejected().await
    }

    /// Whether `mutation` would be accepted now, without queuing it: the
    /// rules a real change goes through, on the rows this desk holds (so a
    /// form can show every problem at once, and clear each as it is fixed).
    /// `None` when it would be accepted.
    pub async fn check(&self, mutation: Mutation) -> ClientResult<Option<Rejection>> {
        self.open_user()?
            .reader
            .check(mutation, self.inner.clock.now())
            .await
    }

    /// What became of a change made here: still queued, refused (with
    /// why) or confirmed, as this desk knows now (no network).
    pub async fn mutation_state(&self, mutation_id: u64) -> ClientResult<Delivery> {
        self.open_user()?
            .mirror
            .mutation_state(mutation_id)
            .await?
            .ok_or_else(|| ClientError::Invalid(format!("no change {mutation_id} was made here")))
    }

    /// Free slots near a wanted time for a patient with a doctor, from the
    /// rows this desk holds (nearest first on the wanted day, then the
    /// following days), never in the past.
    pub async fn free_slots(&self, query: SlotQuery) -> ClientResult<Vec<FreeSlot>> {
        let zone = self.clinic_zone().await?;
        self.open_user()?
            .reader
            .free_slots(query, zone, self.inner.clock.now())
            .await
    }

    /// Dismisses a refusal the user has seen.
    pub async fn dismiss_rejected(&self, mutation_id: u64) -> ClientResult<bool> {
        let open = self.open_user()?;
        let found = open.mirror.dismiss_rejected(mutation_id).await?;
        open.sync.refresh_status(None).await;
        Ok(found)
    }

    /// The person has read that the server was restored from a backup
    /// ([`SyncStatus::server_restored`]); it is not shown again.
    pub async fn dismiss_server_restored(&self) -> ClientResult<()> {
        let open = self.open_user()?;
        open.mirror.dismiss_restore_notice().await?;
        open.sync.refresh_status(None).await;
        Ok(())
    }

    /// The notice that this desk's mirror was found damaged at start and
    /// rebuilt ([`SyncStatus::mirror_rebuilt`]), until dismissed; read from
    /// the mirror (front ends that do not run the sync loop, the CLI).
    pub async fn mirror_rebuilt(&self) -> ClientResult<Option<MirrorRebuilt>> {
        self.open_user()?.mirror.rebuilt_notice().await
    }

    /// The person has read that this desk's mirror was rebuilt; it is not
    /// shown again.
    pub async fn dismiss_mirror_rebuilt(&self) -> ClientResult<()> {
        let open = self.open_user()?;
        open.mirror.dismiss_rebuilt_notice().await?;
        open.sync.refresh_status(None).await;
        Ok(())
    }

    /// Queue counts.
    pub async fn queue_stats(&self) -> ClientResult<QueueStats> {
        self.open_user()?.mirror.stats().await
    }

    /// The audit trail of one record, from the server (needs a connection;
    /// history is not mirrored).
    pub async fn history(&self, table: Table, id: Uuid) -> ClientResult<HistoryResponse> {
        let open = self.open_user()?;
        let (url, token) = open.session.require().await?;
        open.sync.transport().history(&url, &token, table, id).await
    }

    /// Records that the person opened a record (a chart, a referral): the
    /// server's access log answers "who looked at this patient". Kept on
    /// this computer until the server has recorded it, so views made
    /// offline are reported when it answers.
    pub async fn report_view(&self, table: Table, id: Uuid) -> ClientResult<()> {
        let open = self.open_user()?;
        open.mirror.queue_view(table, id).await?;
        let sync = open.sync.clone();
        tokio::spawn(async move { sync.flush_views_quietly().await });
        Ok(())
    }

    /// Sends the views [`ClinicClient::report_view`] queued, now (a
    /// command-line tool that exits right after). An error leaves them
    /// queued for the next time.
    pub async fn send_views(&self) -> ClientResult<()> {
        self.open_user()?.sync.flush_views().await
    }

    /// Who received or opened a patient's records, newest first, from the
    /// server's access log (administrators; needs a connection).
    pub async fn access_log(&self, patient: Uuid) -> ClientResult<AccessLogResponse> {
        let open = self.open_user()?;
        let (url, token) = open.session.require().await?;
        open.sync
            .transport()
            .access_log(&url, &token, patient)
            .await
    }

    // ---- reads (all local) ----

    /// One visible row of any table, untyped.
    pub async fn row(&self, table: Table, id: Uuid) -> ClientResult<Option<Row>> {
        self.open_user()?.reader.row(table, id).await
    }

    /// Every visible row of a table, untyped, by id.
    pub async fn rows(&self, table: Table) -> ClientResult<Vec<Row>> {
        self.open_user()?.reader.rows(table).await
    }

    /// Every patient, by family name then given name.
    pub async fn patients(&self) -> ClientResult<Vec<Entity<Patient>>> {
        let mut all: Vec<Entity<Patient>> = self.open_user()?.reader.all(Table::Patients).await?;
        all.sort_by(|a, b| {
            (&a.data.last_name, &a.data.first_name).cmp(&(&b.data.last_name, &b.data.first_name))
        });
        Ok(all)
    }

    /// Patients matching every word of `query` (name, phone digits or date
    /// of birth, by prefix), by name; at most `limit`.
    pub async fn search_patients(
        &self,
        query: &str,
        limit: usize,
    ) -> ClientResult<Vec<Entity<Patient>>> {
        self.open_user()?
            .reader
            .search_patients(query.to_owned(), limit)
            .await
    }

    /// A patient's chart.
    pub async fn chart(&self, patient: Uuid) -> ClientResult<Option<Chart>> {
        let open = self.open_user()?;
        let role = open.mirror.identity().await?.user.map(|u| (u.id, u.role));
        if let Some((id, role)) = role
            && clinic_shared::care::applies(role)
        {
            // A grant that ended takes its text with it before anything is
            // shown, and so does text of someone else's patient.
            open.mirror.enforce_care(id, patient).await?;
        }
        let Some(mut chart) = open.reader.chart(patient).await? else {
            return Ok(None);
        };
        let reads_clinical = role.is_some_and(|(_, role)| {
            clinic_shared::field_access::can_read_field(role, Table::TreatmentRecords, "notes")
        });
        chart.care.withheld &= reads_clinical;
        chart.care.grant_ends_at = open.mirror.glass_grant_end(patient).await?;
        Ok(Some(chart))
    }

    /// Asks the server for a patient's clinical records and puts them into
    /// the mirror (a chart shows `care.withheld`): the patient may be in the
    /// doctor's care now (a visit booked since), or under a glass grant made
    /// on another desk. `ClientError::Server` with `not_in_care` when they
    /// are not: the doctor may then break the glass. Needs a connection.
    pub async fn clinical_records(&self, patient: Uuid) -> ClientResult<ChartCare> {
        let open = self.open_user()?;
        let (url, token) = open.session.require().await?;
        let client_id = open.mirror.identity().await?.client_id;
        let records = open
            .sync
            .transport()
            .clinical(&url, &token, patient, client_id)
            .await?;
        let ends = records.grant_expires_at;
        open.mirror.fill_in_clinical(records).await?;
        Ok(ChartCare {
            withheld: false,
            grant_ends_at: ends,
        })
    }

    /// Breaks the glass: reads the clinical records of a patient outside
    /// the doctor's care, saying why (at least
    /// [`clinic_shared::care::GLASS_REASON_MIN`] characters). The reason is
    /// checked here first (the field is named), then recorded by the server
    /// in the access log, shown to admins, before anything is sent. Returns
    /// when the grant ends. Needs a connection.
    pub async fn break_the_glass(&self, patient: Uuid, reason: &str) -> ClientResult<ChartCare> {
        let reason = clinic_shared::care::check_reason(reason).map_err(|e| {
            ClientError::Rejected(Box::new(clinic_shared::protocol::Rejection::validation(
                vec![e],
            )))
        })?;
        let open = self.open_user()?;
        let (url, token) = open.session.require().await?;
        let client_id = open.mirror.identity().await?.client_id;
        let request = clinic_shared::protocol::GlassRequest {
            reason,
            client_id: Some(client_id),
        };
        let records = open
            .sync
            .transport()
            .break_glass(&url, &token, patient, &request)
            .await?;
        let ends = records.grant_expires_at;
        open.mirror.fill_in_clinical(records).await?;
        Ok(ChartCare {
            withheld: false,
            grant_ends_at: ends,
        })
    }

    /// Every staff member, by id.
    pub async fn staff(&self) -> ClientResult<Vec<Entity<Staff>>> {
        self.open_user()?.reader.all(Table::Staff).await
    }

    /// A staff member by username.
    pub async fn staff_by_username(&self, username: &str) -> ClientResult<Option<Entity<Staff>>> {
        self.open_user()?
            .reader
            .staff_by_username(username.to_owned())
            .await
    }

    /// Appointments starting on `date`, a day in the clinic's time zone
    /// (23 or 25 hours long on a daylight-saving change), for one doctor or
    /// all, by start.
    pub async fn day_schedule(
        &self,
        date: chrono::NaiveDate,
        doctor: Option<Uuid>,
    ) -> ClientResult<Vec<Entity<Appointment>>> {
        let (from, until) = self
            .clinic_zone()
            .await?
            .day_bounds(date)
            .map_err(|_| ClientError::Invalid(format!("{date} is not a usable day")))?;
        self.open_user()?.reader.schedule(from, until, doctor).await
    }

    /// Every inventory item, by id.
    pub async fn inventory(&self) -> ClientResult<Vec<Entity<InventoryItem>>> {
        self.open_user()?.reader.all(Table::InventoryItems).await
    }

    /// Items at or below their reorder level, by name.
    pub async fn low_stock(&self) -> ClientResult<Vec<Entity<InventoryItem>>> {
        self.open_user()?.reader.low_stock().await
    }

    /// Every invoice, by id.
    pub async fn invoices(&self) -> ClientResult<Vec<Entity<Invoice>>> {
        self.open_user()?.reader.all(Table::Invoices).await
    }

    /// Every referral, by id.
    pub async fn referrals(&self) -> ClientResult<Vec<Entity<Referral>>> {
        self.open_user()?.reader.all(Table::Referrals).await
    }

    /// One entity of a table, typed (`T` must be that table's entity).
    pub async fn entity<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        id: Uuid,
    ) -> ClientResult<Option<Entity<T>>> {
        self.open_user()?.reader.one(table, id).await
    }

    /// Number of visible rows per table.
    pub async fn counts(&self) -> ClientResult<Vec<(Table, u64)>> {
        self.open_user()?.reader.counts().await
    }

    // ---- support and checks ----

    /// Sync bookkeeping (cursor, acknowledgement), for support and tests.
    pub async fn sync_state(&self) -> ClientResult<SyncState> {
        self.open_user()?.mirror.sync_state().await
    }

    /// When the server last sent anything.
    pub async fn last_synced_at(&self) -> ClientResult<Option<Timestamp>> {
        self.open_user()?.mirror.last_synced_at().await
    }

    /// Checks the local database file.
    pub async fn integrity_check(&self) -> ClientResult<()> {
        self.open_user()?.mirror.integrity_check().await
    }

    /// Confirmed (`visible = false`) or visible rows, for consistency checks.
    pub async fn dump(&self, visible: bool) -> ClientResult<Vec<DumpRow>> {
        self.open_user()?.mirror.dump(visible).await
    }

    /// The open user's database file.
    pub fn database_file(&self) -> ClientResult<PathBuf> {
        Ok(self.open_user()?.mirror.path().to_path_buf())
    }
}
