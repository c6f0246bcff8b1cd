//! `vigil watch`: run the rules at their cadences, record findings in the state
//! database, update baselines every hour, and reload the rule set when its files
//! change or on SIGHUP.
//!
//! Invariants:
//! - The running rule set is replaced only by a complete set that checked clean
//!   ([`ruleset::load_dirs`] builds it aside); a broken edit leaves the old set
//!   running, prints the diagnostics and records the failed reload.
//! - A tick evaluates on the set it started with: it holds its own `Arc`, and a
//!   reload swaps the shared one while the tick runs.
//! - Each tick's findings are written in one transaction together with the tick,
//!   and a restart resumes after the last tick written, so a crash neither loses
//!   nor duplicates findings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CliError;
use notify::Watcher as _;
use vigil_engine::exec::{self, Filter};
use vigil_engine::ruleset::{self, RuleSet};
use vigil_engine::{baseline, load, store};

/// How long file events must be quiet before a reload (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);
const HOUR: i64 = 3_600_000_000;

/// What `vigil watch` was asked to do.
pub struct Options {
    /// Rule directory.
    pub rules: PathBuf,
    /// Runbook directory.
    pub runbooks: PathBuf,
    /// Signals path, reloaded at every tick (`serve` may have only ingested signals).
    pub signals: Option<PathBuf>,
    /// The database of ingested signals (`serve`), read at every tick beside `signals`.
    pub ingest: Option<PathBuf>,
    /// What a stale feed of pushed signals holds (`serve`).
    pub feed: Option<FeedPolicy>,
    /// Tick length (microseconds).
    pub every: i64,
    /// State database.
    pub state: PathBuf,
    /// Virtual clock: first tick (microseconds); None: the wall clock.
    pub start: Option<i64>,
    /// Virtual clock: real time between ticks.
    pub tick_interval: Duration,
    /// Stop after the tick at or past this time.
    pub until: Option<i64>,
    /// `--engine spark`: where the rules' statements run (None: the embedded DuckDB).
    pub spark: Option<Arc<super::engine::SparkLoop>>,
}

/// The finding type of a tenant's stale feed.
pub const FEED_STALE: &str = "FEED_STALE";

/// A tenant's pushed signals are stale when none arrived for `stale_after`; while
/// they are, the findings of the `dependent` types (those that read an absence of
/// activity) are held for that tenant and one FEED_STALE finding stands for them.
#[derive(Debug, Clone)]
pub struct FeedPolicy {
    /// Quiet time (wall clock) after which a tenant's feed is stale.
    pub stale_after: Duration,
    /// Finding types held while a tenant's feed is stale.
    pub dependent: Vec<String>,
}

/// What one tick did, for whoever watches the loop (`vigil serve`).
#[derive(Debug, Clone)]
pub struct TickReport {
    /// The evaluation time.
    pub at: i64,
    /// The longest cadence among the rules due (the tick's label in metrics).
    pub cadence: Option<vigil_engine::schema::Cadence>,
    /// Wall time the tick took.
    pub took: Duration,
    /// Rules evaluated, and rules that failed.
    pub evaluated: usize,
    /// Rules that failed.
    pub failed: usize,
    /// The findings of the new rows (type, severity).
    pub raised: Vec<(String, String)>,
    /// What the store did.
    pub written: store::Written,
    /// Wall time (µs) just before this tick read the pushed signals: rows stored after it
    /// with an event time at or before `at` are late for it.
    pub read_wall: i64,
    /// Findings of past ticks revealed by rows that arrived late (stored as new, marked late).
    pub late: Vec<i64>,
    /// The summary line.
    pub line: String,
}

/// A reload attempt's outcome.
pub struct ReloadReport {
    /// As recorded in the store.
    pub record: store::Reload,
    /// The set now in force (the new one, or the one kept).
    pub set: Arc<RuleSet>,
}

/// Someone who follows the loop: `watch` prints, `serve` also pushes events and counts.
pub trait Observer: Send + Sync {
    /// A tick committed (or failed, with its message).
    fn tick(&self, _report: Result<&TickReport, &str>) {}
    /// A reload was attempted.
    fn reload(&self, _report: &ReloadReport) {}
    /// The loop's clock moved to a tick about to start.
    fn clock(&self, _now: i64) {}
}

/// `vigil watch` only prints.
struct Quiet;
impl Observer for Quiet {}

/// Flags others may raise: stop (SIGINT/SIGTERM), reload (SIGHUP, or an API call).
#[derive(Clone, Default)]
pub struct Control {
    /// Finish the tick in flight and return.
    pub stop: Arc<AtomicBool>,
    /// Reload the rule set now.
    pub reload: Arc<AtomicBool>,
}

/// Runs until SIGINT/SIGTERM, or past `until`. Errors are (exit code, message).
pub fn run(opts: &Options) -> Result<(), CliError> {
    let initial = first_set(opts)?;
    run_with(opts, Arc::new(initial), &Quiet, &Control::default())
}

/// Loads the rule set a run starts with: the files' when they check (kept in the state
/// database as the last good set), else the last good set kept there, so that a crash
/// while an analyst's broken edit is on disk does not keep the service down. With
/// neither, the run does not start.
pub fn first_set(opts: &Options) -> Result<RuleSet, CliError> {
    // The run's clock at its start: virtual (where a resumed run picks up), else the wall.
    let at = exec::iso(match opts.start {
        Some(start) => match store::last_tick(&opts.state).ok().flatten().and_then(|t| load::parse_timestamp(&t).ok()) {
            Some(done) if done >= start => done + opts.every,
            _ => start,
        },
        None => chrono::Utc::now().timestamp() * 1_000_000,
    });
    let failure = match load_rules(opts) {
        Ok(set) => {
            keep_as_last_good(opts, &set, &at);
            return Ok(set);
        }
        Err(f) => f.sources.render(&f.diagnostics, false),
    };
    let saved = store::last_good_rules(&opts.state).map_err(|e| CliError::Eval(format!("error: {}: {e}", opts.state.display())))?;
    let Some(saved) = saved else {
        return Err(CliError::Rules(format!(
            "{failure}error: the rule set does not check, and {} keeps no earlier one that did; fix the files to start",
            opts.state.display()
        )));
    };
    let set = ruleset::load_texts(vigil_engine::diag::Sources::new(), saved.files).map_err(|f| {
        // A set kept by another version of vigil may not check with this one.
        CliError::Rules(format!(
            "{failure}{}error: the rule set does not check, nor does the last good one kept in {} (rule set {}, saved {})",
            f.sources.render(&f.diagnostics, false),
            opts.state.display(),
            saved.revision,
            saved.saved_at
        ))
    })?;
    eprint!("{failure}");
    eprintln!(
        "watch: the rule files do not check; starting from the last good rule set {} (saved {}), kept in {}; \
         it stays in force until the files check",
        saved.revision,
        saved.saved_at,
        opts.state.display()
    );
    let record = store::Reload {
        at,
        ok: false,
        revision: None,
        added: String::new(),
        changed: String::new(),
        removed: String::new(),
        error: Some(failure),
    };
    if let Err(e) = store::record_reload(&opts.state, &record) {
        eprintln!("watch: cannot record the failed load: {e}");
    }
    Ok(set)
}

/// The rule files as [`ruleset::load_dirs`] reads them. With `--engine spark`, a set with
/// a rule Spark cannot run (E0801, as `vigil check --engine spark` reports it) does not
/// load either, so neither a start nor a reload puts it in force.
fn load_rules(opts: &Options) -> Result<RuleSet, ruleset::LoadFailure> {
    let set = ruleset::load_dirs(&opts.rules, &opts.runbooks)?;
    if opts.spark.is_some() {
        let diagnostics = ruleset::engine_checks(&set.rules, vigil_engine::sql::Dialect::Spark);
        if !diagnostics.is_empty() {
            return Err(ruleset::LoadFailure { sources: set.sources, diagnostics });
        }
    }
    Ok(set)
}

/// Keeps `set`'s files in the state database as the last good rule set.
fn keep_as_last_good(opts: &Options, set: &RuleSet, at: &str) {
    if let Err(e) = store::save_rule_files(&opts.state, set, at) {
        eprintln!("watch: cannot keep the rule set as the last good one: {e}");
    }
}

/// The loop of `watch` and `serve`: ticks at their cadences, reloads, until stopped.
pub fn run_with(opts: &Options, initial: Arc<RuleSet>, observer: &dyn Observer, control: &Control) -> Result<(), CliError> {
    // Watch first, then load: an edit made while the first set loads still triggers a reload.
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = watch_dirs(&[&opts.rules, &opts.runbooks], &tx)?;
    let mut current = initial;
    let mut revision = store::revision(&current);
    let mut failed_reloads = 0u64;
    eprintln!("watch: rule set {revision}: {} rules, {} anomaly rules", current.patterns().count(), current.anomalies().count());
    if let Some(spark) = &opts.spark {
        eprintln!("watch: {spark}");
    }

    let hup = Arc::new(AtomicBool::new(false));
    let stop = &control.stop;
    for (signal, flag) in
        [(signal_hook::consts::SIGINT, &stop), (signal_hook::consts::SIGTERM, &stop), (signal_hook::consts::SIGHUP, &&hup)]
    {
        signal_hook::flag::register(signal, Arc::clone(*flag))
            .map_err(|e| CliError::Eval(format!("error: cannot handle signal {signal}: {e}")))?;
    }
    let resume = store::last_tick(&opts.state)
        .map_err(|e| CliError::Eval(format!("error: {}: {e}", opts.state.display())))?
        .and_then(|t| load::parse_timestamp(&t).ok());
    let mut now = match (opts.start, resume) {
        (Some(start), Some(done)) if done >= start => done + opts.every,
        (Some(start), _) => start,
        (None, _) => next_wall_tick(opts.every),
    };
    // The store keeps one clock per run: the virtual one when `--start` sets it (the
    // time of the tick last started), otherwise the wall clock.
    let mut virtual_now = now;
    let clock = |virtual_now: i64| match opts.start {
        Some(_) => virtual_now,
        None => chrono::Utc::now().timestamp() * 1_000_000,
    };
    if let (Some(done), Some(_)) = (resume, opts.start) {
        eprintln!("watch: state has ticks up to {}; resuming at {}", exec::iso(done), exec::iso(now));
    }
    let mut reload_due: Option<Instant> = None;
    let mut tick: Option<std::thread::JoinHandle<Result<TickReport, String>>> = None;
    // The last tick committed: (its time, when it read the pushed signals).
    let mut last_done: Option<(i64, i64)> = None;
    let mut next_start = Instant::now();
    loop {
        // File events: wait until they are quiet, then reload (watches re-added).
        while rx.try_recv().is_ok() {
            reload_due = Some(Instant::now() + DEBOUNCE);
        }
        let hup_now = hup.swap(false, Ordering::SeqCst);
        let asked = control.reload.swap(false, Ordering::SeqCst);
        if hup_now || asked || reload_due.is_some_and(|d| Instant::now() >= d) {
            reload_due = None;
            let why = if hup_now {
                "SIGHUP"
            } else if asked {
                "reload request"
            } else {
                "files changed"
            };
            match load_rules(opts) {
                Ok(new) => {
                    let ruleset::SetDiff { added, changed, removed, sections } = ruleset::diff(&current, &new);
                    let new_revision = store::revision(&new);
                    let record = store::Reload {
                        at: exec::iso(clock(virtual_now)),
                        ok: true,
                        revision: Some(new_revision.clone()),
                        added: added.join(","),
                        changed: changed.join(","),
                        removed: removed.join(","),
                        error: None,
                    };
                    if let Err(e) = store::record_reload(&opts.state, &record) {
                        eprintln!("watch: cannot record the reload: {e}");
                    }
                    if !removed.is_empty() {
                        if let Err(e) = store::rules_removed(&opts.state, &removed, &record.at) {
                            eprintln!("watch: cannot mark the findings of removed rules: {e}");
                        }
                    }
                    eprintln!(
                        "watch: reload ({why}) ok: rule set {new_revision}; added [{}] changed [{}] removed [{}] sections changed [{}]",
                        added.join(", "),
                        changed.join(", "),
                        removed.join(", "),
                        sections.join(", ")
                    );
                    keep_as_last_good(opts, &new, &record.at);
                    current = Arc::new(new);
                    revision = new_revision;
                    observer.reload(&ReloadReport { record, set: Arc::clone(&current) });
                }
                Err(f) => {
                    failed_reloads += 1;
                    let text = f.sources.render(&f.diagnostics, false);
                    let record = store::Reload {
                        at: exec::iso(clock(virtual_now)),
                        ok: false,
                        revision: None,
                        added: String::new(),
                        changed: String::new(),
                        removed: String::new(),
                        error: Some(text.clone()),
                    };
                    if let Err(e) = store::record_reload(&opts.state, &record) {
                        eprintln!("watch: cannot record the failed reload: {e}");
                    }
                    eprint!("{text}");
                    eprintln!("watch: reload ({why}) failed ({failed_reloads} so far): keeping rule set {revision}");
                    observer.reload(&ReloadReport { record, set: Arc::clone(&current) });
                }
            }
            // Editors replace files (and sometimes directories): watch afresh. The new
            // watches start before the old ones stop, so no write in between is missed.
            match watch_dirs(&[&opts.rules, &opts.runbooks], &tx) {
                Ok(fresh) => drop(std::mem::replace(&mut watcher, fresh)),
                Err(e) => {
                    // A directory replaced just now may be back in a moment: keep the old
                    // watches and try again shortly.
                    eprintln!("watch: {}; retrying", e.message());
                    reload_due = Some(Instant::now() + Duration::from_secs(2));
                }
            }
        }
        // A finished tick reports; the next one starts when it is due.
        if tick.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(h) = tick.take() {
                match h.join() {
                    Ok(Ok(report)) => {
                        eprintln!("{}", report.line);
                        last_done = Some((report.at, report.read_wall));
                        observer.tick(Ok(&report));
                    }
                    Ok(Err(e)) => {
                        eprintln!("watch: tick failed: {e}");
                        observer.tick(Err(&e));
                    }
                    Err(_) => {
                        eprintln!("watch: tick panicked");
                        observer.tick(Err("the tick panicked"));
                    }
                }
                if opts.until.is_some_and(|u| now > u) {
                    return Ok(());
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            // Drain: the tick in flight commits (and is reported) before the loop returns.
            if let Some(h) = tick.take() {
                match h.join() {
                    Ok(Ok(report)) => {
                        eprintln!("{}", report.line);
                        observer.tick(Ok(&report));
                    }
                    Ok(Err(e)) => eprintln!("watch: tick failed: {e}"),
                    Err(_) => eprintln!("watch: tick panicked"),
                }
            }
            eprintln!("watch: stopped");
            return Ok(());
        }
        let due = match opts.start {
            Some(_) => Instant::now() >= next_start,
            None => chrono::Utc::now().timestamp_micros() >= now,
        };
        if tick.is_none() && due {
            let set = Arc::clone(&current);
            let sources = Sources {
                files: opts.signals.clone(),
                ingest: opts.ingest.clone(),
                feed: opts.feed.clone(),
                late: last_done,
                spark: opts.spark.clone(),
            };
            let (state, at, every) = (opts.state.clone(), now, opts.every);
            tick = Some(std::thread::spawn(move || evaluate_tick(&set, &sources, &state, at, every)));
            virtual_now = now;
            observer.clock(now);
            now += opts.every;
            next_start = Instant::now() + opts.tick_interval;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn watch_dirs(dirs: &[&Path], tx: &mpsc::Sender<()>) -> Result<notify::RecommendedWatcher, CliError> {
    let tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Errors and rescans (queue overflow) say something may have changed: reload.
        let relevant = match &event {
            Ok(e) => {
                !e.kind.is_access()
                    && (e.paths.is_empty() || e.paths.iter().any(|p| p.extension().is_some_and(|x| x == "vigil" || x == "rhai")))
            }
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })
    .map_err(|e| CliError::Eval(format!("error: cannot watch files: {e}")))?;
    for dir in dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| CliError::Input(format!("error: cannot watch {}: {e}", dir.display())))?;
    }
    Ok(watcher)
}

/// The next multiple of `every` after the wall clock.
fn next_wall_tick(every: i64) -> i64 {
    let now = chrono::Utc::now().timestamp_micros();
    (now / every + 1) * every
}

/// Is a rule due at `now`? Each runs at its cadence (heartbeat 5, comprehensive 15,
/// deep 60 minutes): on the first tick at or after each multiple of it on the clock
/// (every tick when ticks are longer than the cadence).
fn due(cadence: vigil_engine::schema::Cadence, now: i64, every: i64) -> bool {
    crossed(cadence.minutes() * 60_000_000, now, every)
}

/// Did the tick that ended at `now` (after the previous one, `every` earlier) reach a multiple of `period`?
fn crossed(period: i64, now: i64, every: i64) -> bool {
    every >= period || now.div_euclid(period) != (now - every).div_euclid(period)
}

/// One tick: load the signals, run the rules due, record the findings, print the
/// new ones as JSON lines, update baselines on the hour. Returns the summary line.
/// Where a tick's signals come from.
struct Sources {
    /// A DuckDB file or a directory of table files.
    files: Option<PathBuf>,
    /// The ingested-signals database.
    ingest: Option<PathBuf>,
    /// What a stale feed holds.
    feed: Option<FeedPolicy>,
    /// The previous tick: (its time, when it read the pushed signals).
    late: Option<(i64, i64)>,
    /// `--engine spark`: each load is staged and evaluated there.
    spark: Option<Arc<super::engine::SparkLoop>>,
}

/// A tenant whose pushed signals stopped arriving.
struct StaleFeed {
    tenant: String,
    last_received: i64,
    tables: Vec<&'static str>,
}

impl Sources {
    /// The signals as of `now`: the files, plus the ingested rows the rules' windows read;
    /// and the wall time the pushed rows were read.
    fn load(&self, set: &RuleSet, now: i64) -> Result<(load::Signals, i64), String> {
        self.load_span(set, now, now)
    }

    /// The signals for the ticks `from..=now`: each window reaches back from `from`.
    fn load_span(&self, set: &RuleSet, from: i64, now: i64) -> Result<(load::Signals, i64), String> {
        let mut sig = match &self.files {
            Some(path) => load::load(path).map_err(|e| e.to_string())?,
            None => load::empty().map_err(|e| e.to_string())?,
        };
        let read = match &self.ingest {
            Some(db) => {
                let widen = now - from;
                let ranges = set.read_ranges().into_iter().map(|(t, l)| (t, l.map(|l| l + widen))).collect();
                vigil_engine::ingest::copy_window(db, &sig, now, &ranges)
                    .map_err(|e| format!("{}: cannot read the ingested signals: {e}", db.display()))?
            }
            None => chrono::Utc::now().timestamp_micros(),
        };
        // The rows just read, files and pushed alike, are what Spark evaluates.
        if let Some(spark) = &self.spark {
            spark.attach(&mut sig)?;
        }
        Ok((sig, read))
    }

    /// Tenants whose pushed rows (of any table) last arrived longer ago than the policy allows.
    fn stale(&self) -> Result<Vec<StaleFeed>, String> {
        let (Some(db), Some(policy)) = (&self.ingest, &self.feed) else { return Ok(Vec::new()) };
        let arrivals = vigil_engine::ingest::arrivals(db).map_err(|e| format!("{}: {e}", db.display()))?;
        let mut last: std::collections::BTreeMap<String, StaleFeed> = std::collections::BTreeMap::new();
        for a in arrivals {
            let feed = last.entry(a.tenant.clone()).or_insert(StaleFeed { tenant: a.tenant, last_received: 0, tables: Vec::new() });
            feed.last_received = feed.last_received.max(a.last_received);
            feed.tables.push(a.table);
        }
        let now = chrono::Utc::now().timestamp_micros();
        let limit = i64::try_from(policy.stale_after.as_micros()).unwrap_or(i64::MAX);
        Ok(last.into_values().filter(|f| now - f.last_received > limit).collect())
    }
}

/// The one finding that stands for a tenant's stale feed (and the findings it holds).
fn feed_stale_finding(feed: &StaleFeed, now: i64, held: usize) -> exec::Finding {
    let quiet_minutes = (chrono::Utc::now().timestamp_micros() - feed.last_received) / 60_000_000;
    let mut evidence = serde_json::Map::new();
    evidence.insert("last_received".into(), exec::iso(feed.last_received).into());
    evidence.insert("minutes_without_rows".into(), quiet_minutes.into());
    evidence.insert("tables".into(), feed.tables.join(",").into());
    evidence.insert("findings_held".into(), held.into());
    exec::Finding {
        finding_type: FEED_STALE.into(),
        rule: FEED_STALE.into(),
        tenant_id: feed.tenant.clone(),
        site_id: "*".into(),
        guard_id: None,
        entity_id: None,
        category: "OPERATIONAL".into(),
        severity: "HIGH".into(),
        detected_at: exec::iso(now),
        title: format!("Vigil's signal feed for tenant {} is stale: no rows for {quiet_minutes} min (not a silent site)", feed.tenant),
        evidence,
        runbook: vigil_engine::runbook::GENERIC.into(),
        runbook_match: vigil_engine::runbook::RunbookMatch::Otherwise,
        suppressed: false,
        recommended_actions: vec!["check the platform's connection to Vigil".into()],
        inhibited_by: None,
    }
}

/// The most ticks of the past that late rows re-evaluate (a day of 5-minute ticks).
const LATE_TICKS: usize = 288;

/// Rows that arrived after the previous tick read the pushed signals and before this
/// one did (`read`), with event times at or before the previous tick, belong to ticks
/// already run: those ticks are evaluated again with them, and findings they reveal
/// are stored at their tick, marked late. (Each row is judged by the first tick that
/// read it, so none is missed and none is judged twice.)
fn evaluate_late(
    set: &RuleSet,
    sources: &Sources,
    state: &Path,
    every: i64,
    read: i64,
    stale: &[StaleFeed],
) -> Result<(Vec<i64>, String), String> {
    let (Some(db), Some((prev_tick, prev_read))) = (&sources.ingest, sources.late) else { return Ok((Vec::new(), String::new())) };
    let late_from = vigil_engine::ingest::late_since(db, prev_read, read, prev_tick).map_err(|e| format!("{}: {e}", db.display()))?;
    let Some(&first) = late_from.values().min() else { return Ok((Vec::new(), String::new())) };
    // The ticks of the grid (prev_tick - k * every) at or after the earliest late row.
    let mut ticks: Vec<i64> = (0..LATE_TICKS as i64).map(|k| prev_tick - k * every).take_while(|t| *t >= first).collect();
    ticks.reverse();
    let (Some(&from), Some(&to)) = (ticks.first(), ticks.last()) else { return Ok((Vec::new(), String::new())) };
    let (sig, _) = sources.load_span(set, from, to)?;
    let (mut found, failures) = exec::replay_ticks(&sig, set, &ticks, &Filter::default());
    for f in &failures {
        eprintln!("watch: late rows: {f}");
    }
    // Only the tenants whose rows were late, at the ticks their rows reach; a stale
    // feed's absence-of-activity findings stay held, as at the current tick.
    let dependent = sources.feed.as_ref().map(|p| p.dependent.clone()).unwrap_or_default();
    found.retain(|f| {
        let reached = late_from.get(&f.tenant_id).is_some_and(|from| load::parse_timestamp(&f.detected_at).is_ok_and(|t| t >= *from));
        let held = stale.iter().any(|s| s.tenant == f.tenant_id) && dependent.contains(&f.finding_type);
        reached && !held
    });
    let ids = store::record_late(state, set, &found).map_err(|e| format!("{}: {e}", state.display()))?;
    let line = format!(", {} late finding(s) from rows that arrived after ticks {} .. {} ran", ids.len(), exec::iso(from), exec::iso(to));
    Ok((ids, line))
}

fn evaluate_tick(set: &RuleSet, sources: &Sources, state: &Path, now: i64, every: i64) -> Result<TickReport, String> {
    let started = Instant::now();

    let (sig, read_wall) = sources.load(set, now)?;
    // Whose feed is stale: read once, for the late ticks and this one.
    let stale = sources.stale()?;
    // A failure here costs the late findings, not the tick.
    let (late, late_line) = evaluate_late(set, sources, state, every, read_wall, &stale).unwrap_or_else(|e| {
        eprintln!("watch: cannot evaluate late rows: {e}");
        (Vec::new(), String::new())
    });
    let mut ids: Vec<String> = set.headers().filter(|h| due(h.cadence, now, every)).map(|h| h.id.clone()).collect();
    // An inhibited rule that is due brings the rules of its inhibitor, so that the
    // inhibition is judged on the same tick.
    let due_types: Vec<String> = set.headers().filter(|h| ids.contains(&h.id)).map(|h| h.finding_type.clone()).collect();
    for inh in set.inhibitions.iter().filter(|i| i.inhibited.iter().any(|t| due_types.contains(t))) {
        for h in set.headers().filter(|h| h.finding_type == inh.by) {
            if !ids.contains(&h.id) {
                ids.push(h.id.clone());
            }
        }
    }
    let cadence = set.headers().filter(|h| ids.contains(&h.id)).map(|h| h.cadence).max_by_key(|c| c.minutes());
    if ids.is_empty() {
        return Ok(TickReport {
            at: now,
            cadence,
            took: started.elapsed(),
            evaluated: 0,
            failed: 0,
            raised: Vec::new(),
            written: store::Written::default(),
            read_wall,
            line: format!("tick {}: no rule due{late_line}", exec::iso(now)),
            late,
        });
    }
    let filter = Filter { rules: ids.iter().cloned().collect(), ..Filter::default() };
    let (mut findings, failures) = exec::evaluate_all(&sig, set, now, &filter);
    for f in &failures {
        eprintln!("watch: {f}");
    }
    let mut evaluated = set.completed_rules(&filter, &failures);
    // A stale feed: its tenant's absence-of-activity findings are held, one finding stands for them.
    let mut held = store::Held::new();
    if let Some(policy) = &sources.feed {
        for feed in &stale {
            let before = findings.len();
            findings.retain(|f| !(f.tenant_id == feed.tenant && policy.dependent.contains(&f.finding_type)));
            held.extend(policy.dependent.iter().map(|t| (t.clone(), feed.tenant.clone())));
            findings.push(feed_stale_finding(feed, now, before - findings.len()));
        }
        evaluated.push(FEED_STALE.to_string());
    }
    let written = store::record(state, set, &evaluated, now, &findings, &held).map_err(|e| format!("{}: {e}", state.display()))?;
    let new: std::collections::HashSet<&exec::Identity> = written.new_identities.iter().collect();
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        // Inhibited findings are stored, not raised as alarms of their own.
        for f in findings.iter().filter(|f| new.contains(&f.identity()) && f.inhibited_by.is_none()) {
            let _ = writeln!(out, "{}", serde_json::to_string(f).unwrap_or_default());
        }
        let _ = out.flush();
    }
    let mut line = format!(
        "tick {}: {} rule(s) due, {} finding(s) ({} inhibited), {} new, {} no longer holding, rule set {}",
        exec::iso(now),
        evaluated.len(),
        findings.len(),
        findings.iter().filter(|f| f.inhibited_by.is_some()).count(),
        written.new.len(),
        written.cleared,
        store::revision(set)
    );
    if crossed(HOUR, now, every) && set.anomalies().next().is_some() {
        let (metrics, window) = set.baseline_metrics();
        match baseline::update(&sig, &metrics, state, now, window) {
            Ok(folded) => line.push_str(&format!(", baselines: {} bucket(s) folded", folded.iter().map(|f| f.samples).sum::<i64>())),
            Err(e) => line.push_str(&format!(", baselines failed: {e}")),
        }
    }
    let raised = findings.iter().filter(|f| new.contains(&f.identity())).map(|f| (f.finding_type.clone(), f.severity.clone())).collect();
    line.push_str(&late_line);
    Ok(TickReport {
        at: now,
        cadence,
        took: started.elapsed(),
        evaluated: evaluated.len(),
        failed: failures.len(),
        raised,
        written,
        read_wall,
        late,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::schema::Cadence;

    const MIN: i64 = 60_000_000;

    #[test]
    fn rules_run_on_the_first_tick_at_or_after_each_multiple_of_their_cadence() {
        // 5-minute ticks on the clock: deep (60) at :00 only, comprehensive at :00/:15/:30/:45.
        assert!(due(Cadence::Deep, 600 * MIN, 5 * MIN) && !due(Cadence::Deep, 605 * MIN, 5 * MIN));
        assert!(due(Cadence::Comprehensive, 615 * MIN, 5 * MIN) && !due(Cadence::Comprehensive, 620 * MIN, 5 * MIN));
        // Ticks off the clock (started at :02): the first tick past each multiple runs the rule.
        assert!(due(Cadence::Deep, 602 * MIN, 5 * MIN) && !due(Cadence::Deep, 607 * MIN, 5 * MIN));
        assert!(due(Cadence::Comprehensive, 617 * MIN, 5 * MIN) && !due(Cadence::Comprehensive, 612 * MIN, 5 * MIN));
        // Ticks longer than the cadence: every tick.
        assert!(due(Cadence::Heartbeat, 601 * MIN, 7 * MIN));
        // 7-minute ticks: deep runs once per hour, on the first tick past the hour.
        let ran: Vec<i64> = (0..30).map(|i| 7 * i * MIN).filter(|t| *t > 0 && due(Cadence::Deep, *t, 7 * MIN)).collect();
        assert_eq!(ran, vec![63 * MIN, 126 * MIN, 182 * MIN]);
    }
}
