//! The WebSocket half of the real transport (tokio-tungstenite).

use super::{LiveLink, offline};
use crate::error::{ClientError, ClientResult};
use clinic_shared::protocol::{ClientMessage, ServerMessage};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(super) struct WsLink {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Opens `GET /v1/ws` on `server` (`http` becomes `ws`, `https` `wss`,
/// with the same TLS trust as the HTTP requests).
pub(super) async fn connect(
    server: &str,
    timeout: Duration,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> ClientResult<WsLink> {
    let url = format!("{}/v1/ws", server.replacen("http", "ws", 1));
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    );
    let (ws, _) = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ClientError::offline("timed out opening the WebSocket"))?
        .map_err(offline)?;
    Ok(WsLink { ws })
}

impl LiveLink for WsLink {
    fn send<'a>(&'a mut self, message: &'a ClientMessage) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async move {
            let text =
                serde_json::to_string(message).map_err(|e| ClientError::Protocol(e.to_string()))?;
            self.ws
                .send(Message::Text(text.into()))
                .await
                .map_err(offline)
        })
    }

    fn recv(&mut self) -> BoxFuture<'_, ClientResult<Option<ServerMessage>>> {
        // `StreamExt::next` is cancel-safe, and nothing else is awaited.
        Box::pin(async move {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(format!("bad server message: {e}"))),
                Some(Ok(Message::Close(_))) | None => {
                    Err(ClientError::offline("the server closed the connection"))
                }
                Some(Ok(_)) => Ok(None),
                Some(Err(e)) => Err(offline(e)),
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.ws.close(None).await;
        })
    }
}
