//! [`ClinicClient`]: the one way into the client. Front ends (the desktop
//! shell, the CLI, benchmarks, tests) call its use cases; the layers behind
//! it (session, mirror, reads, sync, transport) are private.

use crate::clock::{Clock, IdSource, SystemClock, V7Ids};
use crate::error::{ClientError, ClientResult};
use crate::mirror::Mirror;
use crate::read::Reader;
use crate::session::{Session, SignedIn};
use crate::sync::{SyncConfig, SyncEngine};
use crate::transport::{NetTransport, Transport};
use crate::types::{
    Chart, Delivery, DumpRow, Entity, FreeSlot, Identity, PendingEntry, QueueStats, Receipt,
    RejectedEntry, Row, SessionInfo, SlotQuery, StoreEvent, SyncReport, SyncState, SyncStatus,
};
use clinic_shared::model::{
    Appointment, InventoryItem, Invoice, Patient, Referral, Staff, Table, Timestamp,
};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::{HistoryResponse, Rejection};
use clinic_shared::time::{ClinicZone, LocalInstant};
use std::path::{Path, PathBuf};
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
        }
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
}

struct Inner {
    clock: Arc<dyn Clock>,
    mirror: Arc<Mirror>,
    reader: Reader,
    session: Arc<Session>,
    sync: Arc<SyncEngine>,
    ids: Arc<dyn IdSource>,
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
    /// Opens (creating) the local database in `config.data_dir`. A locked
    /// or damaged database is an error. Sync does not start until
    /// [`ClinicClient::start`] (or [`ClinicClient::run`]).
    pub fn open(config: ClientConfig) -> ClientResult<ClinicClient> {
        let mirror = Arc::new(Mirror::open(
            &config.data_dir,
            config.clock.clone(),
            config.ids.clone(),
        )?);
        let reader = Reader::open(&config.data_dir)?;
        let transport: Arc<dyn Transport> = match config.transport {
            Some(t) => t,
            None => Arc::new(NetTransport::new(config.sync.request_timeout)?),
        };
        let session = Arc::new(Session::new(mirror.clone(), transport.clone()));
        let sync = Arc::new(SyncEngine::new(
            mirror.clone(),
            session.clone(),
            transport,
            config.sync,
            config.clock.clone(),
        ));
        Ok(ClinicClient {
            inner: Arc::new(Inner {
                clock: config.clock,
                mirror,
                reader,
                session,
                sync,
                ids: config.ids,
                runner: Mutex::new(None),
            }),
        })
    }

    fn runner(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::JoinHandle<()>>> {
        self.inner.runner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- session ----

    /// Signs in (see the session rules: online, or offline for the user
    /// who signed in here last) and wakes the sync loop.
    pub async fn sign_in(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<SignInResult> {
        let result = match self
            .inner
            .session
            .sign_in(server_url, username, password)
            .await?
        {
            SignedIn::Online(user) => SignInResult {
                user,
                offline: false,
            },
            SignedIn::Offline(user) => SignInResult {
                user,
                offline: true,
            },
        };
        self.inner.sync.wake();
        Ok(result)
    }

    /// Signs out: ends the session on the server and removes the clinic's
    /// data from this machine. Refused while changes are unsent, unless
    /// `discard_pending`.
    pub async fn sign_out(&self, discard_pending: bool) -> ClientResult<()> {
        self.inner.session.sign_out(discard_pending).await?;
        self.inner.sync.wake();
        Ok(())
    }

    /// Who is signed in here.
    pub async fn identity(&self) -> ClientResult<Identity> {
        self.inner.session.identity().await
    }

    /// Who is signed in, how sync stands and the clinic's time zone, in
    /// one answer.
    pub async fn session_info(&self) -> ClientResult<SessionInfo> {
        Ok(SessionInfo {
            identity: self.identity().await?,
            status: self.inner.sync.status_now(),
            time_zone: self.clinic_zone().await?.name().to_owned(),
        })
    }

    // ---- time ----

    /// The clinic's time zone: the server's setting as last heard (sign-in,
    /// `welcome`), else this machine's zone, else UTC. Every time a person
    /// sees or types is in it.
    pub async fn clinic_zone(&self) -> ClientResult<ClinicZone> {
        if let Some(zone) = self
            .inner
            .mirror
            .time_zone()
            .await?
            .and_then(|name| ClinicZone::parse(&name).ok())
        {
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

    /// Today's date in the clinic's zone (by the injected clock).
    pub async fn today(&self) -> ClientResult<chrono::NaiveDate> {
        self.clinic_zone()
            .await?
            .date_of(self.inner.clock.now())
            .map_err(|e| ClientError::Invalid(e.to_string()))
    }

    /// Whether the user signed in offline and no token was had yet.
    pub fn signed_in_offline(&self) -> bool {
        self.inner.session.signed_in_offline()
    }

    // ---- sync ----

    /// Runs the sync loop until [`ClinicClient::stop`]: live when it can,
    /// polling when it cannot, waiting for a sign-in when there is none.
    pub async fn run(&self) {
        self.inner.sync.clone().run().await;
    }

    /// Starts the sync loop on the current tokio runtime (once).
    pub fn start(&self) {
        let mut runner = self.runner();
        if runner.as_ref().is_none_or(|r| r.is_finished()) {
            *runner = Some(tokio::spawn(self.inner.sync.clone().run()));
        }
    }

    /// Stops the sync loop and waits for it.
    pub async fn stop(&self) {
        self.inner.sync.stop();
        let task = self.runner().take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the sync loop ended abnormally");
        }
    }

    /// Asks the sync loop to push and pull now.
    pub fn sync_now(&self) {
        self.inner.sync.wake();
    }

    /// One round over HTTP: push everything pending, pull until caught up.
    pub async fn sync_once(&self) -> ClientResult<SyncReport> {
        self.inner.sync.sync_once().await
    }

    /// Watches the sync status.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.inner.sync.status()
    }

    /// The sync status now.
    pub fn status_now(&self) -> SyncStatus {
        self.inner.sync.status_now()
    }

    /// An event after every commit that changes what the user sees.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.mirror.subscribe()
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
        let receipt = self.inner.mirror.mutate(mutation).await?;
        self.inner.sync.refresh_status(None).await;
        self.inner.sync.wake();
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
        self.inner.mirror.pending().await
    }

    /// Changes the server refused, not yet dismissed.
    pub async fn rejected(&self) -> ClientResult<Vec<RejectedEntry>> {
        self.inner.mirror.rejected().await
    }

    /// Whether `mutation` would be accepted now, without queuing it: the
    /// rules a real change goes through, on the rows this desk holds (so a
    /// form can show every problem at once, and clear each as it is fixed).
    /// `None` when it would be accepted.
    pub async fn check(&self, mutation: Mutation) -> ClientResult<Option<Rejection>> {
        self.inner
            .reader
            .check(mutation, self.inner.clock.now())
            .await
    }

    /// What became of a change made here: still queued, refused (with
    /// why) or confirmed, as this desk knows now (no network).
    pub async fn mutation_state(&self, mutation_id: u64) -> ClientResult<Delivery> {
        self.inner
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
        self.inner
            .reader
            .free_slots(query, zone, self.inner.clock.now())
            .await
    }

    /// Dismisses a refusal the user has seen.
    pub async fn dismiss_rejected(&self, mutation_id: u64) -> ClientResult<bool> {
        let found = self.inner.mirror.dismiss_rejected(mutation_id).await?;
        self.inner.sync.refresh_status(None).await;
        Ok(found)
    }

    /// Queue counts.
    pub async fn queue_stats(&self) -> ClientResult<QueueStats> {
        self.inner.mirror.stats().await
    }

    /// The audit trail of one record, from the server (needs a connection;
    /// history is not mirrored).
    pub async fn history(&self, table: Table, id: Uuid) -> ClientResult<HistoryResponse> {
        let (url, token) = self.inner.session.require().await?;
        self.inner
            .sync
            .transport()
            .history(&url, &token, table, id)
            .await
    }

    // ---- reads (all local) ----

    /// One visible row of any table, untyped.
    pub async fn row(&self, table: Table, id: Uuid) -> ClientResult<Option<Row>> {
        self.inner.reader.row(table, id).await
    }

    /// Every visible row of a table, untyped, by id.
    pub async fn rows(&self, table: Table) -> ClientResult<Vec<Row>> {
        self.inner.reader.rows(table).await
    }

    /// Every patient, by family name then given name.
    pub async fn patients(&self) -> ClientResult<Vec<Entity<Patient>>> {
        let mut all: Vec<Entity<Patient>> = self.inner.reader.all(Table::Patients).await?;
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
        self.inner
            .reader
            .search_patients(query.to_owned(), limit)
            .await
    }

    /// A patient's chart.
    pub async fn chart(&self, patient: Uuid) -> ClientResult<Option<Chart>> {
        self.inner.reader.chart(patient).await
    }

    /// Every staff member, by id.
    pub async fn staff(&self) -> ClientResult<Vec<Entity<Staff>>> {
        self.inner.reader.all(Table::Staff).await
    }

    /// A staff member by username.
    pub async fn staff_by_username(&self, username: &str) -> ClientResult<Option<Entity<Staff>>> {
        self.inner
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
        self.inner.reader.schedule(from, until, doctor).await
    }

    /// Every inventory item, by id.
    pub async fn inventory(&self) -> ClientResult<Vec<Entity<InventoryItem>>> {
        self.inner.reader.all(Table::InventoryItems).await
    }

    /// Items at or below their reorder level, by name.
    pub async fn low_stock(&self) -> ClientResult<Vec<Entity<InventoryItem>>> {
        self.inner.reader.low_stock().await
    }

    /// Every invoice, by id.
    pub async fn invoices(&self) -> ClientResult<Vec<Entity<Invoice>>> {
        self.inner.reader.all(Table::Invoices).await
    }

    /// Every referral, by id.
    pub async fn referrals(&self) -> ClientResult<Vec<Entity<Referral>>> {
        self.inner.reader.all(Table::Referrals).await
    }

    /// One entity of a table, typed (`T` must be that table's entity).
    pub async fn entity<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: Table,
        id: Uuid,
    ) -> ClientResult<Option<Entity<T>>> {
        self.inner.reader.one(table, id).await
    }

    /// Number of visible rows per table.
    pub async fn counts(&self) -> ClientResult<Vec<(Table, u64)>> {
        self.inner.reader.counts().await
    }

    // ---- support and checks ----

    /// Sync bookkeeping (cursor, acknowledgement), for support and tests.
    pub async fn sync_state(&self) -> ClientResult<SyncState> {
        self.inner.mirror.sync_state().await
    }

    /// When the server last sent anything.
    pub async fn last_synced_at(&self) -> ClientResult<Option<Timestamp>> {
        self.inner.mirror.last_synced_at().await
    }

    /// Checks the local database file.
    pub async fn integrity_check(&self) -> ClientResult<()> {
        self.inner.mirror.integrity_check().await
    }

    /// Confirmed (`visible = false`) or visible rows, for consistency checks.
    pub async fn dump(&self, visible: bool) -> ClientResult<Vec<DumpRow>> {
        self.inner.mirror.dump(visible).await
    }

    /// The local database file.
    pub fn database_file(&self) -> &Path {
        self.inner.mirror.path()
    }
}
