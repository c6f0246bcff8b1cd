//! The runbook actions under `/api/v1/actions`: the action log with filters, one
//! action with its attempts, approval and rejection, replay of the dead-letter list,
//! and the kill switches. Tenant scope as everywhere: an action of another tenant
//! does not exist for the caller (404).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::api::{blocking, body, ApiError, ApiResult, Caller};
use super::auth::{Role, Scope};
use super::deliver::{self, wall_now};
use super::App;
use vigil_engine::exec;
use vigil_engine::outbox::{self, ActionQuery, ActionRow, DecideError, Decision, KillSwitch, Status};

/// Largest page of actions.
const MAX_LIMIT: usize = 1000;

fn enabled(app: &App) -> ApiResult<&deliver::Outbox> {
    app.outbox
        .as_ref()
        .ok_or_else(|| ApiError::not_found("runbook actions are not configured on this service (start it with --actions FILE)"))
}

/// `GET /api/v1/actions?status=..&finding=..&action=..&limit=..`: newest first, with the
/// storms the breaker sees and the kill switches in force.
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let outbox = enabled(&app)?;
    let mut query = ActionQuery { tenants: caller.0.tenants.tenants(), ..ActionQuery::default() };
    if let Some(s) = params.get("status").filter(|s| !s.is_empty()) {
        let statuses = s
            .split(',')
            .map(|w| {
                Status::parse(w.trim()).ok_or_else(|| {
                    let all: Vec<&str> = outbox::STATUSES.iter().map(|s| s.name()).collect();
                    ApiError::field("status", format!("`{w}` is not an action status ({})", all.join(", ")))
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        query.statuses = Some(statuses);
    }
    if let Some(f) = params.get("finding").filter(|s| !s.is_empty()) {
        let id = f.parse().map_err(|_| ApiError::field("finding", format!("`{f}` is not a finding id")))?;
        query.findings = Some(vec![id]);
    }
    query.action = params.get("action").filter(|s| !s.is_empty()).cloned();
    let limit = match params.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::field("limit", format!("limit is 1..={MAX_LIMIT}")))?,
        None => 200,
    };
    let state = app.state.clone();
    let mut rows = blocking(move || outbox::list(&state, &query).map_err(ApiError::internal)).await?;
    rows.reverse();
    let total = rows.len();
    let actions: Vec<Value> = rows.iter().take(limit).map(deliver::view).collect();
    let storms: Vec<Value> = outbox
        .storms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|s| caller.sees(&s.tenant))
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .collect();
    Ok(Json(
        json!({ "total": total, "actions": actions, "storms": storms, "switches": switches_of(&app, &caller).await?, "now": exec::iso(app.now()) }),
    ))
}

/// One action in scope, or 404.
async fn in_scope(app: &Arc<App>, caller: &Caller, id: &str) -> ApiResult<ActionRow> {
    let id: i64 = id.parse().map_err(|_| ApiError::field("id", format!("`{id}` is not an action id (a whole number)")))?;
    let state = app.state.clone();
    let q = ActionQuery { ids: Some(vec![id]), tenants: caller.0.tenants.tenants(), ..ActionQuery::default() };
    let found = blocking(move || outbox::list(&state, &q).map_err(ApiError::internal)).await?;
    found.into_iter().next().ok_or_else(|| ApiError::not_found(format!("no action {id}")))
}

/// `GET /api/v1/actions/{id}`: the action and its log (attempts, responses, decisions).
pub async fn one(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    enabled(&app)?;
    let a = in_scope(&app, &caller, &id).await?;
    let (state, aid) = (app.state.clone(), a.id);
    let log = blocking(move || outbox::log(&state, aid).map_err(ApiError::internal)).await?;
    let mut v = deliver::view(&a);
    v["log"] = serde_json::to_value(log).map_err(ApiError::internal)?;
    Ok(Json(v))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: String,
}

/// `POST /api/v1/actions/{id}/approve|reject|replay` with a note. Approving or rejecting
/// needs the role the action asks for; replaying needs an operator.
pub async fn decide(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, decision)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    let outbox = enabled(&app)?;
    let d = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        "replay" => Decision::Replay,
        other => return Err(ApiError::not_found(format!("no decision `{other}` (approve, reject or replay)"))),
    };
    caller.need(Role::Operator)?;
    let NoteBody { note } = body(&raw)?;
    if note.trim().is_empty() {
        return Err(ApiError::field("note", "a note is required: say why"));
    }
    let a = in_scope(&app, &caller, &id).await?;
    if d != Decision::Replay && a.plan.approval.as_deref() == Some("admin") {
        caller.need(Role::Admin)?;
    }
    let (state, who, at, note) = (app.state.clone(), caller.0.name.clone(), exec::iso(app.now()), note.trim().to_string());
    let after = blocking(move || {
        outbox::decide(&state, a.id, d, &who, &note, &at, wall_now()).map_err(|e| match e {
            DecideError::NotFound(_) => ApiError::not_found(e.to_string()),
            DecideError::Refused { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            DecideError::Db(m) => ApiError::internal(m),
        })
    })
    .await?;
    let v = deliver::view(&after);
    app.bus.publish("action.changed", Some(after.plan.tenant_id.clone()), v.clone());
    outbox.wake.notify_one();
    Ok(Json(v))
}

/// The kill switches the caller may see.
async fn switches_of(app: &Arc<App>, caller: &Caller) -> ApiResult<Value> {
    let config = enabled(app)?.config();
    let state = app.state.clone();
    let thrown = blocking(move || outbox::switches(&state).map_err(ApiError::internal)).await?;
    let visible: Vec<&KillSwitch> = thrown.iter().filter(|s| s.scope == "*" || caller.sees(&s.scope)).collect();
    let configured: Vec<&String> = config.tenants.iter().filter(|(t, p)| p.kill && caller.sees(t)).map(|(t, _)| t).collect();
    Ok(json!({ "configured_global": config.kill, "configured_tenants": configured, "thrown": visible }))
}

/// `GET /api/v1/actions/switches`
pub async fn switches(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    Ok(Json(switches_of(&app, &caller).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    /// `*` or a tenant.
    scope: String,
    killed: bool,
    note: String,
}

/// `POST /api/v1/actions/switches {scope, killed, note}`: an admin throws or releases
/// a kill switch; the global one needs an admin of every tenant.
pub async fn set_switch(State(app): State<Arc<App>>, caller: Caller, raw: Bytes) -> ApiResult<Json<Value>> {
    let outbox = enabled(&app)?;
    caller.need(Role::Admin)?;
    let SwitchBody { scope, killed, note } = body(&raw)?;
    if note.trim().is_empty() {
        return Err(ApiError::field("note", "a note is required: say why"));
    }
    let scope = scope.trim().to_string();
    if scope == "*" {
        if !matches!(caller.0.tenants, Scope::All) {
            return Err(ApiError::forbidden("the global kill switch needs an admin token for every tenant (`*`)"));
        }
    } else if scope.is_empty() || !caller.sees(&scope) {
        return Err(ApiError::field("scope", format!("`{scope}` is not a tenant of this token (or `*`)")));
    }
    let s = KillSwitch { scope, killed, by: caller.0.name.clone(), at: exec::iso(app.now()) };
    let (state, s2) = (app.state.clone(), s.clone());
    blocking(move || outbox::set_switch(&state, &s2).map_err(ApiError::internal)).await?;
    eprintln!("serve: actions: kill switch {} {} by {}: {}", s.scope, if killed { "on" } else { "off" }, s.by, note.trim());
    let tenant = (s.scope != "*").then(|| s.scope.clone());
    app.bus.publish("actions.switch", tenant, serde_json::to_value(&s).map_err(ApiError::internal)?);
    outbox.wake.notify_one();
    Ok(Json(switches_of(&app, &caller).await?))
}
