//! `vigil serve`: the watch loop plus an HTTP service for the operations centre:
//! the findings API with lifecycle, the live feed over Server-Sent Events, the
//! operators' console (embedded in the binary), health, readiness and metrics,
//! all behind tenant-scoped tokens.
//!
//! Invariants:
//! - One loop: the engine runs [`watch::run_with`] on the main thread exactly as
//!   `vigil watch` does; the HTTP side only observes it (ticks, reloads, clock)
//!   and raises its flags (reload, stop).
//! - Store access from handlers runs on tokio's blocking pool; the store
//!   serializes this process's use of the database file.
//! - SIGTERM (or SIGINT) drains: the tick in flight commits, then open streams
//!   end, the server stops accepting and the process exits 0.

mod api;
mod api_actions;
mod auth;
mod console;
mod deliver;
mod events;
mod metrics;
mod reports;
mod sign;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::watch::{self, Observer, ReloadReport, TickReport};
use super::CliError;
use vigil_engine::exec;
use vigil_engine::ruleset::RuleSet;
use vigil_engine::store::{self, Stored};

pub use auth::{file_line, new_token};

/// What `vigil serve` was asked to do.
pub struct Options {
    /// The loop's options (as `vigil watch`).
    pub watch: watch::Options,
    /// Where to listen.
    pub listen: String,
    /// The tokens file.
    pub tokens: PathBuf,
    /// Time between heartbeat comments on idle streams.
    pub heartbeat: Duration,
    /// How long pushed rows are kept, per table with an event time (µs).
    pub retention: BTreeMap<&'static str, i64>,
    /// The longest a silence may last.
    pub silence_max: Duration,
    /// The runbook actions' configuration (none: no action is planned or sent).
    pub actions: Option<PathBuf>,
    /// Where client reports are stored.
    pub reports_dir: PathBuf,
    /// Build the daily and monthly reports.
    pub report_schedule: bool,
    /// Tenants whose reports wait for a supervisor's approval.
    pub report_review: Vec<String>,
    /// Requests a second per token on the ingest endpoint (0: no limit).
    pub ingest_rate: u32,
    /// How long resolved findings (and their history and actions) are kept (µs).
    pub keep_resolved: i64,
}

/// A live-feed snapshot kept for clients connecting together: (scope, the last event
/// id it includes, when it was built, its JSON).
pub type Snapshot = (auth::Scope, u64, std::time::Instant, Arc<String>);

/// Everything the handlers share.
pub struct App {
    /// The state database.
    pub state: PathBuf,
    /// The database of pushed signals.
    pub ingest: PathBuf,
    /// Retention of pushed rows per table (µs).
    pub retention: BTreeMap<&'static str, i64>,
    /// The run's time (µs) of the last retention pass; 0: none yet.
    last_prune: AtomicI64,
    /// The rule set in force.
    pub set: RwLock<Arc<RuleSet>>,
    /// Tokens from the file.
    pub tokens: auth::Tokens,
    /// Console sessions.
    pub sessions: auth::Sessions,
    /// The live feed.
    pub bus: events::Bus,
    /// Counters.
    pub metrics: metrics::Metrics,
    /// Flags for the loop.
    pub control: watch::Control,
    /// Reload attempts so far (handlers wait for the next one).
    pub reloads: tokio::sync::watch::Sender<u64>,
    /// The loop's clock (the tick last started), when the clock is virtual.
    pub virtual_now: Option<AtomicI64>,
    /// Wall time (µs) the last tick committed; 0: none yet.
    pub last_tick_wall: AtomicI64,
    /// Longest quiet time after which the service is not ready (no tick committed).
    pub stale_after: Duration,
    /// Heartbeat interval of the live feed.
    pub heartbeat: Duration,
    /// Every silence (kept in step with the store by the handlers and the tick).
    pub silences: RwLock<Vec<vigil_engine::silences::Silence>>,
    /// The longest a silence may last.
    pub silence_max: Duration,
    /// Recent live-feed snapshots: (scope, last event id, built at, JSON).
    pub snapshots: tokio::sync::Mutex<Vec<Snapshot>>,
    /// Becomes true when the service stops: streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Runbook actions (with `--actions`).
    pub outbox: Option<deliver::Outbox>,
    /// Client reports.
    pub reports: Option<reports::Reports>,
    /// Requests a second per token on the ingest endpoint.
    pub ingest_rate: auth::RateLimit,
    /// How long resolved findings are kept (µs).
    pub keep_resolved: i64,
}

impl App {
    /// Now, on the run's clock (virtual with `--start`, else the wall clock).
    pub fn now(&self) -> i64 {
        match &self.virtual_now {
            Some(v) => v.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_micros(),
        }
    }

    /// The rule set in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.set.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A stored finding as the API shows it: with its runbook's escalation deadline.
    pub fn view(&self, f: Stored) -> api::FindingView {
        let set = self.rules();
        let runbook = set.runbooks.iter().find(|r| r.id == f.runbook);
        let sla = runbook.map(|r| r.escalate_after_minutes);
        let due = sla.and_then(|m| vigil_engine::load::parse_timestamp(&f.first_seen).ok().map(|t| exec::iso(t + m * 60_000_000)));
        let now = exec::iso(self.now());
        let silence = self
            .silences
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.active(&now) && s.matcher.matches(&f))
            .map(|s| (s.id, s.expires_at.clone()));
        api::FindingView {
            runbook_title: runbook.map(|r| r.title.clone()),
            escalate_after_minutes: sla,
            escalation_due: due,
            silenced_by: silence.as_ref().map(|s| s.0),
            silenced_until: silence.map(|s| s.1),
            finding: f,
        }
    }

    /// Publishes the current state of stored findings as events of one kind.
    fn publish_findings(&self, kind: &'static str, ids: &[i64]) {
        self.publish_groups(&[(kind, ids)]);
    }

    /// Publishes several kinds of events for stored findings, in the order given, from
    /// one read of the store (a tick's raised, changed and cleared findings).
    fn publish_groups(&self, groups: &[(&'static str, &[i64])]) {
        let ids: Vec<i64> = groups.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
        if ids.is_empty() {
            return;
        }
        let query = store::Query { ids: Some(ids), ..store::Query::default() };
        let rows = match store::find(&self.state, &query) {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("serve: cannot read findings for the live feed: {e}");
                return;
            }
        };
        let by_id: std::collections::HashMap<i64, &Stored> = rows.iter().map(|f| (f.id, f)).collect();
        for (kind, ids) in groups {
            let kind = *kind;
            for f in ids.iter().filter_map(|id| by_id.get(id)) {
                let tenant = Some(f.tenant_id.clone());
                let feed = f.finding_type == watch::FEED_STALE;
                let data = serde_json::to_value(self.view((*f).clone())).unwrap_or_default();
                // A tenant's feed going stale or recovering is also an event of its own.
                let also = match (feed, kind) {
                    (true, "finding.raised") => Some("feed.stale"),
                    (true, "finding.cleared") => Some("feed.recovered"),
                    _ => None,
                };
                if let Some(also) = also {
                    self.bus.publish(also, tenant.clone(), data.clone());
                }
                self.bus.publish(kind, tenant, data);
            }
        }
    }
}

impl App {
    /// Reads the silences again from the store (after a change).
    pub fn reload_silences(&self) {
        match vigil_engine::silences::list(&self.state) {
            Ok(all) => *self.silences.write().unwrap_or_else(|p| p.into_inner()) = all,
            Err(e) => eprintln!("serve: cannot read the silences: {e}"),
        }
    }

    /// A silence changed: the feed says so, and its findings' new state follows.
    pub fn publish_silence(&self, kind: &'static str, changed: &vigil_engine::silences::Changed) {
        self.reload_silences();
        let data = serde_json::to_value(&changed.silence).unwrap_or_default();
        self.bus.publish(kind, Some(changed.silence.matcher.tenant_id.clone()), data);
        self.publish_findings("finding.changed", &changed.findings);
    }

    /// Silences whose expiry the run's clock passed end, on their findings' timelines.
    fn expire_silences(&self, now: i64) {
        let at = exec::iso(now);
        let any_due = self.silences.read().unwrap_or_else(|p| p.into_inner()).iter().any(|s| s.ended_at.is_none() && s.expires_at <= at);
        if !any_due {
            return;
        }
        match vigil_engine::silences::expire_due(&self.state, &at) {
            Ok(ended) => {
                for changed in &ended {
                    self.publish_silence("silence.ended", changed);
                }
            }
            Err(e) => eprintln!("serve: cannot expire silences: {e}"),
        }
    }

    /// Retention: on the first tick and then once an hour of the run's clock.
    fn prune(&self, now: i64) {
        let last = self.last_prune.load(Ordering::SeqCst);
        if last != 0 && now - last < 3_600_000_000 {
            return;
        }
        self.last_prune.store(now, Ordering::SeqCst);
        match store::prune_resolved(&self.state, &exec::iso(now - self.keep_resolved)) {
            Ok(p) if p.findings + p.silences + p.reloads > 0 => eprintln!(
                "serve: retention removed {} resolved finding(s), {} action(s), {} expired silence(s) and {} reload record(s)",
                p.findings, p.actions, p.silences, p.reloads
            ),
            Ok(_) => {}
            Err(e) => eprintln!("serve: retention of the state failed: {e}"),
        }
        if !self.ingest.exists() {
            return;
        }
        match vigil_engine::ingest::prune(&self.ingest, now, &self.retention) {
            Ok(done) => {
                let n: usize = done.values().sum();
                if n > 0 {
                    eprintln!("serve: retention removed {n} pushed row(s) older than their table's retention");
                }
            }
            Err(e) => eprintln!("serve: retention failed: {e}"),
        }
    }
}

impl Observer for App {
    fn tick(&self, report: Result<&TickReport, &str>) {
        match report {
            Ok(r) => {
                let cadence = r.cadence.map_or("none", |c| c.name());
                self.metrics.tick(cadence, r.took.as_secs_f64(), r.evaluated, r.failed, &r.raised, r.at);
                self.last_tick_wall.store(chrono::Utc::now().timestamp_micros(), Ordering::SeqCst);
                self.publish_groups(&[
                    ("finding.raised", &r.written.new),
                    ("finding.raised", &r.late),
                    ("finding.changed", &r.written.changed_ids),
                    ("finding.cleared", &r.written.cleared_ids),
                ]);
                // Every tick says it ran: consoles show the service is alive and keep their clock.
                let tick = serde_json::json!({
                    "at": exec::iso(r.at),
                    "now": exec::iso(self.now()),
                    "took_ms": r.took.as_millis() as u64,
                    "rules": r.evaluated,
                    "failed": r.failed,
                });
                self.bus.publish("tick", None, tick);
                if let Some(outbox) = &self.outbox {
                    let ids: Vec<i64> = r.written.new.iter().chain(&r.late).chain(&r.written.changed_ids).copied().collect();
                    deliver::enqueue_for(self, outbox, &ids, r.at);
                }
                self.prune(r.at);
                self.expire_silences(r.at);
                if let Some(reports) = &self.reports {
                    reports::schedule(self, reports, r.at);
                }
            }
            Err(_) => self.metrics.tick_failed(),
        }
    }

    fn reload(&self, report: &ReloadReport) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&report.set);
        self.metrics.reload(report.record.ok);
        if let (Some(outbox), true) = (&self.outbox, report.record.ok) {
            outbox.reload(&report.set);
        }
        let kind = if report.record.ok { "reload.ok" } else { "reload.failed" };
        self.bus.publish(kind, None, serde_json::to_value(api::ReloadView::from(&report.record)).unwrap_or_default());
        self.reloads.send_modify(|n| *n += 1);
    }

    fn clock(&self, now: i64) {
        if let Some(v) = &self.virtual_now {
            v.store(now, Ordering::SeqCst);
        }
    }
}

/// Runs the service until SIGTERM/SIGINT (or past `--until`).
pub fn run(opts: Options) -> Result<(), CliError> {
    let tokens = auth::Tokens::load(&opts.tokens).map_err(|e| CliError::Input(format!("error: {e}")))?;
    let addr: SocketAddr = opts
        .listen
        .parse()
        .map_err(|_| CliError::Input(format!("error: --listen: `{}` is not an address such as 127.0.0.1:8080", opts.listen)))?;
    let initial = Arc::new(watch::first_set(&opts.watch)?);
    let outbox = match &opts.actions {
        Some(file) => Some(deliver::Outbox::new(deliver::load_config(file, &initial).map_err(CliError::Rules)?, file.clone())),
        None => None,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| CliError::Input(format!("error: --listen {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| CliError::Input(format!("error: --listen {addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| CliError::Eval(format!("error: {e}")))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Eval(format!("error: cannot start the HTTP runtime: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start_us = chrono::Utc::now().timestamp_micros().max(1) as u64;
    // Not ready when no tick committed for three tick lengths (virtual: three intervals), and at least a minute.
    let tick_wall = match opts.watch.start {
        Some(_) => opts.watch.tick_interval,
        None => Duration::from_micros(opts.watch.every.unsigned_abs()),
    };
    let app = Arc::new(App {
        state: opts.watch.state.clone(),
        ingest: opts.watch.ingest.clone().unwrap_or_else(|| opts.watch.state.with_extension("signals.duckdb")),
        retention: opts.retention.clone(),
        last_prune: AtomicI64::new(0),
        silences: RwLock::new(
            vigil_engine::silences::list(&opts.watch.state)
                .map_err(|e| CliError::Eval(format!("error: {}: {e}", opts.watch.state.display())))?,
        ),
        silence_max: opts.silence_max,
        set: RwLock::new(Arc::clone(&initial)),
        tokens,
        sessions: auth::Sessions::default(),
        bus: events::Bus::new(start_us),
        metrics: metrics::Metrics::default(),
        control: watch::Control::default(),
        reloads: tokio::sync::watch::channel(0).0,
        virtual_now: opts.watch.start.map(AtomicI64::new),
        last_tick_wall: AtomicI64::new(0),
        stale_after: (tick_wall * 3).max(Duration::from_secs(60)),
        heartbeat: opts.heartbeat,
        snapshots: tokio::sync::Mutex::new(Vec::new()),
        shutdown: stop_rx.clone(),
        outbox,
        reports: Some(reports::Reports::new(
            opts.reports_dir.clone(),
            opts.report_review.iter().cloned().collect(),
            opts.report_schedule,
            opts.watch.signals.clone(),
        )),
        ingest_rate: auth::RateLimit::new(opts.ingest_rate),
        keep_resolved: opts.keep_resolved,
    });
    if let Some(outbox) = &app.outbox {
        deliver::sweep(&app, outbox);
    }
    let router = api::router(Arc::clone(&app));
    let server = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut stop = stop_rx;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    let worker = runtime.spawn(deliver::run(Arc::clone(&app)));
    eprintln!("serve: listening on http://{bound}/ (console at /, API at /api/v1, OpenAPI at /api/v1/openapi.json)");

    let result = watch::run_with(&opts.watch, initial, app.as_ref(), &app.control);
    // Streams end, the server stops accepting and finishes the requests in flight.
    let _ = stop_tx.send(true);
    let finished = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
    match finished {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("serve: the HTTP server failed: {e}"),
        Ok(Err(e)) => eprintln!("serve: the HTTP server task failed: {e}"),
        Err(_) => eprintln!("serve: requests still open after 10 s; closing them"),
    }
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), worker).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
