//! Raw sockets for hostile-input and load tests: HTTP/1.1 requests written
//! byte for byte (malformed ones included), and a minimal WebSocket client
//! that can send frames no well-behaved library would (unmasked, invalid
//! UTF-8, lying lengths, oversized control frames). Every read is bounded by
//! a deadline, so a server that hangs fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on a raw connection.
#[derive(Debug, Clone, PartialEq)]
pub enum RawOutcome {
    /// An HTTP response (status, head, de-chunked body), read until the
    /// server closed the connection or the body was complete.
    Reply {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    /// The server closed (or reset) the connection without an answer.
    Closed { after: Duration },
    /// Nothing within the deadline, and the connection is still open.
    TimedOut,
}

impl RawOutcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            RawOutcome::Reply { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An HTTP/1.1 request as bytes, with `Connection: close`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `chunks` (pausing `pace` between them, for slow-client cases),
/// then reads the answer until the server closes, the response is
/// complete, or `deadline` passes. Writes that fail (the server answered
/// early and closed) are ignored: the answer is what counts.
pub async fn exchange(
    addr: SocketAddr,
    chunks: Vec<Vec<u8>>,
    pace: Duration,
    deadline: Duration,
) -> RawOutcome {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 && !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Keep the write half open: closing it would look like a client
        // that gave up, not one that is slow.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let outcome = loop {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rd.read(&mut chunk)).await {
            Err(_) => {
                break if buf.is_empty() {
                    RawOutcome::TimedOut
                } else {
                    parse_reply(&buf).unwrap_or(RawOutcome::TimedOut)
                };
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                break parse_reply(&buf).unwrap_or(RawOutcome::Closed {
                    after: started.elapsed(),
                });
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(reply) = complete_reply(&buf) {
                    break reply;
                }
            }
        }
    };
    writer.abort();
    outcome
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_reply(buf: &[u8]) -> Option<RawOutcome> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let raw_body = &buf[end + 4..];
    let lower = head.to_ascii_lowercase();
    let body = if lower.contains("transfer-encoding: chunked") {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Some(RawOutcome::Reply { status, head, body })
}

/// A reply whose body is complete by its Content-Length.
fn complete_reply(buf: &[u8]) -> Option<RawOutcome> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    (buf.len() >= end + 4 + len)
        .then(|| parse_reply(&buf[..end + 4 + len]))
        .flatten()
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(raw, b"\r\n") {
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let stop = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..stop]);
        raw = &raw[(stop + 2).min(raw.len())..];
    }
    out
}

/// Resident memory of a process, in KiB (`None` once it has exited).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every `every` until dropped; `peak()` is the
/// highest value seen so far.
pub struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib_of(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        RssSampler { peak, stop }
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// WebSocket opcodes.
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A WebSocket frame as a client sends it. `masked` false and `rsv` bits
/// make protocol violations; `claimed_len` (when set) lies about the
/// payload length in the header.
pub fn ws_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    ws_frame_claiming(fin, rsv, opcode, payload, masked, payload.len() as u64)
}

pub fn ws_frame_claiming(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    masked: bool,
    claimed_len: u64,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0xF)];
    let mask_bit = if masked { 0x80 } else { 0 };
    if claimed_len < 126 {
        out.push(mask_bit | claimed_len as u8);
    } else if claimed_len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(claimed_len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&claimed_len.to_be_bytes());
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked, final text frame.
pub fn ws_text(text: &str) -> Vec<u8> {
    ws_frame(true, 0, op::TEXT, text.as_bytes(), true)
}

/// What a raw WebSocket read produced.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Text(String),
    Binary(usize),
    Ping,
    Pong,
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Eof,
    /// Nothing arrived within the deadline.
    TimedOut,
}

/// A WebSocket connection over a bare TCP stream.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens a TCP connection and performs the upgrade handshake.
    pub async fn connect(addr: SocketAddr) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("upgrade");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end;
            }
            let n = tokio::time::timeout(crate::WAIT, stream.read(&mut chunk))
                .await
                .expect("upgrade answer in time")
                .expect("read upgrade answer");
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        let rest = buf[end + 4..].to_vec();
        RawWs { stream, buf: rest }
    }

    /// Writes bytes; false if the connection is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// The next frame from the server, within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> WsEvent {
        let started = Instant::now();
        loop {
            if let Some((event, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return event;
            }
            let mut chunk = [0u8; 16 * 1024];
            let left = deadline.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => return WsEvent::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return WsEvent::Eof,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next text frame, skipping pings and pongs; any other event is
    /// returned as is.
    pub async fn next_text(&mut self, deadline: Duration) -> WsEvent {
        loop {
            match self.next(deadline).await {
                WsEvent::Ping | WsEvent::Pong => continue,
                other => return other,
            }
        }
    }
}

/// Parses one unmasked server frame (FIN assumed: the server sends whole
/// messages); returns it and the bytes it used.
fn parse_server_frame(buf: &[u8]) -> Option<(WsEvent, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let mut len = u64::from(buf[1] & 0x7F);
    let mut at = 2;
    if len == 126 {
        len = u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?));
        at = 4;
    } else if len == 127 {
        len = u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?);
        at = 10;
    }
    let end = at + usize::try_from(len).ok()?;
    let payload = buf.get(at..end)?;
    let event = match opcode {
        op::TEXT => WsEvent::Text(String::from_utf8_lossy(payload).into_owned()),
        op::BINARY => WsEvent::Binary(payload.len()),
        op::PING => WsEvent::Ping,
        op::PONG => WsEvent::Pong,
        op::CLOSE => WsEvent::Close(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
        _ => WsEvent::Text(String::new()),
    };
    Some((event, end))
}
