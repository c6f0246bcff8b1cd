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
    /// Signals path, reloaded at every tick.
    pub signals: PathBuf,
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
}

/// Runs until SIGINT/SIGTERM, or past `until`. Errors are (exit code, message).
pub fn run(opts: &Options) -> Result<(), CliError> {
    // Watch first, then load: an edit made while the first set loads still triggers a reload.
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = watch_dirs(&[&opts.rules, &opts.runbooks], &tx)?;
    let initial = ruleset::load_dirs(&opts.rules, &opts.runbooks).map_err(|f| {
        CliError::Rules(format!(
            "{}error: the rule set does not check; watch needs a clean one to start",
            f.sources.render(&f.diagnostics, false)
        ))
    })?;
    let mut current = Arc::new(initial);
    let mut revision = store::revision(&current);
    let mut failed_reloads = 0u64;
    eprintln!("watch: rule set {revision}: {} rules, {} anomaly rules", current.patterns().count(), current.anomalies().count());

    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for (signal, flag) in [(signal_hook::consts::SIGINT, &stop), (signal_hook::consts::SIGTERM, &stop), (signal_hook::consts::SIGHUP, &hup)]
    {
        signal_hook::flag::register(signal, Arc::clone(flag))
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
    let mut tick: Option<std::thread::JoinHandle<Result<String, String>>> = None;
    let mut next_start = Instant::now();
    loop {
        // File events: wait until they are quiet, then reload (watches re-added).
        while rx.try_recv().is_ok() {
            reload_due = Some(Instant::now() + DEBOUNCE);
        }
        let hup_now = hup.swap(false, Ordering::SeqCst);
        if hup_now || reload_due.is_some_and(|d| Instant::now() >= d) {
            reload_due = None;
            let why = if hup_now { "SIGHUP" } else { "files changed" };
            match ruleset::load_dirs(&opts.rules, &opts.runbooks) {
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
                    current = Arc::new(new);
                    revision = new_revision;
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
                    Ok(Ok(line)) => eprintln!("{line}"),
                    Ok(Err(e)) => eprintln!("watch: tick failed: {e}"),
                    Err(_) => eprintln!("watch: tick panicked"),
                }
                if opts.until.is_some_and(|u| now > u) {
                    return Ok(());
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            if let Some(h) = tick.take() {
                let _ = h.join();
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
            let (signals, state, at) = (opts.signals.clone(), opts.state.clone(), now);
            let every = opts.every;
            tick = Some(std::thread::spawn(move || evaluate_tick(&set, &signals, &state, at, every)));
            virtual_now = now;
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
fn evaluate_tick(set: &RuleSet, signals: &Path, state: &Path, now: i64, every: i64) -> Result<String, String> {
    let sig = load::load(signals).map_err(|e| e.to_string())?;
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
    if ids.is_empty() {
        return Ok(format!("tick {}: no rule due", exec::iso(now)));
    }
    let filter = Filter { rules: ids.iter().cloned().collect(), ..Filter::default() };
    let (findings, failures) = exec::evaluate_all(&sig, set, now, &filter);
    for f in &failures {
        eprintln!("watch: {f}");
    }
    let evaluated = set.completed_rules(&filter, &failures);
    let written = store::record(state, set, &evaluated, now, &findings).map_err(|e| format!("{}: {e}", state.display()))?;
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
    Ok(line)
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
