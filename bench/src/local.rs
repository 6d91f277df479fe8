//! Scenario 6: local speed. A desk client synced with a clinic of many
//! patients, live on the server (so acknowledgements and pushes run
//! alongside, as at a real desk): how long a local write takes to be
//! committed and visible, and how long a patient search takes, both through
//! the facade (`ClinicClient::mutate`, `ClinicClient::search_patients`) as a
//! front end calls them: the figures include the hop to the mirror's (or
//! the reader's) thread and back.

use crate::harness::{self, EngineHandle};
use crate::report::{Samples, ScenarioReport};
use clinic_client::SyncConfig;
use clinic_shared::model::{Role, Table, Timestamp};
use clinic_shared::mutation::{BookAppointment, Mutation, PatientPatch, UpdatePatient};
use rand::Rng;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Sizes of scenario 6.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub patients: usize,
    pub writes: usize,
    pub searches: usize,
}

pub(crate) async fn run(
    sizes: &Sizes,
    tmp: &Path,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let (dir, server) = crate::throughput::fresh_server(tmp, "local-", sizes.patients).await?;
    let t = Instant::now();
    let h = EngineHandle::start(
        dir.path().join("desk"),
        &server.base,
        harness::DESK,
        SyncConfig::default(),
        true,
    )
    .await?;
    h.wait_synced(Duration::from_secs(600)).await?;
    let sync_secs = t.elapsed().as_secs_f64();
    let client = h.client.clone();
    let ids: Vec<Uuid> = client
        .rows(Table::Patients)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let doctor = client
        .staff()
        .await?
        .into_iter()
        .find(|s| s.data.role == Role::Doctor)
        .map(|s| s.id)
        .ok_or_else(|| anyhow::anyhow!("no doctor in the mirror"))?;
    if ids.is_empty() {
        anyhow::bail!("the desk's mirror has no patients");
    }
    let case = format!("desk with {} patients", ids.len());
    report.add(&case, "first sync (setup)", sync_secs, "s", None);

    // Local writes: register, edit, book, in turn, 100 a second.
    let mut writes = Samples::default();
    let mut round_trips = Samples::default();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let first_slot = (chrono::Utc::now().timestamp() / 86_400 + 400) * 86_400;
    for i in 0..sizes.writes {
        tick.tick().await;
        let pick = ids[rand::thread_rng().gen_range(0..ids.len())];
        let (mutation, row) = match i % 3 {
            0 => {
                let id = Uuid::now_v7();
                (
                    harness::new_patient(id, 1_000_000 + i as u64),
                    (Table::Patients, id),
                )
            }
            1 => {
                // The base version, as an edit screen has it (not timed).
                let version = client
                    .row(Table::Patients, pick)
                    .await?
                    .map(|r| r.version)
                    .unwrap_or_default();
                (
                    Mutation::UpdatePatient(UpdatePatient {
                        id: pick,
                        base_version: version,
                        fields: PatientPatch {
                            phone: Some(Some(format!("+1 555 010 {:04}", i % 10_000))),
                            ..PatientPatch::default()
                        },
                    }),
                    (Table::Patients, pick),
                )
            }
            _ => {
                let id = Uuid::now_v7();
                let start = first_slot + (i as i64) * 1800;
                let at = |s: i64| {
                    Timestamp::from_unix(s)
                        .unwrap_or_else(|| Timestamp::from_datetime(chrono::Utc::now()))
                };
                (
                    Mutation::BookAppointment(BookAppointment {
                        id,
                        patient_id: pick,
                        doctor_id: doctor,
                        start: at(start),
                        end: at(start + 1800),
                        reason: Some("Follow-up".into()),
                        correction: false,
                    }),
                    (Table::Appointments, id),
                )
            }
        };
        let started = Instant::now();
        client.mutate(mutation).await?;
        let took = started.elapsed();
        if client.row(row.0, row.1).await?.is_none() {
            anyhow::bail!("a local write was not visible right after it returned");
        }
        round_trips.push(started.elapsed());
        writes.push(took);
    }
    writes.report(
        report,
        &case,
        "ClinicClient::mutate (committed + visible)",
        Some(2.0),
    );
    let p99 = round_trips.pct_ms(99.0);
    report.add(&case, "mutate + read the row back p99", p99, "ms", None);
    eprintln!(
        "  local writes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        writes.pct_ms(50.0),
        writes.pct_ms(99.0),
        writes.max_ms()
    );

    // Let the client push and settle, then search.
    let pending_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = client.queue_stats().await?.pending;
        if pending == 0 || Instant::now() > pending_deadline {
            report.add(
                &case,
                "writes still pending after settle",
                pending as f64,
                "",
                None,
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut searches = Samples::default();
    let mut empty = 0u64;
    let mut hits = 0u64;
    for q in 0..sizes.searches {
        let n = rand::thread_rng().gen_range(0..sizes.patients.max(1)) as u64;
        let query = crate::data::search_query(n, q as u64);
        let t = Instant::now();
        let found = client.search_patients(&query, 50).await?.len();
        searches.push(t.elapsed());
        hits += found as u64;
        if found == 0 {
            empty += 1;
        }
    }
    searches.report(
        report,
        &case,
        "ClinicClient::search_patients (limit 50)",
        Some(20.0),
    );
    report.add(
        &case,
        "search results on average",
        hits as f64 / sizes.searches.max(1) as f64,
        "",
        None,
    );
    if empty > 0 {
        report.note(format!(
            "{empty} of {} searches for an existing patient found nothing",
            sizes.searches
        ));
    }
    eprintln!(
        "  search: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        searches.pct_ms(50.0),
        searches.pct_ms(99.0),
        searches.max_ms()
    );
    h.stop().await;
    server.stop();
    Ok(())
}
