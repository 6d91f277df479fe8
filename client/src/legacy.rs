//! Mirrors from before encryption: one plaintext `clinic-client.db` in the
//! data directory. At start, when the OS key store works, it is copied into
//! its user's encrypted mirror (`sqlcipher_export`, queued changes
//! included) under a new key kept in the key store, and the plaintext files
//! are overwritten and removed. The key is wrapped with the password at the
//! user's next online sign-in (offline sign-in needs that once). Without a
//! key store the plaintext file stays until a person removes it or the key
//! store becomes available; that is logged.

use crate::error::{ClientError, ClientResult};
use crate::mirror::schema;
use crate::session::desk::{self, KnownUser};
use crate::session::keys::MirrorKey;
use crate::users::Users;
use clinic_shared::model::Staff;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

/// The signed-in user recorded in a plaintext mirror, and its server.
fn legacy_user(path: &Path) -> ClientResult<Option<(Staff, String)>> {
    let conn = Connection::open(path)?;
    let get = |key: &str| -> ClientResult<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let (Some(user), Some(server)) = (get("user")?, get("server_url")?) else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_str(&user)?, server)))
}

/// Migrates the plaintext mirror in `users.data_dir`, if there is one.
pub(crate) async fn migrate(users: &Users) -> ClientResult<()> {
    let legacy = users.data_dir.join(schema::FILE_NAME);
    if !legacy.exists() {
        return Ok(());
    }
    let Some((user, server_url)) = legacy_user(&legacy)? else {
        // Nobody ever signed in: nothing of the clinic is in it.
        for file in schema::files(&users.data_dir) {
            crate::files::shred(&file)?;
        }
        return Ok(());
    };
    let key = MirrorKey::generate();
    let name = users.desk().key_name(user.id);
    let (secrets, secret) = (users.secrets.clone(), key.secret_copy());
    let stored = tokio::task::spawn_blocking(move || secrets.set(&name, secret.as_slice()))
        .await
        .map_err(|_| ClientError::Stopped("key handling"))?;
    if let Err(e) = stored {
        tracing::warn!(error = %e, file = %legacy.display(), "an unencrypted mirror from an older version stays until the key store can be used");
        return Ok(());
    }
    let dir = desk::user_dir(&users.data_dir, user.id);
    crate::files::private_dir(&dir)?;
    let target = dir.join(schema::FILE_NAME);
    {
        let conn = Connection::open(&legacy)?;
        conn.execute(
            "ATTACH DATABASE ?1 AS encrypted KEY ?2",
            rusqlite::params![target.to_string_lossy(), key.pragma().as_str()],
        )?;
        conn.query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))?;
        conn.execute_batch("DETACH DATABASE encrypted")?;
    }
    for file in schema::files(&users.data_dir) {
        crate::files::shred(&file)?;
    }
    users.desk_update(|d| {
        d.last_user = Some(user.id);
        d.users.insert(
            user.id,
            KnownUser {
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                role: user.role,
                server_url,
                failed_offline: 0,
                offline_allowed: true,
            },
        );
    })?;
    tracing::info!("the local data was encrypted (migrated from an older version)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{SystemClock, V7Ids};
    use crate::session::keys::OsKeyStore;
    use crate::sync::SyncConfig;
    use std::sync::Arc;

    /// An unencrypted mirror as the previous version left it: one signed-in
    /// user, one patient, one queued change.
    fn legacy_mirror(dir: &Path, user: &Staff) -> uuid::Uuid {
        let mut conn = Connection::open(dir.join(schema::FILE_NAME)).unwrap();
        schema::migrate(&mut conn).unwrap();
        let patient = uuid::Uuid::now_v7();
        conn.execute_batch(&format!(
            "INSERT INTO meta VALUES ('client_id', '{}'), ('server_url', 'https://clinic.example'),
                ('token', 'legacy-token'), ('user', '{}'), ('next_mutation_id', '2');
             INSERT INTO visible VALUES ('patients', '{patient}', 0, 0,
                '{{\"id\":\"{patient}\",\"first_name\":\"Old\",\"last_name\":\"Plaintext\",\"date_of_birth\":\"1950-01-01\"}}', 1);
             INSERT INTO outbox VALUES (1, '{{\"type\":\"create_patient\",\"args\":{{\"id\":\"{patient}\",\"first_name\":\"Old\",\"last_name\":\"Plaintext\",\"date_of_birth\":\"1950-01-01\"}}}}', '2026-01-01T00:00:00Z', NULL);
             INSERT INTO outbox_rows VALUES (1, 'patients', '{patient}');",
            uuid::Uuid::now_v7(),
            serde_json::to_string(user).unwrap().replace('\'', "''"),
        ))
        .unwrap();
        patient
    }

    #[tokio::test]
    async fn an_unencrypted_mirror_is_encrypted_at_start_with_its_queue() {
        assert!(
            std::env::var_os("CLINIC_KEYRING_READY").is_some()
                || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
            "needs a Secret Service: run under scripts/with-keyring.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let user = Staff {
            id: uuid::Uuid::now_v7(),
            username: "legacy".into(),
            display_name: "Leg Acy".into(),
            role: clinic_shared::model::Role::Reception,
            active: true,
        };
        let patient = legacy_mirror(dir.path(), &user);
        let transport = Arc::new(
            crate::transport::NetTransport::new(
                std::time::Duration::from_secs(5),
                crate::transport::tls::Trust::new(vec![], None),
            )
            .unwrap(),
        );
        let users = Users::start(
            dir.path().to_path_buf(),
            SyncConfig::default(),
            Arc::new(SystemClock),
            Arc::new(V7Ids),
            transport,
            Arc::new(OsKeyStore),
        )
        .await
        .unwrap();
        for file in schema::files(dir.path()) {
            assert!(!file.exists(), "{} is gone", file.display());
        }
        let migrated = desk::user_dir(dir.path(), user.id).join(schema::FILE_NAME);
        let bytes = std::fs::read(&migrated).unwrap();
        assert!(!bytes.windows(15).any(|w| w == b"SQLite format 3"));
        assert!(!bytes.windows(9).any(|w| w == b"Plaintext"));
        let open = users.current().expect("the migrated mirror is open");
        let pending = open.mirror.pending().await.unwrap();
        assert_eq!(pending.len(), 1, "the queued change survived");
        assert!(
            open.reader
                .row(clinic_shared::model::Table::Patients, patient)
                .await
                .unwrap()
                .is_some()
        );
        let identity = open.mirror.identity().await.unwrap();
        assert_eq!(identity.token.as_deref(), Some("legacy-token"));
        assert_eq!(users.desk().last_user, Some(user.id));
        users.wipe(user.id).await.unwrap();
    }
}
