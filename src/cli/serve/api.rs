//! The HTTP API under `/api/v1`, health, readiness, metrics and the live feed.
//!
//! Every handler takes a [`Caller`] (the request's principal, or 401 before the
//! handler runs) and checks role and tenant scope itself; a finding of a tenant
//! out of scope is answered exactly as a finding that does not exist (404), so
//! nothing of another tenant is seen, counted or changed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::auth::{same_secret, Principal, Role, Scope};
use super::events::Event;
use super::App;
use vigil_engine::exec;
use vigil_engine::silences::{self, Matcher};
use vigil_engine::store::{self, Listing, Query as StoreQuery, StepError, Stored};

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "vigil_session";
/// Largest request body (an ingestion batch).
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Largest page of findings.
const MAX_LIMIT: usize = 1000;

/// An error answer: `{"error": message, "field": name}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    field: Option<String>,
    /// Seconds after which to try again (429).
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), field: None, retry_after: None }
    }
    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    pub(super) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 422 naming the request field at fault.
    pub(super) fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, message: message.into(), field: Some(field.to_string()), retry_after: None }
    }
    pub(super) fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = Value::String(f);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vigil\""));
        }
        response
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// The principal of a request: a bearer token, or the console's session cookie
/// (then state-changing requests must carry the session's `X-CSRF-Token`).
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        let caller = Caller::identify(parts, app)?;
        // A client's token reads its reports and their summary, and nothing else.
        let path = parts.uri.path();
        let client_may = path == "/api/v1/session"
            || path == "/api/v1/portal/summary"
            || path == "/api/v1/reports"
            || path.starts_with("/api/v1/reports/");
        if caller.0.role == Role::Client && !client_may {
            return Err(ApiError::forbidden("a client token reads its reports (/api/v1/reports) and the portal, nothing else"));
        }
        Ok(caller)
    }
}

impl Caller {
    /// The principal of the request's token or session.
    fn identify(parts: &Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
            return app.tokens.check(token.trim()).map(Caller).ok_or_else(|| ApiError::unauthorized("unknown token"));
        }
        if let Some(id) = cookie(&parts.headers, SESSION_COOKIE) {
            let session = app.sessions.get(&id).ok_or_else(|| ApiError::unauthorized("the session has ended; log in again"))?;
            if !parts.method.is_safe() {
                let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !same_secret(sent, &session.csrf) {
                    return Err(ApiError::forbidden("missing or wrong X-CSRF-Token header for this session"));
                }
            }
            return Ok(Caller(session.principal));
        }
        Err(ApiError::unauthorized("no credentials: send `Authorization: Bearer <token>`, or log in to the console"))
    }
}

impl Caller {
    pub(super) fn need(&self, role: Role) -> ApiResult<()> {
        if self.0.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {} role; `{}` is {}", role.name(), self.0.name, self.0.role.name())))
        }
    }
    pub(super) fn sees(&self, tenant: &str) -> bool {
        self.0.tenants.allows(tenant)
    }
}

/// A cookie's value from the Cookie headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A JSON body, or 422 saying where it is wrong (line, column, field).
pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        // serde names the field in its message: "missing field `note` at line 1 column 2".
        let field = text.split('`').nth(1).filter(|_| text.contains("field")).unwrap_or("body").to_string();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!("request body: {text}"),
            field: Some(field),
            retry_after: None,
        }
    })
}

/// Runs store work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    use tower_http::set_header::SetResponseHeaderLayer;
    let headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    ];
    let mut router = Router::new()
        .route("/", get(super::console::index))
        .route("/console.js", get(super::console::script))
        .route("/common.js", get(super::console::common))
        .route("/console.css", get(super::console::style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/session", post(login).get(session).delete(logout))
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/findings/acknowledge", post(bulk_acknowledge))
        .route("/api/v1/findings/resolve", post(bulk_resolve))
        .route("/api/v1/findings/{id}", get(one_finding))
        .route("/api/v1/findings/{id}/acknowledge", post(acknowledge))
        .route("/api/v1/findings/{id}/resolve", post(resolve))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rules/reload", post(reload))
        .route("/api/v1/reloads", get(reloads))
        .route("/api/v1/runbooks", get(runbooks))
        .route("/api/v1/runbooks/{id}", get(runbook))
        .route("/api/v1/events", get(events))
        .route("/api/v1/signals/{table}", post(ingest))
        .route("/api/v1/feed", get(feed))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/preview", post(preview_silence))
        .route("/api/v1/silences/{id}", axum::routing::patch(edit_silence).delete(lift_silence))
        .route("/portal", get(super::console::portal))
        .route("/portal.js", get(super::console::portal_script))
        .route("/api/v1/portal/summary", get(super::reports::summary))
        .route("/api/v1/reports", get(super::reports::index).post(super::reports::create))
        .route("/api/v1/reports/{id}/approve", post(super::reports::approve))
        .route("/api/v1/reports/{id}/{file}", get(super::reports::file))
        .route("/api/v1/actions", get(super::api_actions::list))
        .route("/api/v1/actions/switches", get(super::api_actions::switches).post(super::api_actions::set_switch))
        .route("/api/v1/actions/{id}", get(super::api_actions::one))
        .route("/api/v1/actions/{id}/{decision}", post(super::api_actions::decide))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1/openapi.json") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value)));
    }
    router.with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: rules loaded, the store answers and is writable, a tick committed recently.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let state = app.state.clone();
    let store_ok = blocking(move || {
        store::last_tick(&state).map_err(ApiError::internal)?;
        let writable = std::fs::metadata(&state).map(|m| !m.permissions().readonly()).unwrap_or(false);
        if writable {
            Ok(())
        } else {
            Err(ApiError::internal(format!("{} is not writable", state.display())))
        }
    })
    .await;
    let last = app.last_tick_wall.load(std::sync::atomic::Ordering::SeqCst);
    let quiet = Duration::from_micros((chrono::Utc::now().timestamp_micros() - last).max(0).unsigned_abs());
    let tick_ok = last > 0 && quiet <= app.stale_after;
    let rules = app.rules();
    let checks = json!({
        "rules": { "ok": true, "revision": store::revision(&rules), "rules": rules.rules.len() },
        "store": { "ok": store_ok.is_ok(), "error": store_ok.err().map(|e| e.message) },
        "last_tick": {
            "ok": tick_ok,
            "seconds_ago": if last > 0 { Some(quiet.as_secs()) } else { None },
            "limit_seconds": app.stale_after.as_secs(),
        },
    });
    let ready = checks["store"]["ok"] == true && tick_ok;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready, "checks": checks }))).into_response()
}

/// Prometheus text; the counts span every tenant, so only a token of every tenant may read them.
async fn metrics(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Response> {
    if caller.0.tenants != Scope::All {
        return Err(ApiError::forbidden("metrics count every tenant; they need a token with tenants `*`"));
    }
    let state = app.state.clone();
    let open = blocking(move || store::list(&state, Listing::Open).map_err(ApiError::internal)).await?;
    let mut by_severity = super::metrics::OpenBySeverity::new();
    for f in open {
        *by_severity.entry(f.severity).or_default() += 1;
    }
    let text = app.metrics.render(&by_severity);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// Console login: a token for an HttpOnly session cookie and the session's CSRF token.
async fn login(State(app): State<Arc<App>>, raw: Bytes) -> ApiResult<Response> {
    let Login { token } = body(&raw)?;
    let principal = app.tokens.check(token.trim()).ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    let (id, csrf) = app.sessions.open(principal.clone()).map_err(ApiError::internal)?;
    let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Json(json!({ "principal": principal, "csrf": csrf })).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(ApiError::internal)?);
    Ok(response)
}

/// The session of the cookie (the console calls it on load to get its CSRF token again).
async fn session(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let id = cookie(&headers, SESSION_COOKIE).ok_or_else(|| ApiError::unauthorized("not logged in"))?;
    let s = app.sessions.get(&id).ok_or_else(|| ApiError::unauthorized("the session has ended; log in again"))?;
    Ok(Json(json!({ "principal": s.principal, "csrf": s.csrf })))
}

async fn logout(State(app): State<Arc<App>>, caller: Caller, headers: HeaderMap) -> Response {
    let _ = caller;
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        app.sessions.close(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// A finding as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingView {
    /// The stored finding.
    #[serde(flatten)]
    pub finding: Stored,
    /// Its runbook's title.
    pub runbook_title: Option<String>,
    /// Its runbook's escalation SLA.
    pub escalate_after_minutes: Option<i64>,
    /// first_seen + the SLA: when the operator escalates if it is still open.
    pub escalation_due: Option<String>,
    /// The silence in force that matches it, if any (it is still shown and stored).
    pub silenced_by: Option<i64>,
    /// Until when.
    pub silenced_until: Option<String>,
}

/// A reload attempt as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadView {
    at: String,
    ok: bool,
    revision: Option<String>,
    added: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    diagnostics: Option<String>,
}

impl From<&store::Reload> for ReloadView {
    fn from(r: &store::Reload) -> ReloadView {
        let ids = |s: &str| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect();
        ReloadView {
            at: r.at.clone(),
            ok: r.ok,
            revision: r.revision.clone(),
            added: ids(&r.added),
            changed: ids(&r.changed),
            removed: ids(&r.removed),
            diagnostics: r.error.clone(),
        }
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "CRITICAL" => 4,
        "HIGH" => 3,
        "MEDIUM" => 2,
        "LOW" => 1,
        _ => 0,
    }
}

/// Most urgent first: severity, then the escalation deadline nearest, then the oldest.
fn by_urgency(a: &FindingView, b: &FindingView) -> std::cmp::Ordering {
    let due = |f: &FindingView| f.escalation_due.clone().unwrap_or_else(|| "~".into());
    severity_rank(&b.finding.severity)
        .cmp(&severity_rank(&a.finding.severity))
        .then_with(|| due(a).cmp(&due(b)))
        .then_with(|| a.finding.id.cmp(&b.finding.id))
}

const LIST_PARAMS: [&str; 9] = ["status", "severity", "tenant", "site", "type", "since", "limit", "offset", "sort"];

/// `GET /api/v1/findings?status=&severity=&tenant=&site=&type=&since=&limit=&offset=&sort=`
async fn list_findings(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    if let Some(unknown) = params.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::field(unknown, format!("unknown parameter `{unknown}` (one of {})", LIST_PARAMS.join(", "))));
    }
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let status = get("status").unwrap_or_else(|| "open".into());
    let listing = Listing::parse(&status)
        .ok_or_else(|| ApiError::field("status", format!("unknown status `{status}` (open, new, acknowledged, resolved or all)")))?;
    let severity = get("severity").map(|s| s.to_ascii_uppercase());
    if let Some(s) = &severity {
        if severity_rank(s) == 0 {
            return Err(ApiError::field("severity", format!("unknown severity `{s}` (LOW, MEDIUM, HIGH or CRITICAL)")));
        }
    }
    let tenants = match get("tenant") {
        Some(t) if !caller.sees(&t) => return Err(ApiError::forbidden(format!("tenant `{t}` is not in this token's scope"))),
        Some(t) => Some(vec![t]),
        None => caller.0.tenants.tenants(),
    };
    let since = get("since")
        .map(|s| vigil_engine::load::parse_timestamp(&s).map_err(|e| ApiError::field("since", format!("`{s}`: {e}"))))
        .transpose()?;
    let number = |k: &str, default: usize| -> ApiResult<usize> {
        get(k).map_or(Ok(default), |v| v.parse().map_err(|_| ApiError::field(k, format!("`{v}` is not a whole number"))))
    };
    let (limit, offset) = (number("limit", 100)?, number("offset", 0)?);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::field("limit", format!("limit must be 1..={MAX_LIMIT}")));
    }
    let sort = get("sort").unwrap_or_else(|| "urgency".into());
    if !["urgency", "newest", "oldest"].contains(&sort.as_str()) {
        return Err(ApiError::field("sort", format!("unknown sort `{sort}` (urgency, newest or oldest)")));
    }
    let query = StoreQuery { listing, ids: None, tenants, site: get("site"), finding_type: get("type"), severity, since };
    let state = app.state.clone();
    let rows = blocking(move || store::find(&state, &query).map_err(ApiError::internal)).await?;
    let mut views: Vec<FindingView> = rows.into_iter().map(|f| app.view(f)).collect();
    match sort.as_str() {
        "urgency" => views.sort_by(by_urgency),
        "newest" => views.reverse(),
        _ => {}
    }
    let total = views.len();
    let page: Vec<FindingView> = views.into_iter().skip(offset).take(limit).collect();
    Ok(Json(json!({ "total": total, "offset": offset, "limit": limit, "findings": page, "now": exec::iso(app.now()) })))
}

fn parse_id(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| ApiError::field("id", format!("`{text}` is not a finding id (a whole number)")))
}

/// 404 unless finding `id` exists in the caller's tenants (one read, no history).
async fn in_scope(app: &Arc<App>, caller: &Caller, id: i64) -> ApiResult<()> {
    let (state, tenants) = (app.state.clone(), caller.0.tenants.tenants());
    let query = StoreQuery { ids: Some(vec![id]), tenants, ..StoreQuery::default() };
    let found = blocking(move || store::find(&state, &query).map_err(ApiError::internal)).await?;
    if found.is_empty() {
        return Err(ApiError::not_found(format!("no finding {id}")));
    }
    Ok(())
}

/// The finding with its history, runbook and version, if the caller may see it.
async fn detail(app: &Arc<App>, caller: &Caller, id: i64) -> ApiResult<Value> {
    let state = app.state.clone();
    let scope = caller.0.tenants.tenants();
    let (found, history) = blocking(move || {
        let query = StoreQuery { ids: Some(vec![id]), tenants: scope, ..StoreQuery::default() };
        let found = store::find(&state, &query).map_err(ApiError::internal)?;
        let history = store::history(&state, id).map_err(ApiError::internal)?;
        Ok((found, history))
    })
    .await?;
    let f = found.into_iter().next().ok_or_else(|| ApiError::not_found(format!("no finding {id}")))?;
    let set = app.rules();
    let runbook = set.runbooks.iter().find(|r| r.id == f.runbook).map(runbook_json);
    let version = store::version(&history);
    let timeline: Vec<Value> =
        history.into_iter().map(|(at, event, detail, who)| json!({ "at": at, "event": event, "detail": detail, "who": who })).collect();
    let provenance = json!({
        "rule": f.rule,
        "rule_hash": f.rule_hash,
        "sql_hash": f.sql_hash,
        "ruleset_revision": f.ruleset_revision,
    });
    let mut out = serde_json::to_value(app.view(f)).map_err(ApiError::internal)?;
    out["version"] = json!(version);
    out["history"] = Value::Array(timeline);
    out["runbook_detail"] = runbook.unwrap_or(Value::Null);
    out["provenance"] = provenance;
    Ok(out)
}

async fn one_finding(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    Ok(Json(detail(&app, &caller, id).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepBody {
    note: String,
    #[serde(default)]
    version: Option<i64>,
}

async fn acknowledge(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    lifecycle(app, caller, &id, &raw, false).await
}

async fn resolve(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    lifecycle(app, caller, &id, &raw, true).await
}

/// Acknowledge or resolve one finding: who is the caller, a note is required, and a
/// `version` (from the finding as read) makes a concurrent change a 409.
async fn lifecycle(app: Arc<App>, caller: Caller, id: &str, raw: &Bytes, resolve: bool) -> ApiResult<Json<Value>> {
    caller.need(Role::Operator)?;
    let id = parse_id(id)?;
    let StepBody { note, version } = body(raw)?;
    if note.trim().is_empty() {
        return Err(ApiError::field("note", "a note is required: say what was done or why"));
    }
    // Scope first: a finding of another tenant does not exist for this caller.
    in_scope(&app, &caller, id).await?;
    step(&app, &caller, id, resolve, note.trim(), version).await?;
    Ok(Json(detail(&app, &caller, id).await?))
}

/// A refused lifecycle step as the API answers it.
fn step_error(e: StepError) -> ApiError {
    match e {
        StepError::NotFound(_) => ApiError::not_found(e.to_string()),
        StepError::Refused { .. } | StepError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        StepError::Db(m) => ApiError::internal(m),
    }
}

/// One lifecycle step in the store, and its event.
async fn step(app: &Arc<App>, caller: &Caller, id: i64, resolve: bool, note: &str, version: Option<i64>) -> ApiResult<()> {
    let (state, who, at, note_owned) = (app.state.clone(), caller.0.name.clone(), exec::iso(app.now()), note.to_string());
    blocking(move || store::step(&state, id, resolve, &who, &at, Some(&note_owned), version).map_err(step_error)).await?;
    let kind = if resolve { "finding.resolved" } else { "finding.acknowledged" };
    let app2 = Arc::clone(app);
    let _ = tokio::task::spawn_blocking(move || app2.publish_findings(kind, &[id])).await;
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    ids: Vec<i64>,
    note: String,
}

/// `POST /api/v1/findings/acknowledge`: many findings with one note; each id answers for itself.
async fn bulk_acknowledge(State(app): State<Arc<App>>, caller: Caller, raw: Bytes) -> ApiResult<Json<Value>> {
    bulk_step(app, caller, &raw, false).await
}

/// `POST /api/v1/findings/resolve`: as [`bulk_acknowledge`], to RESOLVED.
async fn bulk_resolve(State(app): State<Arc<App>>, caller: Caller, raw: Bytes) -> ApiResult<Json<Value>> {
    bulk_step(app, caller, &raw, true).await
}

/// One step for many findings: the caller's scope read once, the steps taken in one visit
/// to the store, and one event per finding that took it.
async fn bulk_step(app: Arc<App>, caller: Caller, raw: &Bytes, resolve: bool) -> ApiResult<Json<Value>> {
    caller.need(Role::Operator)?;
    let BulkBody { ids, note } = body(raw)?;
    if note.trim().is_empty() {
        return Err(ApiError::field("note", "a note is required: say what was done or why"));
    }
    if ids.is_empty() || ids.len() > MAX_LIMIT {
        return Err(ApiError::field("ids", format!("give 1..={MAX_LIMIT} finding ids")));
    }
    let (state, tenants) = (app.state.clone(), caller.0.tenants.tenants());
    let (who, at, note) = (caller.0.name.clone(), exec::iso(app.now()), note.trim().to_string());
    let asked = ids.clone();
    // A finding of another tenant does not exist for this caller.
    let outcomes = blocking(move || {
        let query = StoreQuery { ids: Some(asked.clone()), tenants, ..StoreQuery::default() };
        let visible: std::collections::HashSet<i64> =
            store::find(&state, &query).map_err(ApiError::internal)?.into_iter().map(|f| f.id).collect();
        let mine: Vec<i64> = asked.iter().copied().filter(|id| visible.contains(id)).collect();
        let mut stepped = store::step_many(&state, &mine, resolve, &who, &at, Some(&note)).map_err(ApiError::internal)?.into_iter();
        let outcomes: Vec<Result<(), ApiError>> = asked
            .iter()
            .map(|id| match visible.contains(id) {
                false => Err(ApiError::not_found(format!("no finding {id}"))),
                true => match stepped.next() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(step_error(e)),
                    None => Err(ApiError::internal("a step was not taken")),
                },
            })
            .collect();
        Ok(outcomes)
    })
    .await?;
    let done: Vec<i64> = ids.iter().zip(&outcomes).filter(|(_, o)| o.is_ok()).map(|(id, _)| *id).collect();
    if !done.is_empty() {
        let kind = if resolve { "finding.resolved" } else { "finding.acknowledged" };
        let app2 = Arc::clone(&app);
        let _ = tokio::task::spawn_blocking(move || app2.publish_findings(kind, &done)).await;
    }
    let results: Vec<Value> = ids
        .iter()
        .zip(outcomes)
        .map(|(id, outcome)| match outcome {
            Ok(()) => json!({ "id": id, "ok": true }),
            Err(e) => json!({ "id": id, "ok": false, "status": e.status.as_u16(), "error": e.message }),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

async fn rules(State(app): State<Arc<App>>, caller: Caller) -> Json<Value> {
    let _ = caller;
    let set = app.rules();
    let rules: Vec<Value> = set
        .rules
        .iter()
        .map(|r| {
            let h = r.header();
            json!({
                "id": h.id,
                "kind": if matches!(r, vigil_engine::ruleset::Rule::Anomaly(_)) { "anomaly" } else { "pattern" },
                "finding_type": h.finding_type,
                "title": h.title,
                "category": h.category.to_string(),
                "severity": h.base_severity.to_string(),
                "cadence": h.cadence.name(),
            })
        })
        .collect();
    Json(json!({ "revision": store::revision(&set), "rules": rules, "runbooks": set.runbooks.len() }))
}

/// Reloads the rule set now (as SIGHUP) and answers with the attempt: 200 when the
/// new set is in force, 422 with its diagnostics when the old one was kept.
async fn reload(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Response> {
    caller.need(Role::Admin)?;
    let mut attempts = app.reloads.subscribe();
    attempts.borrow_and_update();
    app.control.reload.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), attempts.changed())
        .await
        .map_err(|_| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the reload did not finish within 60 s"))?
        .map_err(ApiError::internal)?;
    let state = app.state.clone();
    let last = blocking(move || store::reloads(&state).map_err(ApiError::internal)).await?;
    let record = last.last().ok_or_else(|| ApiError::internal("the reload was not recorded"))?;
    let status = if record.ok { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok((status, Json(ReloadView::from(record))).into_response())
}

/// The last 50 reload attempts, newest first.
async fn reloads(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    let _ = caller;
    let state = app.state.clone();
    let all = blocking(move || store::reloads(&state).map_err(ApiError::internal)).await?;
    let views: Vec<ReloadView> = all.iter().rev().take(50).map(ReloadView::from).collect();
    let set = app.rules();
    Ok(Json(json!({ "revision": store::revision(&set), "reloads": views })))
}

fn runbook_json(r: &vigil_engine::runbook::Runbook) -> Value {
    json!({
        "id": r.id,
        "title": r.title,
        "tenant": r.tenant,
        "steps": r.steps,
        "escalate_after_minutes": r.escalate_after_minutes,
        "auto_actions": r.auto_actions.iter().map(|a| json!({ "action": a.label(), "switch": a.switch })).collect::<Vec<_>>(),
    })
}

async fn runbooks(State(app): State<Arc<App>>, caller: Caller) -> Json<Value> {
    let set = app.rules();
    let list: Vec<Value> = set.runbooks.iter().filter(|r| r.tenant.as_deref().is_none_or(|t| caller.sees(t))).map(runbook_json).collect();
    Json(json!({ "runbooks": list }))
}

async fn runbook(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let set = app.rules();
    set.runbooks
        .iter()
        .find(|r| r.id == id && r.tenant.as_deref().is_none_or(|t| caller.sees(t)))
        .map(|r| Json(runbook_json(r)))
        .ok_or_else(|| ApiError::not_found(format!("no runbook `{id}`")))
}

/// `POST /api/v1/signals/{table}`: a batch of rows as CSV (`text/csv`, with a
/// header) or JSON lines (anything else). Validated exactly as files are; all or
/// nothing; stored once per `Idempotency-Key`. Every row's tenant must be in scope.
async fn ingest(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(table): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult<Response> {
    caller.need(Role::Operator)?;
    if let Err(wait) = app.ingest_rate.take(&caller.0.name) {
        let secs = wait.as_secs() + 1;
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("token `{}` is over its ingest rate ({}); try again in {secs}s", caller.0.name, app.ingest_rate),
        );
        err.retry_after = Some(secs);
        return Err(err);
    }
    let Some(t) = vigil_engine::schema::contract_tables().find(|t| t.name == table) else {
        let names: Vec<&str> = vigil_engine::schema::contract_tables().map(|t| t.name).collect();
        return Err(ApiError::not_found(format!("no signal table `{table}` ({})", names.join(", "))));
    };
    let csv = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/csv"));
    let format = if csv { vigil_engine::load::BatchFormat::Csv } else { vigil_engine::load::BatchFormat::JsonLines };
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| ApiError::field("Idempotency-Key", "the Idempotency-Key header must be 1 to 200 visible characters"))?
                .to_string(),
        ),
        None => None,
    };
    let text = String::from_utf8(raw.to_vec()).map_err(|e| ApiError::field("body", format!("the body is not UTF-8: {e}")))?;
    let origin = std::path::PathBuf::from(format!("POST /api/v1/signals/{}", t.name));
    let scope = caller.0.tenants.clone();
    let state = app.ingest.clone();
    let app2 = Arc::clone(&app);
    let outcome = blocking(move || {
        let rows = vigil_engine::load::parse_batch(t, format, &text, &origin).map_err(|e| {
            app2.metrics.rejected(t.name);
            let mut err = ApiError::field(e.column.as_deref().unwrap_or("body"), e.to_string());
            if e.column.is_none() {
                err.field = Some("body".into());
            }
            err
        })?;
        let tenant_at = t.columns.iter().position(|c| c.name == "tenant_id");
        for (i, row) in rows.iter().enumerate() {
            let tenant = tenant_at.and_then(|p| match row.get(p) {
                Some(vigil_engine::duckdb::types::Value::Text(s)) => Some(s.as_str()),
                _ => None,
            });
            if let Some(tenant) = tenant.filter(|t| !scope.allows(t)) {
                app2.metrics.rejected(t.name);
                return Err(ApiError::forbidden(format!(
                    "row {}: tenant `{tenant}` is not in this token's scope; nothing was stored",
                    i + 1
                )));
            }
        }
        vigil_engine::ingest::store_batch(&state, t, rows, key.as_deref(), None).map_err(ApiError::internal)
    })
    .await?;
    if !outcome.duplicate {
        app.metrics.ingested(t.name, outcome.rows as usize);
    }
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({ "table": t.name, "rows": outcome.rows, "duplicate": outcome.duplicate }))).into_response())
}

/// `GET /api/v1/feed`: per tenant in scope and table, when pushed rows last arrived,
/// how many are kept, and how far event time lagged the arrival.
async fn feed(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    let path = app.ingest.clone();
    let all = blocking(move || vigil_engine::ingest::arrivals(&path).map_err(ApiError::internal)).await?;
    let rows: Vec<Value> = all
        .into_iter()
        .filter(|a| caller.sees(&a.tenant))
        .map(|a| {
            json!({
                "tenant_id": a.tenant,
                "table": a.table,
                "rows": a.rows,
                "last_received": exec::iso(a.last_received),
                "last_event": a.last_event.map(exec::iso),
                "event_lag_seconds": a.last_event.map(|e| (a.last_received - e) / 1_000_000),
            })
        })
        .collect();
    Ok(Json(json!({ "feeds": rows })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    tenant_id: String,
    #[serde(default)]
    finding_type: Option<String>,
    #[serde(default)]
    site_id: Option<String>,
    #[serde(default)]
    guard_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// How long, e.g. `2h` (or `expires_at`).
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The expiry a request asks for: `duration` from now or `expires_at`, in the future
/// and no longer than the service allows.
fn expiry(app: &App, duration: Option<&str>, expires_at: Option<&str>) -> ApiResult<String> {
    let now = app.now();
    let (field, until) = match (duration, expires_at) {
        (Some(d), None) => {
            let micros = vigil_engine::syntax::duration_micros(d)
                .filter(|m| *m > 0)
                .ok_or_else(|| ApiError::field("duration", format!("`{d}` is not a duration such as 30m or 4h")))?;
            ("duration", now.saturating_add(micros))
        }
        (None, Some(t)) => {
            let at = vigil_engine::load::parse_timestamp(t).map_err(|e| ApiError::field("expires_at", format!("`{t}`: {e}")))?;
            ("expires_at", at)
        }
        _ => return Err(ApiError::field("duration", "give either `duration` (e.g. 2h) or `expires_at`")),
    };
    if until <= now {
        return Err(ApiError::field(field, "a silence must end in the future"));
    }
    let max = i64::try_from(app.silence_max.as_micros()).unwrap_or(i64::MAX);
    if until - now > max {
        return Err(ApiError::field(
            field,
            format!("a silence may last at most {} h; lift and renew it if it must go on", max / 3_600_000_000),
        ));
    }
    Ok(exec::iso(until))
}

/// Role and scope for making or changing a silence of `m`.
fn may_silence(caller: &Caller, m: &Matcher) -> ApiResult<()> {
    caller.need(Role::Operator)?;
    if !caller.sees(&m.tenant_id) {
        return Err(ApiError::forbidden(format!("tenant `{}` is not in this token's scope", m.tenant_id)));
    }
    if m.whole_tenant() {
        caller
            .need(Role::Admin)
            .map_err(|_| ApiError::forbidden("silencing a whole tenant needs the admin role; name a type, site or guard"))?;
    }
    Ok(())
}

/// The open findings a silence would mute now.
async fn muted_now(app: &Arc<App>, m: &Matcher) -> ApiResult<Vec<FindingView>> {
    let state = app.state.clone();
    let query = StoreQuery { listing: Listing::Open, tenants: Some(vec![m.tenant_id.clone()]), ..StoreQuery::default() };
    let rows = blocking(move || store::find(&state, &query).map_err(ApiError::internal)).await?;
    Ok(rows.into_iter().filter(|f| m.matches(f)).map(|f| app.view(f)).collect())
}

/// `POST /api/v1/silences/preview`: what a silence would mute right now.
async fn preview_silence(State(app): State<Arc<App>>, caller: Caller, raw: Bytes) -> ApiResult<Json<Value>> {
    let m: Matcher = body(&raw)?;
    may_silence(&caller, &m)?;
    let muted = muted_now(&app, &m).await?;
    Ok(Json(json!({ "matches": m.describe(), "count": muted.len(), "findings": muted })))
}

/// `POST /api/v1/silences`: the caller owns it; a reason and an expiry are required.
async fn create_silence(State(app): State<Arc<App>>, caller: Caller, raw: Bytes) -> ApiResult<Response> {
    let b: SilenceBody = body(&raw)?;
    let m = Matcher { tenant_id: b.tenant_id, finding_type: b.finding_type, site_id: b.site_id, guard_id: b.guard_id };
    may_silence(&caller, &m)?;
    let reason =
        b.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).ok_or_else(|| ApiError::field("reason", "a reason is required"))?;
    let reason = reason.to_string();
    let until = expiry(&app, b.duration.as_deref(), b.expires_at.as_deref())?;
    let (state, at, owner) = (app.state.clone(), exec::iso(app.now()), caller.0.name.clone());
    let changed = blocking(move || silences::create(&state, &m, &owner, &reason, &at, &until).map_err(ApiError::internal)).await?;
    publish_silence(&app, "silence.created", &changed).await;
    Ok((StatusCode::CREATED, Json(json!({ "silence": changed.silence, "muted": changed.findings }))).into_response())
}

async fn publish_silence(app: &Arc<App>, kind: &'static str, changed: &silences::Changed) {
    let (app, changed) = (Arc::clone(app), changed.clone());
    let _ = tokio::task::spawn_blocking(move || app.publish_silence(kind, &changed)).await;
}

fn silence_in_scope(app: &App, caller: &Caller, id: &str) -> ApiResult<silences::Silence> {
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", format!("`{id}` is not a silence id")))?;
    app.silences
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|s| s.id == id && caller.sees(&s.matcher.tenant_id))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no silence {id}")))
}

fn silence_error(e: silences::SilenceError) -> ApiError {
    match e {
        silences::SilenceError::NotFound(_) => ApiError::not_found(e.to_string()),
        silences::SilenceError::Ended(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        silences::SilenceError::Db(m) => ApiError::internal(m),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// `PATCH /api/v1/silences/{id}`: a new reason or expiry (its owner, or an admin).
async fn edit_silence(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let s = silence_in_scope(&app, &caller, &id)?;
    may_silence(&caller, &s.matcher)?;
    if s.owner != caller.0.name {
        caller
            .need(Role::Admin)
            .map_err(|_| ApiError::forbidden(format!("silence {} is {}'s; only they or an admin may change it", s.id, s.owner)))?;
    }
    let b: EditBody = body(&raw)?;
    let reason = match b.reason.as_deref().map(str::trim) {
        Some("") => return Err(ApiError::field("reason", "a reason cannot be empty")),
        other => other.map(str::to_string),
    };
    let until = match (b.duration.as_deref(), b.expires_at.as_deref()) {
        (None, None) => None,
        (d, t) => Some(expiry(&app, d, t)?),
    };
    if reason.is_none() && until.is_none() {
        return Err(ApiError::field("body", "give a new `reason`, `duration` or `expires_at`"));
    }
    let (state, at, who, id) = (app.state.clone(), exec::iso(app.now()), caller.0.name.clone(), s.id);
    let changed =
        blocking(move || silences::edit(&state, id, reason.as_deref(), until.as_deref(), &who, &at).map_err(silence_error)).await?;
    publish_silence(&app, "silence.changed", &changed).await;
    Ok(Json(json!({ "silence": changed.silence })))
}

/// `DELETE /api/v1/silences/{id}`: lift it now.
async fn lift_silence(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let s = silence_in_scope(&app, &caller, &id)?;
    may_silence(&caller, &s.matcher)?;
    let (state, at, who, id) = (app.state.clone(), exec::iso(app.now()), caller.0.name.clone(), s.id);
    let changed = blocking(move || silences::end(&state, id, Some(&who), &at).map_err(silence_error)).await?;
    publish_silence(&app, "silence.ended", &changed).await;
    Ok(Json(json!({ "silence": changed.silence })))
}

/// `GET /api/v1/silences`: every silence of the tenants in scope, newest first.
async fn list_silences(State(app): State<Arc<App>>, caller: Caller) -> Json<Value> {
    let now = exec::iso(app.now());
    let list: Vec<Value> = app
        .silences
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .rev()
        .filter(|s| caller.sees(&s.matcher.tenant_id))
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["active"] = json!(s.active(&now));
            v
        })
        .collect();
    Json(json!({ "silences": list, "now": now }))
}

/// What a stream sends next.
enum Next {
    /// The open findings in scope (first message, or after a gap).
    Snapshot,
    /// Events already known to be missed.
    Backlog(std::collections::VecDeque<Arc<Event>>),
    /// Live.
    Live,
}

struct StreamState {
    app: Arc<App>,
    scope: Scope,
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    next: Next,
    last_sent: u64,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _client: ClientGuard,
}

/// Counts a connected client for as long as its stream lives.
struct ClientGuard(Arc<App>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn sse(e: &Event) -> SseEvent {
    SseEvent::default().id(e.id.to_string()).event(e.kind).data(&e.text)
}

/// The snapshot event: open findings in scope, the rule-set revision and the last reload,
/// as of the event id returned (the stream then sends the events after it).
async fn snapshot(app: &Arc<App>, scope: &Scope) -> Result<(SseEvent, u64), ApiError> {
    // Detached: a client that leaves while the read runs does not waste it (the next one
    // finds it cached), and the reads of many clients never pile up behind the state's
    // lock, where they starved the ticks' and the operators' requests (a 1,000-site soak
    // with live-feed clients coming and going every few seconds).
    let (app2, scope2) = (Arc::clone(app), scope.clone());
    let (data, id) = tokio::spawn(async move { snapshot_data(&app2, &scope2).await }).await.map_err(ApiError::internal)??;
    Ok((SseEvent::default().id(id.to_string()).event("snapshot").data(data.as_str()), id))
}

/// A snapshot's text and the id of the last event it includes. One read at a time (the
/// cache's lock is held across it); a snapshot of the same scope read in the last 5
/// seconds is shared while every event after it is still kept, since the stream sends
/// those events after it.
async fn snapshot_data(app: &Arc<App>, scope: &Scope) -> Result<(Arc<String>, u64), ApiError> {
    let mut cache = app.snapshots.lock().await;
    cache.retain(|(_, _, at, _)| at.elapsed() < Duration::from_secs(5));
    if let Some((_, id, _, data)) = cache.iter().find(|(s, id, _, _)| s == scope && app.bus.since(*id).is_some()) {
        return Ok((Arc::clone(data), *id));
    }
    let id = app.bus.last_id();
    let state = app.state.clone();
    let query = StoreQuery { listing: Listing::Open, tenants: scope.tenants(), ..StoreQuery::default() };
    let (rows, reloads) = blocking(move || {
        let rows = store::find(&state, &query).map_err(ApiError::internal)?;
        let reloads = store::reloads(&state).map_err(ApiError::internal)?;
        Ok((rows, reloads))
    })
    .await?;
    let mut views: Vec<FindingView> = rows.into_iter().map(|f| app.view(f)).collect();
    views.sort_by(by_urgency);
    let data = json!({
        "findings": views,
        "revision": store::revision(&app.rules()),
        "last_reload": reloads.last().map(ReloadView::from),
        "now": exec::iso(app.now()),
    })
    .to_string();
    let data = Arc::new(data);
    cache.retain(|(s, _, _, _)| s != scope);
    if cache.len() >= 16 {
        cache.remove(0);
    }
    cache.push((scope.clone(), id, std::time::Instant::now(), Arc::clone(&data)));
    Ok((data, id))
}

/// `GET /api/v1/events`: the live feed as Server-Sent Events. Without
/// `Last-Event-ID` it starts with a snapshot; with one, it sends what was missed
/// (or a snapshot when that is no longer kept), then live events in the caller's scope.
async fn events(State(app): State<Arc<App>>, caller: Caller, headers: HeaderMap) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last: Option<u64> = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let rx = app.bus.subscribe();
    let (next, last_sent) = match last.and_then(|l| app.bus.since(l).map(|missed| (l, missed))) {
        Some((l, missed)) => (Next::Backlog(missed.into()), l),
        None => (Next::Snapshot, 0),
    };
    app.metrics.sse_clients.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let heartbeat = app.heartbeat;
    let state = StreamState {
        shutdown: app.shutdown.clone(),
        _client: ClientGuard(Arc::clone(&app)),
        app,
        scope: caller.0.tenants,
        rx,
        next,
        last_sent,
    };
    let stream = stream::unfold(state, |mut s| async move {
        loop {
            if *s.shutdown.borrow() {
                return None;
            }
            match std::mem::replace(&mut s.next, Next::Live) {
                Next::Snapshot => {
                    match snapshot(&s.app, &s.scope).await {
                        Ok((event, id)) => {
                            // Events after the snapshot's id follow (a shared snapshot may
                            // be a few seconds old); earlier ones are in it.
                            s.last_sent = id;
                            s.next = match s.app.bus.since(id) {
                                Some(missed) => Next::Backlog(missed.into()),
                                // Too many events since to replay: a fresh one.
                                None => Next::Snapshot,
                            };
                            return Some((Ok(event), s));
                        }
                        Err(e) => {
                            eprintln!("serve: cannot build a snapshot for a stream: {}", e.message);
                            return None;
                        }
                    }
                }
                Next::Backlog(mut queue) => {
                    while let Some(e) = queue.pop_front() {
                        if e.id > s.last_sent && e.tenant.as_deref().is_none_or(|t| s.scope.allows(t)) {
                            s.last_sent = e.id;
                            s.next = Next::Backlog(queue);
                            return Some((Ok(sse(&e)), s));
                        }
                    }
                }
                Next::Live => {
                    let received = tokio::select! {
                        r = s.rx.recv() => r,
                        _ = s.shutdown.wait_for(|stop| *stop) => return None,
                    };
                    match received {
                        Ok(e) if e.id > s.last_sent && e.tenant.as_deref().is_none_or(|t| s.scope.allows(t)) => {
                            s.last_sent = e.id;
                            return Some((Ok(sse(&e)), s));
                        }
                        Ok(_) => {}
                        // Too slow a reader: start again from a snapshot.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => s.next = Next::Snapshot,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        }
    });
    Sse::new(stream.boxed()).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; vigil_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = body::<StepBody>(&Bytes::from_static(b"{}")).err().map(|e| (e.status, e.field));
        assert_eq!(e, Some((StatusCode::UNPROCESSABLE_ENTITY, Some("note".to_string()))));
        let e = body::<StepBody>(&Bytes::from_static(b"{\"note\": 3}")).err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("line 1 column")));
    }
}
