//! One WebSocket session: `hello` → `welcome` → catch-up pages → `caught_up`
//! → live `changes`, with pushes and pings answered along the way.
//!
//! The session ends, with an `error` frame saying why and a close frame,
//! when: the token is unknown, expired or signed out; the session is ended
//! by a password change or reset or "end all sessions"; the account is
//! disabled or its role changes (the client reconnects and gets what the new
//! role may see); the client stays silent past the idle limit; a send takes
//! longer than `Config::ws_send_timeout` (a subscriber that does not read is
//! cut off rather than buffered for); or the server shuts down. A malformed
//! frame is answered with an `error` frame and the session goes on.
//!
//! Revocation: the session re-checks its session and account against
//! storage before applying every push, on every heartbeat, and whenever a
//! security event about its account arrives ([`crate::revocation`]), so a
//! change made anywhere ends it within `Config::security_poll`.
//!
//! Read audit: the clinical rows of every catch-up page and live batch sent
//! are queued to the access log ([`crate::audit`]), one entry per patient
//! and table.

use crate::AppState;
use crate::audit;
use crate::blocking::blocking;
use crate::feed::Batch;
use crate::metrics::CutOff;
use crate::session::{self, Caller, authenticate, prepare_push};
use crate::storage::SecurityEvent;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use clinic_shared::codec;
use clinic_shared::field_access;
use clinic_shared::model::{Staff, SyncRow, Table};
use clinic_shared::permissions;
use clinic_shared::protocol::{
    AccessKind, ClientMessage, ErrorBody, ErrorCode, PROTOCOL_VERSION, ServerMessage, limits,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;
use uuid::Uuid;

/// Why a session stops.
enum Stop {
    /// The peer went away or broke the protocol at the transport level.
    Gone,
    /// We close, with this close code and reason.
    Close(u16, &'static str),
}

struct Session {
    socket: WebSocket,
    state: AppState,
    caller: Caller,
    client_id: Uuid,
    tables: Vec<Table>,
    cursor: u64,
    last_seen: Instant,
}

/// Serves one upgraded socket to its end.
pub async fn serve(socket: WebSocket, state: AppState) {
    let span = tracing::info_span!("ws", conn = %Uuid::now_v7());
    let _open = state.metrics.websocket_open();
    async move {
        let mut socket = socket;
        let Some((caller, client_id, cursor)) = handshake(&mut socket, &state).await else {
            return;
        };
        tracing::info!(user_id = %caller.user.id, %client_id, cursor, "session open");
        let tables = permissions::readable_tables(caller.user.role);
        let mut session = Session {
            socket,
            state,
            caller,
            client_id,
            tables,
            cursor,
            last_seen: Instant::now(),
        };
        let live = session.state.live_sessions.clone();
        live.fetch_add(1, Ordering::Relaxed);
        let stop = session.run().await;
        live.fetch_sub(1, Ordering::Relaxed);
        if let Some(why) = cut_off(&stop) {
            session.state.metrics.cut_off(why);
        }
        if let Stop::Close(code, reason) = stop {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                session.socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
        tracing::info!(cursor = session.cursor, "session closed");
    }
    .instrument(span)
    .await
}

/// The close reason of a subscriber too slow to read.
const TOO_SLOW: &str = "too slow: reconnect and catch up";

/// Whether a session's end cut a subscriber off, and why (for the metrics).
fn cut_off(stop: &Stop) -> Option<CutOff> {
    match stop {
        Stop::Close(_, TOO_SLOW) => Some(CutOff::TooSlow),
        Stop::Close(_, "idle") => Some(CutOff::Idle),
        _ => None,
    }
}

async fn send_raw(
    socket: &mut WebSocket,
    msg: &ServerMessage,
    limit: Duration,
) -> Result<(), Stop> {
    let text = serde_json::to_string(msg).map_err(|_| Stop::Close(1011, "encoding failed"))?;
    match tokio::time::timeout(limit, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => {
            tracing::warn!("subscriber too slow to read; disconnecting it");
            Err(Stop::Close(1008, TOO_SLOW))
        }
    }
}

/// The close frame's reason for an error that ends a session.
fn close_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthorized => "session ended",
        ErrorCode::TokenExpired => "sign-in expired",
        ErrorCode::SessionChanged => "account changed; reconnect",
        ErrorCode::PasswordChangeRequired => "password change required",
        ErrorCode::Forbidden => "refused",
        _ => "error",
    }
}

async fn reject(socket: &mut WebSocket, error: ErrorBody, limit: Duration) {
    let _ = send_raw(socket, &ServerMessage::Error(error), limit).await;
    let frame = CloseFrame {
        code: 1008,
        reason: "refused".into(),
    };
    let _ = tokio::time::timeout(limit, socket.send(Message::Close(Some(frame)))).await;
}

/// Waits for `hello` and authenticates it.
async fn handshake(socket: &mut WebSocket, state: &AppState) -> Option<(Caller, Uuid, u64)> {
    let limit = state.config.ws_send_timeout;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limits::WS_HELLO_SECONDS);
    let message = loop {
        match tokio::time::timeout_at(deadline, socket.recv()).await {
            // Transport-level pings from client libraries are not messages.
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => break other,
        }
    };
    let message = match message {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(_))) => {
            let e = ErrorBody::new(
                ErrorCode::BadRequest,
                "the first message must be a JSON `hello` text frame",
            );
            reject(socket, e, limit).await;
            return None;
        }
        Ok(_) => return None,
        Err(_) => {
            let e = ErrorBody::new(ErrorCode::BadRequest, "no `hello` within the time limit");
            reject(socket, e, limit).await;
            return None;
        }
    };
    let (token, client_id, cursor) = match codec::decode_client_message(message.as_bytes()) {
        Ok(ClientMessage::Hello {
            token,
            client_id,
            cursor,
        }) => (token, client_id, cursor),
        Ok(_) => {
            let e = ErrorBody::new(ErrorCode::BadRequest, "the first message must be `hello`");
            reject(socket, e, limit).await;
            return None;
        }
        Err(e) => {
            reject(socket, e, limit).await;
            return None;
        }
    };
    let caller = match authenticate(state, &token).await {
        Ok(c) if c.must_change_password => {
            reject(socket, session::password_change_required(), limit).await;
            return None;
        }
        Ok(c) => c,
        Err(e) => {
            reject(socket, e, limit).await;
            return None;
        }
    };
    let storage = state.storage.clone();
    match blocking(move || storage.client(client_id)).await {
        Ok(Some(c)) if c.user_id != caller.user.id => {
            let e = ErrorBody::new(
                ErrorCode::Forbidden,
                "this client id belongs to another user",
            )
            .with_field("client_id");
            reject(socket, e, limit).await;
            None
        }
        Ok(_) => Some((caller, client_id, cursor)),
        Err(e) => {
            reject(socket, e, limit).await;
            None
        }
    }
}

impl Session {
    async fn send(&mut self, msg: &ServerMessage) -> Result<(), Stop> {
        send_raw(&mut self.socket, msg, self.state.config.ws_send_timeout).await
    }

    async fn run(&mut self) -> Stop {
        // Subscribe before reading the catch-up so nothing committed in
        // between is missed; batches already covered are skipped by cursor.
        let mut batches = self.state.feed.subscribe();
        let mut security = self.state.revocations.subscribe();
        let head = *self.state.feed.head().borrow();
        let welcome = ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            user: self.caller.user.clone(),
            head,
            epoch: self.caller.epoch,
            server_epoch: self.state.server_epoch.to_string(),
            time_zone: Some(self.state.config.time_zone.clone()),
        };
        if let Err(stop) = self.send(&welcome).await {
            return stop;
        }
        if let Err(stop) = self.catch_up().await {
            return stop;
        }
        // A long catch-up is not the client's silence.
        self.last_seen = Instant::now();
        let mut heartbeat = tokio::time::interval(self.state.config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let shutdown = self.state.shutdown.clone();
        loop {
            let step = tokio::select! {
                () = shutdown.cancelled() => Err(Stop::Close(1001, "server shutting down")),
                incoming = self.socket.recv() => self.on_frame(incoming).await,
                batch = batches.recv() => self.on_batch(batch).await,
                event = security.recv() => self.on_security_event(event).await,
                _ = heartbeat.tick() => self.on_heartbeat().await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    async fn end(&mut self, code: ErrorCode, message: &'static str) -> Result<(), Stop> {
        self.end_with(ErrorBody::new(code, message)).await
    }

    async fn end_with(&mut self, error: ErrorBody) -> Result<(), Stop> {
        let reason = close_reason(error.code);
        let _ = self.send(&ServerMessage::Error(error)).await;
        Err(Stop::Close(1008, reason))
    }

    /// Re-reads the session and account; ends the session when it no
    /// longer stands or the role changed (the client reconnects and gets
    /// what the new role may see), else keeps the fresh epoch.
    async fn recheck(&mut self) -> Result<(), Stop> {
        match session::recheck(&self.state, &self.caller).await {
            Ok(fresh) if fresh.user.role != self.caller.user.role => {
                self.end(ErrorCode::SessionChanged, "role changed; reconnect")
                    .await
            }
            Ok(fresh) => {
                self.caller = fresh;
                Ok(())
            }
            // A database hiccup is not a revocation: the next check decides.
            Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Internal) => Ok(()),
            Err(e) => self.end_with(e).await,
        }
    }

    async fn on_security_event(
        &mut self,
        event: Result<Arc<SecurityEvent>, RecvError>,
    ) -> Result<(), Stop> {
        match event {
            Ok(e) if e.user_id == self.caller.user.id => self.recheck().await,
            Ok(_) => Ok(()),
            // Ours may be among the missed ones.
            Err(RecvError::Lagged(_)) => self.recheck().await,
            Err(RecvError::Closed) => Err(Stop::Close(1001, "server shutting down")),
        }
    }

    /// Sends every visible row past the cursor, page by page, then `caught_up`.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let storage = self.state.storage.clone();
            let (tables, cursor, client) = (self.tables.clone(), self.cursor, self.client_id);
            let mut page = blocking(move || {
                storage.changes_page(&tables, cursor, limits::DEFAULT_PAGE_ROWS, Some(client))
            })
            .await
            .map_err(|_| Stop::Close(1011, "database error"))?;
            // The account may have changed between authentication and now,
            // or while this session lagged: the live check never saw it.
            if let Some(reason) = self.account_changed(&page.rows) {
                return self.end(ErrorCode::SessionChanged, reason).await;
            }
            field_access::redact_rows(self.caller.user.role, &mut page.rows);
            crate::care::deliver(&self.state, &self.caller.user, &mut page.rows)
                .await
                .map_err(|_| Stop::Close(1011, "database error"))?;
            self.audit(AccessKind::WsCatchUp, &page.rows).await;
            self.cursor = page.cursor;
            if !page.rows.is_empty() || page.last_mutation_id.is_some() || !page.more {
                let msg = ServerMessage::Changes {
                    rows: page.rows,
                    cursor: page.cursor,
                    last_mutation_id: page.last_mutation_id,
                };
                self.send(&msg).await?;
            }
            if !page.more {
                return self
                    .send(&ServerMessage::CaughtUp {
                        cursor: self.cursor,
                    })
                    .await;
            }
        }
    }

    async fn on_frame(
        &mut self,
        incoming: Option<Result<Message, axum::Error>>,
    ) -> Result<(), Stop> {
        let message = match incoming {
            Some(Ok(m)) => m,
            _ => return Err(Stop::Gone),
        };
        self.last_seen = Instant::now();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let e = ErrorBody::new(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text",
                );
                return self.send(&ServerMessage::Error(e)).await;
            }
            Message::Close(_) => return Err(Stop::Gone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        match codec::decode_client_message(text.as_bytes()) {
            Err(e) => {
                tracing::info!(code = ?e.code, "bad frame");
                self.send(&ServerMessage::Error(e)).await
            }
            Ok(ClientMessage::Ping { nonce }) => self.send(&ServerMessage::Pong { nonce }).await,
            Ok(ClientMessage::Hello { .. }) => {
                let e = ErrorBody::new(
                    ErrorCode::BadRequest,
                    "already said hello on this connection",
                );
                self.send(&ServerMessage::Error(e)).await
            }
            Ok(ClientMessage::Push {
                request_id,
                mutations,
            }) => {
                // Revoked or demoted since the last check: apply nothing.
                self.recheck().await?;
                let result = match prepare_push(&self.caller, mutations).await {
                    Ok(prepared) => {
                        self.state
                            .writer
                            .push(self.caller.actor(), self.client_id, prepared)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(results) => {
                        self.send(&ServerMessage::PushResult {
                            request_id,
                            results,
                        })
                        .await
                    }
                    Err(e) => self.send(&ServerMessage::Error(e)).await,
                }
            }
        }
    }

    async fn on_batch(&mut self, batch: Result<Arc<Batch>, RecvError>) -> Result<(), Stop> {
        let batch = match batch {
            Ok(b) => b,
            Err(RecvError::Lagged(missed)) => {
                tracing::info!(missed, "subscriber lagged; catching up from storage");
                self.state.metrics.cut_off(CutOff::Lagged);
                return self.catch_up().await;
            }
            Err(RecvError::Closed) => return Err(Stop::Close(1001, "server shutting down")),
        };
        if batch.last_seq <= self.cursor {
            return Ok(());
        }
        if let Some(reason) = self.account_changed(&batch.rows) {
            return self.end(ErrorCode::SessionChanged, reason).await;
        }
        let mut rows: Vec<SyncRow> = batch
            .rows
            .iter()
            .filter(|r| r.version > self.cursor && self.tables.contains(&r.table))
            .cloned()
            .collect();
        // The batch is shared by every subscriber; each gets its role's fields.
        field_access::redact_rows(self.caller.user.role, &mut rows);
        // A doctor: clinical fields only of their own patients (read after
        // the batch committed, so a booking in it already counts).
        crate::care::deliver(&self.state, &self.caller.user, &mut rows)
            .await
            .map_err(|_| Stop::Close(1011, "database error"))?;
        let ack = batch.ack_for(self.client_id);
        self.audit(AccessKind::WsLive, &rows).await;
        self.cursor = batch.last_seq;
        // Sent even when every row was filtered out (a treatment record to a
        // reception desk): the client's cursor then keeps up with the head,
        // so its "synced" state is true and a reconnect resumes from here.
        self.send(&ServerMessage::Changes {
            rows,
            cursor: self.cursor,
            last_mutation_id: ack,
        })
        .await?;
        self.state.metrics.fanout(batch.published.elapsed());
        Ok(())
    }

    /// Queues the access entries for sending `rows` (the clinical ones).
    async fn audit(&mut self, kind: AccessKind, rows: &[SyncRow]) {
        let entries = audit::deliveries(
            self.caller.user.id,
            Some(self.client_id),
            kind,
            rows,
            (self.state.config.clock)(),
        );
        self.state.audit.record(entries).await;
    }

    /// Whether the batch changes this session's own account in a way that
    /// must end the session.
    fn account_changed(&self, rows: &[SyncRow]) -> Option<&'static str> {
        let me = self.caller.user.id;
        for row in rows
            .iter()
            .filter(|r| r.table == Table::Staff && r.id == me)
        {
            let staff: Option<Staff> = row
                .data
                .as_ref()
                .and_then(|d| serde_json::from_value(d.clone()).ok());
            match staff {
                Some(s) if !s.active => return Some("account disabled"),
                Some(s) if s.role != self.caller.user.role => {
                    return Some("role changed; reconnect");
                }
                None => return Some("account removed"),
                Some(_) => {}
            }
        }
        None
    }

    async fn on_heartbeat(&mut self) -> Result<(), Stop> {
        if self.last_seen.elapsed() > Duration::from_secs(limits::WS_IDLE_SECONDS) {
            tracing::info!("peer silent too long");
            return Err(Stop::Close(1001, "idle"));
        }
        // Re-check the session now and then: expiry must end it (and a
        // missed security event is caught here at the latest).
        self.recheck().await?;
        let ping = self.socket.send(Message::Ping(Vec::new().into()));
        match tokio::time::timeout(self.state.config.ws_send_timeout, ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Close(1008, TOO_SLOW)),
        }
    }
}
