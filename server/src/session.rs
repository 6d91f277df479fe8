//! Sessions: who is calling, whether they still may, and how sign-in
//! attempts are throttled. Used by the HTTP layer and the WebSocket layer
//! alike (neither depends on the other).
//!
//! - [`authenticate`] resolves a bearer token to a [`Caller`] (session
//!   unexpired, account active), with the account's security epoch and
//!   whether it must change its password.
//! - [`recheck`] re-reads a caller's session and account, for every
//!   WebSocket push and whenever a security event concerns the account.
//! - [`verify_credentials`] checks a username and password behind the
//!   sign-in throttle and records the attempt in the sign-in log.
//! - [`prepare_push`] bounds a push and hashes new accounts' passwords
//!   outside the write lock.
//!
//! Throttling ([`ThrottlePolicy`]): each attempt counts against two keys,
//! the username as given (known or not, so the answer never tells whether
//! an account exists) and the client's address. A key is free for a few
//! failures, then each further failure locks it for a delay that doubles up
//! to a cap; a locked key is answered `429` with `Retry-After`, without
//! checking the password. A success clears the username's counter (not the
//! address's). The address allows more failures than a username because
//! the desks of one clinic often share one address. Counters live in the
//! database, so every server process and restart sees them; attempts
//! already past the check when a lock is set (at most
//! `Config::concurrent_logins` per process) still finish.

use crate::AppState;
use crate::auth;
use crate::blocking::blocking;
use crate::engine::PreparedMutation;
use crate::metrics::SignInFailure;
use crate::storage::{AccountSecurity, NewSignInEvent, SessionAccount, StorageResult, Throttle};
use clinic_shared::model::{Staff, Timestamp};
use clinic_shared::permissions;
use clinic_shared::protocol::{Actor, ErrorBody, ErrorCode, SignInKind, SignInOutcome, limits};
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

/// The authenticated caller of a request or WebSocket session.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, with their current role.
    pub user: Staff,
    /// The hash of the token used.
    pub token_hash: String,
    /// The account's security epoch when this was read.
    pub epoch: u64,
    /// Only a password change (and `me`, logout) is allowed.
    pub must_change_password: bool,
    /// When the session stops working.
    pub expires_at: Timestamp,
}

impl Caller {
    /// As the rules see the caller.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user.id,
            role: self.user.role,
        }
    }
}

/// Where a request came from, for the sign-in log and throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The peer's IP address as the server accepted it (no proxy header is
    /// trusted).
    pub address: Option<IpAddr>,
    /// The `X-Clinic-Client` header: the client installation's id.
    pub client_id: Option<Uuid>,
    /// The `User-Agent` header, shortened to [`MAX_USER_AGENT`] characters.
    pub user_agent: Option<String>,
}

/// Longest `User-Agent` kept in the sign-in log, in characters.
pub const MAX_USER_AGENT: usize = 200;

/// The answer for a missing, ended or forged token.
fn unknown_token() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Unauthorized,
        "sign in first: the token is unknown or was ended",
    )
}

/// The answer for an account that must change its password first.
pub fn password_change_required() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::PasswordChangeRequired,
        "this account's password must be changed first: POST /v1/password with the current and a new password",
    )
}

/// Resolves a bearer token to a caller: the session must exist and be
/// unexpired, the account active. A caller who must change their password
/// is returned (with `must_change_password` set): the endpoint decides.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ErrorBody> {
    authenticate_token_hash(state, auth::token_hash(token)).await
}

/// [`authenticate`] for a token already hashed (a session re-checking itself).
pub async fn authenticate_token_hash(
    state: &AppState,
    token_hash: String,
) -> Result<Caller, ErrorBody> {
    let storage = state.storage.clone();
    let lookup = token_hash.clone();
    let found = blocking(move || storage.session_account(&lookup)).await?;
    caller_of(found, token_hash, (state.config.clock)())
}

/// The caller a session lookup found, as [`authenticate`] judges it at
/// `now`: for a handler that reads the session together with other things.
pub fn caller_of(
    found: Option<SessionAccount>,
    token_hash: String,
    now: Timestamp,
) -> Result<Caller, ErrorBody> {
    let Some(found) = found else {
        return Err(unknown_token());
    };
    if found.session.expires_at <= now {
        return Err(ErrorBody::new(
            ErrorCode::TokenExpired,
            "the sign-in has expired; sign in again",
        ));
    }
    match found.user {
        Some(user) if user.active => Ok(Caller {
            user,
            token_hash,
            epoch: found.security.epoch,
            must_change_password: found.security.must_change_password,
            expires_at: found.session.expires_at,
        }),
        _ => Err(ErrorBody::new(
            ErrorCode::Unauthorized,
            "the account is disabled",
        )),
    }
}

/// Re-reads `caller`'s session and account. `Ok` with the fresh caller
/// (whose role or epoch may differ: the caller compares) while the session
/// stands; otherwise the error that ends it: `session_changed` when the
/// account was disabled or removed, `unauthorized` when the session was
/// ended (sign-out, password change or reset, "end all sessions"),
/// `token_expired`, or `password_change_required`.
pub async fn recheck(state: &AppState, caller: &Caller) -> Result<Caller, ErrorBody> {
    let storage = state.storage.clone();
    let lookup = caller.token_hash.clone();
    let found = blocking(move || storage.session_account(&lookup)).await?;
    let account_gone = |user: Option<&Staff>| match user {
        None => Some("account removed"),
        Some(u) if !u.active => Some("account disabled"),
        Some(_) => None,
    };
    let Some(found) = found else {
        // Disabling ends every session too: say which of the two it was.
        let storage = state.storage.clone();
        let id = caller.user.id;
        let user = blocking(move || storage.staff(id)).await?;
        if let Some(reason) = account_gone(user.as_ref()) {
            return Err(ErrorBody::new(ErrorCode::SessionChanged, reason));
        }
        return Err(ErrorBody::new(
            ErrorCode::Unauthorized,
            "this session was ended (signed out, password changed or all sessions ended); sign in again",
        ));
    };
    if let Some(reason) = account_gone(found.user.as_ref()) {
        return Err(ErrorBody::new(ErrorCode::SessionChanged, reason));
    }
    if found.session.expires_at <= (state.config.clock)() {
        return Err(ErrorBody::new(
            ErrorCode::TokenExpired,
            "the sign-in has expired; sign in again",
        ));
    }
    if found.security.must_change_password {
        return Err(password_change_required());
    }
    match found.user {
        Some(user) => Ok(Caller {
            user,
            token_hash: caller.token_hash.clone(),
            epoch: found.security.epoch,
            must_change_password: false,
            expires_at: found.session.expires_at,
        }),
        None => Err(ErrorBody::new(ErrorCode::SessionChanged, "account removed")),
    }
}

/// Checks a push's size and prepares its mutations (hashes new passwords
/// outside the write lock).
pub async fn prepare_push(
    caller: &Caller,
    mutations: Vec<clinic_shared::mutation::PendingMutation>,
) -> Result<Vec<PreparedMutation>, ErrorBody> {
    if mutations.is_empty() {
        return Err(
            ErrorBody::new(ErrorCode::InvalidField, "the push has no mutations")
                .with_field("mutations"),
        );
    }
    if mutations.len() > limits::MAX_PUSH_MUTATIONS {
        return Err(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {} mutations per push", limits::MAX_PUSH_MUTATIONS),
        )
        .with_field("mutations"));
    }
    let mut prepared = Vec::with_capacity(mutations.len());
    for pending in mutations {
        let password_hash = match pending.mutation.new_password() {
            // Only hash for callers allowed to make the mutation, and only
            // valid passwords: hashing is expensive.
            Some(password)
                if permissions::can_mutate(caller.user.role, &pending.mutation)
                    && pending.mutation.validate().is_ok() =>
            {
                let password = password.to_owned();
                tokio::task::spawn_blocking(move || auth::hash_password(&password))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            _ => None,
        };
        prepared.push(PreparedMutation {
            pending,
            password_hash,
        });
    }
    Ok(prepared)
}

/// How sign-in failures are throttled. [`Default`] is what the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures a username may have before each further one locks it.
    pub free_failures_per_user: u32,
    /// Failures an address may have before each further one locks it.
    pub free_failures_per_address: u32,
    /// The first lockout; each further failure doubles it.
    pub base: Duration,
    /// The longest lockout.
    pub cap: Duration,
    /// A key whose last failure is older than this starts from zero again.
    pub forget_after: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_failures_per_user: 5,
            free_failures_per_address: 20,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl ThrottlePolicy {
    /// How long `t` stays locked after `now_ms`, if it is locked.
    pub fn locked_for(&self, t: &Throttle, now_ms: i64) -> Option<Duration> {
        let left = t.locked_until_ms.saturating_sub(now_ms);
        (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    }

    /// The throttle after one more failure at `now_ms`, for a key that is
    /// free for `free` failures: the `free + 1`-th failure locks it for
    /// `base`, each further one for twice as long, up to `cap`.
    pub fn after_failure(&self, t: Option<Throttle>, free: u32, now_ms: i64) -> Throttle {
        let failures = match t {
            Some(t) if now_ms.saturating_sub(t.last_failure_ms) < millis(self.forget_after) => {
                t.failures.saturating_add(1)
            }
            _ => 1,
        };
        let locked_until_ms = if failures > free {
            let doublings = (failures - free - 1).min(30);
            let delay = self.base.saturating_mul(1u32 << doublings).min(self.cap);
            now_ms.saturating_add(millis(delay))
        } else {
            0
        };
        Throttle {
            failures,
            last_failure_ms: now_ms,
            locked_until_ms,
            lock_reported: false,
        }
    }
}

/// The wall clock in Unix milliseconds, for throttling.
fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The throttle key of a username.
fn user_key(username: &str) -> String {
    format!("user:{username}")
}

/// The throttle key of an address.
fn address_key(address: IpAddr) -> String {
    format!("addr:{address}")
}

/// Normalizes a username as typed: trimmed, lower case.
pub fn normalize_username(username: &str) -> String {
    username.trim().to_lowercase()
}

/// Why credentials were not accepted.
#[derive(Debug)]
pub enum Refused {
    /// Too many recent failures: retry after this many seconds.
    Locked {
        /// Whole seconds, at least 1.
        retry_after: u64,
    },
    /// Wrong username or password (which one is not said).
    Wrong,
    /// Right password, disabled account.
    Disabled,
    /// The check itself failed.
    Failed(ErrorBody),
}

impl From<ErrorBody> for Refused {
    fn from(e: ErrorBody) -> Self {
        Refused::Failed(e)
    }
}

/// A sign-in attempt (or the password check of a password change).
pub struct Attempt<'a> {
    /// Sign-in or password change.
    pub kind: SignInKind,
    /// The username, normalized.
    pub username: String,
    /// The password given.
    pub password: String,
    /// Where it came from.
    pub origin: &'a Origin,
}

/// Checks `attempt`'s credentials behind the throttle, counting a failure
/// against the username and the address, clearing the username's counter
/// on success, and recording the attempt in the sign-in log. Returns the
/// account and its security state.
pub async fn verify_credentials(
    state: &AppState,
    attempt: Attempt<'_>,
) -> Result<(Staff, AccountSecurity), Refused> {
    let policy = state.config.throttle.clone();
    let mut keys = vec![(user_key(&attempt.username), policy.free_failures_per_user)];
    if let Some(address) = attempt.origin.address {
        keys.push((address_key(address), policy.free_failures_per_address));
    }
    let event = |outcome: SignInOutcome, user_id: Option<Uuid>| NewSignInEvent {
        at: (state.config.clock)(),
        kind: attempt.kind,
        outcome,
        username: attempt.username.clone(),
        user_id,
        address: attempt.origin.address.map(|a| a.to_string()),
        client_id: attempt.origin.client_id,
        user_agent: attempt.origin.user_agent.clone(),
    };

    // Locked keys are answered without looking at the password.
    let storage = state.storage.clone();
    let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    let current = blocking(move || {
        names
            .iter()
            .map(|k| storage.throttle(k))
            .collect::<StorageResult<Vec<_>>>()
    })
    .await?;
    let now = wall_ms();
    let locked: Vec<(String, Duration, bool)> = keys
        .iter()
        .zip(&current)
        .filter_map(|((key, _), t)| {
            let t = t.as_ref()?;
            policy
                .locked_for(t, now)
                .map(|left| (key.clone(), left, t.lock_reported))
        })
        .collect();
    if let Some(longest) = locked.iter().map(|(_, left, _)| *left).max() {
        // One `locked` event per lockout, not one per refused attempt: a
        // flood of attempts must not become a flood of writes.
        if locked.iter().any(|(_, _, reported)| !reported) {
            let storage = state.storage.clone();
            let record = event(SignInOutcome::Locked, None);
            let keys: Vec<String> = locked.iter().map(|(k, _, _)| k.clone()).collect();
            blocking(move || {
                storage.write(&mut |tx| {
                    for key in &keys {
                        if let Some(mut t) = tx.throttle(key)? {
                            t.lock_reported = true;
                            tx.set_throttle(key, Some(&t))?;
                        }
                    }
                    tx.append_sign_in_event(&record).map(|_| ())
                })
            })
            .await?;
        }
        tracing::info!("sign-in refused: throttled");
        state.metrics.sign_in_throttled();
        let retry_after = longest.as_millis().div_ceil(1000).max(1);
        return Err(Refused::Locked {
            retry_after: u64::try_from(retry_after).unwrap_or(u64::MAX),
        });
    }

    let _permit = state.login_permits.acquire().await.map_err(|_| {
        Refused::Failed(ErrorBody::new(
            ErrorCode::Unavailable,
            "the server is shutting down",
        ))
    })?;
    let storage = state.storage.clone();
    let username = attempt.username.clone();
    let found = blocking(move || storage.staff_by_username(&username)).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let password = attempt.password.clone();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(user) if ok => user,
        user => {
            let storage = state.storage.clone();
            let record = event(SignInOutcome::Failure, user.map(|u| u.id));
            let policy = policy.clone();
            blocking(move || {
                let now = wall_ms();
                storage.write(&mut |tx| {
                    for (key, free) in &keys {
                        let t = tx.throttle(key)?;
                        let next = policy.after_failure(t, *free, now);
                        tx.set_throttle(key, Some(&next))?;
                    }
                    tx.append_sign_in_event(&record).map(|_| ())
                })
            })
            .await?;
            tracing::info!("sign-in refused: wrong credentials");
            state
                .metrics
                .sign_in_failed(SignInFailure::WrongCredentials);
            return Err(Refused::Wrong);
        }
    };
    let storage = state.storage.clone();
    let outcome = if user.active {
        SignInOutcome::Success
    } else {
        SignInOutcome::Disabled
    };
    let record = event(outcome, Some(user.id));
    let clear = user_key(&attempt.username);
    let user_id = user.id;
    let security = blocking(move || {
        storage.write(&mut |tx| {
            if outcome == SignInOutcome::Success {
                tx.set_throttle(&clear, None)?;
            }
            tx.append_sign_in_event(&record).map(|_| ())
        })?;
        storage.account_security(user_id)
    })
    .await?;
    if !user.active {
        state.metrics.sign_in_failed(SignInFailure::Disabled);
        return Err(Refused::Disabled);
    }
    Ok((user, security))
}

/// How often [`purge_expired_sessions`] removes sessions long expired.
pub const SESSION_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How long an expired session is kept: until then its token is answered
/// `token_expired` ("sign in again"), after it `unauthorized` like any
/// unknown token. A desk back from weeks offline still hears "expired".
pub const KEEP_EXPIRED_SESSIONS: Duration = Duration::from_secs(30 * 24 * 3600);

/// The cut-off for [`crate::storage::Storage::purge_expired_sessions`] at
/// `now`: sessions that expired [`KEEP_EXPIRED_SESSIONS`] before it.
pub fn purge_cutoff(now: clinic_shared::model::Timestamp) -> clinic_shared::model::Timestamp {
    let keep = i64::try_from(KEEP_EXPIRED_SESSIONS.as_secs()).unwrap_or(i64::MAX);
    clinic_shared::model::Timestamp::from_unix(now.unix().saturating_sub(keep)).unwrap_or(now)
}

/// Removes long-expired sessions every `every` until `stop`: they are
/// refused anyway, but a server that runs for months should not keep every
/// session it ever issued.
pub async fn purge_expired_sessions(
    storage: std::sync::Arc<dyn crate::storage::Storage>,
    clock: crate::Clock,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the server's start already purged.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let (s, cutoff) = (storage.clone(), purge_cutoff(clock()));
        match blocking(move || s.purge_expired_sessions(cutoff)).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired sessions removed"),
            // Retried at the next tick; nothing depends on it meanwhile.
            Err(e) => tracing::warn!(error = %e.message, "removing expired sessions failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_free_then_lock_for_doubling_delays_up_to_the_cap() {
        let policy = ThrottlePolicy {
            free_failures_per_user: 2,
            free_failures_per_address: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(5),
            forget_after: Duration::from_secs(60),
        };
        let mut t = None;
        let mut locks = Vec::new();
        for _ in 0..7 {
            let next = policy.after_failure(t, 2, 1_000_000);
            locks.push(policy.locked_for(&next, 1_000_000).map(|d| d.as_secs()));
            t = Some(next);
        }
        assert_eq!(
            locks,
            [None, None, Some(1), Some(2), Some(4), Some(5), Some(5)]
        );
        let t = t.unwrap();
        assert_eq!(policy.locked_for(&t, 1_000_000 + 5_000), None, "expires");
        // A failure long after the last one starts again from zero.
        let later = policy.after_failure(Some(t), 2, 1_000_000 + 61_000);
        assert_eq!(later.failures, 1);
        assert_eq!(policy.locked_for(&later, 1_000_000 + 61_000), None);
    }
}
