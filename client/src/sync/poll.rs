//! Syncing over plain HTTP: push everything pending, long-poll for changes;
//! and the one-shot round (`sync_once`) the CLI and tests use.

use super::{SessionEnd, SyncEngine, millis, with_jitter};
use crate::error::{ClientError, ClientResult};
use crate::transport::PullQuery;
use crate::types::{Connection, SyncReport};
use clinic_shared::protocol::{MutationOutcome, PullResponse, PushRequest};
use std::time::{Duration, Instant};
use tokio::sync::watch;

impl SyncEngine {
    /// HTTP polling until `deadline` (or forever when the WebSocket is off).
    /// `None` when the deadline came (time to try the WebSocket again).
    pub(super) async fn poll_until(
        &self,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<SessionEnd> {
        let mut failure_backoff = self.config.backoff_min;
        loop {
            if *shutdown.borrow() {
                return Some(SessionEnd::Shutdown);
            }
            let now = Instant::now();
            if self.config.websocket && now >= deadline {
                return None;
            }
            let Ok(Some((url, token))) = self.session.credentials().await else {
                return Some(SessionEnd::Reconnect);
            };
            let remaining = deadline.saturating_duration_since(now).as_secs();
            let wait = if self.config.websocket {
                remaining.min(self.config.long_poll_secs)
            } else {
                self.config.long_poll_secs
            };
            let round = async {
                self.push_http(&url, &token).await?;
                self.flush_views_quietly().await;
                // A local write ends the long-poll early so it is pushed now.
                tokio::select! {
                    page = self.pull_http(&url, &token, wait) => page,
                    () = self.wake.notified() => Ok(None),
                }
            };
            let result = tokio::select! {
                r = round => r,
                _ = shutdown.changed() => return Some(SessionEnd::Shutdown),
            };
            match result {
                Ok(page) => {
                    failure_backoff = self.config.backoff_min;
                    if page.as_ref().is_some_and(|p| !p.more)
                        && let Err(e) = self.mirror.mark_synced_once().await
                    {
                        self.set_error(&e);
                    }
                    self.clear_error();
                    self.refresh_status(Some(Connection::Polling)).await;
                }
                Err(e) => {
                    if let Some(end) = self.session_end_of(&e).await {
                        return Some(end);
                    }
                    self.set_error(&e);
                    let pause = with_jitter(failure_backoff).min(
                        deadline
                            .saturating_duration_since(Instant::now())
                            .max(Duration::from_millis(100)),
                    );
                    failure_backoff = (failure_backoff * 2).min(self.config.backoff_max);
                    self.refresh_status(Some(Connection::Offline {
                        retry_in_ms: millis(pause),
                    }))
                    .await;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.wake.notified() => {}
                        _ = shutdown.changed() => return Some(SessionEnd::Shutdown),
                    }
                }
            }
        }
    }

    /// Pushes every unsent mutation over HTTP; returns (applied, rejected).
    async fn push_http(&self, url: &str, token: &str) -> ClientResult<(u64, u64)> {
        let (mut applied, mut rejected) = (0, 0);
        let client_id = self.mirror.identity().await?.client_id;
        loop {
            let mutations = self.mirror.unsent(self.config.push_batch).await?;
            if mutations.is_empty() {
                return Ok((applied, rejected));
            }
            let sent = mutations.len();
            let request = PushRequest {
                client_id,
                mutations,
            };
            let pushed = self.transport.push(url, token, &request).await?;
            // Results of a restored server are applied only after the
            // mirror has started over (stale sync marks would drop them).
            if self
                .mirror
                .check_server(pushed.server_epoch.clone(), false)
                .await?
            {
                self.mirror.apply_results(pushed.results).await?;
                return Ok((applied, rejected));
            }
            let mut retry = false;
            for r in &pushed.results {
                match r.outcome {
                    MutationOutcome::Applied { .. } => applied += 1,
                    MutationOutcome::Rejected { .. } => rejected += 1,
                    MutationOutcome::Retry { .. } => retry = true,
                }
            }
            self.mirror.apply_results(pushed.results).await?;
            if retry || sent < self.config.push_batch {
                return Ok((applied, rejected));
            }
        }
    }

    /// Pulls one page from the mirror's cursor and applies it. `None` when
    /// the page says the account's role changed (the mirror has dropped what
    /// the new role may not read) or the server was restored from a backup
    /// (the mirror dropped its rows): it starts over from cursor 0, so the
    /// page (computed from the old cursor) is not applied; pull again.
    async fn pull_http(
        &self,
        url: &str,
        token: &str,
        wait: u64,
    ) -> ClientResult<Option<PullResponse>> {
        let cursor = self.mirror.sync_state().await?.cursor;
        let identity = self.mirror.identity().await?;
        let query = PullQuery {
            cursor,
            wait_secs: wait,
            client_id: identity.client_id,
        };
        let page = self.transport.pull(url, token, query).await?;
        if self
            .mirror
            .check_server(page.server_epoch.clone(), cursor > page.head)
            .await?
        {
            return Ok(None);
        }
        if identity.user.as_ref().is_some_and(|u| u.role != page.role) {
            self.session.refresh_account().await?;
            return Ok(None);
        }
        self.mirror
            .apply_remote(
                page.rows.clone(),
                page.cursor,
                page.last_mutation_id,
                !page.more,
            )
            .await?;
        Ok(Some(page))
    }

    /// One round over HTTP: push everything pending, pull until caught up.
    /// Fails when the server cannot be reached; the changes stay queued.
    pub(crate) async fn sync_once(&self) -> ClientResult<SyncReport> {
        let (url, token) = self.session.require().await?;
        let mut report = SyncReport::default();
        let (applied, rejected) = self.push_http(&url, &token).await?;
        self.flush_views_quietly().await;
        report.applied = applied;
        report.rejected = rejected;
        let mut restarts = 0;
        loop {
            let Some(page) = self.pull_http(&url, &token, 0).await? else {
                // The role changed, or the server was restored: from the
                // start again (a server that keeps changing under us is its
                // trouble, not a loop).
                restarts += 1;
                if restarts > 3 {
                    return Err(ClientError::Protocol(
                        "the server's answers keep changing (role or restore); try again".into(),
                    ));
                }
                continue;
            };
            report.rows += page.rows.len() as u64;
            if !page.more {
                break;
            }
        }
        self.mirror.mark_synced_once().await?;
        // Effects pulled above may have completed pushed mutations.
        let stats = self.mirror.stats().await?;
        report.cursor = stats.cursor;
        report.pending = stats.pending;
        self.refresh_status(None).await;
        Ok(report)
    }
}
