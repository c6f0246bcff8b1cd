//! `vigil watch` against real files and a real watcher: an edit takes effect, a
//! broken file keeps the old rules running, two quick writes make one reload, and
//! a watch killed mid-run and restarted loses and duplicates no finding.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

struct Watch {
    child: Child,
    err: Receiver<String>,
    out: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(dir: &Path, state: &Path, extra: &[&str]) -> Watch {
        let signals = common::root().join("fixtures/demo");
        let mut args = vec![
            "watch".to_string(),
            "--signals".into(),
            signals.display().to_string(),
            "--state".into(),
            state.display().to_string(),
            "--start".into(),
            "2025-10-04T10:00:00Z".into(),
            "--every".into(),
            "5m".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watch");
        let (etx, err) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let (otx, out) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = otx.send(line);
            }
        });
        Watch { child, err, out, seen: Vec::new() }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = self.err.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"));
    }

    /// Stdout lines (new findings) so far.
    fn findings(&self) -> Vec<String> {
        self.out.try_iter().collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ALWAYS: &str = "rule WATCH_ALWAYS {\n  finding WATCH_ALWAYS\n  title \"Always\"\n  severity LOW\n  for site\n  when true\n}\n";

#[test]
fn an_edit_takes_effect_a_broken_file_keeps_the_old_rules_and_quick_writes_reload_once() {
    let dir = common::library("watch-edit");
    let state = dir.join("state.duckdb");
    let mut w = Watch::start(&dir, &state, &["--tick-interval", "300ms", "--until", "2025-10-05T10:00:00Z"]);
    w.wait_for("tick 2025-10-04T10:00:00Z");

    // A new rule file: reloaded, and its findings appear on the next ticks.
    std::fs::write(dir.join("rules/watch_always.vigil"), ALWAYS).expect("write");
    let reload = w.wait_for("reload (files changed) ok");
    assert!(reload.contains("added [WATCH_ALWAYS]"), "{reload}");
    let revision = reload.split("rule set ").nth(1).and_then(|r| r.split(';').next()).expect("revision").to_string();
    w.wait_for(&format!("rule set {revision}"));
    w.wait_for(&format!("rule set {revision}"));
    std::thread::sleep(Duration::from_millis(300)); // stdout is a separate pipe
    let new: Vec<String> = w.findings().into_iter().filter(|l| l.contains("\"WATCH_ALWAYS\"")).collect();
    assert_eq!(new.len(), 24, "one per demo site, printed once: {new:?}");

    // Edit it: the change is reported as a change.
    std::fs::write(dir.join("rules/watch_always.vigil"), ALWAYS.replace("LOW", "MEDIUM")).expect("write");
    let reload = w.wait_for("reload (files changed) ok");
    assert!(reload.contains("changed [WATCH_ALWAYS]"), "{reload}");
    let revision = reload.split("rule set ").nth(1).and_then(|r| r.split(';').next()).expect("revision").to_string();

    // A broken file: the reload fails, the old set keeps producing findings.
    std::fs::write(dir.join("rules/zz_broken.vigil"), "rule BROKEN {\n  when count(phone_event) > 1\n").expect("write");
    let failed = w.wait_for("reload (files changed) failed");
    assert!(failed.contains(&format!("keeping rule set {revision}")), "{failed}");
    assert!(w.seen.iter().any(|l| l.contains("zz_broken.vigil")), "the diagnostics name the file: {:?}", w.seen);
    let tick = w.wait_for("tick ");
    let tick = if tick.contains(&revision) { tick } else { w.wait_for("tick ") };
    assert!(tick.contains(&format!("rule set {revision}")) && !tick.contains(" 0 finding(s)"), "{tick}");

    // Two files in quick succession: one reload with both.
    std::fs::remove_file(dir.join("rules/zz_broken.vigil")).expect("rm");
    std::fs::write(dir.join("rules/watch_a.vigil"), ALWAYS.replace("WATCH_ALWAYS", "WATCH_A")).expect("write");
    std::fs::write(dir.join("rules/watch_b.vigil"), ALWAYS.replace("WATCH_ALWAYS", "WATCH_B")).expect("write");
    let reload = w.wait_for("reload (files changed) ok");
    assert!(reload.contains("added [WATCH_A, WATCH_B]"), "{reload}");
    // No second reload follows for the same burst.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if let Ok(line) = w.err.recv_timeout(Duration::from_millis(100)) {
            assert!(!line.contains("reload"), "a second reload: {line}");
        }
    }

    // WATCH_B runs every 15 minutes of virtual time: wait until its findings are out
    // (on a loaded machine a tick can take longer than the 300 ms between them).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.findings().iter().any(|l| l.contains("\"WATCH_B\"")) {
        assert!(Instant::now() < deadline, "WATCH_B never raised a finding");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Removing a rule: its open findings no longer hold.
    std::fs::remove_file(dir.join("rules/watch_b.vigil")).expect("rm");
    let reload = w.wait_for("reload (files changed) ok");
    assert!(reload.contains("removed [WATCH_B]"), "{reload}");

    // SIGHUP reloads too.
    let pid = w.child.id().to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(status.success());
    w.wait_for("reload (SIGHUP) ok");

    // Every reload attempt is recorded in the state.
    drop(w);
    let reloads = vigil_engine::store::reloads(&state).expect("reloads");
    let outcome: Vec<bool> = reloads.iter().map(|r| r.ok).collect();
    assert_eq!(outcome, vec![true, true, false, true, true, true], "{reloads:?}");
    let open = vigil_engine::store::list(&state, vigil_engine::store::Listing::Open).expect("list");
    let b: Vec<_> = open.iter().filter(|f| f.rule == "WATCH_B").collect();
    assert!(!b.is_empty() && b.iter().all(|f| !f.holding), "{b:?}");
    assert!(reloads[2].error.as_deref().is_some_and(|e| e.contains("zz_broken.vigil")));
    // One clock per run: with a virtual clock, reloads are stamped with its time, not the wall clock's.
    let span = (
        vigil_engine::load::parse_timestamp("2025-10-04T10:00:00Z").expect("start"),
        vigil_engine::load::parse_timestamp("2025-10-05T10:00:00Z").expect("until"),
    );
    for r in &reloads {
        let at = vigil_engine::load::parse_timestamp(&r.at).expect("reload time");
        assert!(span.0 <= at && at <= span.1, "{} is not on the virtual clock", r.at);
    }
    // Ops read them with `vigil status`.
    let (code, out, err) = common::vigil(&["status", "--state", state.to_str().expect("path")], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reloads          5 ok, 1 failed") && out.contains("rules/zz_broken.vigil"), "{out}");
}

/// Stored findings without wall-clock fields, as comparable lines.
fn stored(state: &Path) -> Vec<String> {
    let mut rows: Vec<String> = vigil_engine::store::list(state, vigil_engine::store::Listing::All)
        .expect("list")
        .into_iter()
        .map(|s| {
            format!(
                "{} {} {} {:?} {:?} {} {} {} {} {} {}",
                s.finding_type,
                s.tenant_id,
                s.site_id,
                s.guard_id,
                s.entity_id,
                s.severity,
                s.status,
                s.first_seen,
                s.last_seen,
                s.occurrences,
                s.holding
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn killed_mid_run_and_restarted_loses_and_duplicates_nothing() {
    let dir = common::library("watch-kill");
    let until = ["--tick-interval", "0s", "--until", "2025-10-04T12:00:00Z"];
    let clean = dir.join("clean.duckdb");
    let mut w = Watch::start(&dir, &clean, &until);
    let status = w.child.wait().expect("wait");
    assert!(status.success());
    let expected = stored(&clean);
    assert!(expected.len() > 20, "{expected:?}");

    let state = dir.join("killed.duckdb");
    let mut w = Watch::start(&dir, &state, &until);
    w.wait_for("tick 2025-10-04T10:40:00Z");
    std::thread::sleep(Duration::from_millis(150)); // somewhere inside a later tick
    w.child.kill().expect("kill -9");
    let _ = w.child.wait();
    drop(w);
    let before = vigil_engine::store::last_tick(&state).expect("last tick").expect("some ticks written");
    assert!(before.as_str() < "2025-10-04T12:00:00Z", "killed before the end: {before}");

    let mut w = Watch::start(&dir, &state, &until);
    let resumed = w.wait_for("resuming at");
    assert!(resumed.contains(&format!("ticks up to {before}")), "{resumed}");
    let status = w.child.wait().expect("wait");
    assert!(status.success());
    assert_eq!(stored(&state), expected);
}

/// A crash while an analyst's broken edit is on disk: the restarted run starts from the
/// last good rule set kept in the state database, loses and duplicates nothing, and
/// takes the files again once they check. Without a kept set it refuses to start.
#[test]
fn restarted_with_a_broken_file_on_disk_it_runs_the_last_good_rule_set() {
    let dir = common::library("watch-broken-restart");
    let until = ["--tick-interval", "0s", "--until", "2025-10-04T12:00:00Z"];
    let clean = dir.join("clean.duckdb");
    let mut w = Watch::start(&dir, &clean, &until);
    assert!(w.child.wait().expect("wait").success());
    let expected = stored(&clean);

    let state = dir.join("state.duckdb");
    let mut w = Watch::start(&dir, &state, &["--tick-interval", "500ms", "--until", "2025-10-04T12:00:00Z"]);
    let first = w.wait_for("watch: rule set ");
    let revision = first.split("rule set ").nth(1).and_then(|r| r.split(':').next()).expect("revision").to_string();
    w.wait_for("tick 2025-10-04T10:20:00Z");
    let broken = dir.join("rules/zz_broken.vigil");
    std::fs::write(&broken, "rule BROKEN {\n  when count(phone_event) > 1\n").expect("write");
    w.wait_for("reload (files changed) failed");
    w.child.kill().expect("kill -9");
    let _ = w.child.wait();
    drop(w);

    let mut w = Watch::start(&dir, &state, &until);
    let started = w.wait_for("starting from the last good rule set");
    assert!(started.contains(&revision), "the set in force before the crash: {started}\n{}", w.seen.join("\n"));
    assert!(w.seen.iter().any(|l| l.contains("zz_broken.vigil")), "the diagnostics name the file: {:?}", w.seen);
    assert!(w.child.wait().expect("wait").success());
    assert_eq!(stored(&state), expected);
    let reloads = vigil_engine::store::reloads(&state).expect("reloads");
    let last = reloads.last().expect("the failed start is recorded");
    assert!(!last.ok && last.error.as_deref().is_some_and(|e| e.contains("zz_broken.vigil")), "{reloads:?}");

    // The kept set stays in force until the files check; then they are taken.
    let mut w = Watch::start(&dir, &state, &["--tick-interval", "300ms", "--until", "2025-10-05T12:00:00Z"]);
    w.wait_for("starting from the last good rule set");
    w.wait_for("tick ");
    std::fs::remove_file(&broken).expect("rm");
    let reload = w.wait_for("reload (files changed) ok");
    assert!(reload.contains(&format!("rule set {revision}")), "the files are the kept set again: {reload}");
    drop(w);

    // A state database that never saw a good set: no start, and the message says why.
    std::fs::write(&broken, "rule BROKEN {\n").expect("write");
    let signals = common::root().join("fixtures/demo");
    let signals = signals.to_str().expect("path");
    let (code, _out, err) = common::vigil(
        &["watch", "--signals", signals, "--state", "fresh.duckdb", "--start", "2025-10-04T10:00:00Z", "--until", "2025-10-04T10:05:00Z"],
        &dir,
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("zz_broken.vigil") && err.contains("keeps no earlier one that did"), "{err}");
}

/// Inhibited findings are stored and counted but not printed as alarms (issue 11).
#[test]
fn inhibited_findings_are_not_raised_as_alarms() {
    let dir = common::library("watch-inhibit");
    std::fs::write(
        dir.join("rules/inhibit.vigil"),
        "inhibit CRITICAL_SIGNAL_PHONE_EVENTS_LOW, CRITICAL_SIGNAL_LOCATION_UPDATES_LOW\n  while CORRELATION_SILENT_SITE holds at the same site\n",
    )
    .expect("write");
    let state = dir.join("state.duckdb");
    let mut w = Watch::start(&dir, &state, &["--tick-interval", "50ms", "--until", "2025-10-04T12:00:00Z"]);
    let tick = w.wait_for("tick 2025-10-04T12:00:00Z");
    assert!(tick.contains("(2 inhibited)"), "{tick}");
    std::thread::sleep(Duration::from_millis(300)); // stdout is a separate pipe
    let printed = w.findings();
    assert!(printed.iter().any(|l| l.contains("\"CORRELATION_SILENT_SITE\"") && l.contains("S00005")), "{printed:?}");
    assert!(printed.iter().all(|l| !l.contains("inhibited_by")), "{printed:?}");
    drop(w);
    let stored = vigil_engine::store::list(&state, vigil_engine::store::Listing::Open).expect("list");
    let marked: Vec<_> = stored.iter().filter(|f| f.inhibited_by.is_some()).collect();
    assert_eq!(marked.len(), 2, "{marked:?}");
}
