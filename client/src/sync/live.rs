//! One live session over the WebSocket: `hello`, catch-up, live batches,
//! pushes as the outbox fills, pings to notice a dead link.

use super::{SessionEnd, SyncEngine};
use crate::error::{ClientError, ClientResult};
use crate::types::{Connection, InitialSync};
use clinic_shared::protocol::{ClientMessage, ErrorCode, ServerMessage};
use std::time::Instant;
use tokio::sync::watch;

impl SyncEngine {
    pub(super) async fn run_live(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> ClientResult<SessionEnd> {
        let (url, token) = self.session.require().await?;
        let client_id = self.mirror.identity().await?.client_id;
        let mut link = self.transport.open_live(&url).await?;
        let start = self.mirror.sync_state().await?;
        link.send(&ClientMessage::Hello {
            token,
            client_id,
            cursor: start.cursor,
        })
        .await?;

        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.tick().await;
        let mut retry_timer = tokio::time::interval(self.config.push_retry);
        retry_timer.tick().await;
        let mut last_heard = Instant::now();
        let mut in_flight: Option<(u64, Instant)> = None;
        let mut views_due = false;
        let mut request_id = 0u64;
        let mut nonce = 0u64;
        let mut welcomed = false;
        let mut initial_rows = 0u64;
        let first_sync = !start.synced_once;
        loop {
            let mut push_now = false;
            tokio::select! {
                _ = shutdown.changed() => {
                    link.close().await;
                    return Ok(SessionEnd::Shutdown);
                }
                received = link.recv() => {
                    last_heard = Instant::now();
                    let Some(msg) = received? else { continue };
                    match msg {
                        ServerMessage::Welcome { head, time_zone, server_epoch, .. } => {
                            // Only the epoch here: the head of a welcome is
                            // the instance's, which may trail the database.
                            if self.mirror.check_server(server_epoch, false).await? {
                                link.close().await;
                                self.refresh_status(None).await;
                                return Ok(SessionEnd::Reconnect);
                            }
                            welcomed = true;
                            if let Some(zone) = time_zone {
                                self.mirror.set_time_zone(zone).await?;
                            }
                            if first_sync {
                                self.status.send_modify(|s| s.initial_sync = Some(InitialSync { rows: 0, cursor: start.cursor, head }));
                            }
                            self.refresh_status(Some(Connection::Live)).await;
                            self.clear_error();
                            push_now = true;
                        }
                        ServerMessage::Changes { rows, cursor, last_mutation_id } => {
                            initial_rows += rows.len() as u64;
                            // The server acknowledges our mutations only in a
                            // message that holds every change up to its cursor
                            // (the last catch-up page, a live batch); a page
                            // without the ack may be partial.
                            let complete = last_mutation_id.is_some();
                            self.mirror.apply_remote(rows, cursor, last_mutation_id, complete).await?;
                            if first_sync {
                                self.status.send_modify(|s| if let Some(p) = &mut s.initial_sync { p.rows = initial_rows; p.cursor = cursor; });
                            }
                            self.refresh_status(None).await;
                        }
                        ServerMessage::CaughtUp { cursor } => {
                            self.mirror.apply_remote(Vec::new(), cursor, None, true).await?;
                            self.mirror.mark_synced_once().await?;
                            self.status.send_modify(|s| s.initial_sync = None);
                            self.refresh_status(Some(Connection::Live)).await;
                            views_due = true;
                        }
                        ServerMessage::PushResult { request_id: answered, results } => {
                            if in_flight.is_some_and(|(id, _)| id == answered) {
                                in_flight = None;
                            }
                            self.mirror.apply_results(results).await?;
                            self.refresh_status(None).await;
                            push_now = true;
                        }
                        ServerMessage::Pong { .. } => {}
                        ServerMessage::Error(e) => match e.code {
                            ErrorCode::Unauthorized => return Err(ClientError::Auth(e.message)),
                            ErrorCode::TokenExpired => return Err(ClientError::Expired(e.message)),
                            ErrorCode::SessionChanged => {
                                self.session.refresh_account().await?;
                                return Ok(SessionEnd::Reconnect);
                            }
                            _ => {
                                tracing::warn!(code = ?e.code, message = %e.message, "server error frame");
                                in_flight = None;
                            }
                        },
                    }
                }
                () = self.wake.notified() => push_now = true,
                _ = retry_timer.tick() => {
                    push_now = true;
                    views_due = true;
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.config.dead_after {
                        return Err(ClientError::offline("no answer from the server"));
                    }
                    nonce += 1;
                    link.send(&ClientMessage::Ping { nonce }).await?;
                }
            }
            let stale = in_flight.is_some_and(|(_, at)| at.elapsed() >= self.config.push_retry);
            if welcomed && push_now && (in_flight.is_none() || stale) {
                let mutations = self.mirror.unsent(self.config.push_batch).await?;
                if !mutations.is_empty() {
                    request_id += 1;
                    link.send(&ClientMessage::Push {
                        request_id,
                        mutations,
                    })
                    .await?;
                    in_flight = Some((request_id, Instant::now()));
                }
            }
            // Views queued while offline (new ones are reported as they are
            // made), after the push so they never delay it.
            if welcomed && views_due {
                views_due = false;
                self.flush_views_quietly().await;
            }
        }
    }
}
