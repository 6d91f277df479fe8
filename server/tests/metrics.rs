//! `GET /metrics` and `clinic-server status` against the real binary: the
//! text format as Prometheus reads it (checked by a parser written here,
//! not the server's own), figures that move with real pushes, sockets and
//! sign-ins, admin-only access on the main listener, and nothing about
//! patients or staff in any series.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use clinic_shared::mutation::{CreatePatient, Mutation};
use clinic_shared::protocol::RejectCode;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// One scrape, parsed and checked against the text format 0.0.4.
#[derive(Debug)]
struct Scrape {
    text: String,
    /// `(name, sorted labels) → value`.
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Scrape {
    /// Parses and checks: every line is a comment or `name{labels} value`;
    /// each family has one HELP and one TYPE before its samples; counters
    /// end in `_total`; histogram buckets are cumulative and `+Inf` equals
    /// `_count`.
    fn parse(text: &str) -> Scrape {
        let mut help = BTreeSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let at = || format!("line {}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
                assert!(!text.trim().is_empty(), "empty help, {}", at());
                assert!(help.insert(name.to_owned()), "second HELP, {}", at());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type, {}",
                    at()
                );
                if kind == "counter" {
                    assert!(
                        name.ends_with("_total"),
                        "a counter ends in _total, {}",
                        at()
                    );
                }
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "second TYPE, {}",
                    at()
                );
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // name, optional {labels}, value
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("no value, {}", at()));
            let name = &line[..name_end];
            assert!(
                !name.is_empty()
                    && name.chars().next().unwrap().is_ascii_alphabetic()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name, {}",
                at()
            );
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(inner) = rest.strip_prefix('{') {
                let close = inner
                    .find('}')
                    .unwrap_or_else(|| panic!("unclosed, {}", at()));
                for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{}", at()));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label, {}", at()));
                    labels.push((k.to_owned(), v.to_owned()));
                }
                rest = &inner[close + 1..];
            }
            let value = rest.trim();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value, {}", at())),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "no TYPE before, {}", at());
            assert!(help.contains(family), "no HELP before, {}", at());
            labels.sort();
            assert!(
                samples.insert((name.to_owned(), labels), value).is_none(),
                "a series twice, {}",
                at()
            );
        }
        assert_eq!(
            help,
            types.keys().cloned().collect::<BTreeSet<_>>(),
            "HELP and TYPE for every family"
        );
        let scrape = Scrape {
            text: text.to_owned(),
            samples,
        };
        for (family, kind) in &types {
            if kind == "histogram" {
                let buckets = scrape.buckets(family);
                assert!(buckets.len() > 1, "{family} has buckets");
                assert!(
                    buckets
                        .windows(2)
                        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
                );
                let (last_le, last_count) = *buckets.last().unwrap();
                assert!(last_le.is_infinite(), "{family} ends with +Inf");
                assert_eq!(last_count, scrape.get(&format!("{family}_count"), &[]));
                assert!(scrape.get(&format!("{family}_sum"), &[]) >= 0.0);
            }
        }
        scrape
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.try_get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    fn try_get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// `(le, cumulative count)` of a histogram, by `le`.
    fn buckets(&self, family: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{family}_bucket");
        let mut b: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|((n, _), _)| *n == bucket)
            .map(|((_, labels), v)| {
                let le = &labels.iter().find(|(k, _)| k == "le").unwrap().1;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, *v)
            })
            .collect();
        b.sort_by(|a, b| a.0.total_cmp(&b.0));
        b
    }

    fn mutations(&self, outcome: &str) -> f64 {
        self.get("clinic_mutations_total", &[("outcome", outcome)])
    }

    fn connections(&self, transport: &str) -> f64 {
        self.get("clinic_connections_open", &[("transport", transport)])
    }
}

async fn scrape_url(url: &str) -> Scrape {
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&response.text().await.unwrap())
}

async fn scrape(server: &Server) -> Scrape {
    scrape_url(server.metrics_url.as_deref().unwrap()).await
}

/// Scrapes until `ok` holds (bounded: a figure that never comes fails).
async fn scrape_until(server: &Server, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = scrape(server).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn with_metrics() -> Server {
    Server::start_with(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-refresh-ms",
        "100",
    ])
}

fn patient(first: &str, last: &str) -> Mutation {
    Mutation::CreatePatient(CreatePatient {
        id: Uuid::now_v7(),
        first_name: first.into(),
        last_name: last.into(),
        date_of_birth: "1980-04-02".parse().unwrap(),
        phone: None,
        email: None,
        address: Some("12 Long Road, Flat 3, Somewhere Quite Far Away".into()),
        sex: None,
        emergency_contact: None,
        emergency_phone: None,
        insurer: None,
        insurance_number: None,
        alerts: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_follow_pushes_sockets_sign_ins_and_the_database() {
    let server = with_metrics();
    let before = scrape(&server).await;
    // Which server: version, backend and the database's epoch, value 1.
    let (info, value) = before
        .samples
        .iter()
        .find(|((n, _), _)| n == "clinic_build_info")
        .map(|((_, labels), v)| (labels.iter().cloned().collect::<BTreeMap<_, _>>(), *v))
        .unwrap();
    assert_eq!(value, 1.0);
    assert_eq!(info["backend"], "sqlite");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let epoch = server.admin(&["epoch", "show"], None);
    assert_eq!(
        info["server_epoch"],
        String::from_utf8_lossy(&epoch.stdout).trim()
    );
    let started = before.get("process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && now - started < 120.0,
        "started {started}, now {now}"
    );

    // N pushes over HTTP: the applied counter rises by exactly N, and the
    // writer's commits are timed.
    let mut reception = Api::login(&server, "reception").await;
    const N: usize = 7;
    for i in 0..N {
        let outcome = reception
            .push_one(patient(&format!("Metric{i}"), "Count"))
            .await;
        applied_seq(&outcome);
    }
    let after = scrape(&server).await;
    assert_eq!(
        after.mutations("applied"),
        before.mutations("applied") + N as f64
    );
    assert_eq!(after.mutations("rejected"), before.mutations("rejected"));
    assert!(
        after.get("clinic_pushes_total", &[("result", "committed")])
            >= before.get("clinic_pushes_total", &[("result", "committed")]) + N as f64
    );
    let commits = |s: &Scrape| s.get("clinic_commit_duration_seconds_count", &[]);
    assert!(
        commits(&after) >= commits(&before) + 1.0,
        "commits timed: {} then {}",
        commits(&before),
        commits(&after)
    );
    assert!(after.get("clinic_commit_duration_seconds_sum", &[]) > 0.0);
    assert!(after.get("clinic_mutations_applied_last_minute", &[]) >= N as f64);

    // The same mutation again is a duplicate, not a second application.
    let pending = reception.number(vec![patient("Again", "Twice")]);
    reception.push_pending(pending.clone()).await;
    reception.push_pending(pending.clone()).await;
    let again = scrape(&server).await;
    assert_eq!(again.mutations("applied"), after.mutations("applied") + 1.0);
    assert_eq!(
        again.mutations("duplicate"),
        after.mutations("duplicate") + 1.0
    );
    // That id with other contents is refused: a rejection, not a duplicate.
    let mut reused = pending;
    reused[0].mutation = patient("Other", "Contents");
    let results = reception.push_pending(reused).await;
    assert_eq!(
        rejection(&results[0].outcome).code,
        RejectCode::MutationIdReused
    );
    let reused = scrape(&server).await;
    assert_eq!(
        reused.mutations("rejected"),
        again.mutations("rejected") + 1.0
    );
    assert_eq!(reused.mutations("duplicate"), again.mutations("duplicate"));
    let again = reused;

    // A WebSocket subscriber is counted while it is open; its live frames
    // are timed from the commit.
    let doctor = Api::login(&server, "doctor").await;
    let mut ws = Ws::hello(&server, &doctor, 0).await;
    ws.until_caught_up().await;
    let open = scrape_until(&server, "one websocket open", |s| {
        s.connections("websocket") == 1.0
    })
    .await;
    let id = match patient("Live", "Frame") {
        Mutation::CreatePatient(p) => {
            let id = p.id;
            applied_seq(&reception.push_one(Mutation::CreatePatient(p)).await);
            id
        }
        _ => unreachable!(),
    };
    ws.until_row(|r| r.id == id).await;
    let fanout = |s: &Scrape| s.get("clinic_fanout_lag_seconds_count", &[]);
    scrape_until(&server, "the live frame timed", |s| {
        fanout(s) > fanout(&open)
    })
    .await;
    ws.stream.close(None).await.unwrap();
    drop(ws);
    scrape_until(&server, "no websocket open", |s| {
        s.connections("websocket") == 0.0
    })
    .await;

    // A wrong password is a sign-in failure.
    let failures = |s: &Scrape| {
        s.get(
            "clinic_sign_in_failures_total",
            &[("reason", "wrong_credentials")],
        )
    };
    let response = login_raw(&server.base, "reception", "not the password").await;
    assert_eq!(response.status(), 401);
    let failed = scrape(&server).await;
    assert_eq!(failures(&failed), failures(&again) + 1.0);

    // Two sign-ins made above, nothing else: two open sessions.
    scrape_until(&server, "two sessions", |s| {
        s.try_get("clinic_sessions_open", &[]) == Some(2.0)
    })
    .await;

    // The database takes bytes, and more after more rows.
    let size = |s: &Scrape| s.get("clinic_database_size_bytes", &[]);
    let small = size(&failed);
    assert!(small > 0.0, "the database has a size");
    let many = (0..100)
        .map(|i| patient(&format!("Bulk{i}"), "Growth"))
        .collect();
    for r in reception.push(many).await {
        applied_seq(&r.outcome);
    }
    scrape_until(&server, "the database grew", |s| size(s) > small).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_listener_serves_metrics_to_administrators_only() {
    let server = with_metrics();
    let url = format!("{}/metrics", server.base);
    let none = http().get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let reception = Api::login(&server, "reception").await;
    let refused = reception.get("/metrics").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    let admin = Api::login(&server, "admin").await;
    let response = admin.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let scrape = Scrape::parse(&response.text().await.unwrap());
    // This very request is in flight while the figures are written.
    assert!(scrape.connections("http") >= 1.0);
    // The metrics listener serves nothing else.
    let other = http()
        .get(
            server
                .metrics_url
                .as_ref()
                .unwrap()
                .replace("/metrics", "/v1/me"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    // HTTP/1.1 only, as the main listener: an HTTP/2 preface is answered
    // and the connection closed, not held open past every timeout.
    let addr = server
        .metrics_url
        .as_ref()
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut answer))
        .await
        .expect("the connection is closed")
        .ok();
    assert!(
        !String::from_utf8_lossy(&answer).contains("clinic_build_info"),
        "no metrics over HTTP/2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_patient_or_staff_name_appears_in_the_metrics() {
    let server = with_metrics();
    let mut reception = Api::login(&server, "reception").await;
    let Mutation::CreatePatient(p) = patient("Zebulon", "Quartz") else {
        unreachable!()
    };
    let id = p.id;
    applied_seq(&reception.push_one(Mutation::CreatePatient(p)).await);
    let doctor = Api::login(&server, "doctor").await;
    let mut ws = Ws::hello(&server, &doctor, 0).await;
    ws.until_caught_up().await;
    login_raw(&server.base, "assistant", "wrong").await;
    login_raw(&server.base, "nobody-such", "wrong").await;
    let admin = Api::login(&server, "admin").await;
    let main = admin
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let plain = scrape(&server).await.text;
    for text in [&main, &plain] {
        Scrape::parse(text);
        for secret in [
            "Zebulon",
            "Quartz",
            "Long Road",
            &id.to_string(),
            &reception.token,
            &doctor.user.id.to_string(),
            &reception.client_id.to_string(),
            "reception",
            "doctor",
            "assistant",
            "nobody-such",
            "admin",
        ] {
            assert!(
                !text.to_lowercase().contains(&secret.to_lowercase()),
                "{secret:?} in the metrics:\n{text}"
            );
        }
    }
}

fn status(args: &[&str], env: Option<&str>) -> std::process::Output {
    let mut command = Command::new(bin("clinic-server"));
    command.env_remove("CLINIC_METRICS_LISTEN");
    if let Some(addr) = env {
        command.env("CLINIC_METRICS_LISTEN", addr);
    }
    run_with_stdin(command.arg("status").args(args), None)
}

/// The figures of the line starting with `what`.
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(what))
        .unwrap_or_else(|| panic!("no {what:?} line in\n{out}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_figures_and_says_when_the_server_is_down() {
    let mut server = with_metrics();
    let mut reception = Api::login(&server, "reception").await;
    for i in 0..3 {
        applied_seq(
            &reception
                .push_one(patient(&format!("Status{i}"), "Shown"))
                .await,
        );
    }
    login_raw(&server.base, "reception", "wrong").await;
    let doctor = Api::login(&server, "doctor").await;
    let mut ws = Ws::hello(&server, &doctor, 0).await;
    ws.until_caught_up().await;
    scrape_until(&server, "sessions counted", |s| {
        s.try_get("clinic_sessions_open", &[]) == Some(2.0) && s.connections("websocket") == 1.0
    })
    .await;

    let url = server.metrics_url.clone().unwrap();
    let out = status(&["--url", &url], None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "status: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line(&stdout, "server").contains("on sqlite"), "{stdout}");
    assert!(line(&stdout, "uptime").ends_with(" s") || line(&stdout, "uptime").contains("min"));
    assert!(
        line(&stdout, "connections").starts_with("1 WebSocket"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "mutations")
            .starts_with("3 applied in the last minute; since start 3 applied"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "commit latency").starts_with("p50 "),
        "{stdout}"
    );
    assert_eq!(line(&stdout, "sessions"), "2 open");
    assert!(
        line(&stdout, "sign-in failures").starts_with("1 wrong credentials"),
        "{stdout}"
    );
    let size = line(&stdout, "database size");
    assert!(size.ends_with("KiB") || size.ends_with("MiB"), "{size}");
    // The columns line up.
    let starts: BTreeSet<usize> = stdout
        .lines()
        .map(|l| {
            let gap = l.find("  ").unwrap();
            gap + l[gap..].len() - l[gap..].trim_start().len()
        })
        .collect();
    assert_eq!(starts.len(), 1, "aligned:\n{stdout}");

    // The address from the variable the server reads, without --url.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let from_env = status(&[], Some(&addr));
    assert!(from_env.status.success());
    assert_eq!(
        line(&String::from_utf8_lossy(&from_env.stdout), "sessions"),
        "2 open"
    );

    // No address at all, and a server that is down: a clear error, status 1.
    let nowhere = status(&[], None);
    assert!(!nowhere.status.success());
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("no metrics address"),
        "{}",
        String::from_utf8_lossy(&nowhere.stderr)
    );
    drop(ws);
    server.kill();
    let down = status(&["--url", &url], None);
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(!down.status.success());
    assert!(stderr.contains("no server answers at"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(down.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_sign_ins_are_counted_apart_from_failures() {
    let server = Server::start_with(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--signin-free-failures",
        "1",
        "--signin-backoff-ms",
        "60000",
    ]);
    let throttled = |s: &Scrape| s.get("clinic_sign_in_throttled_total", &[]);
    let failures = |s: &Scrape| {
        s.get(
            "clinic_sign_in_failures_total",
            &[("reason", "wrong_credentials")],
        )
    };
    let before = scrape(&server).await;
    assert_eq!((failures(&before), throttled(&before)), (0.0, 0.0));
    // The free failure, then the one that locks the name for a minute.
    for _ in 0..2 {
        assert_eq!(
            login_raw(&server.base, "doctor", "wrong").await.status(),
            401
        );
    }
    // Locked: refused without a password check, even the right one.
    assert_eq!(
        login_raw(&server.base, "doctor", "demo").await.status(),
        429
    );
    let after = scrape(&server).await;
    assert_eq!(failures(&after), 2.0);
    assert_eq!(throttled(&after), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_the_feed_is_counted_as_lagged() {
    // One batch of room per subscriber: a session busy with its own pushes
    // while two commits land has lagged.
    let server = Server::start_with(&["--metrics-listen", "127.0.0.1:0", "--feed-capacity", "1"]);
    let mut reception = Api::login(&server, "reception").await;
    let mut ws = Ws::hello(&server, &reception, 0).await;
    ws.until_caught_up().await;
    let lagged = |s: &Scrape| s.get("clinic_subscribers_cut_off_total", &[("reason", "lagged")]);
    assert_eq!(lagged(&scrape(&server).await), 0.0);
    // Pushes pipelined on the socket: after each commit the session has
    // both the next push and the commit's batch to handle, and takes
    // either first, so it misses batches all but certainly (each of the
    // 29 choices would have to go the batch's way).
    const PUSHES: u64 = 30;
    for request_id in 0..PUSHES {
        let pending = reception.number(vec![patient(&format!("Lag{request_id}"), "Behind")]);
        ws.send(&clinic_shared::protocol::ClientMessage::Push {
            request_id,
            mutations: pending,
        })
        .await;
    }
    let mut answered = 0;
    while answered < PUSHES {
        match ws.next().await {
            Some(clinic_shared::protocol::ServerMessage::PushResult { results, .. }) => {
                applied_seq(&results[0].outcome);
                answered += 1;
            }
            Some(_) => {}
            None => panic!("the socket closed"),
        }
    }
    let s = scrape_until(&server, "a lagged subscriber", |s| lagged(s) >= 1.0).await;
    // It caught up from the database on the same connection: still open.
    assert_eq!(s.connections("websocket"), 1.0);
    assert_eq!(
        s.get(
            "clinic_subscribers_cut_off_total",
            &[("reason", "too_slow")]
        ),
        0.0
    );
}
