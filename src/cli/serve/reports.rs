//! Client reports in the service: built on demand or on a schedule (daily at 06:00 in the
//! tenant's time zone for the day before, monthly on the 1st for the month before),
//! stored beside the state database, held for a supervisor's approval for tenants that
//! ask for review, and shown to clients in the portal.
//!
//! Invariants:
//! - A stored report is three files, `<id>.pdf`, `<id>.html` and `<id>.json` (what it is
//!   and its status); the JSON is written last and renamed into place, so a listed
//!   report is complete.
//! - A client sees only published reports of its tenants; staff see every report of
//!   theirs. Anything else answers 404.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use serde_json::{json, Value};

use super::api::{blocking, body, ApiError, ApiResult, Caller};
use super::auth::Role;
use super::App;
use crate::cli::report::{html, pdf};
use vigil_engine::actions::ReportHeader;
use vigil_engine::exec;
use vigil_engine::report::{self, Request};
use vigil_engine::store;

/// What a stored report is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Its id, tenant, site, kind and period.
    #[serde(flatten)]
    pub report: ReportHeader,
    /// published or pending_review.
    pub status: String,
    /// When it was built (the run's clock).
    pub built_at: String,
    /// Who asked for it (`schedule` for the schedule).
    pub built_by: String,
    /// Who approved it for the client.
    pub approved_by: Option<String>,
    /// The report's input hash.
    pub input_hash: String,
    /// Findings in it.
    pub findings: u32,
    /// Its headline said "No exceptions".
    pub no_exceptions: bool,
}

/// A scheduled report: (tenant, kind, first day, last day).
type Scheduled = (String, String, String, String);

/// The reports side of the service.
pub struct Reports {
    /// Where reports are stored.
    pub dir: PathBuf,
    /// Tenants whose reports wait for a supervisor's approval.
    pub review: BTreeSet<String>,
    /// Build the daily and monthly reports.
    pub schedule: bool,
    /// Signal files the service reads (besides pushed rows).
    pub signals: Option<PathBuf>,
    /// Tenants and the time zone their schedule follows (their first site's), once read.
    zones: Mutex<Option<BTreeMap<String, chrono_tz::Tz>>>,
    /// Scheduled reports already stored, (tenant, kind, from, to): read from the directory
    /// once, then kept up to date, so a tick does not read every stored report again.
    scheduled: Mutex<Option<BTreeSet<Scheduled>>>,
}

impl Reports {
    /// Reports stored in `dir`.
    pub fn new(dir: PathBuf, review: BTreeSet<String>, schedule: bool, signals: Option<PathBuf>) -> Reports {
        Reports { dir, review, schedule, signals, zones: Mutex::new(None), scheduled: Mutex::new(None) }
    }
}

/// Every stored report, newest period first.
pub fn list(dir: &Path) -> Vec<Meta> {
    let mut out: Vec<Meta> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    out.sort_by(|a: &Meta, b: &Meta| {
        b.report.from.cmp(&a.report.from).then(b.report.to.cmp(&a.report.to)).then(a.report.id.cmp(&b.report.id))
    });
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds a report from what the service holds (signal files, pushed rows, the store)
/// and stores it; a report already stored with the same id keeps its status.
pub fn build_and_store(app: &App, reports: &Reports, req: &Request, kind: &str, by: &str) -> Result<Meta, String> {
    let sig = match &reports.signals {
        Some(p) => vigil_engine::load::load(p).map_err(|e| e.to_string())?,
        None => vigil_engine::load::empty().map_err(|e| e.to_string())?,
    };
    if app.ingest.exists() {
        let all = vigil_engine::schema::contract_tables().map(|t| (t.name, None)).collect();
        vigil_engine::ingest::copy_window(&app.ingest, &sig, app.now(), &all).map_err(|e| e.to_string())?;
    }
    let query = store::Query { tenants: Some(vec![req.tenant.clone()]), site: req.site.clone(), ..store::Query::default() };
    let findings = store::find(&app.state, &query).map_err(|e| e.to_string())?;
    let mut histories = BTreeMap::new();
    for f in findings.iter().filter(|f| f.severity == "HIGH" || f.severity == "CRITICAL") {
        histories.insert(f.id, store::history(&app.state, f.id).map_err(|e| e.to_string())?);
    }
    let set = app.rules();
    let slas = set.runbooks.iter().map(|r| (r.id.clone(), r.escalate_after_minutes)).collect();
    let r = report::build(&sig, &findings, &histories, &slas, &store::revision(&set), req).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&reports.dir).map_err(|e| format!("{}: {e}", reports.dir.display()))?;
    let meta_path = reports.dir.join(format!("{}.json", r.id));
    if let Some(existing) = std::fs::read_to_string(&meta_path).ok().and_then(|t| serde_json::from_str::<Meta>(&t).ok()) {
        return Ok(existing);
    }
    write_atomic(&reports.dir.join(format!("{}.pdf", r.id)), &pdf::render(&r)?)?;
    write_atomic(&reports.dir.join(format!("{}.html", r.id)), html::render(&r).as_bytes())?;
    let status = if reports.review.contains(&req.tenant) { "pending_review" } else { "published" };
    let meta = Meta {
        report: ReportHeader {
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            site: r.site.clone(),
            kind: kind.to_string(),
            from: r.from.clone(),
            to: r.to.clone(),
        },
        status: status.to_string(),
        built_at: exec::iso(app.now()),
        built_by: by.to_string(),
        approved_by: None,
        input_hash: r.built_from.input_hash.clone(),
        findings: r.totals.findings,
        no_exceptions: r.no_exceptions,
    };
    write_atomic(&meta_path, serde_json::to_string_pretty(&meta).map_err(|e| e.to_string())?.as_bytes())?;
    eprintln!("serve: report {} ({kind}, {} {} to {}) {status}", meta.report.id, meta.report.tenant, meta.report.from, meta.report.to);
    if meta.status == "published" {
        deliver(app, &meta);
    }
    Ok(meta)
}

/// A published report goes to the client through the runbook actions' outbox (when the
/// actions configuration names an action for the tenant's reports).
fn deliver(app: &App, m: &Meta) {
    if let Some(outbox) = &app.outbox {
        super::deliver::enqueue_report(app, outbox, &m.report);
    }
}

/// The reports due at `now` for a tenant whose schedule follows `tz`: the day before,
/// from 06:00 local; and on the 1st, the month before. (kind, first day, last day).
pub fn due(tz: chrono_tz::Tz, now: i64) -> Vec<(&'static str, NaiveDate, NaiveDate)> {
    let Some(local) = chrono::DateTime::from_timestamp_micros(now).map(|t| tz.from_utc_datetime(&t.naive_utc())) else { return Vec::new() };
    if local.hour() < 6 {
        return Vec::new();
    }
    let today = local.date_naive();
    let Some(yesterday) = today.pred_opt() else { return Vec::new() };
    let mut out = vec![("daily", yesterday, yesterday)];
    if today.day() == 1 {
        if let Some(first) = NaiveDate::from_ymd_opt(yesterday.year(), yesterday.month(), 1) {
            out.push(("monthly", first, yesterday));
        }
    }
    out
}

/// After a tick: the scheduled reports due and not yet built.
pub fn schedule(app: &App, reports: &Reports, now: i64) {
    if !reports.schedule {
        return;
    }
    let zones = {
        let mut cached = reports.zones.lock().unwrap_or_else(|p| p.into_inner());
        if cached.is_none() {
            *cached = Some(tenant_zones(app, reports));
        }
        cached.clone().unwrap_or_default()
    };
    let mut scheduled = reports.scheduled.lock().unwrap_or_else(|p| p.into_inner());
    let done = scheduled.get_or_insert_with(|| {
        list(&reports.dir)
            .into_iter()
            .filter(|m| m.report.site.is_none())
            .map(|m| (m.report.tenant, m.report.kind, m.report.from, m.report.to))
            .collect()
    });
    for (tenant, tz) in zones {
        for (kind, from, to) in due(tz, now) {
            let (f, t) = (from.format("%Y-%m-%d").to_string(), to.format("%Y-%m-%d").to_string());
            let key = (tenant.clone(), kind.to_string(), f.clone(), t.clone());
            if done.contains(&key) {
                continue;
            }
            let req = Request { tenant: tenant.clone(), site: None, from, to, internal: false };
            match build_and_store(app, reports, &req, kind, "schedule") {
                Ok(_) => {
                    done.insert(key);
                }
                Err(e) => eprintln!("serve: the {kind} report of {tenant} for {f}..{t} failed: {e}"),
            }
        }
    }
}

/// Every tenant of the signals and its first site's time zone.
fn tenant_zones(app: &App, reports: &Reports) -> BTreeMap<String, chrono_tz::Tz> {
    let sig = match &reports.signals {
        Some(p) => vigil_engine::load::load(p).ok(),
        None => vigil_engine::load::empty().ok(),
    };
    let Some(sig) = sig else { return BTreeMap::new() };
    if app.ingest.exists() {
        let sites = BTreeMap::from([("sites", None)]);
        let _ = vigil_engine::ingest::copy_window(&app.ingest, &sig, app.now(), &sites);
    }
    report::tenant_zones(&sig).unwrap_or_default()
}

/// What a caller may see of a report.
fn visible(caller: &Caller, m: &Meta) -> bool {
    caller.sees(&m.report.tenant) && (caller.0.role != Role::Client || m.status == "published")
}

fn enabled(app: &App) -> ApiResult<&Reports> {
    app.reports.as_ref().ok_or_else(|| ApiError::not_found("reports are not enabled on this service"))
}

/// `GET /api/v1/reports`
pub async fn index(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    let reports = enabled(&app)?;
    let dir = reports.dir.clone();
    let all = blocking(move || Ok(list(&dir))).await?;
    let mine: Vec<&Meta> = all.iter().filter(|m| visible(&caller, m)).collect();
    Ok(Json(json!({ "reports": mine })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    tenant: String,
    #[serde(default)]
    site: Option<String>,
    from: String,
    to: String,
}

/// `POST /api/v1/reports {tenant, site?, from, to}` (operator): build one now.
pub async fn create(State(app): State<Arc<App>>, caller: Caller, raw: Bytes) -> ApiResult<Response> {
    enabled(&app)?;
    caller.need(Role::Operator)?;
    let b: BuildBody = body(&raw)?;
    if !caller.sees(&b.tenant) {
        return Err(ApiError::field("tenant", format!("`{}` is not a tenant of this token", b.tenant)));
    }
    let day = |t: &str, f: &str| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| ApiError::field(f, format!("`{t}` is not a date such as 2025-10-04")))
    };
    let req = Request { tenant: b.tenant, site: b.site, from: day(&b.from, "from")?, to: day(&b.to, "to")?, internal: false };
    if req.to < req.from {
        return Err(ApiError::field("to", "`to` is before `from`"));
    }
    let who = caller.0.name.clone();
    let app2 = Arc::clone(&app);
    let meta = blocking(move || {
        let reports = enabled(&app2)?;
        build_and_store(&app2, reports, &req, "on-demand", &who).map_err(|e| ApiError::field("tenant", e))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

async fn one(app: &Arc<App>, caller: &Caller, id: &str) -> ApiResult<Meta> {
    let reports = enabled(app)?;
    let dir = reports.dir.clone();
    let all = blocking(move || Ok(list(&dir))).await?;
    all.into_iter().find(|m| m.report.id == id && visible(caller, m)).ok_or_else(|| ApiError::not_found(format!("no report {id}")))
}

/// `GET /api/v1/reports/{id}/{file}` with file `pdf` or `html`.
pub async fn file(State(app): State<Arc<App>>, caller: Caller, UrlPath((id, file)): UrlPath<(String, String)>) -> ApiResult<Response> {
    let m = one(&app, &caller, &id).await?;
    let (ext, kind) = match file.as_str() {
        "pdf" => ("pdf", "application/pdf"),
        "html" => ("html", "text/html; charset=utf-8"),
        other => return Err(ApiError::not_found(format!("no `{other}` of a report (pdf or html)"))),
    };
    let path = enabled(&app)?.dir.join(format!("{}.{ext}", m.report.id));
    let bytes = blocking(move || std::fs::read(&path).map_err(ApiError::internal)).await?;
    let mut r = bytes.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}.{ext}\"", m.report.id)) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// `POST /api/v1/reports/{id}/approve {note}` (admin, the supervisor): publish it.
pub async fn approve(State(app): State<Arc<App>>, caller: Caller, UrlPath(id): UrlPath<String>, raw: Bytes) -> ApiResult<Json<Meta>> {
    caller.need(Role::Admin)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Note {
        note: String,
    }
    let Note { note } = body(&raw)?;
    if note.trim().is_empty() {
        return Err(ApiError::field("note", "a note is required"));
    }
    let mut m = one(&app, &caller, &id).await?;
    if m.status != "pending_review" {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("report {id} is {}", m.status)));
    }
    m.status = "published".into();
    m.approved_by = Some(caller.0.name.clone());
    let path = enabled(&app)?.dir.join(format!("{}.json", m.report.id));
    let text = serde_json::to_string_pretty(&m).map_err(ApiError::internal)?;
    blocking(move || write_atomic(&path, text.as_bytes()).map_err(ApiError::internal)).await?;
    eprintln!("serve: report {} approved by {}: {}", m.report.id, caller.0.name, note.trim());
    let (app2, m2) = (Arc::clone(&app), m.clone());
    let _ = tokio::task::spawn_blocking(move || deliver(&app2, &m2)).await;
    Ok(Json(m))
}

/// `GET /api/v1/portal/summary`: per tenant of the caller, the findings of the last 30
/// days (run's clock) by category and severity, and how many are open.
pub async fn summary(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    let (state, scope, since) = (app.state.clone(), caller.0.tenants.tenants(), app.now() - 30 * 86_400_000_000);
    let rows = blocking(move || {
        let q = store::Query { tenants: scope, ..store::Query::default() };
        store::find(&state, &q).map_err(ApiError::internal)
    })
    .await?;
    let since_text = exec::iso(since);
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for f in rows.iter().filter(|f| f.first_seen >= since_text) {
        let t = out.entry(f.tenant_id.clone()).or_insert_with(|| json!({ "findings": 0, "open": 0, "by_category": {} }));
        t["findings"] = json!(t["findings"].as_u64().unwrap_or(0) + 1);
        if f.status != store::Status::Resolved {
            t["open"] = json!(t["open"].as_u64().unwrap_or(0) + 1);
        }
        let n = t["by_category"][&f.category][&f.severity].as_u64().unwrap_or(0);
        t["by_category"][&f.category][&f.severity] = json!(n + 1);
    }
    Ok(Json(json!({ "since": since_text, "tenants": out })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        vigil_engine::load::parse_timestamp(text).expect("time")
    }

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn reports_fall_due_at_six_local_and_monthly_on_the_first() {
        let london: chrono_tz::Tz = "Europe/London".parse().expect("tz");
        let ny: chrono_tz::Tz = "America/New_York".parse().expect("tz");
        // 04:59Z is 05:59 in London (BST): nothing yet; 05:00Z is 06:00: yesterday's report.
        assert!(due(london, at("2025-10-04T04:59:00Z")).is_empty());
        assert_eq!(due(london, at("2025-10-04T05:00:00Z")), [("daily", d("2025-10-03"), d("2025-10-03"))]);
        // In New York (EDT, UTC-4) 09:00Z is 05:00 local: not yet.
        assert!(due(ny, at("2025-10-04T09:00:00Z")).is_empty());
        // On the 1st, also the month before (30 days of September).
        assert_eq!(
            due(london, at("2025-10-01T07:00:00Z")),
            [("daily", d("2025-09-30"), d("2025-09-30")), ("monthly", d("2025-09-01"), d("2025-09-30"))]
        );
        // 1 March in a leap year: February had 29 days.
        assert_eq!(due(london, at("2024-03-01T06:00:00Z"))[1], ("monthly", d("2024-02-01"), d("2024-02-29")));
    }
}
