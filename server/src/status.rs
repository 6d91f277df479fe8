//! `clinic-server status`: reads a running server's metrics listener
//! (`serve --metrics-listen`) and says what the figures mean, for a person
//! at a terminal.
//!
//! Plain HTTP only, like the listener it reads: an HTTP/1.0 `GET` over a
//! TCP socket (the answer then ends when the server closes), with
//! timeouts, so a hung server is reported rather than waited for.

use crate::metrics::{self, HistogramSnapshot, Sample};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most of an answer read (the metrics are a few KiB).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The address is not `http://HOST:PORT[/PATH]` or `HOST:PORT`.
    #[error("{0}")]
    BadUrl(String),
    /// Nothing answers there (not running, or another address).
    #[error(
        "no server answers at {url}: is `clinic-server serve` running with \
         --metrics-listen on that address?"
    )]
    NotRunning {
        /// Where it looked.
        url: String,
        /// What the connection said.
        #[source]
        source: std::io::Error,
    },
    /// It connected but the answer did not come or was not HTTP.
    #[error("reading the metrics from {url} failed: {message}")]
    Answer {
        /// Where it looked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The body is not the metrics format.
    #[error("{url} did not answer with the metrics: {source}")]
    Format {
        /// Where it looked.
        url: String,
        /// The first bad line.
        #[source]
        source: metrics::ParseError,
    },
}

impl StatusError {
    /// Whether trying again may help (the server may be starting).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            StatusError::NotRunning { .. } | StatusError::Answer { .. }
        )
    }
}

/// `host:port` and path of a metrics URL.
struct Target {
    host: String,
    path: String,
    shown: String,
}

fn target(url: &str) -> Result<Target, StatusError> {
    if url.starts_with("https://") {
        return Err(StatusError::BadUrl(format!(
            "{url}: status reads the plain-HTTP metrics listener (`serve --metrics-listen`), \
             not the TLS main listener; give that address"
        )));
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") {
        return Err(StatusError::BadUrl(format!(
            "{url}: expected http://HOST:PORT or HOST:PORT"
        )));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(StatusError::BadUrl(format!(
            "{url}: expected http://HOST:PORT or HOST:PORT (the port is required)"
        )));
    }
    Ok(Target {
        host: host.to_owned(),
        path: path.to_owned(),
        shown: format!("http://{host}{path}"),
    })
}

/// The text of the metrics at `url`.
pub fn fetch(url: &str, timeout: Duration) -> Result<String, StatusError> {
    let t = target(url)?;
    let not_running = |source| StatusError::NotRunning {
        url: t.shown.clone(),
        source,
    };
    let answer = |message: String| StatusError::Answer {
        url: t.shown.clone(),
        message,
    };
    let addrs: Vec<SocketAddr> = t
        .host
        .to_socket_addrs()
        .map_err(not_running)?
        // A wildcard listen address is reached on this machine's loopback.
        .map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            a
        })
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| not_running(last))?;
    let io = |e: std::io::Error| answer(e.to_string());
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: clinic-server-status\r\nAccept: text/plain\r\n\r\n",
        t.path, t.host
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8(raw).map_err(|_| answer("the answer is not UTF-8".into()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| answer("the answer is not HTTP".into()))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| answer("the answer is not HTTP".into()))?;
    if status != "200" {
        return Err(answer(format!(
            "HTTP {status}: {}",
            body.lines().next().unwrap_or("").trim()
        )));
    }
    Ok(body.to_owned())
}

/// The figures a person reads, from the samples of one scrape.
pub struct Status {
    samples: Vec<Sample>,
}

impl Status {
    /// Reads a scrape.
    pub fn parse(text: &str, url: &str) -> Result<Status, StatusError> {
        let samples = metrics::parse(text).map_err(|source| StatusError::Format {
            url: url.to_owned(),
            source,
        })?;
        if !samples.iter().any(|s| s.name == "clinic_build_info") {
            return Err(StatusError::Answer {
                url: url.to_owned(),
                message: "it answered, but not with Clinic Sync's metrics".into(),
            });
        }
        Ok(Status { samples })
    }

    fn value(&self, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
    }

    fn count(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.value(name, label).map_or(0, |v| v.max(0.0) as u64)
    }

    fn histogram(&self, name: &str) -> HistogramSnapshot {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, u64)> = self
            .samples
            .iter()
            .filter(|s| s.name == bucket)
            .filter_map(|s| {
                let le = match s.label("le")? {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((le, s.value.max(0.0) as u64))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        HistogramSnapshot {
            buckets,
            sum: self.value(&format!("{name}_sum"), None).unwrap_or(0.0),
        }
    }

    /// `(what, figures)` lines, in the order shown.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let info = self.samples.iter().find(|s| s.name == "clinic_build_info");
        let label = |k| info.and_then(|s| s.label(k)).unwrap_or("?").to_owned();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let uptime = self
            .value("process_start_time_seconds", None)
            .map_or("unknown".to_owned(), |start| {
                duration_words(Duration::from_secs_f64((now - start).max(0.0)))
            });
        let conn = |t| self.count("clinic_connections_open", Some(("transport", t)));
        let muts = |o| self.count("clinic_mutations_total", Some(("outcome", o)));
        let pushes = |r| self.count("clinic_pushes_total", Some(("result", r)));
        let cut = |r| self.count("clinic_subscribers_cut_off_total", Some(("reason", r)));
        let fails = |r| self.count("clinic_sign_in_failures_total", Some(("reason", r)));
        let commits = self.histogram("clinic_commit_duration_seconds");
        let fanout = self.histogram("clinic_fanout_lag_seconds");
        let unknown = || "unknown (the server could not read it; see its log)".to_owned();
        vec![
            (
                "server",
                format!(
                    "Clinic Sync {} on {}, server epoch {}",
                    label("version"),
                    label("backend"),
                    label("server_epoch")
                ),
            ),
            ("uptime", uptime),
            (
                "connections",
                format!(
                    "{} WebSocket, {} long-poll waiting, {} HTTP in flight",
                    conn("websocket"),
                    conn("long_poll"),
                    conn("http")
                ),
            ),
            (
                "mutations",
                format!(
                    "{} applied in the last minute; since start {} applied, {} rejected, {} duplicate, {} to retry",
                    self.count("clinic_mutations_applied_last_minute", None),
                    muts("applied"),
                    muts("rejected"),
                    muts("duplicate"),
                    muts("retry")
                ),
            ),
            (
                "pushes",
                format!(
                    "{} committed, {} refused, {} failed",
                    pushes("committed"),
                    pushes("refused"),
                    pushes("failed")
                ),
            ),
            (
                "commit latency",
                format!(
                    "{} ({} failed)",
                    quantiles(&commits, "commits"),
                    self.count("clinic_commit_failures_total", None)
                ),
            ),
            ("fan-out lag", quantiles(&fanout, "live frames")),
            (
                "subscribers cut off",
                format!(
                    "{} too slow, {} lagged, {} idle",
                    cut("too_slow"),
                    cut("lagged"),
                    cut("idle")
                ),
            ),
            (
                "database size",
                self.value("clinic_database_size_bytes", None)
                    .map_or_else(unknown, |b| bytes_words(b.max(0.0) as u64)),
            ),
            (
                "sessions",
                self.value("clinic_sessions_open", None)
                    .map_or_else(unknown, |n| format!("{} open", n.max(0.0) as u64)),
            ),
            (
                "sign-in failures",
                format!(
                    "{} wrong credentials, {} disabled account, {} throttled",
                    fails("wrong_credentials"),
                    fails("disabled"),
                    self.count("clinic_sign_in_throttled_total", None)
                ),
            ),
        ]
    }

    /// The lines as an aligned table.
    pub fn table(&self) -> String {
        let lines = self.lines();
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        lines
            .iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

/// `p50 …, p99 … over N <what> since start`, or `no <what> yet`.
fn quantiles(h: &HistogramSnapshot, what: &str) -> String {
    match (h.quantile(0.5), h.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!(
            "p50 {}, p99 {} over {} {what} since start",
            seconds_words(p50),
            seconds_words(p99),
            h.count()
        ),
        _ => format!("no {what} yet"),
    }
}

/// `0.42 ms`, `12.5 ms`, `1.30 s`.
pub fn seconds_words(s: f64) -> String {
    if s < 0.01 {
        format!("{:.2} ms", s * 1000.0)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// `512 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB`.
pub fn bytes_words(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `42 s`, `5 min 3 s`, `2 h 13 min`, `3 d 4 h`.
pub fn duration_words(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else if mins > 0 {
        format!("{mins} min {secs} s")
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_sizes_times_and_durations() {
        assert_eq!(bytes_words(512), "512 B");
        assert_eq!(bytes_words(1536), "1.5 KiB");
        assert_eq!(bytes_words(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
        assert_eq!(seconds_words(0.00042), "0.42 ms");
        assert_eq!(seconds_words(0.0125), "12.5 ms");
        assert_eq!(seconds_words(1.3), "1.30 s");
        assert_eq!(duration_words(Duration::from_secs(42)), "42 s");
        assert_eq!(duration_words(Duration::from_secs(303)), "5 min 3 s");
        assert_eq!(duration_words(Duration::from_secs(7980)), "2 h 13 min");
        assert_eq!(duration_words(Duration::from_secs(273_600)), "3 d 4 h");
    }

    #[test]
    fn urls_need_a_port_and_plain_http() {
        assert_eq!(
            target("127.0.0.1:9187").unwrap().shown,
            "http://127.0.0.1:9187/metrics"
        );
        assert_eq!(
            target("http://[::1]:9187/metrics").unwrap().host,
            "[::1]:9187"
        );
        assert!(target("https://clinic:8787/metrics").is_err());
        assert!(target("http://clinic/metrics").is_err());
        assert!(target("ftp://x:1").is_err());
    }

    #[test]
    fn nothing_listening_is_said_plainly() {
        // A port that was free a moment ago: nothing listens on it now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, StatusError::NotRunning { .. }), "{e}");
        assert!(e.to_string().contains("no server answers"), "{e}");
        assert!(e.retryable());
    }
}
