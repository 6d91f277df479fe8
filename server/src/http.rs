//! The HTTP API: routes, limits, the extractors that authenticate a request
//! ([`Caller`], [`SignedIn`], [`Origin`]; the logic is in
//! [`crate::session`]) and JSON errors.
//!
//! Every error is a JSON [`ErrorBody`] `{code, message, field?, retryable}`
//! with a matching status. Bodies are capped at
//! [`limits::MAX_BODY_BYTES`]; ordinary requests time out after
//! `Config::request_timeout` (long polls have their own bound).
//!
//! Access control: sign-in and password change go through the throttle;
//! a caller who must change their password only reaches `me`, logout and
//! the password change; every change to an account's access pokes
//! [`crate::revocation`] so its open connections re-check at once; pulls,
//! history reads and view reports are written to the access log
//! ([`crate::audit`]) before they are answered.

use crate::audit;
use crate::blocking::{blocking, storage_error_body};
use crate::session::{self, Attempt, Caller, Origin, Refused};
use crate::storage::{ChangesPage, ClientRecord, NewAccess, SecurityKind, Session, StorageError};
use crate::{AppState, admin, auth, ws};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State, WebSocketUpgrade,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clinic_shared::codec;
use clinic_shared::field_access;
use clinic_shared::model::{Role, Staff, Table, Timestamp};
use clinic_shared::permissions;
use clinic_shared::protocol::{
    AccessKind, AccessLogResponse, ClinicalRecords, ErrorBody, ErrorCode, GlassRequest,
    HistoryResponse, LoginRequest, LoginResponse, PasswordChangeRequest, PasswordChangeResponse,
    PasswordResetRequest, PullResponse, PushRequest, PushResponse, SessionsEnded,
    SignInEventsResponse, SignInKind, ViewReport, ViewsRecorded, limits,
};
use clinic_shared::validate;
use futures_util::StreamExt;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tower_http::timeout::TimeoutLayer;
use uuid::Uuid;

/// An error answer.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        ApiError(body)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError(storage_error_body(&e))
    }
}

impl From<admin::AdminError> for ApiError {
    fn from(e: admin::AdminError) -> Self {
        match e {
            admin::AdminError::Invalid(fields) => {
                let message = fields
                    .iter()
                    .map(|f| format!("{} {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut body = ErrorBody::new(ErrorCode::InvalidField, message);
                body.field = fields.into_iter().next().map(|f| f.field);
                ApiError(body)
            }
            admin::AdminError::UnknownUser(_) => {
                ApiError::new(ErrorCode::NotFound, "no such staff account")
            }
            admin::AdminError::Storage(e) => e.into(),
            other => {
                tracing::error!(error = %other, "account change failed");
                ApiError::new(ErrorCode::Internal, "the account could not be changed")
            }
        }
    }
}

/// A query string decoded like the JSON bodies are: a value that does not
/// fit is a `400` whose `field` names the parameter (axum's own `Query`
/// only puts the name inside its English message).
pub struct StrictQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for StrictQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        decode_query(parts.uri.query().unwrap_or("")).map(StrictQuery)
    }
}

/// Decodes a URL query string into `T`, naming the parameter on error.
pub fn decode_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(pairs).map_err(|e| {
        let mut field = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing or repeated parameter is reported on the whole query
        // (path "."), with the name between backticks in serde's message.
        if field == "."
            && let Some(name) = inner.split('`').nth(1)
        {
            field = name.to_owned();
        }
        let message = if field == "." {
            format!("the query string is not valid: {inner}")
        } else if inner.starts_with("missing field") {
            format!("query parameter {field} is required")
        } else if inner.starts_with("duplicate field") {
            format!("query parameter {field} is given more than once")
        } else {
            format!("query parameter {field}: {inner}")
        };
        let mut body = ErrorBody::new(ErrorCode::BadRequest, message);
        if field != "." {
            body = body.with_field(field);
        }
        ApiError(body)
    })
}

/// Seconds a client is asked to wait before retrying after a `503`
/// (`Retry-After`): long enough for a full disk to be cleared or a restart
/// to finish, short enough that queued changes are not held up for long.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The HTTP status for an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::PasswordChangeRequired | ErrorCode::NotInCare => {
            StatusCode::FORBIDDEN
        }
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::OutOfOrder | ErrorCode::Lagged | ErrorCode::SessionChanged => {
            StatusCode::CONFLICT
        }
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let mut response = (status, Json(self.0)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The unread rest of the body makes the connection unusable:
            // tell the client not to send another request on it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Decodes a JSON body, mapping every failure to a named error.
fn json_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {} bytes", limits::MAX_BODY_BYTES),
            )
        } else {
            ApiError::new(ErrorCode::BadRequest, rejection.body_text())
        }
    })?;
    codec::decode(&bytes).map_err(ApiError)
}

/// A signed-in caller, also one who must change their password first: only
/// `me`, logout and the password change take this.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Caller);

fn bearer(parts: &Parts) -> ApiResult<&str> {
    let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "missing Authorization: Bearer <token> header",
        )
    })?;
    header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "the Authorization header must be `Bearer <token>`",
        )
    })
}

/// The token of `Bearer <token>`. The scheme is matched without regard to
/// case and may be followed by several spaces (RFC 9110 §11.1, §11.4).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<SignedIn> {
        let token = bearer(parts)?;
        Ok(SignedIn(session::authenticate(state, token).await?))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let SignedIn(caller) = SignedIn::from_request_parts(parts, state).await?;
        if caller.must_change_password {
            return Err(ApiError(session::password_change_required()));
        }
        Ok(caller)
    }
}

/// The hash of the request's bearer token, not yet checked: for a handler
/// that reads the session together with what else it needs.
pub struct BearerHash(String);

impl FromRequestParts<AppState> for BearerHash {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> ApiResult<BearerHash> {
        Ok(BearerHash(auth::token_hash(bearer(parts)?)))
    }
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Origin, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip().to_canonical());
        let client_id = parts
            .headers
            .get("x-clinic-client")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v.trim()).ok());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.chars()
                    .filter(|c| !c.is_control())
                    .take(session::MAX_USER_AGENT)
                    .collect::<String>()
            })
            .filter(|v| !v.is_empty());
        Ok(Origin {
            address,
            client_id,
            user_agent,
        })
    }
}

fn require_admin(caller: &Caller, what: &str) -> ApiResult<()> {
    if caller.user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only administrators may {what}"),
        ))
    }
}

/// `429` with `Retry-After` for a throttled sign-in.
fn throttled(retry_after: u64) -> Response {
    let body = ErrorBody::new(
        ErrorCode::RateLimited,
        format!("too many failed sign-ins; try again in {retry_after} s"),
    );
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The router with every route and limit.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let timed = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/password", post(change_password))
        .route("/v1/push", post(push))
        .route("/v1/history/{table}/{id}", get(history))
        .route("/v1/audit/views", post(report_views))
        .route("/v1/patients/{id}/clinical", get(clinical))
        .route("/v1/patients/{id}/glass", post(break_the_glass))
        .route("/v1/audit/access", get(access_log))
        .route("/v1/audit/sign-ins", get(sign_ins))
        .route("/v1/staff/{id}/end-sessions", post(staff_end_sessions))
        .route("/v1/staff/{id}/password", post(staff_reset_password))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    Router::new()
        .merge(timed)
        // Long-polls and sockets bound their own time.
        .route("/v1/pull", get(pull))
        .route("/v1/ws", get(websocket))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::count_in_flight,
        ))
        .with_state(state)
}

/// Declared bodies over the limit but up to this size are read and thrown
/// away before the `413`: an ordinary client that sent too much then reads
/// the answer, instead of finding the connection reset while it still
/// writes (seen as "broken pipe" under load). Larger declarations are
/// answered at once.
const DRAIN_OVERSIZE_UP_TO: u64 = 8 * limits::MAX_BODY_BYTES as u64;

/// How long such a body may take to arrive before the answer goes anyway.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Answers `413` without waiting for a body that will be refused anyway when
/// the declared `Content-Length` is absurd: a client announcing 100 GB must
/// not hold the connection until the request timeout.
async fn refuse_declared_oversize(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limits::MAX_BODY_BYTES as u64) {
        if declared <= DRAIN_OVERSIZE_UP_TO {
            let mut body = request.into_body().into_data_stream();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while let Some(Ok(_)) = body.next().await {}
            })
            .await;
        }
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {} bytes", limits::MAX_BODY_BYTES),
        )
        .into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    let body = ErrorBody::new(
        ErrorCode::BadRequest,
        "this endpoint does not take that HTTP method",
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let head = *state.feed.head().borrow();
    let sessions = state
        .live_sessions
        .load(std::sync::atomic::Ordering::Relaxed);
    let waiting = state
        .waiting_pulls
        .load(std::sync::atomic::Ordering::Relaxed);
    Json(serde_json::json!({
        "status": "ok",
        "head": head,
        "ws_sessions": sessions,
        "waiting_pulls": waiting,
    }))
}

/// `GET /metrics` on the main listener, for administrators (the
/// `--metrics-listen` address serves the same without a sign-in).
async fn metrics(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    require_admin(&caller, "read the server's metrics")?;
    Ok(crate::metrics::answer(&state.metrics).await)
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

fn wrong_credentials() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "wrong username or password")
}

async fn login(
    State(state): State<AppState>,
    origin: Origin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: LoginRequest = json_body(body)?;
    if request.username.len() > 100 || request.password.len() > validate::MAX_PASSWORD_BYTES {
        return Err(wrong_credentials());
    }
    let attempt = Attempt {
        kind: SignInKind::SignIn,
        username: session::normalize_username(&request.username),
        password: request.password.clone(),
        origin: &origin,
    };
    let (user, security) = match session::verify_credentials(&state, attempt).await {
        Ok(found) => found,
        Err(Refused::Locked { retry_after }) => return Ok(throttled(retry_after)),
        Err(Refused::Wrong) => return Err(wrong_credentials()),
        Err(Refused::Disabled) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this account is disabled; ask an administrator",
            ));
        }
        Err(Refused::Failed(e)) => return Err(e.into()),
    };
    // A password that no longer meets the policy (set before it existed)
    // must be changed now; the demo's `demo` only passes in demo mode.
    let mut errors = validate::Errors::new();
    validate::password("password", &request.password, &mut errors);
    let weak = !state.config.demo && errors.finish().is_err();
    let must_change_password = security.must_change_password || weak;
    if weak && !security.must_change_password {
        let storage = state.storage.clone();
        let id = user.id;
        blocking(move || storage.write(&mut |tx| tx.set_must_change_password(id, true))).await?;
    }
    let token = auth::new_token();
    let now = (state.config.clock)();
    let ttl = i64::try_from(state.config.session_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let expires_at = Timestamp::from_unix(now.unix().saturating_add(ttl)).unwrap_or(now);
    let session = Session {
        user_id: user.id,
        expires_at,
    };
    let storage = state.storage.clone();
    let hash = auth::token_hash(&token);
    blocking(move || storage.create_session(&hash, &session)).await?;
    tracing::info!(user_id = %user.id, must_change_password, "signed in");
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user,
        time_zone: Some(state.config.time_zone.clone()),
        must_change_password,
    })
    .into_response())
}

/// Query of `POST /v1/logout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutQuery {
    /// End every session of the account, not only this one.
    #[serde(default)]
    pub everywhere: bool,
}

async fn logout(
    State(state): State<AppState>,
    SignedIn(caller): SignedIn,
    StrictQuery(q): StrictQuery<LogoutQuery>,
) -> ApiResult<Response> {
    let storage = state.storage.clone();
    let user_id = caller.user.id;
    if q.everywhere {
        let clock = state.config.clock.clone();
        let ended = blocking(move || {
            admin::end_sessions(storage.as_ref(), user_id, &clock).map_err(|e| match e {
                admin::AdminError::Storage(e) => e,
                other => StorageError::Database(other.to_string()),
            })
        })
        .await?;
        state.revocations.poke();
        tracing::info!(%user_id, sessions = ended.sessions, "signed out everywhere");
        return Ok(Json(SessionsEnded {
            sessions_ended: ended.sessions,
            epoch: ended.epoch,
        })
        .into_response());
    }
    let hash = caller.token_hash.clone();
    let now = (state.config.clock)();
    blocking(move || {
        storage.write(&mut |tx| {
            tx.delete_session(&hash)?;
            tx.record_security_event(user_id, SecurityKind::SignedOut, Some(&hash), now)
                .map(|_| ())
        })
    })
    .await?;
    state.revocations.poke();
    tracing::info!(%user_id, "signed out");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(SignedIn(caller): SignedIn) -> Json<Staff> {
    Json(caller.user)
}

async fn change_password(
    State(state): State<AppState>,
    origin: Origin,
    SignedIn(caller): SignedIn,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: PasswordChangeRequest = json_body(body)?;
    // The new password is checked first: a refused one costs no attempt.
    admin::check_new_password("new_password", &request.new_password)?;
    if request.new_password == request.current_password {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                "new_password must differ from the current password",
            )
            .with_field("new_password"),
        ));
    }
    let wrong_current = || {
        ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                "current_password is not this account's password",
            )
            .with_field("current_password"),
        )
    };
    if request.current_password.len() > validate::MAX_PASSWORD_BYTES {
        return Err(wrong_current());
    }
    let attempt = Attempt {
        kind: SignInKind::PasswordChange,
        username: caller.user.username.clone(),
        password: request.current_password.clone(),
        origin: &origin,
    };
    match session::verify_credentials(&state, attempt).await {
        Ok(_) => {}
        Err(Refused::Locked { retry_after }) => return Ok(throttled(retry_after)),
        Err(Refused::Wrong) => return Err(wrong_current()),
        Err(Refused::Disabled) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this account is disabled",
            ));
        }
        Err(Refused::Failed(e)) => return Err(e.into()),
    }
    let new_password = request.new_password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&new_password))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the password could not be hashed"))?;
    let storage = state.storage.clone();
    let (user_id, keep) = (caller.user.id, caller.token_hash.clone());
    let now = (state.config.clock)();
    let (ended, epoch) = blocking(move || {
        let mut result = (0, 0);
        storage.write(&mut |tx| {
            tx.set_password_hash(user_id, &hash)?;
            tx.set_must_change_password(user_id, false)?;
            let ended = tx.delete_other_sessions(user_id, &keep)?;
            let event =
                tx.record_security_event(user_id, SecurityKind::PasswordChanged, Some(&keep), now)?;
            result = (ended, event.epoch);
            Ok(())
        })?;
        Ok(result)
    })
    .await?;
    state.revocations.poke();
    tracing::info!(%user_id, other_sessions_ended = ended, "password changed");
    Ok(Json(PasswordChangeResponse {
        other_sessions_ended: ended,
        epoch,
    })
    .into_response())
}

async fn push(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<PushResponse>> {
    let request: PushRequest = json_body(body)?;
    let prepared = session::prepare_push(&caller, request.mutations).await?;
    let results = state
        .writer
        .push(caller.actor(), request.client_id, prepared)
        .await?;
    Ok(Json(PushResponse {
        results,
        server_epoch: state.server_epoch.to_string(),
    }))
}

/// Refuses a client id bound to another user.
async fn check_client(state: &AppState, caller: &Caller, client_id: Uuid) -> ApiResult<()> {
    let storage = state.storage.clone();
    let bound = blocking(move || storage.client(client_id)).await?;
    refuse_other_users_client(caller, bound.as_ref())
}

/// A client id bound to another user may not be used.
fn refuse_other_users_client(caller: &Caller, bound: Option<&ClientRecord>) -> ApiResult<()> {
    if bound.is_some_and(|c| c.user_id != caller.user.id) {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::Forbidden,
                "this client id belongs to another user",
            )
            .with_field("client_id"),
        ));
    }
    Ok(())
}

/// A client's record as read before a long-poll waited, and the storage
/// head it was read under.
struct ClientKnown {
    record: Option<ClientRecord>,
    read_head: u64,
}

/// A long-poll answer from the feed's recent batches, with the same meaning
/// as a page read from storage: the rows past the cursor, and the client's
/// last processed mutation id only where it is sound, that is where every
/// effect it covers is in this page or before. The client's record was read
/// before the wait; if storage had then gone no further than the head this
/// page reaches, every effect it counts is here. The acknowledgements the
/// delivered batches carry count too.
fn page_from_feed(
    since: &crate::feed::Since,
    tables: &[Table],
    cursor: u64,
    client_id: Option<Uuid>,
    known: ClientKnown,
    limit: usize,
) -> ChangesPage {
    let page = since.page(tables, cursor, limit);
    let last_mutation_id = match (page.more, client_id) {
        (false, Some(client)) => {
            let recorded = known
                .record
                .filter(|_| known.read_head <= since.head)
                .map(|r| r.last_mutation_id);
            recorded.max(since.ack_for(client))
        }
        _ => None,
    };
    ChangesPage {
        rows: page.rows,
        cursor: page.cursor,
        head: since.head,
        more: page.more,
        last_mutation_id,
    }
}

/// Counts a waiting long-poll for `/healthz` while it lives.
struct WaitingPull(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl WaitingPull {
    fn new(state: &AppState) -> Self {
        state
            .waiting_pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WaitingPull(state.waiting_pulls.clone())
    }
}

impl Drop for WaitingPull {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Query of `GET /v1/pull`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullQuery {
    /// Highest version already applied.
    pub cursor: u64,
    /// Rows per page.
    pub limit: Option<usize>,
    /// Seconds to wait for a change when there is none.
    pub wait: Option<u64>,
    /// The calling client, to learn its last processed mutation id.
    pub client_id: Option<Uuid>,
}

async fn pull(
    State(state): State<AppState>,
    token: BearerHash,
    StrictQuery(q): StrictQuery<PullQuery>,
) -> ApiResult<Json<PullResponse>> {
    let limit = q.limit.unwrap_or(limits::DEFAULT_PAGE_ROWS);
    if limit == 0 || limit > limits::MAX_PAGE_ROWS {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                format!("limit must be between 1 and {}", limits::MAX_PAGE_ROWS),
            )
            .with_field("limit"),
        ));
    }
    let wait = q.wait.unwrap_or(0);
    if wait > limits::MAX_WAIT_SECONDS {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                format!("wait must be at most {} seconds", limits::MAX_WAIT_SECONDS),
            )
            .with_field("wait"),
        ));
    }
    // Security events are watched from before the session is read: a
    // long-poll that hears none about its account while it waits knows the
    // session and role it read still hold, without reading them again.
    let mut security = state.revocations.subscribe();
    // One trip to storage for the session and, for a long-poll, the client's
    // record and the head they were read under.
    let storage = state.storage.clone();
    let (hash, client) = (token.0, q.client_id.filter(|_| wait > 0));
    let (found, hash, record, read_head) = blocking(move || {
        let found = storage.session_account(&hash)?;
        let record = match client {
            Some(id) => storage.client(id)?,
            None => None,
        };
        let head = storage.head()?;
        Ok((found, hash, record, head))
    })
    .await?;
    let mut caller = session::caller_of(found, hash, (state.config.clock)())?;
    if caller.must_change_password {
        return Err(ApiError(session::password_change_required()));
    }
    refuse_other_users_client(&caller, record.as_ref())?;
    // A long-poll is answered from the feed's recent batches when they hold
    // everything past its cursor; a pull that does not wait reads storage,
    // which also holds commits the feed has not published yet.
    let mut since = None;
    if wait > 0 {
        let mut head = state.feed.head();
        let deadline = tokio::time::sleep(Duration::from_secs(wait));
        tokio::pin!(deadline);
        let _waiting = WaitingPull::new(&state);
        // An event about this account (or events missed, which may include
        // one): the session and role are read again before answering.
        let mut concerned = false;
        loop {
            if *head.borrow_and_update() > q.cursor {
                break;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { break },
                event = security.recv() => match event {
                    Ok(e) if e.user_id == caller.user.id => { concerned = true; break }
                    Ok(_) => {}
                    // Missed events may include ours: answer and let the
                    // client poll again.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => { concerned = true; break }
                },
                () = &mut deadline => break,
                () = state.shutdown.cancelled() => break,
            }
        }
        if !concerned {
            // Gather: answer once the oldest change not yet delivered is
            // `pull_gather` old, with whatever else landed meanwhile, so each
            // answer carries several commits rather than each commit waking
            // every desk. No change waits longer than that for it.
            if let Some(oldest) = state.feed.oldest_past(q.cursor) {
                let ready = oldest + state.config.pull_gather;
                tokio::select! {
                    () = tokio::time::sleep_until(ready.into()) => {}
                    () = &mut deadline => {}
                    () = state.shutdown.cancelled() => {}
                }
            }
            since = state.feed.since(q.cursor);
        }
        // Events that came while gathering.
        loop {
            match security.try_recv() {
                Ok(e) if e.user_id == caller.user.id => concerned = true,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(_) => {
                    concerned = true;
                    break;
                }
            }
        }
        if concerned || caller.expires_at <= (state.config.clock)() {
            // The session may have ended, or the role changed, while
            // waiting: answer from what holds now.
            since = None;
            caller = session::authenticate_token_hash(&state, caller.token_hash.clone()).await?;
            if caller.must_change_password {
                return Err(ApiError(session::password_change_required()));
            }
        }
    }
    let tables = permissions::readable_tables(caller.user.role);
    let mut page = match since {
        Some(since) => {
            let known = ClientKnown { record, read_head };
            page_from_feed(&since, &tables, q.cursor, q.client_id, known, limit)
        }
        None => {
            if let Some(client_id) = q.client_id {
                check_client(&state, &caller, client_id).await?;
            }
            let storage = state.storage.clone();
            let (cursor, client) = (q.cursor, q.client_id);
            blocking(move || storage.changes_page(&tables, cursor, limit, client)).await?
        }
    };
    // Only the fields the role may read leave the server.
    field_access::redact_rows(caller.user.role, &mut page.rows);
    // A doctor: clinical fields only of their own patients.
    crate::care::deliver(&state, &caller.user, &mut page.rows).await?;
    // On record before it is delivered.
    let entries = audit::deliveries(
        caller.user.id,
        q.client_id,
        AccessKind::Pull,
        &page.rows,
        (state.config.clock)(),
    );
    if !entries.is_empty() {
        state.audit.record_durable(entries).await?;
    }
    Ok(Json(PullResponse {
        rows: page.rows,
        cursor: page.cursor,
        more: page.more,
        last_mutation_id: page.last_mutation_id,
        role: caller.user.role,
        epoch: caller.epoch,
        head: page.head,
        server_epoch: state.server_epoch.to_string(),
    }))
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path((table, id)): Path<(String, String)>,
) -> ApiResult<Json<HistoryResponse>> {
    let table: Table = table
        .parse()
        .map_err(|e: clinic_shared::model::UnknownTable| {
            ApiError::new(ErrorCode::NotFound, e.to_string())
        })?;
    let id = Uuid::parse_str(&id).map_err(|_| {
        ApiError(ErrorBody::new(ErrorCode::InvalidField, "the id is not a UUID").with_field("id"))
    })?;
    if !permissions::can_read_history(caller.user.role, table) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "role {} may not read the history of {table}",
                caller.user.role
            ),
        ));
    }
    let storage = state.storage.clone();
    let mut entries = blocking(move || storage.history(table, id)).await?;
    let Some(latest) = entries.last() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no {table} record {id}"),
        ));
    };
    let data = latest
        .after
        .as_ref()
        .or(latest.before.as_ref())
        .cloned()
        .unwrap_or_default();
    let patient = audit::patient_of(table, id, &data);
    let entry = NewAccess {
        at: (state.config.clock)(),
        user_id: caller.user.id,
        client_id: None,
        kind: AccessKind::History,
        patient_id: patient,
        table,
        row_ids: vec![id],
        reason: None,
    };
    state.audit.record_durable(vec![entry]).await?;
    // Before and after values: only the fields the role may read.
    field_access::redact_history(caller.user.role, table, &mut entries);
    crate::care::deliver_history(&state, &caller.user, table, patient, &mut entries).await?;
    Ok(Json(HistoryResponse { table, id, entries }))
}

async fn report_views(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ViewsRecorded>> {
    let report: ViewReport = json_body(body)?;
    if report.views.is_empty() || report.views.len() > limits::MAX_VIEWS_PER_REPORT {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                format!(
                    "views must list 1 to {} records",
                    limits::MAX_VIEWS_PER_REPORT
                ),
            )
            .with_field("views"),
        ));
    }
    check_client(&state, &caller, report.client_id).await?;
    for (i, view) in report.views.iter().enumerate() {
        if !permissions::can_read(caller.user.role, view.table) {
            return Err(ApiError(
                ErrorBody::new(
                    ErrorCode::Forbidden,
                    format!("role {} may not read {}", caller.user.role, view.table),
                )
                .with_field(format!("views[{i}].table")),
            ));
        }
    }
    let storage = state.storage.clone();
    let wanted: Vec<(Table, Uuid)> = report.views.iter().map(|v| (v.table, v.id)).collect();
    let rows = blocking(move || {
        wanted
            .iter()
            .map(|(t, id)| storage.current_row(*t, *id))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let at = (state.config.clock)();
    let mut entries = Vec::with_capacity(rows.len());
    for (i, (view, row)) in report.views.iter().zip(rows).enumerate() {
        let Some(row) = row.filter(|r| !r.deleted) else {
            return Err(ApiError(
                ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("no {} record {}", view.table, view.id),
                )
                .with_field(format!("views[{i}].id")),
            ));
        };
        entries.push(NewAccess {
            at,
            user_id: caller.user.id,
            client_id: Some(report.client_id),
            kind: AccessKind::View,
            patient_id: audit::patient_of(view.table, view.id, &row.data),
            table: view.table,
            row_ids: vec![view.id],
            reason: None,
        });
    }
    let recorded = entries.len();
    state.audit.record_durable(entries).await?;
    Ok(Json(ViewsRecorded { recorded }))
}

/// Query of `GET /v1/patients/{id}/clinical`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicalQuery {
    /// The client installation asking (for the access log).
    pub client_id: Option<Uuid>,
}

/// The patient of `/v1/patients/{id}/…`, which must exist.
async fn patient_path(state: &AppState, id: &str) -> ApiResult<Uuid> {
    let id = Uuid::parse_str(id).map_err(|_| {
        ApiError(ErrorBody::new(ErrorCode::InvalidField, "the id is not a UUID").with_field("id"))
    })?;
    let storage = state.storage.clone();
    let row = blocking(move || storage.current_row(Table::Patients, id)).await?;
    if row.is_none_or(|r| r.deleted) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no patient {id}"),
        ));
    }
    Ok(id)
}

/// Only roles that read clinical fields ask for them.
fn clinical_reader(caller: &Caller) -> ApiResult<()> {
    let reads = Table::TreatmentRecords
        .clinical_fields()
        .iter()
        .any(|f| field_access::can_read_field(caller.user.role, Table::TreatmentRecords, f));
    if !reads {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("role {} does not read clinical records", caller.user.role),
        ));
    }
    Ok(())
}

/// The patient's clinical rows, on record as delivered (`kind`), with the
/// grant's end when a break of the glass is what lets the caller read them.
async fn send_clinical(
    state: &AppState,
    caller: &Caller,
    patient: Uuid,
    client_id: Option<Uuid>,
    grant_expires_at: Option<Timestamp>,
) -> ApiResult<Json<ClinicalRecords>> {
    let storage = state.storage.clone();
    let mut rows = blocking(move || storage.clinical_rows(patient)).await?;
    field_access::redact_rows(caller.user.role, &mut rows);
    let entries = audit::deliveries(
        caller.user.id,
        client_id,
        AccessKind::Clinical,
        &rows,
        (state.config.clock)(),
    );
    if !entries.is_empty() {
        state.audit.record_durable(entries).await?;
    }
    Ok(Json(ClinicalRecords {
        patient_id: patient,
        rows,
        grant_expires_at,
    }))
}

/// The end of `doctor`'s grant for `patient`, if one is in force.
async fn grant_end(state: &AppState, doctor: Uuid, patient: Uuid) -> ApiResult<Option<Timestamp>> {
    let storage = state.storage.clone();
    let last = blocking(move || storage.last_glass(doctor, patient)).await?;
    let now = (state.config.clock)();
    let grant = i64::try_from(state.config.glass_grant.as_secs()).unwrap_or(i64::MAX);
    Ok(last
        .and_then(|at| Timestamp::from_unix(at.unix().saturating_add(grant)))
        .filter(|end| end.unix() > now.unix()))
}

/// `GET /v1/patients/{id}/clinical`: a patient's treatment records and
/// referrals in full, for a reader whose care includes them (a doctor's
/// own patient, or one they broke the glass for; admins always). The desk
/// asks when a chart it opens holds records whose clinical fields were
/// withheld: the patient may have come into care since they arrived.
async fn clinical(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<ClinicalQuery>,
) -> ApiResult<Json<ClinicalRecords>> {
    clinical_reader(&caller)?;
    let patient = patient_path(&state, &id).await?;
    if let Some(client_id) = q.client_id {
        check_client(&state, &caller, client_id).await?;
    }
    let mut expires = None;
    if clinic_shared::care::applies(caller.user.role) {
        let patients = crate::care::care_set(&state, caller.user.id).await?;
        if !patients.contains(&patient) {
            return Err(ApiError::new(
                ErrorCode::NotInCare,
                "this patient is not in your care: break the glass, saying why, to read their clinical records",
            ));
        }
        // In care by a grant alone: say when it ends. (By a visit, a record
        // or a referral too: it does not end.)
        let lasting = crate::care::lasting_care_set(&state, caller.user.id).await?;
        if !lasting.contains(&patient) {
            expires = grant_end(&state, caller.user.id, patient).await?;
        }
    }
    send_clinical(&state, &caller, patient, q.client_id, expires).await
}

/// `POST /v1/patients/{id}/glass`: a doctor breaks the glass to read the
/// clinical records of a patient outside their care. The typed reason goes
/// to the access log (hash-chained, shown to admins) before anything is
/// sent; the grant lasts `Config::glass_grant` and reaches every delivery
/// path (pull, WebSocket, history) at once. Answers the records.
async fn break_the_glass(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ClinicalRecords>> {
    if !clinic_shared::care::applies(caller.user.role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            if caller.user.role == Role::Admin {
                "administrators read every record without breaking the glass".to_owned()
            } else {
                format!("role {} does not read clinical records", caller.user.role)
            },
        ));
    }
    let request: GlassRequest = json_body(body)?;
    let patient = patient_path(&state, &id).await?;
    let reason = clinic_shared::care::check_reason(&request.reason).map_err(|e| {
        ApiError(ErrorBody::new(ErrorCode::InvalidField, e.message).with_field("reason"))
    })?;
    if let Some(client_id) = request.client_id {
        check_client(&state, &caller, client_id).await?;
    }
    let now = (state.config.clock)();
    let entry = NewAccess {
        at: now,
        user_id: caller.user.id,
        client_id: request.client_id,
        kind: AccessKind::BreakTheGlass,
        patient_id: Some(patient),
        table: Table::TreatmentRecords,
        row_ids: Vec::new(),
        reason: Some(reason),
    };
    state.audit.record_durable(vec![entry]).await?;
    tracing::info!(user = %caller.user.id, "a doctor broke the glass");
    let grant = i64::try_from(state.config.glass_grant.as_secs()).unwrap_or(i64::MAX);
    let expires = Timestamp::from_unix(now.unix().saturating_add(grant));
    send_clinical(&state, &caller, patient, request.client_id, expires).await
}

/// Query of the paged audit listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// The patient (for `/v1/audit/access`).
    pub patient: Option<Uuid>,
    /// Only entries older than this position (from `next_before`).
    pub before: Option<u64>,
    /// Entries per page.
    pub limit: Option<usize>,
}

fn audit_limit(limit: Option<usize>) -> ApiResult<usize> {
    let limit = limit.unwrap_or(limits::DEFAULT_AUDIT_PAGE);
    if limit == 0 || limit > limits::MAX_AUDIT_PAGE {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                format!("limit must be between 1 and {}", limits::MAX_AUDIT_PAGE),
            )
            .with_field("limit"),
        ));
    }
    Ok(limit)
}

async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<AuditQuery>,
) -> ApiResult<Json<AccessLogResponse>> {
    if !clinic_shared::permissions::can_read_audit(caller.user.role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only administrators may read the access log",
        ));
    }
    let limit = audit_limit(q.limit)?;
    let Some(patient) = q.patient else {
        return Err(ApiError(
            ErrorBody::new(
                ErrorCode::InvalidField,
                "patient is required (a patient id)",
            )
            .with_field("patient"),
        ));
    };
    // Everything this process delivered so far is on record first.
    state.audit.flush().await?;
    let storage = state.storage.clone();
    let (entries, next_before) =
        blocking(move || audit::access_page(storage.as_ref(), patient, q.before, limit)).await?;
    Ok(Json(AccessLogResponse {
        patient_id: patient,
        entries,
        next_before,
    }))
}

async fn sign_ins(
    State(state): State<AppState>,
    caller: Caller,
    StrictQuery(q): StrictQuery<AuditQuery>,
) -> ApiResult<Json<SignInEventsResponse>> {
    if !clinic_shared::permissions::can_read_audit(caller.user.role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only administrators may read the sign-in log",
        ));
    }
    let limit = audit_limit(q.limit)?;
    if q.patient.is_some() {
        return Err(ApiError(
            ErrorBody::new(ErrorCode::BadRequest, "the sign-in log takes no patient")
                .with_field("patient"),
        ));
    }
    let storage = state.storage.clone();
    let events = blocking(move || storage.sign_in_events(q.before, limit)).await?;
    let next_before = if events.len() == limit {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(SignInEventsResponse {
        events,
        next_before,
    }))
}

async fn staff_account(state: &AppState, id: &str) -> ApiResult<Staff> {
    let id = Uuid::parse_str(id).map_err(|_| {
        ApiError(ErrorBody::new(ErrorCode::InvalidField, "the id is not a UUID").with_field("id"))
    })?;
    let storage = state.storage.clone();
    blocking(move || storage.staff(id))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no staff account {id}")))
}

async fn staff_end_sessions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionsEnded>> {
    require_admin(&caller, "end other accounts' sessions")?;
    let staff = staff_account(&state, &id).await?;
    let storage = state.storage.clone();
    let clock = state.config.clock.clone();
    let ended = tokio::task::spawn_blocking(move || {
        admin::end_sessions(storage.as_ref(), staff.id, &clock)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))??;
    state.revocations.poke();
    tracing::info!(admin = %caller.user.id, user_id = %staff.id, sessions = ended.sessions, "sessions ended by an administrator");
    Ok(Json(SessionsEnded {
        sessions_ended: ended.sessions,
        epoch: ended.epoch,
    }))
}

async fn staff_reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SessionsEnded>> {
    require_admin(&caller, "reset other accounts' passwords")?;
    let request: PasswordResetRequest = json_body(body)?;
    admin::check_new_password("new_password", &request.new_password)?;
    let staff = staff_account(&state, &id).await?;
    let storage = state.storage.clone();
    let clock = state.config.clock.clone();
    let ended = tokio::task::spawn_blocking(move || {
        let hash = auth::hash_password(&request.new_password)?;
        admin::reset_password(storage.as_ref(), staff.id, &hash, &clock)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))??;
    state.revocations.poke();
    tracing::info!(admin = %caller.user.id, user_id = %staff.id, "password reset by an administrator");
    Ok(Json(SessionsEnded {
        sessions_ended: ended.sessions,
        epoch: ended.epoch,
    }))
}

async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(limits::MAX_WS_MESSAGE_BYTES)
        .max_frame_size(limits::MAX_WS_MESSAGE_BYTES)
        // Allocated up front for every connection (128 KiB by default) and
        // grown on demand for a large push: keep idle desks cheap.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .on_upgrade(move |socket| {
            let tracker = state.sockets.clone();
            tracker.track_future(ws::serve(socket, state))
        })
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        for ok in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "Bearer   abc ",
            " bEaReR abc",
        ] {
            assert_eq!(bearer_token(ok), Some("abc"), "{ok:?}");
        }
        for bad in [
            "Bearer",
            "Bearer ",
            "Basic abc",
            "Bearerabc",
            "Bearer a b",
            "Token abc",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }
}
