//! A desk whose mirror is damaged (issue 16, item 6), against the real
//! server and a real Secret Service (run under `scripts/with-keyring.sh`):
//! pages of the real SQLCipher file are overwritten while the desk is
//! closed, as a failing disk would; at the next start the desk sets the file
//! aside, keeps the unsent changes it can still read (they reach the server
//! exactly once), names those it cannot, re-syncs, and says so once. A wrong
//! key or a wrong password on an intact mirror moves nothing.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_client::{ClientConfig, ClientError, ClinicClient, MirrorRebuilt};
use clinic_e2e::*;
use clinic_shared::model::Table;
use clinic_shared::mutation::{CreatePatient, Mutation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use uuid::Uuid;

async fn desk(dir: &Path) -> DeskResult {
    let ca = write_trusted_cas(&dir.with_extension("ca.pem"));
    ClinicClient::open(ClientConfig::new(dir).with_ca_files(vec![ca])).await
}

type DeskResult = Result<ClinicClient, ClientError>;

/// The one user folder of the desk in `dir`, and its key store name.
fn user_dir(dir: &Path) -> (PathBuf, String) {
    let desk: Value =
        serde_json::from_slice(&std::fs::read(dir.join("desk.json")).unwrap()).unwrap();
    let install = desk["install_id"].as_str().unwrap().to_owned();
    let users = desk["users"].as_object().unwrap();
    assert_eq!(users.len(), 1);
    let user = users.keys().next().unwrap().clone();
    (dir.join("users").join(&user), format!("{install}/{user}"))
}

async fn keyring_get(name: &str) -> Vec<u8> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        keyring::Entry::new("org.clinicsync.desk", &name)
            .unwrap()
            .get_secret()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn keyring_set(name: &str, secret: Vec<u8>) {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        keyring::Entry::new("org.clinicsync.desk", &name)
            .unwrap()
            .set_secret(&secret)
            .unwrap()
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

fn patient(first: &str, last: &str, address_len: usize) -> CreatePatient {
    CreatePatient {
        id: Uuid::now_v7(),
        first_name: first.into(),
        last_name: last.into(),
        date_of_birth: "1981-03-04".parse().unwrap(),
        phone: None,
        email: None,
        address: (address_len > 0).then(|| "x".repeat(address_len)),
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    }
}

/// Signs in, syncs, stops the server, then (offline) opens one chart (a
/// queued view) and queues `count` new patients named `<prefix>NN <last>`,
/// and closes the desk. The server stays down. Returns the patients' ids and names, and the patient
/// whose chart was opened.
async fn queue_offline(
    server: &mut Server,
    dir: &Path,
    prefix: &str,
    last: &str,
    count: usize,
    address_len: usize,
) -> (Vec<(Uuid, String)>, Uuid) {
    let client = desk(dir).await.unwrap();
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    client.sync_once().await.unwrap();
    server.kill();
    let some = client.patients().await.unwrap()[0].id;
    client.report_view(Table::Patients, some).await.unwrap();
    let mut made = Vec::new();
    for i in 0..count {
        let p = patient(&format!("{prefix}{i:02}"), last, address_len);
        made.push((p.id, format!("{} {}", p.first_name, p.last_name)));
        client.mutate(Mutation::CreatePatient(p)).await.unwrap();
    }
    assert_eq!(client.queue_stats().await.unwrap().pending, count as u64);
    client.close().await;
    (made, some)
}

/// The mirror's raw key, its page size and the pages of `table` (leaf
/// pages, or all), read with the key as SQLCipher would.
fn pages_of(db: &Path, key: &[u8], table: &str, leaves_only: bool) -> (usize, Vec<u32>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    conn.pragma_update(None, "key", format!("x'{hex}'"))
        .unwrap();
    // SQLCipher answers `page_size` as text.
    let page_size: String = conn
        .query_row("PRAGMA cipher_page_size", [], |r| r.get(0))
        .unwrap();
    let sql = if leaves_only {
        "SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = 'leaf' ORDER BY pageno"
    } else {
        "SELECT pageno FROM dbstat WHERE name = ?1 ORDER BY pageno"
    };
    let pages: Vec<u32> = conn
        .prepare(sql)
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    assert!(!pages.is_empty(), "{table} has pages");
    (page_size.parse().unwrap(), pages)
}

/// Flips 64 bytes in the middle of page `page` (1-based): its HMAC then
/// fails, as a bad sector would make it.
fn damage_page(db: &Path, page_size: usize, page: u32) {
    let mut bytes = std::fs::read(db).unwrap();
    let start = (page as usize - 1) * page_size + page_size / 2;
    for b in &mut bytes[start..start + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(db, bytes).unwrap();
}

fn aside_files(user_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(user_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    v.sort();
    v
}

type Rows = BTreeMap<(Table, Uuid), (u64, bool, Option<Value>)>;

async fn server_rows(api: &Api) -> Rows {
    let (rows, _) = api.pull_all(0).await;
    rows.into_iter()
        .map(|r| ((r.table, r.id), (r.version, r.deleted, r.data)))
        .collect()
}

async fn desk_rows(client: &ClinicClient, visible: bool) -> Rows {
    client
        .dump(visible)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, id, v, d, data)| ((t, id), (v, d, if d { None } else { data })))
        .collect()
}

/// Syncs until nothing is pending (a bounded number of rounds).
async fn sync_until_settled(client: &ClinicClient) {
    for _ in 0..5 {
        if client.sync_once().await.unwrap().pending == 0 {
            return;
        }
    }
    panic!("still pending: {:?}", client.queue_stats().await.unwrap());
}

/// How many times the server applied a change to `id` (its history, as
/// an administrator reads it).
async fn times_applied(api: &Api, id: Uuid) -> usize {
    let response = api
        .get(&format!("/v1/history/patients/{id}"))
        .send()
        .await
        .unwrap();
    if response.status() == 404 {
        return 0;
    }
    assert_eq!(response.status(), 200);
    let history: Value = response.json().await.unwrap();
    history["entries"].as_array().unwrap().len()
}

/// After a rebuild: the desk holds exactly the server's rows.
async fn assert_converged(server: &Server, client: &ClinicClient) {
    let server_now = server_rows(&Api::login(server, "reception").await).await;
    assert_eq!(desk_rows(client, false).await, server_now, "confirmed rows");
    assert_eq!(
        desk_rows(client, true).await,
        server_now,
        "what the desk shows"
    );
}

#[tokio::test]
async fn a_damaged_table_page_keeps_every_queued_change_and_resyncs() {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let (made, viewed) = queue_offline(&mut server, &dir, "Keptone", "Salvage", 3, 0).await;
    let (udir, key_name) = user_dir(&dir);
    let db = udir.join("clinic-client.db");
    let key = keyring_get(&key_name).await;
    // A page of the server's rows (not the queue's, not the metadata's).
    let (page_size, pages) = pages_of(&db, &key, "confirmed", true);
    damage_page(&db, page_size, pages[pages.len() / 2]);
    server.start_again();

    let started = Instant::now();
    let client = desk(&dir).await.unwrap();
    eprintln!(
        "damaged mirror set aside and rebuilt at start in {:?}",
        started.elapsed()
    );
    let notice: MirrorRebuilt = client.status_now().mirror_rebuilt.expect("a notice");
    eprintln!("NOTICE {}", notice.sentence("now"));
    assert_eq!(notice.kept, 3, "{notice:?}");
    assert!(notice.lost.is_empty() && !notice.lost_unknown, "{notice:?}");
    assert_eq!(notice.views_lost, 0);
    // The damaged file is kept (with the `-wal`/`-shm` SQLite keeps beside
    // it while it is read back).
    let aside: Vec<PathBuf> = aside_files(&udir)
        .into_iter()
        .filter(|p| {
            !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm")
        })
        .collect();
    assert_eq!(
        aside,
        vec![PathBuf::from(&notice.aside)],
        "the damaged file is kept"
    );
    assert!(
        aside[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("clinic-client.db.corrupt-")
    );
    assert!(db.exists(), "a new mirror in its place");
    // Still signed in, the queue is shown before any sync.
    assert!(client.identity().await.unwrap().signed_in);
    assert_eq!(client.queue_stats().await.unwrap().pending, 3);
    for (id, _) in &made {
        assert!(client.row(Table::Patients, *id).await.unwrap().is_some());
    }

    sync_until_settled(&client).await;
    let api = Api::login(&server, "admin").await;
    for (id, name) in &made {
        assert_eq!(times_applied(&api, *id).await, 1, "{name} applied once");
    }
    assert_converged(&server, &client).await;
    // The chart opened before the damage reached the access log.
    let log: Value = api
        .get(&format!("/v1/audit/access?patient={viewed}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "view"),
        "{log}"
    );
    // Told once: dismissed, it stays dismissed across a restart.
    client.dismiss_mirror_rebuilt().await.unwrap();
    assert_eq!(client.status_now().mirror_rebuilt, None);
    client.close().await;
    drop(client);
    let client = desk(&dir).await.unwrap();
    assert_eq!(client.status_now().mirror_rebuilt, None);
    assert_eq!(client.mirror_rebuilt().await.unwrap(), None);
    assert_eq!(
        aside_files(&udir).len(),
        3,
        "a sound mirror is not set aside: only the first one's files"
    );
    client.close().await;
}

#[tokio::test]
async fn a_damaged_queue_page_names_what_was_lost_and_the_rest_is_sent_once() {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    // Long addresses spread the queue over several pages.
    let (made, _) = queue_offline(&mut server, &dir, "Queued", "Spread", 24, 1500).await;
    let (udir, key_name) = user_dir(&dir);
    let db = udir.join("clinic-client.db");
    let key = keyring_get(&key_name).await;
    let (page_size, leaves) = pages_of(&db, &key, "outbox", true);
    assert!(leaves.len() >= 3, "the queue spans pages: {leaves:?}");
    // One page in the middle of the queue: entries before and after it
    // survive.
    damage_page(&db, page_size, leaves[leaves.len() / 2]);
    server.start_again();

    let client = desk(&dir).await.unwrap();
    let notice = client.status_now().mirror_rebuilt.expect("a notice");
    eprintln!("NOTICE {}", notice.sentence("now"));
    assert!(!notice.lost.is_empty() && notice.kept > 0, "{notice:?}");
    assert_eq!(
        notice.kept as usize + notice.lost.len(),
        made.len(),
        "{notice:?}"
    );
    assert!(!notice.lost_unknown);
    // Each lost change is named: what and whose.
    let lost: Vec<&(Uuid, String)> = made
        .iter()
        .filter(|(_, name)| {
            notice
                .lost
                .iter()
                .any(|l| l.ends_with(&format!("for {name}")))
        })
        .collect();
    assert_eq!(lost.len(), notice.lost.len(), "{:?}", notice.lost);
    assert!(
        notice
            .lost
            .iter()
            .all(|l| l.starts_with("a patient's record"))
    );

    // The kept ones reach the server once each (the lost ones' ids were
    // closed up: nothing waits behind a gap), the lost ones not at all.
    sync_until_settled(&client).await;
    let api = Api::login(&server, "admin").await;
    for (id, name) in &made {
        let expected = usize::from(!lost.iter().any(|(l, _)| l == id));
        assert_eq!(times_applied(&api, *id).await, expected, "{name}");
    }
    // A change made now is accepted next in line.
    let after = patient("Afterwards", "Spread", 0);
    let after_id = after.id;
    let receipt = client.mutate(Mutation::CreatePatient(after)).await.unwrap();
    sync_until_settled(&client).await;
    assert_eq!(times_applied(&api, after_id).await, 1);
    assert_eq!(
        receipt.mutation_id,
        notice.kept + 1,
        "next after the kept ones"
    );
    assert_converged(&server, &client).await;
    client.close().await;
}

#[tokio::test]
async fn an_unreadable_file_is_set_aside_the_desk_starts_and_the_cli_says_so_once() {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let (made, _) = queue_offline(&mut server, &dir, "Gone", "Header", 2, 0).await;
    let (udir, _) = user_dir(&dir);
    let db = udir.join("clinic-client.db");
    // The first page (after its salt): nothing in the file can be read.
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..400] {
        *b ^= 0x5A;
    }
    std::fs::write(&db, bytes).unwrap();

    // The CLI starts, rebuilds, and says it once (on stderr).
    let ca = write_trusted_cas(&dir.with_extension("ca.pem"));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin("clinic"))
            .arg("--data-dir")
            .arg(&dir)
            .env("CLINIC_CA_FILE", &ca)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = cli(&["status"]);
    eprintln!("CLI: {first}");
    assert!(
        first.contains("was damaged and has been rebuilt from the server"),
        "{first}"
    );
    assert!(first.contains("could not be read"), "{first}");
    let aside = aside_files(&udir);
    assert_eq!(
        aside.len(),
        1,
        "nothing read it, so no -wal/-shm: {aside:?}"
    );
    assert!(
        first.contains(&aside[0].display().to_string()),
        "names the file"
    );
    let second = cli(&["status"]);
    assert!(!second.contains("damaged"), "said once: {second}");

    // The desk starts; nothing of the old file could be read, so it asks
    // for a sign-in; then it re-syncs from the server.
    server.start_again();
    let client = desk(&dir).await.unwrap();
    assert!(!client.identity().await.unwrap().signed_in);
    client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    sync_until_settled(&client).await;
    let api = Api::login(&server, "admin").await;
    for (id, name) in &made {
        assert_eq!(times_applied(&api, *id).await, 0, "{name} was lost");
    }
    assert_converged(&server, &client).await;
    client.close().await;
}

/// The files of a user folder with their contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_wrong_key_or_password_on_a_sound_mirror_moves_nothing_and_a_clean_start_pays_only_the_check()
 {
    let mut server = Server::start_tls();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("desk");
    let _ = queue_offline(&mut server, &dir, "Intact", "Keys", 2, 0).await;
    let (udir, key_name) = user_dir(&dir);
    let key = keyring_get(&key_name).await;

    // A clean start: the quick check passes, nothing is moved, no notice.
    let before = snapshot(&udir);
    let started = Instant::now();
    let client = desk(&dir).await.unwrap();
    eprintln!(
        "clean mirror opened (quick_check included) in {:?}",
        started.elapsed()
    );
    assert_eq!(client.status_now().mirror_rebuilt, None);
    assert_eq!(client.queue_stats().await.unwrap().pending, 2);
    client.close().await;
    drop(client);
    assert!(aside_files(&udir).is_empty());
    assert_eq!(
        snapshot(&udir).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );

    // Another key in the key store: the existing error, nothing renamed or
    // changed.
    let before = snapshot(&udir);
    keyring_set(&key_name, vec![7u8; 32]).await;
    let opened = desk(&dir).await;
    assert!(
        matches!(opened, Err(ClientError::Corrupt { .. })),
        "{:?}",
        opened.map(|_| ())
    );
    assert_eq!(snapshot(&udir), before, "nothing moved or written");

    // No key in the key store and the server away: a wrong password is
    // refused offline, and nothing moves.
    keyring_delete(&key_name).await;
    let client = desk(&dir).await.unwrap();
    let refused = client.sign_in(&server.base, "reception", "wrong").await;
    assert!(matches!(refused, Err(ClientError::Auth(_))), "{refused:?}");
    assert_eq!(
        snapshot(&udir).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert!(aside_files(&udir).is_empty());
    // The right one opens it, queue intact.
    let signed = client
        .sign_in(&server.base, "reception", "demo")
        .await
        .unwrap();
    assert!(signed.offline);
    assert_eq!(client.queue_stats().await.unwrap().pending, 2);
    assert_eq!(client.status_now().mirror_rebuilt, None);
    client.close().await;
    keyring_set(&key_name, key).await;
    assert!(aside_files(&udir).is_empty());
}
