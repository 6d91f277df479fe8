//! The HTTP API: routes, limits, authentication and JSON errors.
//!
//! Every error is a JSON [`ErrorBody`] `{code, message, field?, retryable}`
//! with a matching status. Bodies are capped at
//! [`limits::MAX_BODY_BYTES`]; ordinary requests time out after
//! `Config::request_timeout` (long polls have their own bound).

use crate::auth;
use crate::engine::PreparedMutation;
use crate::storage::{Session, StorageError};
use crate::{AppState, ws};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clinic_shared::codec;
use clinic_shared::model::{Role, Staff, Table, Timestamp};
use clinic_shared::mutation::Mutation;
use clinic_shared::permissions;
use clinic_shared::protocol::{
    Actor, ErrorBody, ErrorCode, HistoryResponse, LoginRequest, LoginResponse, PullResponse,
    PushRequest, PushResponse, limits,
};
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::Duration;
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
        tracing::error!(error = %e, "storage error");
        let code = if e.retryable() {
            ErrorCode::Unavailable
        } else {
            ErrorCode::Internal
        };
        let message = match e {
            StorageError::Unavailable(_) => {
                "the server's disk is full or failing; nothing was written, try again later"
            }
            _ => "the server could not read or write its database",
        };
        ApiError::new(code, message)
    }
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
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
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

/// Runs blocking storage work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(ApiError::new(ErrorCode::Internal, "internal error"))
        }
    }
}

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

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, with their current role.
    pub user: Staff,
    /// The hash of the token used.
    pub token_hash: String,
}

impl Caller {
    /// As the rules see the caller.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user.id,
            role: self.user.role,
        }
    }
}

/// Resolves a bearer token to a caller: the session must exist and be
/// unexpired, the account active.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<Caller> {
    let token_hash = auth::token_hash(token);
    let storage = state.storage.clone();
    let lookup = token_hash.clone();
    let session: Option<Session> = blocking(move || storage.session(&lookup)).await?;
    let Some(session) = session else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "sign in first: the token is unknown or was ended",
        ));
    };
    if session.expires_at <= (state.config.clock)() {
        return Err(ApiError::new(
            ErrorCode::TokenExpired,
            "the sign-in has expired; sign in again",
        ));
    }
    let storage = state.storage.clone();
    let user = blocking(move || storage.staff(session.user_id)).await?;
    match user {
        Some(user) if user.active => Ok(Caller { user, token_hash }),
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the account is disabled",
        )),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "missing Authorization: Bearer <token> header",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        authenticate(state, token).await
    }
}

/// The router with every route and limit.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let timed = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/push", post(push))
        .route("/v1/history/{table}/{id}", get(history))
        .route("/v1/openapi.json", get(openapi))
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
    Json(serde_json::json!({ "status": "ok", "head": head, "ws_sessions": sessions }))
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn login(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<LoginResponse>> {
    let request: LoginRequest = json_body(body)?;
    if request.username.len() > 100 || request.password.len() > 1024 {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong username or password",
        ));
    }
    let _permit = state
        .login_permits
        .acquire()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "the server is shutting down"))?;
    let storage = state.storage.clone();
    let username = request.username.trim().to_lowercase();
    let found = blocking(move || storage.staff_by_username(&username)).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let password = request.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, hash.as_deref()))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(user) if ok => user,
        _ => {
            tracing::info!("sign-in refused");
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "wrong username or password",
            ));
        }
    };
    if !user.active {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this account is disabled; ask an administrator",
        ));
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
    tracing::info!(user_id = %user.id, "signed in");
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user,
    }))
}

async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    let storage = state.storage.clone();
    let hash = caller.token_hash.clone();
    blocking(move || storage.delete_session(&hash)).await?;
    let _ = state.ended_sessions.send(caller.token_hash);
    tracing::info!(user_id = %caller.user.id, "signed out");
    Ok(StatusCode::NO_CONTENT)
}

async fn me(caller: Caller) -> Json<Staff> {
    Json(caller.user)
}

/// Checks a push's size and prepares its mutations (hashes new passwords
/// outside the write lock).
pub async fn prepare_push(
    caller: &Caller,
    mutations: Vec<clinic_shared::mutation::PendingMutation>,
) -> Result<Vec<PreparedMutation>, ErrorBody> {
    if mutations.is_empty() {
        return Err(
            ErrorBody::new(ErrorCode::InvalidField, "the push has no mutations")
                .with_field("mutations"),
        );
    }
    if mutations.len() > limits::MAX_PUSH_MUTATIONS {
        return Err(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {} mutations per push", limits::MAX_PUSH_MUTATIONS),
        )
        .with_field("mutations"));
    }
    let mut prepared = Vec::with_capacity(mutations.len());
    for pending in mutations {
        let password_hash = match &pending.mutation {
            // Only hash for callers allowed to create staff, and only valid
            // passwords: hashing is expensive.
            Mutation::CreateStaff(a)
                if caller.user.role == Role::Admin && pending.mutation.validate().is_ok() =>
            {
                let password = a.password.clone();
                tokio::task::spawn_blocking(move || auth::hash_password(&password))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            _ => None,
        };
        prepared.push(PreparedMutation {
            pending,
            password_hash,
        });
    }
    Ok(prepared)
}

async fn push(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<PushResponse>> {
    let request: PushRequest = json_body(body)?;
    let prepared = prepare_push(&caller, request.mutations).await?;
    let results = state
        .writer
        .push(caller.actor(), request.client_id, prepared)
        .await?;
    Ok(Json(PushResponse { results }))
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
    caller: Caller,
    query: Result<Query<PullQuery>, QueryRejection>,
) -> ApiResult<Json<PullResponse>> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
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
    if wait > 0 {
        let mut head = state.feed.head();
        let deadline = tokio::time::sleep(Duration::from_secs(wait));
        tokio::pin!(deadline);
        loop {
            if *head.borrow_and_update() > q.cursor {
                break;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { break },
                () = &mut deadline => break,
                () = state.shutdown.cancelled() => break,
            }
        }
    }
    if let Some(client_id) = q.client_id {
        let storage = state.storage.clone();
        let bound = blocking(move || storage.client(client_id)).await?;
        if bound.is_some_and(|c| c.user_id != caller.user.id) {
            return Err(ApiError(
                ErrorBody::new(
                    ErrorCode::Forbidden,
                    "this client id belongs to another user",
                )
                .with_field("client_id"),
            ));
        }
    }
    let tables = permissions::readable_tables(caller.user.role);
    let storage = state.storage.clone();
    let (cursor, client) = (q.cursor, q.client_id);
    let page = blocking(move || storage.changes_page(&tables, cursor, limit, client)).await?;
    Ok(Json(PullResponse {
        rows: page.rows,
        cursor: page.cursor,
        more: page.more,
        last_mutation_id: page.last_mutation_id,
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
    let entries = blocking(move || storage.history(table, id)).await?;
    if entries.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no {table} record {id}"),
        ));
    }
    Ok(Json(HistoryResponse { table, id, entries }))
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
