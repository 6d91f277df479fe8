//! The HTTP half of the real transport: one reqwest client, one helper for
//! "send, check the status, decode the JSON answer".

use super::{PullQuery, offline};
use crate::error::{ClientError, ClientResult};
use clinic_shared::model::{Staff, Table};
use clinic_shared::protocol::{
    AccessLogResponse, ClinicalRecords, ErrorBody, ErrorCode, GlassRequest, HistoryResponse,
    LoginRequest, LoginResponse, PasswordChangeRequest, PasswordChangeResponse, PullResponse,
    PushRequest, PushResponse, ViewReport, ViewsRecorded,
};
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub(super) struct HttpRequests {
    client: reqwest::Client,
    timeout: Duration,
}

/// Turns an HTTP error answer into a client error.
async fn error_of(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body: Option<ErrorBody> = response.json().await.ok();
    match body {
        Some(b) if b.code == ErrorCode::Unauthorized => ClientError::Auth(b.message),
        Some(b) if b.code == ErrorCode::TokenExpired => ClientError::Expired(b.message),
        Some(b) => ClientError::Server(b),
        None => ClientError::Protocol(format!("HTTP {status} without an error body")),
    }
}

/// Sends a request and decodes its JSON answer: a transport failure is
/// `Offline`, an error status its `ErrorBody`, a bad body `Protocol`.
async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> ClientResult<T> {
    let response = request.send().await.map_err(offline)?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    response
        .json()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

impl HttpRequests {
    pub(super) fn new(
        timeout: Duration,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> ClientResult<HttpRequests> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .use_preconfigured_tls((*tls).clone())
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot set up HTTP: {e}")))?;
        Ok(HttpRequests { client, timeout })
    }

    pub(super) async fn login(
        &self,
        server: &str,
        request: &LoginRequest,
    ) -> ClientResult<LoginResponse> {
        answer(
            self.client
                .post(format!("{server}/v1/login"))
                .timeout(self.timeout)
                .json(request),
        )
        .await
    }

    pub(super) async fn logout(&self, server: &str, token: &str) -> ClientResult<()> {
        let response = self
            .client
            .post(format!("{server}/v1/logout"))
            .bearer_auth(token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(offline)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_of(response).await)
        }
    }

    pub(super) async fn me(&self, server: &str, token: &str) -> ClientResult<Staff> {
        answer(
            self.client
                .get(format!("{server}/v1/me"))
                .bearer_auth(token)
                .timeout(self.timeout),
        )
        .await
    }

    pub(super) async fn history(
        &self,
        server: &str,
        token: &str,
        table: Table,
        id: Uuid,
    ) -> ClientResult<HistoryResponse> {
        answer(
            self.client
                .get(format!("{server}/v1/history/{table}/{id}"))
                .bearer_auth(token)
                .timeout(self.timeout),
        )
        .await
    }

    pub(super) async fn push(
        &self,
        server: &str,
        token: &str,
        request: &PushRequest,
    ) -> ClientResult<PushResponse> {
        answer(
            self.client
                .post(format!("{server}/v1/push"))
                .bearer_auth(token)
                .timeout(self.timeout)
                .json(request),
        )
        .await
    }

    pub(super) async fn pull(
        &self,
        server: &str,
        token: &str,
        q: PullQuery,
    ) -> ClientResult<PullResponse> {
        answer(
            self.client
                .get(format!(
                    "{server}/v1/pull?cursor={}&wait={}&client_id={}",
                    q.cursor, q.wait_secs, q.client_id
                ))
                .bearer_auth(token)
                .timeout(self.timeout + Duration::from_secs(q.wait_secs)),
        )
        .await
    }

    pub(super) async fn change_password(
        &self,
        server: &str,
        token: &str,
        request: &PasswordChangeRequest,
    ) -> ClientResult<PasswordChangeResponse> {
        answer(
            self.client
                .post(format!("{server}/v1/password"))
                .bearer_auth(token)
                .timeout(self.timeout)
                .json(request),
        )
        .await
    }

    pub(super) async fn report_views(
        &self,
        server: &str,
        token: &str,
        report: &ViewReport,
    ) -> ClientResult<ViewsRecorded> {
        answer(
            self.client
                .post(format!("{server}/v1/audit/views"))
                .bearer_auth(token)
                .timeout(self.timeout)
                .json(report),
        )
        .await
    }

    pub(super) async fn access_log(
        &self,
        server: &str,
        token: &str,
        patient: Uuid,
    ) -> ClientResult<AccessLogResponse> {
        answer(
            self.client
                .get(format!("{server}/v1/audit/access?patient={patient}"))
                .bearer_auth(token)
                .timeout(self.timeout),
        )
        .await
    }

    pub(super) async fn clinical(
        &self,
        server: &str,
        token: &str,
        patient: Uuid,
        client_id: Uuid,
    ) -> ClientResult<ClinicalRecords> {
        answer(
            self.client
                .get(format!(
                    "{server}/v1/patients/{patient}/clinical?client_id={client_id}"
                ))
                .bearer_auth(token)
                .timeout(self.timeout),
        )
        .await
    }

    pub(super) async fn break_glass(
        &self,
        server: &str,
        token: &str,
        patient: Uuid,
        request: &GlassRequest,
    ) -> ClientResult<ClinicalRecords> {
        answer(
            self.client
                .post(format!("{server}/v1/patients/{patient}/glass"))
                .bearer_auth(token)
                .timeout(self.timeout)
                .json(request),
        )
        .await
    }
}
