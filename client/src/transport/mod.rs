//! The transport: how the client talks to a server, behind a trait so that
//! tests can put anything in its place (an in-process server, a fault
//! injector) and the sync logic stays the same.
//!
//! Two kinds of exchange: requests with one answer (sign-in, push, pull with
//! long-poll, history) and a live link (the WebSocket: `hello`, then
//! messages both ways). [`NetTransport`] is the real one: HTTP requests with
//! reqwest ([`http`]) and the WebSocket with tokio-tungstenite
//! ([`websocket`]).
//!
//! Failures to reach the server are [`ClientError::Offline`] (retry later);
//! refused credentials [`ClientError::Auth`]; other error answers
//! [`ClientError::Server`]; answers that do not decode
//! [`ClientError::Protocol`].

mod http;
pub(crate) mod tls;
mod websocket;

use crate::error::{ClientError, ClientResult};
use clinic_shared::model::{Staff, Table};
use clinic_shared::protocol::{
    AccessLogResponse, ClientMessage, ClinicalRecords, GlassRequest, HistoryResponse, LoginRequest,
    LoginResponse, PasswordChangeRequest, PasswordChangeResponse, PullResponse, PushRequest,
    PushResponse, ServerMessage, ViewReport, ViewsRecorded,
};
use futures_util::future::BoxFuture;
use std::time::Duration;
use uuid::Uuid;

/// A pull request: from which cursor, how long to wait for a change, and
/// which client asks (for its acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullQuery {
    /// Highest sequence number already applied.
    pub cursor: u64,
    /// Seconds the server may wait for a change (0: answer at once).
    pub wait_secs: u64,
    /// The asking client.
    pub client_id: Uuid,
}

/// How the client reaches a server. `server` is the base URL the user
/// signed in to (e.g. `http://127.0.0.1:8787`).
pub trait Transport: Send + Sync + 'static {
    /// `POST /v1/login`.
    fn login<'a>(
        &'a self,
        server: &'a str,
        request: &'a LoginRequest,
    ) -> BoxFuture<'a, ClientResult<LoginResponse>>;
    /// `POST /v1/logout` (ends the session on the server).
    fn logout<'a>(&'a self, server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<()>>;
    /// `GET /v1/me`: the account as it is now.
    fn me<'a>(&'a self, server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<Staff>>;
    /// `GET /v1/history/{table}/{id}`.
    fn history<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        table: Table,
        id: Uuid,
    ) -> BoxFuture<'a, ClientResult<HistoryResponse>>;
    /// `POST /v1/push`.
    fn push<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        request: &'a PushRequest,
    ) -> BoxFuture<'a, ClientResult<PushResponse>>;
    /// `GET /v1/pull`, waiting up to `query.wait_secs` for a change.
    fn pull<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        query: PullQuery,
    ) -> BoxFuture<'a, ClientResult<PullResponse>>;
    /// Opens the live link (`GET /v1/ws`); the caller sends `hello` first.
    fn open_live<'a>(&'a self, server: &'a str) -> BoxFuture<'a, ClientResult<Box<dyn LiveLink>>>;
    /// `POST /v1/password`: the signed-in user changes their password.
    fn change_password<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        request: &'a PasswordChangeRequest,
    ) -> BoxFuture<'a, ClientResult<PasswordChangeResponse>>;
    /// `POST /v1/audit/views`: records the person opened.
    fn report_views<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        report: &'a ViewReport,
    ) -> BoxFuture<'a, ClientResult<ViewsRecorded>>;
    /// `GET /v1/audit/access?patient=`: who received or opened a patient's
    /// records (administrators).
    fn access_log<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        patient: Uuid,
    ) -> BoxFuture<'a, ClientResult<AccessLogResponse>>;
    /// `GET /v1/patients/{id}/clinical`: a patient's clinical records in
    /// full, when they are in the caller's care (`not_in_care` if not).
    fn clinical<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        patient: Uuid,
        client_id: Uuid,
    ) -> BoxFuture<'a, ClientResult<ClinicalRecords>>;
    /// `POST /v1/patients/{id}/glass`: breaks the glass for a patient
    /// outside the caller's care, with the reason; answers their records.
    fn break_glass<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        patient: Uuid,
        request: &'a GlassRequest,
    ) -> BoxFuture<'a, ClientResult<ClinicalRecords>>;
}

/// An open live link: messages both ways, in order.
pub trait LiveLink: Send {
    /// Sends one message.
    fn send<'a>(&'a mut self, message: &'a ClientMessage) -> BoxFuture<'a, ClientResult<()>>;
    /// The next thing from the server: `Some(message)`, or `None` for a
    /// transport-level keep-alive (the link is alive, nothing to do). Must be
    /// cancel-safe (the sync loop races it against timers). `Offline` when
    /// the link is closed.
    fn recv(&mut self) -> BoxFuture<'_, ClientResult<Option<ServerMessage>>>;
    /// Closes the link politely.
    fn close(&mut self) -> BoxFuture<'_, ()>;
}

/// The real transport: HTTP requests and a WebSocket, over TLS to any
/// server but this computer, trusting what [`tls::Trust`] trusts.
pub(crate) struct NetTransport {
    trust: tls::Trust,
    timeout: Duration,
    /// Rebuilt when a certificate is pinned.
    net: std::sync::RwLock<Net>,
}

#[derive(Clone)]
struct Net {
    http: http::HttpRequests,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl NetTransport {
    /// A transport whose connections and requests give up after `timeout`
    /// (long-polls get their wait on top).
    pub(crate) fn new(timeout: Duration, trust: tls::Trust) -> ClientResult<NetTransport> {
        let net = Self::build(timeout, &trust)?;
        Ok(NetTransport {
            trust,
            timeout,
            net: std::sync::RwLock::new(net),
        })
    }

    fn build(timeout: Duration, trust: &tls::Trust) -> ClientResult<Net> {
        let tls = trust.client_config()?;
        Ok(Net {
            http: http::HttpRequests::new(timeout, tls.clone())?,
            tls,
        })
    }

    fn net(&self) -> Net {
        self.net.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Trusts the certificate `server` presented when it was refused, if
    /// its fingerprint is the one the person confirmed; from the next
    /// request on.
    pub(crate) fn pin(
        &self,
        server: &str,
        confirmed: &clinic_shared::fingerprint::Fingerprint,
    ) -> ClientResult<bool> {
        if !self.trust.pin(server, confirmed)? {
            return Ok(false);
        }
        let net = Self::build(self.timeout, &self.trust)?;
        *self.net.write().unwrap_or_else(|p| p.into_inner()) = net;
        Ok(true)
    }

    /// Runs a request to `server`: refuses a plain-HTTP address off this
    /// computer, and tells a server whose certificate nothing here vouches
    /// for from one that cannot be reached.
    async fn guarded<T>(
        &self,
        server: &str,
        request: impl std::future::Future<Output = ClientResult<T>>,
    ) -> ClientResult<T> {
        tls::check_server_url(server)?;
        match request.await {
            Err(ClientError::Offline { reason, source }) => match self.trust.seen(server) {
                Some(presented) => Err(ClientError::UntrustedServer {
                    server: server.to_owned(),
                    fingerprint: presented.fingerprint.hex(),
                    short: presented.fingerprint.short(),
                }),
                None => Err(ClientError::Offline { reason, source }),
            },
            other => other,
        }
    }
}

impl Transport for NetTransport {
    fn login<'a>(
        &'a self,
        server: &'a str,
        request: &'a LoginRequest,
    ) -> BoxFuture<'a, ClientResult<LoginResponse>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.login(server, request)).await
        })
    }
    fn logout<'a>(&'a self, server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.logout(server, token)).await
        })
    }
    fn me<'a>(&'a self, server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<Staff>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.me(server, token)).await
        })
    }
    fn history<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        table: Table,
        id: Uuid,
    ) -> BoxFuture<'a, ClientResult<HistoryResponse>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.history(server, token, table, id))
                .await
        })
    }
    fn push<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        request: &'a PushRequest,
    ) -> BoxFuture<'a, ClientResult<PushResponse>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.push(server, token, request))
                .await
        })
    }
    fn pull<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        query: PullQuery,
    ) -> BoxFuture<'a, ClientResult<PullResponse>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.pull(server, token, query))
                .await
        })
    }
    fn open_live<'a>(&'a self, server: &'a str) -> BoxFuture<'a, ClientResult<Box<dyn LiveLink>>> {
        Box::pin(async move {
            let net = self.net();
            let link = self
                .guarded(server, websocket::connect(server, self.timeout, net.tls))
                .await?;
            Ok(Box::new(link) as Box<dyn LiveLink>)
        })
    }
    fn change_password<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        request: &'a PasswordChangeRequest,
    ) -> BoxFuture<'a, ClientResult<PasswordChangeResponse>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.change_password(server, token, request))
                .await
        })
    }
    fn report_views<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        report: &'a ViewReport,
    ) -> BoxFuture<'a, ClientResult<ViewsRecorded>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.report_views(server, token, report))
                .await
        })
    }
    fn access_log<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        patient: Uuid,
    ) -> BoxFuture<'a, ClientResult<AccessLogResponse>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.access_log(server, token, patient))
                .await
        })
    }
    fn clinical<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        patient: Uuid,
        client_id: Uuid,
    ) -> BoxFuture<'a, ClientResult<ClinicalRecords>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(server, net.http.clinical(server, token, patient, client_id))
                .await
        })
    }
    fn break_glass<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        patient: Uuid,
        request: &'a GlassRequest,
    ) -> BoxFuture<'a, ClientResult<ClinicalRecords>> {
        Box::pin(async move {
            let net = self.net();
            self.guarded(
                server,
                net.http.break_glass(server, token, patient, request),
            )
            .await
        })
    }
}

/// A transport failure that means "the server cannot be reached".
pub(crate) fn offline(e: impl std::error::Error + Send + Sync + 'static) -> ClientError {
    ClientError::Offline {
        reason: e.to_string(),
        source: Some(Box::new(e)),
    }
}
