//! Runbook actions in the service: planning at each tick into the durable outbox,
//! and the delivery worker with its guardrails.
//!
//! Invariants:
//! - Nothing is sent that is not first in the outbox: a tick plans the actions of its
//!   new findings (and of findings holding again: a new epoch) and enqueues them by
//!   idempotency key; at start, every open finding is planned again, so actions of a
//!   tick committed just before a crash are not forgotten (their keys exist: no-op).
//! - One worker moves actions, each step a compare-and-set in the store; operators'
//!   approvals go through the same store, so a decision and the worker never both win.
//! - The order of the guardrails, at the moment an action is due: no longer needed
//!   (acknowledged, resolved, stopped holding) -> dropped; a kill switch -> suppressed;
//!   the storm breaker (non-critical) -> held; approval -> waits; rate limits ->
//!   limited; then dry-run records "would send" and live sends.
//! - A request carries the action's idempotency key as `webhook-id`, so a receiver
//!   deduplicates a delivery repeated after a crash between sending and recording.
//! - Secrets are read when a request is signed and are in no log line, payload or
//!   answer; targets on loopback or private networks are refused unless allowed,
//!   and redirects are not followed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use vigil_engine::actions::{self, Config, Kind};
use vigil_engine::diag::Sources;
use vigil_engine::duckdb::types::Value;
use vigil_engine::exec;
use vigil_engine::outbox::{self, ActionQuery, ActionRow, Change, LogEntry, Status};
use vigil_engine::ruleset::RuleSet;
use vigil_engine::store::{self, Query as StoreQuery, Stored};

use super::sign;
use super::App;

/// A storm the breaker sees: many findings raised at one site (or tenant) at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StormView {
    /// The tenant.
    pub tenant: String,
    /// The site (`None`: the whole tenant).
    pub site: Option<String>,
    /// Findings raised within the window.
    pub findings: i64,
    /// The threshold it passed.
    pub threshold: u32,
    /// The window's start (run's clock).
    pub since: String,
}

/// The actions side of the service.
pub struct Outbox {
    /// The configuration in force.
    pub config: RwLock<Arc<Config>>,
    /// Its file (read again when the rules reload).
    pub file: PathBuf,
    /// Storms seen at the last pass.
    pub storms: Mutex<Vec<StormView>>,
    /// Wakes the worker (a tick enqueued, an operator decided).
    pub wake: tokio::sync::Notify,
}

/// Reads and checks an actions file against the runbooks of a rule set; the
/// rendered diagnostics on failure.
pub fn load_config(file: &std::path::Path, set: &RuleSet) -> Result<Config, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("error: --actions {}: {e}", file.display()))?;
    let mut sources = Sources::new();
    let env = |name: &str| std::env::var(name).ok();
    let config = actions::load(&mut sources, &file.display().to_string(), &text, &env).map_err(|d| sources.render(&d, false))?;
    let diags = actions::check_runbooks(&config, &set.runbooks);
    if diags.iter().any(|d| d.is_error()) {
        return Err(set.sources.render(&diags, false));
    }
    Ok(config)
}

impl Outbox {
    /// The service's outbox over a checked configuration.
    pub fn new(config: Config, file: PathBuf) -> Outbox {
        Outbox { config: RwLock::new(Arc::new(config)), file, storms: Mutex::new(Vec::new()), wake: tokio::sync::Notify::new() }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// After a reload: the file again, checked against the new runbooks; a broken file
    /// keeps the configuration in force (and says why).
    pub fn reload(&self, set: &RuleSet) {
        match load_config(&self.file, set) {
            Ok(c) => *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c),
            Err(e) => eprintln!("serve: the actions configuration did not check; the previous one stays in force:\n{e}"),
        }
    }
}

/// Plans and enqueues the actions of these findings (raised, late, or changed) at
/// `at_us`; returns the ids of the actions created.
pub fn enqueue_for(app: &App, outbox: &Outbox, ids: &[i64], at_us: i64) -> Vec<i64> {
    if ids.is_empty() {
        return Vec::new();
    }
    let query = StoreQuery { ids: Some(ids.to_vec()), listing: store::Listing::Open, ..StoreQuery::default() };
    let findings = match store::find(&app.state, &query) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("serve: actions: cannot read findings to plan: {e}");
            return Vec::new();
        }
    };
    plan_and_enqueue(app, outbox, &findings, at_us)
}

fn plan_and_enqueue(app: &App, outbox: &Outbox, findings: &[Stored], at_us: i64) -> Vec<i64> {
    let config = outbox.config();
    let set = app.rules();
    // Only findings nobody has taken: an acknowledged finding's actions would be dropped
    // when due, and planning them would only write noise on its timeline.
    let holding: Vec<&Stored> = findings.iter().filter(|f| f.holding && f.status == store::Status::New).collect();
    let ids: Vec<i64> = holding.iter().map(|f| f.id).collect();
    let again = match outbox::held_again(&app.state, &ids) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("serve: actions: cannot read findings' epochs: {e}");
            return Vec::new();
        }
    };
    let mut planned = Vec::new();
    for f in holding {
        let Some(book) = set.runbooks.iter().find(|r| r.id == f.runbook) else { continue };
        let (epoch, base) = match again.get(&f.id) {
            Some((n, at)) => (1 + n, at.clone()),
            None => (1, f.first_seen.clone()),
        };
        let Ok(base_us) = vigil_engine::load::parse_timestamp(&base) else { continue };
        planned.extend(actions::plan(&config, book, f, epoch, base_us));
    }
    match outbox::enqueue(&app.state, &planned, &exec::iso(at_us), wall_now()) {
        Ok(done) => {
            let created: Vec<i64> = done.iter().filter(|(_, c)| *c).map(|(a, _)| a.id).collect();
            for (a, c) in &done {
                if *c {
                    publish(app, a);
                }
            }
            if !created.is_empty() {
                outbox.wake.notify_one();
            }
            created
        }
        Err(e) => {
            eprintln!("serve: actions: cannot enqueue: {e}");
            Vec::new()
        }
    }
}

/// A published report's delivery, through the tenant's report action, if any.
pub fn enqueue_report(app: &App, outbox: &Outbox, r: &actions::ReportHeader) {
    let Some(p) = actions::plan_report(&outbox.config(), r, app.now()) else { return };
    match outbox::enqueue(&app.state, &[p], &exec::iso(app.now()), wall_now()) {
        Ok(done) => {
            for (a, created) in &done {
                if *created {
                    publish(app, a);
                    outbox.wake.notify_one();
                }
            }
        }
        Err(e) => eprintln!("serve: actions: cannot enqueue the delivery of report {}: {e}", r.id),
    }
}

/// At start: every open finding is planned again (existing keys are left alone).
pub fn sweep(app: &App, outbox: &Outbox) {
    let query = StoreQuery { listing: store::Listing::Open, ..StoreQuery::default() };
    match store::find(&app.state, &query) {
        Ok(all) => {
            let n = plan_and_enqueue(app, outbox, &all, app.now()).len();
            if n > 0 {
                eprintln!("serve: actions: {n} action(s) of open findings enqueued at start");
            }
        }
        Err(e) => eprintln!("serve: actions: cannot read open findings at start: {e}"),
    }
}

/// The wall clock (µs).
pub fn wall_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// An action as the API and the live feed show it (the payload parsed).
pub fn view(a: &ActionRow) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    v["payload"] = serde_json::from_str(&a.plan.payload).unwrap_or(serde_json::Value::Null);
    v["due"] = serde_json::Value::String(exec::iso(a.plan.due_us));
    if let Some(d) = a.deadline_us {
        v["deadline"] = serde_json::Value::String(exec::iso(d));
    }
    v
}

fn publish(app: &App, a: &ActionRow) {
    app.bus.publish("action.changed", Some(a.plan.tenant_id.clone()), view(a));
}

async fn db<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())?
}

/// The delivery worker: a pass every second, or at once when woken; ends with the service.
pub async fn run(app: Arc<App>) {
    let Some(outbox) = app.outbox.as_ref() else { return };
    let client = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("serve: actions: cannot build the HTTP client: {e}; nothing will be delivered");
            return;
        }
    };
    let mut shutdown = app.shutdown.clone();
    loop {
        tokio::select! {
            _ = outbox.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = pass(&app, outbox, &client).await {
            eprintln!("serve: actions: delivery pass failed: {e}");
        }
    }
}

/// The kill switches in force: (global, tenants).
async fn kill_switches(app: &Arc<App>, config: &Config) -> Result<(bool, BTreeSet<String>), String> {
    let state = app.state.clone();
    let thrown = db(move || outbox::switches(&state).map_err(|e| e.to_string())).await?;
    let mut global = config.kill;
    let mut tenants: BTreeSet<String> = config.tenants.iter().filter(|(_, p)| p.kill).map(|(t, _)| t.clone()).collect();
    for s in thrown.into_iter().filter(|s| s.killed) {
        if s.scope == "*" {
            global = true;
        } else {
            tenants.insert(s.scope);
        }
    }
    Ok((global, tenants))
}

/// Storms now: sites and tenants with more findings raised within the window than allowed.
async fn storms(app: &Arc<App>, config: &Config, now: i64) -> Result<Vec<StormView>, String> {
    let since = exec::iso(now - config.storm.window_us);
    let (state, since2) = (app.state.clone(), since.clone());
    let counts = db(move || outbox::raised_since(&state, &since2).map_err(|e| e.to_string())).await?;
    let mut out = Vec::new();
    let mut per_tenant: HashMap<String, i64> = HashMap::new();
    for (tenant, site, n) in counts {
        *per_tenant.entry(tenant.clone()).or_default() += n;
        if n > i64::from(config.storm.site) && site != "*" {
            out.push(StormView { tenant, site: Some(site), findings: n, threshold: config.storm.site, since: since.clone() });
        }
    }
    let mut tenants: Vec<(String, i64)> = per_tenant.into_iter().filter(|(_, n)| *n > i64::from(config.storm.tenant)).collect();
    tenants.sort();
    for (tenant, n) in tenants {
        out.push(StormView { tenant, site: None, findings: n, threshold: config.storm.tenant, since: since.clone() });
    }
    Ok(out)
}

fn in_storm(storms: &[StormView], a: &ActionRow) -> Option<String> {
    storms.iter().find(|s| s.tenant == a.plan.tenant_id && s.site.as_ref().is_none_or(|site| *site == a.plan.site_id)).map(|s| {
        match &s.site {
            Some(site) => {
                format!("storm breaker: {} findings raised at site {site} since {} (more than {})", s.findings, s.since, s.threshold)
            }
            None => {
                format!(
                    "storm breaker: {} findings raised at tenant {} since {} (more than {})",
                    s.findings, s.tenant, s.since, s.threshold
                )
            }
        }
    })
}

/// Moves one action; publishes it when it moved.
async fn change(app: &Arc<App>, a: &ActionRow, from: &[Status], change: Change) -> Result<bool, String> {
    let (state, id, from, at) = (app.state.clone(), a.id, from.to_vec(), exec::iso(app.now()));
    let moved = db(move || {
        let moved = outbox::transition(&state, id, &from, &change, &at, wall_now()).map_err(|e| e.to_string())?;
        let now = outbox::list(&state, &ActionQuery { ids: Some(vec![id]), ..ActionQuery::default() }).map_err(|e| e.to_string())?;
        Ok((moved, now))
    })
    .await?;
    if moved.0 {
        for a in &moved.1 {
            publish(app, a);
        }
    }
    Ok(moved.0)
}

/// One pass over the active actions.
async fn pass(app: &Arc<App>, outbox: &Outbox, client: &reqwest::Client) -> Result<(), String> {
    let config = outbox.config();
    let now = app.now();
    let state = app.state.clone();
    let active = db(move || {
        outbox::list(&state, &ActionQuery { statuses: Some(outbox::ACTIVE.to_vec()), ..ActionQuery::default() }).map_err(|e| e.to_string())
    })
    .await?;
    // Idle (nothing to move, no storm to call off): one read a second, nothing more.
    let calm = outbox.storms.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
    if active.is_empty() && calm {
        return Ok(());
    }
    let (killed_all, killed) = kill_switches(app, &config).await?;
    let storms = storms(app, &config, now).await?;
    {
        let mut seen = outbox.storms.lock().unwrap_or_else(|p| p.into_inner());
        if *seen != storms {
            // Each tenant hears of its own storms only.
            let tenants: BTreeSet<&String> = seen.iter().chain(&storms).map(|s| &s.tenant).collect();
            for t in tenants {
                let mine = |v: &[StormView]| v.iter().filter(|s| &s.tenant == t).cloned().collect::<Vec<_>>();
                let (before, now) = (mine(&seen), mine(&storms));
                if before != now {
                    let kind = if now.is_empty() { "actions.calm" } else { "actions.storm" };
                    app.bus.publish(kind, Some(t.clone()), serde_json::json!({ "tenant": t, "storms": now }));
                }
            }
            *seen = storms.clone();
        }
    }
    if active.is_empty() {
        return Ok(());
    }
    let finding_ids: Vec<i64> = active.iter().map(|a| a.plan.finding_id).collect::<BTreeSet<_>>().into_iter().collect();
    let state = app.state.clone();
    let findings: HashMap<i64, Stored> = db(move || {
        let q = StoreQuery { ids: Some(finding_ids), ..StoreQuery::default() };
        store::find(&state, &q).map(|v| v.into_iter().map(|f| (f.id, f)).collect()).map_err(|e| e.to_string())
    })
    .await?;
    let wall = wall_now();
    for a in active {
        let line = |what: &str| format!("{} -> {}: {what}", a.plan.action, a.plan.target);
        match a.status {
            Status::AwaitingApproval => {
                if a.deadline_us.is_some_and(|d| d <= now) {
                    let approve = config.actions.get(&a.plan.action).is_some_and(|d| d.on_timeout_approve);
                    let c = if approve {
                        Change::to(Status::Pending, "approved")
                            .by("(timeout)")
                            .set("decided_by", Value::Text("(timeout)".into()))
                            .detail("nobody decided in time; approved by the timeout fallback")
                            .timeline(line("approval timed out; approved by the fallback"))
                    } else {
                        Change::to(Status::Rejected, "rejected")
                            .by("(timeout)")
                            .set("decided_by", Value::Text("(timeout)".into()))
                            .detail("nobody decided in time; rejected by the timeout fallback")
                            .timeline(line("approval timed out; rejected"))
                    };
                    change(app, &a, &[Status::AwaitingApproval], c).await?;
                }
                continue;
            }
            Status::Held => {
                if in_storm(&storms, &a).is_none() {
                    let c = Change::to(Status::Pending, "resumed").detail("the storm is over").timeline(line("storm over; resumed"));
                    change(app, &a, &[Status::Held], c).await?;
                }
                continue;
            }
            Status::Pending => {}
            _ => continue,
        }
        if a.plan.due_us > now || a.next_wall_us > wall {
            continue;
        }
        // An operator's replay (attempts back to 0, the last error kept) is sent as asked:
        // neither dropped because the finding moved on nor counted against rate limits.
        let first = a.attempts == 0 && a.last_error.is_none();
        // Not needed any more? (only before the first attempt: a delivery under way is
        // finished; a report's delivery, finding 0, is always needed)
        if first && a.plan.finding_id != 0 {
            let gone = match findings.get(&a.plan.finding_id) {
                None => Some("the finding is gone".to_string()),
                Some(f) if f.status != store::Status::New => Some(format!("the finding is {}", f.status.name().to_lowercase())),
                Some(f) if !f.holding => Some("the finding stopped holding".to_string()),
                _ => None,
            };
            if let Some(why) = gone {
                let c = Change::to(Status::Dropped, "dropped").detail(why.clone()).timeline(line(&format!("dropped: {why}")));
                change(app, &a, &[Status::Pending], c).await?;
                continue;
            }
        }
        if killed_all || killed.contains(&a.plan.tenant_id) {
            let scope = if killed_all {
                "the global kill switch is on".to_string()
            } else {
                format!("the kill switch of tenant {} is on", a.plan.tenant_id)
            };
            let c = Change::to(Status::Suppressed, "suppressed").detail(scope.clone()).timeline(line(&format!("suppressed: {scope}")));
            change(app, &a, &[Status::Pending], c).await?;
            continue;
        }
        if !a.plan.critical {
            if let Some(why) = in_storm(&storms, &a) {
                let c = Change::to(Status::Held, "held").detail(why.clone()).timeline(line(&format!("held: {why}")));
                change(app, &a, &[Status::Pending], c).await?;
                continue;
            }
        }
        let Some(def) = config.actions.get(&a.plan.action).cloned() else {
            let c = Change::to(Status::Dead, "dead")
                .detail("the action is no longer in the configuration")
                .timeline(line("dead: not configured"));
            change(app, &a, &[Status::Pending], c).await?;
            continue;
        };
        if let (Some(role), None) = (&a.plan.approval, &a.decided_by) {
            let deadline = now + def.approval_timeout_us;
            let c = Change::to(Status::AwaitingApproval, "approval requested")
                .detail(format!("needs the {role} role; decide by {}", exec::iso(deadline)))
                .set("deadline_us", Value::BigInt(deadline))
                .timeline(line(&format!("awaiting approval ({role}) until {}", exec::iso(deadline))));
            change(app, &a, &[Status::Pending], c).await?;
            continue;
        }
        if first {
            let mut over = None;
            for limit in &def.limits {
                let (state, via, target, since) = (app.state.clone(), a.plan.via.clone(), a.plan.target.clone(), now - limit.window_us);
                let n = db(move || outbox::delivered_since(&state, &via, &target, since).map_err(|e| e.to_string())).await?;
                if n >= i64::from(limit.count) {
                    over = Some(format!(
                        "rate limit: {n} of at most {} per {} through {} to {}",
                        limit.count,
                        human(limit.window_us),
                        a.plan.via,
                        a.plan.target
                    ));
                    break;
                }
            }
            if let Some(why) = over {
                let c = Change::to(Status::Limited, "limited").detail(why.clone()).timeline(line(&format!("limited: {why}")));
                change(app, &a, &[Status::Pending], c).await?;
                continue;
            }
        }
        if a.plan.mode != actions::Mode::Live {
            let target = config.target_of(&def).map(|t| t.url.clone()).unwrap_or_default();
            let c = Change::to(Status::WouldSend, "would_send")
                .set("done_us", Value::BigInt(now))
                .detail(format!("dry-run: would POST {} bytes to {target} (payload sha256 {})", a.plan.payload.len(), a.plan.payload_hash))
                .timeline(line("would send (dry-run)"));
            change(app, &a, &[Status::Pending], c).await?;
            continue;
        }
        deliver(app, &config, &def, &a, client).await?;
    }
    Ok(())
}

fn human(us: i64) -> String {
    match us {
        d if d % 3_600_000_000 == 0 => format!("{}h", d / 3_600_000_000),
        d if d % 60_000_000 == 0 => format!("{}m", d / 60_000_000),
        d => format!("{}s", d / 1_000_000),
    }
}

/// Is this address one a webhook must not reach without `allow_private`?
pub fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| private(IpAddr::V4(v4)))
        }
    }
}

/// Where a URL may be sent: (host, the addresses checked), or why not.
async fn resolve(url: &reqwest::Url, allow_private: bool) -> Result<(String, Vec<std::net::SocketAddr>), String> {
    let host = url.host_str().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("cannot resolve {host}: {e}"))?.collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| private(a.ip())) {
            return Err(format!(
                "refused: {host} is a loopback or private address ({}); set allow_private = true on the target to allow it",
                bad.ip()
            ));
        }
    }
    Ok((host, addrs))
}

/// One live attempt, and what it leads to.
async fn deliver(app: &Arc<App>, config: &Config, def: &actions::Action, a: &ActionRow, client: &reqwest::Client) -> Result<(), String> {
    let line = |what: &str| format!("{} -> {}: {what}", a.plan.action, a.plan.target);
    let dead = |why: String| Change::to(Status::Dead, "dead").detail(why.clone()).timeline(line(&format!("dead: {why}")));
    let Some(target) = config.target_of(def) else {
        return change(
            app,
            a,
            &[Status::Pending],
            dead(format!("no {} `{}`", if def.kind == Kind::Notify { "channel" } else { "endpoint" }, def.via)),
        )
        .await
        .map(|_| ());
    };
    let url = match reqwest::Url::parse(&target.url) {
        Ok(u) => u,
        Err(e) => return change(app, a, &[Status::Pending], dead(format!("bad URL: {e}"))).await.map(|_| ()),
    };
    let (host, addrs) = match resolve(&url, target.allow_private).await {
        Ok(r) => r,
        Err(why) => return change(app, a, &[Status::Pending], dead(why)).await.map(|_| ()),
    };
    let env = |n: &str| std::env::var(n).ok();
    let secrets: Result<Vec<String>, String> = target.secrets.iter().map(|s| s.resolve(&env)).collect();
    let secrets = match secrets {
        Ok(s) => s,
        Err(why) => return change(app, a, &[Status::Pending], dead(format!("cannot sign: {why}"))).await.map(|_| ()),
    };
    let attempt = a.attempts + 1;
    let started = LogEntry {
        action_id: a.id,
        at: exec::iso(app.now()),
        wall_us: wall_now(),
        event: "attempt".into(),
        detail: Some(format!("attempt {attempt}: POST {}", target.url)),
        who: None,
        code: None,
        took_ms: None,
    };
    let state = app.state.clone();
    db(move || outbox::note(&state, &started).map_err(|e| e.to_string())).await?;

    let timestamp = wall_now() / 1_000_000;
    let mut request = client
        .post(url.clone())
        .timeout(Duration::from_millis(target.timeout_ms))
        .header("content-type", "application/json")
        .header("user-agent", concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &a.plan.key)
        .header("webhook-timestamp", timestamp.to_string())
        .body(a.plan.payload.clone());
    if !secrets.is_empty() {
        request = request.header("webhook-signature", sign::signature(&secrets, &a.plan.key, timestamp, &a.plan.payload));
    }
    let began = Instant::now();
    // The address checked is the address used (no second lookup a DNS change could win).
    let pinned = host.parse::<IpAddr>().is_err();
    let request = if pinned {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| e.to_string())?;
        client.execute(request.build().map_err(|e| e.to_string())?).await
    } else {
        request.send().await
    };
    let outcome = request;
    let took = began.elapsed().as_millis() as i64;
    let (code, retry_after, error) = match outcome {
        Ok(r) => {
            let code = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_secs);
            let text = r.text().await.unwrap_or_default();
            (Some(code), retry_after, Some(text.chars().take(200).collect::<String>()))
        }
        Err(e) => (None, None, Some(if e.is_timeout() { format!("timed out after {} ms", target.timeout_ms) } else { format!("{e}") })),
    };
    let attempts = Value::BigInt(attempt);
    let c = match code {
        Some(c) if (200..300).contains(&c) => Change::to(Status::Sent, "sent")
            .set("attempts", attempts)
            .set("done_us", Value::BigInt(app.now()))
            .detail(format!("{c} from {host}"))
            .timeline(line(&format!("sent ({c}, attempt {attempt})"))),
        Some(c) if (400..500).contains(&c) && c != 408 && c != 429 => Change::to(Status::Dead, "dead")
            .set("attempts", attempts)
            .set("last_error", Value::Text(format!("{c}")))
            .detail(format!("{c}: the receiver refused it for good; {}", error.clone().unwrap_or_default()))
            .timeline(line(&format!("dead: refused ({c}); replay it from the action log"))),
        _ => {
            let why = match code {
                Some(c) => format!("{c}"),
                None => error.clone().unwrap_or_default(),
            };
            if attempt >= i64::from(config.max_attempts) {
                Change::to(Status::Dead, "dead")
                    .set("attempts", attempts)
                    .set("last_error", Value::Text(why.clone()))
                    .detail(format!("{why}; {attempt} attempts, none delivered"))
                    .timeline(line(&format!("dead after {attempt} attempts ({why}); replay it from the action log")))
            } else {
                let wait = backoff(config, attempt, retry_after);
                Change::to(Status::Pending, "failed")
                    .set("attempts", attempts)
                    .set("last_error", Value::Text(why.clone()))
                    .set("next_wall_us", Value::BigInt(wall_now() + wait))
                    .detail(format!(
                        "{why}; retry in {:.1} s{}",
                        wait as f64 / 1e6,
                        if retry_after.is_some() { " (Retry-After)" } else { "" }
                    ))
            }
        }
    };
    let mut c = c;
    c.code = code.map(i64::from);
    c.took_ms = Some(took);
    change(app, a, &[Status::Pending], c).await.map(|_| ())
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after_secs(text: &str) -> Option<i64> {
    if let Ok(n) = text.trim().parse::<i64>() {
        return Some(n.max(0));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text.trim()).ok()?;
    Some((at.timestamp() - chrono::Utc::now().timestamp()).max(0))
}

/// The wait before attempt `attempt + 1` (µs): Retry-After when the receiver gave one
/// (capped by backoff_max), else the base doubled per attempt, capped, times a jitter
/// factor in [0.5, 1.5).
fn backoff(config: &Config, attempt: i64, retry_after: Option<i64>) -> i64 {
    if let Some(secs) = retry_after {
        return (secs.saturating_mul(1_000_000)).min(config.backoff_max_us);
    }
    let base = config.backoff_us.saturating_mul(1_i64 << (attempt - 1).clamp(0, 30)).min(config.backoff_max_us);
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() { f64::from(u16::from_le_bytes(b)) / 65536.0 } else { 0.5 };
    (base as f64 * (0.5 + r)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognized() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!private(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let c = Config { backoff_us: 1_000_000, backoff_max_us: 10_000_000, ..Config::default() };
        for attempt in 1..=6 {
            let base = (1_000_000_i64 << (attempt - 1)).min(10_000_000);
            let w = backoff(&c, attempt, None);
            assert!(w >= base / 2 && w < base * 3 / 2, "attempt {attempt}: {w} for base {base}");
        }
        assert_eq!(backoff(&c, 1, Some(3)), 3_000_000);
        assert_eq!(backoff(&c, 1, Some(3600)), 10_000_000);
        assert_eq!(retry_after_secs("7"), Some(7));
        assert_eq!(retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(retry_after_secs("soon"), None);
    }
}
