//! The session: who is signed in on this machine, with which token, and the
//! one policy every front end follows for signing in, signing out and a
//! session the server ended.
//!
//! - **Sign in** online: the server checks the password and gives a token;
//!   an Argon2id hash of the password is kept (never the password) so the
//!   same user can sign in here again while the server cannot be reached.
//! - **Sign in offline**: only the user who last signed in here, against
//!   that hash; the password stays in memory until the server can be asked
//!   for a token (the sync loop does that, see [`Session::resume_online`]).
//! - **Sign out** (a person's choice): the server session ends and the local
//!   copy of the clinic's data is removed from this machine; refused while
//!   changes are unsent, unless the person chose to discard them.
//! - **Session ended by the server** (expired, revoked): the token is
//!   dropped, the mirror and its queue stay for the same user's next sign-in.

use crate::error::{ClientError, ClientResult};
use crate::mirror::{Mirror, OfflineVerifier};
use crate::transport::Transport;
use crate::types::Identity;
use clinic_shared::model::Staff;
use clinic_shared::protocol::LoginRequest;
use std::sync::{Arc, Mutex};

/// What an offline sign-in needs to become an online one.
#[derive(Clone)]
struct Credentials {
    server_url: String,
    username: String,
    password: String,
}

/// The session layer.
pub(crate) struct Session {
    mirror: Arc<Mirror>,
    transport: Arc<dyn Transport>,
    /// A sign-in accepted offline (against the stored verifier), kept in
    /// memory only, until the server can be asked for a token.
    offline: Mutex<Option<Credentials>>,
}

/// Where a sign-in ended up.
pub(crate) enum SignedIn {
    /// With a token from the server.
    Online(Staff),
    /// Against this machine's verifier; the server is asked later.
    Offline(Staff),
}

impl Session {
    pub(crate) fn new(mirror: Arc<Mirror>, transport: Arc<dyn Transport>) -> Session {
        Session {
            mirror,
            transport,
            offline: Mutex::new(None),
        }
    }

    fn offline_slot(&self) -> std::sync::MutexGuard<'_, Option<Credentials>> {
        // The slot holds plain data; a panic elsewhere cannot leave it torn.
        self.offline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who is signed in here; a user signed in offline counts as signed in.
    pub(crate) async fn identity(&self) -> ClientResult<Identity> {
        let stored = self.mirror.identity().await?;
        let offline = stored.token.is_none() && self.signed_in_offline();
        Ok(Identity {
            client_id: stored.client_id,
            server_url: stored.server_url,
            user: stored.user,
            signed_in: stored.token.is_some() || offline,
            offline,
        })
    }

    /// Whether the user signed in offline and no token was had yet.
    pub(crate) fn signed_in_offline(&self) -> bool {
        self.offline_slot().is_some()
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

    /// Signs in: online when the server answers; offline (see the module
    /// docs) when it cannot be reached and `username` signed in here last.
    pub(crate) async fn sign_in(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<SignedIn> {
        let server_url = server_url.trim().trim_end_matches('/').to_owned();
        match self.sign_in_online(&server_url, username, password).await {
            Ok(user) => Ok(SignedIn::Online(user)),
            Err(ClientError::Offline { reason, source }) => {
                match self
                    .sign_in_offline(&server_url, username, password)
                    .await?
                {
                    Some(user) => Ok(SignedIn::Offline(user)),
                    None => Err(ClientError::Offline { reason, source }),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn sign_in_online(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<Staff> {
        let request = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let login = self.transport.login(server_url, &request).await?;
        // For the next sign-in without the server. Hashing is slow (Argon2id).
        let given = password.to_owned();
        let hash =
            tokio::task::spawn_blocking(move || clinic_shared::password::hash_password(&given))
                .await
                .map_err(|_| ClientError::Stopped("password hashing"))?;
        let verifier = match hash {
            Ok(hash) => Some(OfflineVerifier {
                username: username.trim().to_owned(),
                hash,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no offline sign-in verifier kept");
                None
            }
        };
        self.mirror
            .sign_in(
                server_url.to_owned(),
                login.token,
                login.user.clone(),
                login.time_zone,
                verifier,
            )
            .await?;
        *self.offline_slot() = None;
        Ok(login.user)
    }

    /// `Some(user)` when the stored verifier accepts the password; `None`
    /// when there is nothing to check against (another user, another
    /// server); `Auth` for a wrong password.
    async fn sign_in_offline(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<Option<Staff>> {
        let same_server = self.mirror.identity().await?.server_url.as_deref() == Some(server_url);
        let Some((user, hash)) = self
            .mirror
            .offline_verifier(username.to_owned())
            .await?
            .filter(|_| same_server)
        else {
            return Ok(None);
        };
        let given = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            clinic_shared::password::password_matches(&given, &hash)
        })
        .await
        .map_err(|_| ClientError::Stopped("password check"))?;
        if !matches {
            return Err(ClientError::Auth(
                "wrong username or password (checked on this computer: the server cannot be reached)"
                    .into(),
            ));
        }
        tracing::info!("signed in offline; the server will be asked for a token when it answers");
        *self.offline_slot() = Some(Credentials {
            server_url: server_url.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        });
        Ok(Some(user))
    }

    /// For a user signed in offline: asks the server for a token. `Ok(true)`
    /// when it gave one, `Ok(false)` when there was nothing to resume;
    /// `Offline` when the server still cannot be reached. Any other refusal
    /// (the password changed, the account was disabled) ends the offline
    /// sign-in; queued changes stay.
    pub(crate) async fn resume_online(&self) -> ClientResult<bool> {
        let Some(c) = self.offline_slot().clone() else {
            return Ok(false);
        };
        match self
            .sign_in_online(&c.server_url, &c.username, &c.password)
            .await
        {
            Ok(_) => Ok(true),
            Err(e @ ClientError::Offline { .. }) => Err(e),
            Err(e) => {
                tracing::info!("offline sign-in refused by the server");
                *self.offline_slot() = None;
                Err(e)
            }
        }
    }

    /// The server refused or expired the token: drop it, keep the mirror
    /// and its queue for the same user's next sign-in.
    pub(crate) async fn ended_by_server(&self) -> ClientResult<()> {
        tracing::info!("sign-in refused or expired; holding changes until the user signs in");
        self.mirror.drop_token().await
    }

    /// A person signs out: the server session ends (best effort) and the
    /// clinic's data leaves this machine. Refused, with nothing changed,
    /// while changes are unsent, unless `discard_pending`.
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
        *self.offline_slot() = None;
        self.mirror.wipe(discard_pending).await
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
