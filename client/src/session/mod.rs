//! The session: who is signed in on this machine, with which token, and the
//! one policy every front end follows for signing in, out, and for a
//! session the server ended. The rules (the facade carries them out across
//! users' mirrors, see `crate::users`):
//!
//! - **Each user has their own mirror** on this machine (`users/<id>/`),
//!   encrypted with its own key ([`keys`]). Switching user closes one mirror
//!   and opens another; each user's queued changes stay theirs and are sent
//!   under their identity.
//! - **Sign in online**: the server checks the password and gives a token;
//!   the mirror's key is (re)wrapped with that password so the same user can
//!   sign in here while the server cannot be reached.
//! - **Sign in offline**: only a user who has a mirror here, by unwrapping
//!   its key with the password (a wrong password opens nothing), at most
//!   [`desk::OFFLINE_ATTEMPTS`] wrong tries in a row; the password stays in
//!   memory until the server can be asked for a token
//!   ([`Session::resume_online`]).
//! - **Sign out** (a person's choice): the server session ends and that
//!   user's mirror, key file and key store entry are removed; refused while
//!   changes are unsent, unless the person chose to discard them.
//! - **Expired** (the token's time ran out): the token is dropped; mirror,
//!   queue and offline sign-in stay.
//! - **Revoked** (signed out elsewhere, password changed or reset, sessions
//!   ended by an administrator): the token and the wrapped key are dropped
//!   (no offline sign-in any more); with nothing queued the mirror is
//!   removed at once, otherwise it waits, locked, for the user's next online
//!   sign-in to send the queue.
//! - **Disabled** (the server refuses the account): the user's mirror is
//!   removed, and what was still queued is named to the user as lost.

pub(crate) mod desk;
pub(crate) mod keys;

use crate::error::{ClientError, ClientResult};
use crate::mirror::Mirror;
use crate::transport::Transport;
use clinic_shared::model::Staff;
use clinic_shared::protocol::LoginRequest;
use std::sync::{Arc, Mutex};

/// What an offline sign-in needs to become an online one.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub server_url: String,
    pub username: String,
    pub password: zeroize::Zeroizing<String>,
}

/// One user's session on their mirror.
pub(crate) struct Session {
    mirror: Arc<Mirror>,
    transport: Arc<dyn Transport>,
    /// A sign-in accepted offline (against the wrapped key), kept in memory
    /// only, until the server can be asked for a token.
    offline: Mutex<Option<Credentials>>,
    /// The server signed this user in on condition that they change their
    /// password first: nothing syncs until they do.
    must_change: std::sync::atomic::AtomicBool,
    /// The server revoked this session (set before the token is dropped, so
    /// no offline sign-in slips in while the revocation is being applied).
    revoked: std::sync::atomic::AtomicBool,
}

impl Session {
    pub(crate) fn new(mirror: Arc<Mirror>, transport: Arc<dyn Transport>) -> Session {
        Session {
            mirror,
            transport,
            offline: Mutex::new(None),
            must_change: std::sync::atomic::AtomicBool::new(false),
            revoked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn offline_slot(&self) -> std::sync::MutexGuard<'_, Option<Credentials>> {
        // The slot holds plain data; a panic elsewhere cannot leave it torn.
        self.offline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the user signed in offline and no token was had yet.
    pub(crate) fn signed_in_offline(&self) -> bool {
        self.offline_slot().is_some()
    }

    /// Remembers an offline sign-in until the server answers.
    pub(crate) fn set_offline(&self, credentials: Option<Credentials>) {
        *self.offline_slot() = credentials;
    }

    /// Whether the password must be changed before anything else.
    pub(crate) fn must_change_password(&self) -> bool {
        self.must_change.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sets or clears "the password must be changed first".
    pub(crate) fn set_must_change_password(&self, must: bool) {
        self.must_change
            .store(must, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the server revoked the session (until the next online sign-in).
    pub(crate) fn revoked(&self) -> bool {
        self.revoked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Marks the session revoked: no offline sign-in for this user from now.
    pub(crate) fn set_revoked(&self) {
        self.revoked
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The server and token of the current session, if there is one.
    pub(crate) async fn credentials(&self) -> ClientResult<Option<(String, String)>> {
        let stored = self.mirror.identity().await?;
        Ok(match (stored.server_url, stored.token) {
            (Some(url), Some(token)) => Some((url, token)),
            _ => None,
        })
    }

    /// The server and token, or `NotSignedIn`.
    pub(crate) async fn require(&self) -> ClientResult<(String, String)> {
        self.credentials().await?.ok_or(ClientError::NotSignedIn)
    }

    /// Records an online sign-in in the mirror.
    pub(crate) async fn signed_in(
        &self,
        server_url: &str,
        token: String,
        user: Staff,
        time_zone: Option<String>,
        must_change_password: bool,
    ) -> ClientResult<()> {
        self.mirror
            .sign_in(server_url.to_owned(), token, user, time_zone)
            .await?;
        self.set_offline(None);
        self.revoked
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.set_must_change_password(must_change_password);
        Ok(())
    }

    /// For a user signed in offline: asks the server for a token. `Ok(true)`
    /// when it gave one, `Ok(false)` when there was nothing to resume;
    /// `Offline` while the server still cannot be reached. Another refusal
    /// ends the offline sign-in (the caller applies the policy).
    pub(crate) async fn resume_online(&self) -> ClientResult<bool> {
        let Some(c) = self.offline_slot().clone() else {
            return Ok(false);
        };
        let request = LoginRequest {
            username: c.username.clone(),
            password: c.password.to_string(),
        };
        match self.transport.login(&c.server_url, &request).await {
            Ok(login) => {
                self.signed_in(
                    &c.server_url,
                    login.token,
                    login.user,
                    login.time_zone,
                    login.must_change_password,
                )
                .await?;
                Ok(true)
            }
            Err(e @ ClientError::Offline { .. }) => Err(e),
            Err(e) => {
                tracing::info!("offline sign-in refused by the server");
                self.set_offline(None);
                Err(e)
            }
        }
    }

    /// The server ended or refused the token: drop it (the policy for what
    /// else goes is the caller's).
    pub(crate) async fn drop_token(&self) -> ClientResult<()> {
        self.mirror.drop_token().await
    }

    /// A person signs out: refused while changes are unsent unless
    /// `discard_pending`; the server session ends (best effort). Removing
    /// the mirror is the caller's.
    pub(crate) async fn sign_out(&self, discard_pending: bool) -> ClientResult<()> {
        if !discard_pending {
            let pending = self.mirror.stats().await?.pending;
            if pending > 0 {
                return Err(ClientError::PendingChanges(pending));
            }
        }
        if let Some((url, token)) = self.credentials().await?
            && let Err(e) = self.transport.logout(&url, &token).await
        {
            tracing::info!(error = %e, "the server could not be told about the sign-out");
        }
        self.set_offline(None);
        Ok(())
    }

    /// The server said the session changed: learn the account's current
    /// role; if it changed, rows the role may no longer see leave the mirror
    /// and it re-syncs.
    pub(crate) async fn refresh_account(&self) -> ClientResult<()> {
        let (url, token) = self.require().await?;
        let user = self.transport.me(&url, &token).await?;
        let current = self.mirror.identity().await?.user;
        if current.as_ref().map(|u| u.role) != Some(user.role) {
            tracing::info!(role = %user.role, "role changed; re-syncing the mirror");
            self.mirror.change_role(user).await?;
        }
        Ok(())
    }
}
