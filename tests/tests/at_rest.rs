//! A desk's data at rest, against the real server and a real Secret
//! Service (run under `scripts/with-keyring.sh`): what is on disk after a
//! sync reveals no patient, token or SQLite header and is private to the
//! user; sign-out removes it; a disabled account cannot sign in offline and
//! its data goes; a revoked session ends offline sign-in; a desk reopens
//! from the key store, or with the password when the key store lost the key.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_client::{ClientConfig, ClientError, ClinicClient};
use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::mutation::{CreatePatient, Mutation};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn desk(_server: &Server, dir: &Path) -> ClinicClient {
    let ca = write_trusted_cas(&dir.with_extension("ca.pem"));
    ClinicClient::open(ClientConfig::new(dir).with_ca_files(vec![ca]))
        .await
        .unwrap()
}

/// The secret the desk's mirror key is under, read back through the same
/// OS key store (to prove it is there, and to take it away).
struct OsStore;
impl OsStore {
    fn entries(dir: &Path) -> Vec<String> {
        let desk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("desk.json")).unwrap()).unwrap();
        let install = desk["install_id"].as_str().unwrap().to_owned();
        desk["users"]
            .as_object()
            .unwrap()
            .keys()
            .map(|user| format!("{install}/{user}"))
            .collect()
    }
}

/// Reads the OS key store as another program on this account would (off
/// the async workers: its D-Bus client blocks).
async fn keyring_get(name: &str) -> Option<Vec<u8>> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        keyring::Entry::new("org.clinicsync.desk", &name)
            .unwrap()
            .get_secret()
            .ok()
    })
    .await
    .unwrap()
}

async fn keyring_delete(name: &str) {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        keyring::Entry::new("org.clinicsync.desk", &name)
            .unwrap()
            .delete_credential()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_desk_keeps_nothing_readable_on_disk_and_sign_out_removes_it() {
    let server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let client = desk(&server, &dir).await;
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    client.sync_once().await.unwrap();
    // Something of the demo clinic, and something of our own.
    let patients = client.patients().await.unwrap();
    assert!(patients.len() > 10);
    let known = patients[0].data.last_name.clone();
    let id = client.new_id();
    client
        .mutate(Mutation::CreatePatient(CreatePatient {
            id,
            first_name: "Quintessa".into(),
            last_name: "Marchbanks".into(),
            date_of_birth: "1977-07-07".parse().unwrap(),
            phone: Some("+1 555 867 5309".into()),
            email: None,
            address: None,
            sex: None,
            emergency_contact: None,
            emergency_phone: None,
            insurer: None,
            insurance_number: None,
            alerts: None,
        }))
        .await
        .unwrap();
    client.sync_once().await.unwrap();
    // The desk's bearer token is 64 hex digits (the server keeps only its
    // hash): no file of the desk may hold such a run.
    client.stop().await;
    let files = files_under(&dir);
    assert!(files.iter().any(|f| f.ends_with("clinic-client.db")));
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.display();
        assert!(
            !contains(&bytes, b"SQLite format 3"),
            "{name} is plain SQLite"
        );
        assert!(
            !contains(&bytes, known.as_bytes()),
            "{name} holds a patient's name"
        );
        assert!(
            !contains(&bytes, b"Marchbanks"),
            "{name} holds a patient's name"
        );
        assert!(
            !contains(&bytes, b"867 5309"),
            "{name} holds a phone number"
        );
        assert!(
            !bytes
                .windows(64)
                .any(|w| w.iter().all(|b| b.is_ascii_hexdigit())),
            "{name} holds something shaped like a token"
        );
        #[cfg(unix)]
        assert_eq!(mode(file), 0o600, "{name} is private");
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("users")), 0o700);
    }
    // The key is in the OS key store.
    let entries = OsStore::entries(&dir);
    assert_eq!(entries.len(), 1);
    assert_eq!(keyring_get(&entries[0]).await.map(|k| k.len()), Some(32));

    // Reopened (a restart), the desk opens from the key store.
    drop(client);
    let client = desk(&server, &dir).await;
    assert!(client.identity().await.unwrap().signed_in);
    assert!(client.row(Table::Patients, id).await.unwrap().is_some());

    // Sign-out removes the mirror, its key file and its key store entry.
    client.sign_out(false).await.unwrap();
    let left: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|f| f.starts_with(dir.join("users")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(keyring_get(&entries[0]).await, None);
    assert!(matches!(
        client.patients().await,
        Err(ClientError::NotSignedIn)
    ));
}

#[tokio::test]
async fn a_disabled_account_cannot_sign_in_offline_and_its_data_goes() {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let client = desk(&server, &dir).await;
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    client.start();
    wait_until(&client, "synced", || async {
        client.sync_state().await.is_ok_and(|s| s.synced_once)
    })
    .await;
    let started = std::time::Instant::now();
    let out = server.admin(&["user", "disable", "reception"], None);
    assert!(out.status.success());
    wait_until(&client, "the data to go", || async {
        !dir.join("users").exists()
            || std::fs::read_dir(dir.join("users"))
                .unwrap()
                .next()
                .is_none()
    })
    .await;
    eprintln!("disabled → local data removed in {:?}", started.elapsed());
    assert!(!client.identity().await.unwrap().signed_in);
    // Offline, nothing here lets reception in any more.
    server.kill();
    let refused = client.sign_in(&server.base, "reception", "demo").await;
    assert!(
        matches!(refused, Err(ClientError::Offline { .. })),
        "{refused:?}"
    );
    client.stop().await;
}

#[tokio::test]
async fn a_revoked_session_ends_offline_sign_in_and_keeps_the_queue_for_the_next_sign_in() {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let client = desk(&server, &dir).await;
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    client.sync_once().await.unwrap();
    // A change waits (the desk is not syncing), then the sessions end.
    let id = client.new_id();
    client
        .mutate(Mutation::CreatePatient(CreatePatient {
            id,
            first_name: "Queued".into(),
            last_name: "Beforerevoke".into(),
            date_of_birth: "1980-01-01".parse().unwrap(),
            phone: None,
            email: None,
            address: None,
            sex: None,
            emergency_contact: None,
            emergency_phone: None,
            insurer: None,
            insurance_number: None,
            alerts: None,
        }))
        .await
        .unwrap();
    let out = server.admin(&["user", "end-sessions", "reception"], None);
    assert!(out.status.success());
    client.start();
    wait_until(&client, "the session to end", || async {
        !client.identity().await.unwrap().signed_in
    })
    .await;
    // The queued change is still here, locked away; offline sign-in is off.
    server.kill();
    let refused = client.sign_in(&server.base, "reception", "demo").await;
    assert!(
        matches!(&refused, Err(ClientError::Auth(m)) if m.contains("needs the server")),
        "{refused:?}"
    );
    server.start_again();
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    wait_until(&client, "the queue to be sent", || async {
        client.queue_stats().await.is_ok_and(|q| q.pending == 0)
    })
    .await;
    let api = Api::login(&server, "reception").await;
    assert!(api.table(Table::Patients).await.contains_key(&id));
    client.stop().await;
}

#[tokio::test]
async fn without_the_key_store_entry_the_password_opens_the_desk() {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let client = desk(&server, &dir).await;
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    client.sync_once().await.unwrap();
    let count = client.patients().await.unwrap().len();
    drop(client);
    // The key store loses the key (another machine account, a reset).
    for name in OsStore::entries(&dir) {
        keyring_delete(&name).await;
    }
    let client = desk(&server, &dir).await;
    assert!(
        !client.identity().await.unwrap().signed_in,
        "locked until the password"
    );
    assert!(client.patients().await.is_err());
    server.kill();
    let wrong = client.sign_in(&server.base, "reception", "not-demo").await;
    assert!(matches!(wrong, Err(ClientError::Auth(_))), "{wrong:?}");
    let offline = client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    assert!(offline.offline);
    assert_eq!(client.patients().await.unwrap().len(), count);
}

/// Waits until `cond` holds, re-checking on every change the client
/// reports (store events, status changes), bounded.
async fn wait_until<F, Fut>(client: &ClinicClient, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut events = client.subscribe();
    let mut status = client.status();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        tokio::select! {
            _ = events.recv() => {}
            _ = status.changed() => {}
            () = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}"),
        }
    }
}

/// A desk dropped without `close()` has closed its database when the drop
/// returns (SQLite removes the WAL with the last connection). A program
/// that then returns from `main` must not have a connection still closing
/// on another thread: SQLCipher's exit handler frees the memory that close
/// frees (a benchmark child died of "double free or corruption" that way).
#[tokio::test]
async fn a_dropped_desk_has_closed_its_database_when_the_drop_returns() {
    let server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let client = desk(&server, &dir).await;
    client
        .sign_in(&server.base, "doctor", "demo")
        .await
        .unwrap();
    client.sync_once().await.unwrap();
    let db = client.database_file().unwrap();
    let side = |suffix: &str| {
        let mut name = db.file_name().unwrap().to_os_string();
        name.push(suffix);
        db.with_file_name(name)
    };
    assert!(side("-wal").exists(), "the synced desk has no WAL to check");
    drop(client);
    assert!(
        !side("-wal").exists(),
        "a connection was still open after the drop"
    );
    assert!(
        !side("-shm").exists(),
        "a connection was still open after the drop"
    );
}
