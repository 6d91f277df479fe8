//! What this machine knows about its users without opening any mirror:
//! `desk.json` in the data directory (0600), plaintext by design, holding no
//! patient data, no token and no password hash — only which users have an
//! encrypted mirror here, under which server, and who was last signed in.
//! Each user's mirror lives in `users/<user id>/` beside its wrapped key.

use crate::error::{ClientError, ClientResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The file's name in the data directory.
pub(crate) const FILE_NAME: &str = "desk.json";
/// Wrong passwords an offline sign-in may take before this machine needs
/// the server again for that user.
pub(crate) const OFFLINE_ATTEMPTS: u32 = 5;

/// A user who has a mirror on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KnownUser {
    /// Login name.
    pub username: String,
    /// Name shown on the sign-in screen.
    pub display_name: String,
    /// Their role when they last signed in here.
    pub role: clinic_shared::model::Role,
    /// The server the mirror syncs with.
    pub server_url: String,
    /// Wrong offline passwords in a row (reset by a right one, or an online
    /// sign-in).
    #[serde(default)]
    pub failed_offline: u32,
    /// False once the server ended this user's sessions: the next sign-in
    /// needs the server.
    #[serde(default = "yes")]
    pub offline_allowed: bool,
}

fn yes() -> bool {
    true
}

/// `desk.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeskFile {
    /// Format version.
    pub v: u32,
    /// Names this installation's entries in the OS key store.
    pub install_id: Uuid,
    /// Who signed in last (their mirror opens at start when the key store
    /// has its key).
    pub last_user: Option<Uuid>,
    /// Users with a mirror here.
    pub users: BTreeMap<Uuid, KnownUser>,
}

impl DeskFile {
    /// Reads `desk.json` in `dir`, or starts a new one.
    pub(crate) fn load(dir: &Path) -> ClientResult<DeskFile> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ClientError::Corrupt {
                detail: format!("{} is damaged", path.display()),
                source: Some(Box::new(e)),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeskFile {
                v: 1,
                install_id: Uuid::now_v7(),
                last_user: None,
                users: BTreeMap::new(),
            }),
            Err(source) => Err(ClientError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Writes it back.
    pub(crate) fn save(&self, dir: &Path) -> ClientResult<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::files::write_private(&dir.join(FILE_NAME), &bytes)
    }

    /// The user with this login name under this server, if known here.
    pub(crate) fn find(&self, username: &str, server_url: &str) -> Option<(Uuid, &KnownUser)> {
        self.users
            .iter()
            .find(|(_, u)| {
                u.username.eq_ignore_ascii_case(username.trim()) && u.server_url == server_url
            })
            .map(|(id, u)| (*id, u))
    }

    /// The key store name of `user`'s mirror key.
    pub(crate) fn key_name(&self, user: Uuid) -> String {
        format!("{}/{user}", self.install_id)
    }
}

/// `user`'s folder in the data directory.
pub(crate) fn user_dir(data_dir: &Path, user: Uuid) -> PathBuf {
    data_dir.join("users").join(user.to_string())
}

/// The wrapped key's file in a user's folder.
pub(crate) fn wrapped_key_file(user_dir: &Path) -> PathBuf {
    user_dir.join("key.wrapped")
}
