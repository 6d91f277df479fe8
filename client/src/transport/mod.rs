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
mod websocket;

use crate::error::{ClientError, ClientResult};
use clinic_shared::model::{Staff, Table};
use clinic_shared::protocol::{
    ClientMessage, HistoryResponse, LoginRequest, LoginResponse, PullResponse, PushRequest,
    PushResponse, ServerMessage,
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

/// The real transport: HTTP requests and a WebSocket.
pub(crate) struct NetTransport {
    http: http::HttpRequests,
    connect_timeout: Duration,
}

impl NetTransport {
    /// A transport whose connections and requests give up after `timeout`
    /// (long-polls get their wait on top).
    pub(crate) fn new(timeout: Duration) -> ClientResult<NetTransport> {
        Ok(NetTransport {
            http: http::HttpRequests::new(timeout)?,
            connect_timeout: timeout,
        })
    }
}

impl Transport for NetTransport {
    fn login<'a>(
        &'a self,
        server: &'a str,
        request: &'a LoginRequest,
    ) -> BoxFuture<'a, ClientResult<LoginResponse>> {
        Box::pin(self.http.login(server, request))
    }
    fn logout<'a>(&'a self, server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(self.http.logout(server, token))
    }
    fn me<'a>(&'a self, server: &'a str, token: &'a str) -> BoxFuture<'a, ClientResult<Staff>> {
        Box::pin(self.http.me(server, token))
    }
    fn history<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        table: Table,
        id: Uuid,
    ) -> BoxFuture<'a, ClientResult<HistoryResponse>> {
        Box::pin(self.http.history(server, token, table, id))
    }
    fn push<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        request: &'a PushRequest,
    ) -> BoxFuture<'a, ClientResult<PushResponse>> {
        Box::pin(self.http.push(server, token, request))
    }
    fn pull<'a>(
        &'a self,
        server: &'a str,
        token: &'a str,
        query: PullQuery,
    ) -> BoxFuture<'a, ClientResult<PullResponse>> {
        Box::pin(self.http.pull(server, token, query))
    }
    fn open_live<'a>(&'a self, server: &'a str) -> BoxFuture<'a, ClientResult<Box<dyn LiveLink>>> {
        Box::pin(async move {
            let link = websocket::connect(server, self.connect_timeout).await?;
            Ok(Box::new(link) as Box<dyn LiveLink>)
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
