//! The users of this machine: whose mirror is open, opening and switching
//! mirrors, and carrying out the session rules (see [`crate::session`]) that
//! span them — signing in online and offline, signing out, revocation,
//! disabled accounts, the screen lock. The facade calls these; nothing else
//! does.

use crate::clock::{Clock, IdSource};
use crate::error::{ClientError, ClientResult};
use crate::mirror::{Mirror, schema};
use crate::read::Reader;
use crate::session::desk::{self, DeskFile, KnownUser};
use crate::session::keys::{MirrorKey, SecretStore, WrappedKey, stored_key};
use crate::session::{Credentials, Session};
use crate::sync::{RunEnd, SyncConfig, SyncEngine};
use crate::transport::Transport;
use crate::types::{ChangeOrigin, Connection, StoreEvent, SyncStatus};
use clinic_shared::model::Staff;
use clinic_shared::protocol::{
    ErrorCode, LoginRequest, LoginResponse, PasswordChangeRequest, PasswordChangeResponse,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

/// How long a switch of user waits to send the previous user's queue.
const SEND_BEFORE_SWITCH: Duration = Duration::from_secs(3);

/// One user's open mirror and everything on it.
pub(crate) struct Open {
    pub user: Uuid,
    pub dir: PathBuf,
    pub key: MirrorKey,
    pub mirror: Arc<Mirror>,
    pub reader: Reader,
    pub session: Arc<Session>,
    pub sync: Arc<SyncEngine>,
}

impl Open {
    /// Closes the mirror's connections (after queued work) and waits.
    async fn close(&self) {
        self.sync.stop();
        self.reader.close().await;
        self.mirror.close().await;
    }
}

/// Where a sign-in ended up.
pub(crate) struct SignedIn {
    pub user: Staff,
    pub offline: bool,
    pub must_change_password: bool,
}

/// The machine's users and the open mirror.
pub(crate) struct Users {
    pub data_dir: PathBuf,
    pub sync_config: SyncConfig,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub transport: Arc<dyn Transport>,
    pub secrets: Arc<dyn SecretStore>,
    pub events: broadcast::Sender<StoreEvent>,
    pub status: watch::Sender<SyncStatus>,
    desk: Mutex<DeskFile>,
    current: RwLock<Option<Arc<Open>>>,
    /// The open mirror changed (the run loop picks up the new one).
    changed: Notify,
    /// Serializes the run loop's resume with `stop`.
    control: Mutex<()>,
    stopped: AtomicBool,
    locked: AtomicBool,
}

fn blocking_error(_: tokio::task::JoinError) -> ClientError {
    ClientError::Stopped("key handling")
}

impl Users {
    /// The folder of `user`'s files on this desk (removed with their data).
    pub(crate) fn user_dir(&self, user: Uuid) -> std::path::PathBuf {
        desk::user_dir(&self.data_dir, user)
    }

    /// Reads `desk.json`, migrates a mirror from before encryption, and
    /// opens the last user's mirror when the key store has its key.
    pub(crate) async fn start(
        data_dir: PathBuf,
        sync_config: SyncConfig,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        transport: Arc<dyn Transport>,
        secrets: Arc<dyn SecretStore>,
    ) -> ClientResult<Users> {
        crate::files::private_dir(&data_dir)?;
        let desk = DeskFile::load(&data_dir)?;
        crate::files::tighten(&data_dir.join(desk::FILE_NAME))?;
        let users = Users {
            data_dir,
            sync_config,
            clock,
            ids,
            transport,
            secrets,
            events: broadcast::channel(1024).0,
            status: watch::channel(SyncStatus::default()).0,
            desk: Mutex::new(desk),
            current: RwLock::new(None),
            changed: Notify::new(),
            control: Mutex::new(()),
            stopped: AtomicBool::new(true),
            locked: AtomicBool::new(false),
        };
        crate::legacy::migrate(&users).await?;
        let last = users.desk().last_user;
        if let Some(user) = last {
            match users.stored_key(user).await {
                Some(key) => {
                    let open = users.open_mirror(user, key)?;
                    users.set_current(Some(open));
                }
                None => tracing::info!("the last user's data stays locked until they sign in"),
            }
        }
        Ok(users)
    }

    pub(crate) fn desk(&self) -> std::sync::MutexGuard<'_, DeskFile> {
        self.desk.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn desk_update(&self, f: impl FnOnce(&mut DeskFile)) -> ClientResult<()> {
        self.update_desk(f)
    }

    fn update_desk(&self, f: impl FnOnce(&mut DeskFile)) -> ClientResult<()> {
        let mut desk = self.desk();
        f(&mut desk);
        desk.save(&self.data_dir)
    }

    /// The open mirror, if any (whether or not the screen is locked).
    pub(crate) fn current(&self) -> Option<Arc<Open>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The open mirror for a use case: `NotSignedIn` without one, `Locked`
    /// while the screen is locked.
    pub(crate) fn open(&self) -> ClientResult<Arc<Open>> {
        if self.locked.load(Ordering::SeqCst) {
            return Err(ClientError::Locked);
        }
        self.current().ok_or(ClientError::NotSignedIn)
    }

    fn set_current(&self, open: Option<Arc<Open>>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = open;
        self.changed.notify_waiters();
        let _ = self
            .events
            .send(StoreEvent::everything(ChangeOrigin::Session));
    }

    pub(crate) fn locked(&self) -> bool {
        self.locked.load(Ordering::SeqCst)
    }

    // ---- keys ----

    fn key_name(&self, user: Uuid) -> String {
        self.desk().key_name(user)
    }

    async fn stored_key(&self, user: Uuid) -> Option<MirrorKey> {
        let (secrets, name) = (self.secrets.clone(), self.key_name(user));
        tokio::task::spawn_blocking(move || stored_key(secrets.as_ref(), &name))
            .await
            .ok()
            .flatten()
    }

    /// Keeps `key` for `user`: in the key store (if it works) and wrapped
    /// with `password` beside the mirror.
    async fn keep_key(&self, user: Uuid, key: &MirrorKey, password: &str) -> ClientResult<()> {
        crate::files::private_dir(&self.data_dir.join("users"))?;
        let dir = desk::user_dir(&self.data_dir, user);
        crate::files::private_dir(&dir)?;
        let wrapped = {
            let key = key.clone();
            let password = zeroize::Zeroizing::new(password.to_owned());
            tokio::task::spawn_blocking(move || WrappedKey::seal(&key, &password, user))
                .await
                .map_err(blocking_error)??
        };
        crate::files::write_private(
            &desk::wrapped_key_file(&dir),
            &serde_json::to_vec(&wrapped)?,
        )?;
        let (secrets, name) = (self.secrets.clone(), self.key_name(user));
        let secret = key.secret_copy();
        let stored = tokio::task::spawn_blocking(move || secrets.set(&name, secret.as_slice()))
            .await
            .map_err(blocking_error)?;
        if let Err(e) = stored {
            tracing::info!(error = %e, "mirror key kept only behind the password");
        }
        Ok(())
    }

    /// `user`'s key, unwrapped with `password`: `Ok(None)` for a wrong
    /// password or no key file.
    async fn unwrap_key(&self, user: Uuid, password: &str) -> ClientResult<Option<MirrorKey>> {
        let file = desk::wrapped_key_file(&desk::user_dir(&self.data_dir, user));
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ClientError::Io {
                    context: format!("reading {}", file.display()),
                    source,
                });
            }
        };
        let wrapped: WrappedKey = serde_json::from_slice(&bytes)?;
        let password = zeroize::Zeroizing::new(password.to_owned());
        tokio::task::spawn_blocking(move || wrapped.open(&password, user))
            .await
            .map_err(blocking_error)?
    }

    // ---- mirrors ----

    fn open_mirror(&self, user: Uuid, key: MirrorKey) -> ClientResult<Arc<Open>> {
        crate::files::private_dir(&self.data_dir.join("users"))?;
        let dir = desk::user_dir(&self.data_dir, user);
        let mirror = Arc::new(Mirror::open(
            &dir,
            &key,
            self.clock.clone(),
            self.ids.clone(),
            self.events.clone(),
        )?);
        let reader = Reader::open(&dir, &key)?;
        let session = Arc::new(Session::new(mirror.clone(), self.transport.clone()));
        let sync = Arc::new(SyncEngine::new(
            mirror.clone(),
            session.clone(),
            self.transport.clone(),
            self.sync_config.clone(),
            self.clock.clone(),
            self.status.clone(),
        ));
        Ok(Arc::new(Open {
            user,
            dir,
            key,
            mirror,
            reader,
            session,
            sync,
        }))
    }

    /// Makes `user`'s mirror the open one: the previous user's queue is
    /// sent if the server answers soon, and their mirror closed (it stays
    /// on this machine, encrypted, for their next sign-in).
    async fn switch_to(&self, user: Uuid, key: MirrorKey) -> ClientResult<Arc<Open>> {
        if let Some(open) = self.current().filter(|o| o.user == user) {
            return Ok(open);
        }
        let previous = self.current();
        if let Some(previous) = &previous {
            match tokio::time::timeout(SEND_BEFORE_SWITCH, previous.sync.sync_once()).await {
                Ok(Ok(report)) if report.pending > 0 => {
                    tracing::info!(
                        pending = report.pending,
                        "previous user's changes wait for their next sign-in"
                    )
                }
                Ok(Ok(_)) => {}
                _ => tracing::info!("previous user's changes wait for their next sign-in"),
            }
        }
        let open = self.open_mirror(user, key)?;
        self.set_current(Some(open.clone()));
        if let Some(previous) = previous {
            previous.close().await;
        }
        Ok(open)
    }

    /// Removes `user`'s mirror, key file and key store entry from this
    /// machine (closing it first when it is the open one).
    pub(crate) async fn wipe(&self, user: Uuid) -> ClientResult<()> {
        if let Some(open) = self.current().filter(|o| o.user == user) {
            self.set_current(None);
            open.close().await;
        }
        let dir = desk::user_dir(&self.data_dir, user);
        for file in schema::files(&dir)
            .into_iter()
            .chain([desk::wrapped_key_file(&dir)])
        {
            crate::files::shred(&file)?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| ClientError::Io {
                context: format!("removing {}", dir.display()),
                source,
            })?;
        }
        let (secrets, name) = (self.secrets.clone(), self.key_name(user));
        let deleted = tokio::task::spawn_blocking(move || secrets.delete(&name))
            .await
            .map_err(blocking_error)?;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "the key store entry could not be removed");
        }
        self.update_desk(|d| {
            d.users.remove(&user);
            if d.last_user == Some(user) {
                d.last_user = None;
            }
        })?;
        tracing::info!("a user's local data was removed from this machine");
        Ok(())
    }

    // ---- signing in ----

    fn remember(&self, user: &Staff, server_url: &str) -> ClientResult<()> {
        self.update_desk(|d| {
            d.last_user = Some(user.id);
            d.users.insert(
                user.id,
                KnownUser {
                    username: user.username.clone(),
                    display_name: user.display_name.clone(),
                    role: user.role,
                    server_url: server_url.to_owned(),
                    failed_offline: 0,
                    offline_allowed: true,
                },
            );
        })
    }

    /// Signs in (see the session rules).
    pub(crate) async fn sign_in(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<SignedIn> {
        let server_url = server_url.trim().trim_end_matches('/').to_owned();
        let request = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        match self.transport.login(&server_url, &request).await {
            Ok(login) => self.signed_in_online(&server_url, login, password).await,
            Err(ClientError::Offline { reason, source }) => {
                match self
                    .sign_in_offline(&server_url, username, password)
                    .await?
                {
                    Some(user) => Ok(SignedIn {
                        user,
                        offline: true,
                        must_change_password: false,
                    }),
                    None => Err(ClientError::Offline { reason, source }),
                }
            }
            Err(ClientError::Server(body)) if body.code == ErrorCode::Forbidden => {
                let known = self.desk().find(username, &server_url).map(|(id, _)| id);
                let lost = match known {
                    Some(user) => self.remove_disabled(user, Some(password)).await?,
                    None => Vec::new(),
                };
                Err(ClientError::AccountDisabled { lost })
            }
            Err(e) => Err(e),
        }
    }

    async fn signed_in_online(
        &self,
        server_url: &str,
        login: LoginResponse,
        password: &str,
    ) -> ClientResult<SignedIn> {
        let user = login.user.clone();
        let must_change_password = login.must_change_password;
        let open = match self.current().filter(|o| o.user == user.id) {
            Some(open) => open,
            None => {
                let existing = desk::user_dir(&self.data_dir, user.id)
                    .join(schema::FILE_NAME)
                    .exists();
                let key = if existing {
                    match self.stored_key(user.id).await {
                        Some(key) => Some(key),
                        None => self.unwrap_key(user.id, password).await?,
                    }
                } else {
                    None
                };
                let key = match key {
                    Some(key) => key,
                    None => {
                        if existing {
                            // Neither the key store nor this password opens
                            // it (the password was changed elsewhere and the
                            // key store is not available): it cannot be read
                            // any more; start again from the server.
                            tracing::warn!(
                                "the local data of this user could not be opened; starting over"
                            );
                            self.wipe(user.id).await?;
                        }
                        MirrorKey::generate()
                    }
                };
                self.switch_to(user.id, key).await?
            }
        };
        // Unlocked now, before the slow part (wrapping the key): a lock the
        // person asks for while it runs must stay.
        self.locked.store(false, Ordering::SeqCst);
        open.session
            .signed_in(
                server_url,
                login.token,
                user.clone(),
                login.time_zone,
                login.must_change_password,
            )
            .await?;
        self.keep_key(user.id, &open.key, password).await?;
        self.remember(&user, server_url)?;
        tracing::info!(user = %user.id, "signed in");
        open.sync.wake();
        self.changed.notify_waiters();
        Ok(SignedIn {
            user,
            offline: false,
            must_change_password,
        })
    }

    /// `Ok(Some(user))` when this machine's wrapped key opens with the
    /// password; `Ok(None)` when there is nothing to check against; `Auth`
    /// for a wrong password or when offline sign-in is not allowed.
    async fn sign_in_offline(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<Option<Staff>> {
        let Some((user, known)) = self
            .desk()
            .find(username, server_url)
            .map(|(id, k)| (id, k.clone()))
        else {
            return Ok(None);
        };
        // A revocation still being applied counts as applied.
        let revoking = self
            .current()
            .is_some_and(|o| o.user == user && o.session.revoked());
        if !known.offline_allowed || revoking {
            return Err(ClientError::Auth(
                "your sessions were ended on the server: signing in needs the server this time"
                    .into(),
            ));
        }
        if known.failed_offline >= desk::OFFLINE_ATTEMPTS {
            return Err(ClientError::Auth(format!(
                "{} wrong passwords on this computer while the server could not be reached: \
                 signing in needs the server now",
                known.failed_offline
            )));
        }
        let Some(key) = self.unwrap_key(user, password).await? else {
            let wrapped_exists =
                desk::wrapped_key_file(&desk::user_dir(&self.data_dir, user)).exists();
            if !wrapped_exists {
                return Ok(None);
            }
            self.update_desk(|d| {
                if let Some(u) = d.users.get_mut(&user) {
                    u.failed_offline += 1;
                }
            })?;
            return Err(ClientError::Auth(
                "wrong username or password (checked on this computer: the server cannot be reached)"
                    .into(),
            ));
        };
        let open = self.switch_to(user, key).await?;
        // Unlocked as soon as this user's data is the open one (see `sign_in`).
        self.locked.store(false, Ordering::SeqCst);
        open.session.set_offline(Some(Credentials {
            server_url: server_url.to_owned(),
            username: username.to_owned(),
            password: zeroize::Zeroizing::new(password.to_owned()),
        }));
        self.update_desk(|d| {
            d.last_user = Some(user);
            if let Some(u) = d.users.get_mut(&user) {
                u.failed_offline = 0;
            }
        })?;
        tracing::info!("signed in offline; the server will be asked for a token when it answers");
        open.sync.wake();
        self.changed.notify_waiters();
        let staff = open.mirror.identity().await?.user.unwrap_or(Staff {
            id: user,
            username: known.username,
            display_name: known.display_name,
            role: known.role,
            active: true,
        });
        Ok(Some(staff))
    }

    /// The signed-in user changes their password on the server; this
    /// machine's copy of their key is then sealed with the new one (so an
    /// offline sign-in takes the new password, not the old).
    pub(crate) async fn change_password(
        &self,
        current: &str,
        new: &str,
    ) -> ClientResult<PasswordChangeResponse> {
        let open = self.current().ok_or(ClientError::NotSignedIn)?;
        let (url, token) = open.session.require().await?;
        let request = PasswordChangeRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        let changed = self
            .transport
            .change_password(&url, &token, &request)
            .await?;
        self.keep_key(open.user, &open.key, new).await?;
        open.session.set_must_change_password(false);
        tracing::info!(
            other_sessions_ended = changed.other_sessions_ended,
            "password changed"
        );
        open.sync.wake();
        self.changed.notify_waiters();
        Ok(changed)
    }

    // ---- ending sessions ----

    /// A person signs out: the server session ends and their local data is
    /// removed (refused while changes are unsent unless `discard_pending`).
    pub(crate) async fn sign_out(&self, discard_pending: bool) -> ClientResult<()> {
        let open = self.current().ok_or(ClientError::NotSignedIn)?;
        open.session.sign_out(discard_pending).await?;
        self.locked.store(false, Ordering::SeqCst);
        self.wipe(open.user).await
    }

    /// The server ended the open user's session for good (see the rules).
    async fn revoked(&self, open: &Arc<Open>, message: &str) -> ClientResult<()> {
        tracing::info!("session revoked by the server");
        open.session.set_offline(None);
        crate::files::shred(&desk::wrapped_key_file(&open.dir))?;
        self.update_desk(|d| {
            if let Some(u) = d.users.get_mut(&open.user) {
                u.offline_allowed = false;
            }
        })?;
        let pending = open.mirror.stats().await?.pending;
        if pending == 0 {
            self.wipe(open.user).await?;
        }
        let message = format!(
            "{message}. Sign in again{}",
            if pending > 0 {
                format!(
                    " to send the {pending} change{} still waiting",
                    if pending == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            }
        );
        self.status.send_modify(|s| {
            s.last_error = Some(message);
            s.connection = Connection::SignedOut;
        });
        Ok(())
    }

    /// The account is disabled: its mirror goes; what was queued is lost
    /// and named. Opens the mirror to read the queue when it can (key store,
    /// or the password the server just accepted).
    async fn remove_disabled(
        &self,
        user: Uuid,
        password: Option<&str>,
    ) -> ClientResult<Vec<String>> {
        let pending = match self.current().filter(|o| o.user == user) {
            Some(open) => open.mirror.pending().await?,
            None => {
                let key = match self.stored_key(user).await {
                    Some(k) => Some(k),
                    None => match password {
                        Some(p) => self.unwrap_key(user, p).await?,
                        None => None,
                    },
                };
                match key {
                    Some(key) => {
                        let open = self.open_mirror(user, key)?;
                        let pending = open.mirror.pending().await;
                        open.close().await;
                        pending.unwrap_or_default()
                    }
                    None => Vec::new(),
                }
            }
        };
        self.wipe(user).await?;
        Ok(pending
            .iter()
            .map(|p| crate::types::describe_mutation(&p.mutation))
            .collect())
    }

    // ---- the screen lock ----

    /// Hides the user's data until their password (or another user's
    /// sign-in) opens it again.
    pub(crate) fn lock(&self) {
        if self.current().is_some() && !self.locked.swap(true, Ordering::SeqCst) {
            tracing::info!("screen locked");
            let _ = self
                .events
                .send(StoreEvent::everything(ChangeOrigin::Session));
        }
    }

    /// Opens the lock with the open user's password, checked on this
    /// machine (the wrapped key), or by the server when this machine may not
    /// check it.
    pub(crate) async fn unlock(&self, password: &str) -> ClientResult<()> {
        let open = self.current().ok_or(ClientError::NotSignedIn)?;
        if !self.locked() {
            return Ok(());
        }
        let opened = self.unwrap_key(open.user, password).await?.is_some();
        if !opened {
            let known = self.desk().users.get(&open.user).cloned();
            let wrapped_exists = desk::wrapped_key_file(&open.dir).exists();
            match known {
                Some(k) if !wrapped_exists => {
                    self.sign_in(&k.server_url, &k.username, password).await?;
                }
                _ => {
                    return Err(ClientError::Auth(
                        "that is not the password of the person signed in here".into(),
                    ));
                }
            }
        }
        self.locked.store(false, Ordering::SeqCst);
        tracing::info!("screen unlocked");
        let _ = self
            .events
            .send(StoreEvent::everything(ChangeOrigin::Session));
        Ok(())
    }

    // ---- the sync loop ----

    /// Runs the open user's sync loop, following switches of user, until
    /// [`Users::stop`].
    pub(crate) async fn run(&self) {
        loop {
            let open = {
                let _control = self.control.lock().unwrap_or_else(|p| p.into_inner());
                if self.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let open = self.current();
                if let Some(o) = &open {
                    o.sync.resume();
                }
                open
            };
            match open {
                Some(open) => match open.sync.clone().run().await {
                    RunEnd::Stopped => {}
                    RunEnd::Revoked(message) => {
                        if let Err(e) = self.revoked(&open, &message).await {
                            tracing::warn!(error = %e, "applying a revocation failed");
                        }
                        self.wait_for_change().await;
                    }
                    RunEnd::Disabled => {
                        match self.remove_disabled(open.user, None).await {
                            Ok(lost) => {
                                let message = ClientError::AccountDisabled { lost }.to_string();
                                self.status.send_modify(|s| s.last_error = Some(message));
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "removing a disabled account failed")
                            }
                        }
                        self.wait_for_change().await;
                    }
                },
                None => {
                    self.status
                        .send_modify(|s| s.connection = Connection::SignedOut);
                    self.wait_for_change().await;
                }
            }
        }
        self.status
            .send_modify(|s| s.connection = Connection::Stopped);
    }

    async fn wait_for_change(&self) {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        // Registered before the check, so a change right after it is seen.
        changed.as_mut().enable();
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        changed.await;
    }

    /// Lets [`Users::run`] run (again).
    pub(crate) fn resume(&self) {
        self.stopped.store(false, Ordering::SeqCst);
    }

    /// Stops [`Users::run`].
    /// Stops sync and closes the open mirror's connections, waiting until
    /// they are closed. The process may exit after this: SQLCipher's exit
    /// handler frees what a connection still closing would use.
    pub(crate) async fn close(&self) {
        self.stop();
        let open = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(open) = open {
            open.close().await;
        }
    }

    pub(crate) fn stop(&self) {
        let _control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(open) = self.current() {
            open.sync.stop();
        }
        self.changed.notify_waiters();
    }
}
