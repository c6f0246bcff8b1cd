//! `vigil bench` (audit or replay) and `vigil bench-baselines`: timings and peak memory.

use super::*;

/// `vigil bench --from`: load + replay of every rule over the ticks, several times,
/// then the time of each rule over all ticks.
pub(super) fn bench_replay(args: &RuleArgs, signals: &Path, ticks: &[i64], runs: u32, engine: &EngineArgs) -> CliResult {
    let set = load_rules(args)?;
    let (Some(first), Some(last)) = (ticks.first(), ticks.last()) else {
        return Err(input_err("--at is before --from: no ticks"));
    };
    let mut totals = Vec::new();
    let mut findings = 0;
    for run in 0..runs.max(1) {
        let started = std::time::Instant::now();
        let sig = engine.load(signals)?;
        let loaded = started.elapsed().as_secs_f64();
        let (found, failures) = exec::replay_ticks(&sig, &set, ticks, &Filter::default());
        report_failures(&failures)?;
        let total = started.elapsed().as_secs_f64();
        findings = found.len();
        outln!("run {}: load {loaded:.3} s, load + replay {total:.3} s", run + 1);
        totals.push(total);
    }
    totals.sort_by(f64::total_cmp);
    outln!(
        "replay {} .. {}: {} ticks x {} rules (+ {} anomaly rules), {findings} findings",
        exec::iso(*first),
        exec::iso(*last),
        ticks.len(),
        set.patterns().count(),
        set.anomalies().count()
    );
    outln!("load + replay: best {:.3} s, median {:.3} s", totals[0], totals[totals.len() / 2]);
    outln!("peak memory (VmHWM): {:.1} MiB", peak_memory_kib() as f64 / 1024.0);
    let sig = engine.load(signals)?;
    let mut per_rule = Vec::new();
    for id in set.headers().map(|h| &h.id) {
        let started = std::time::Instant::now();
        let filter = Filter { rules: [id.clone()].into_iter().collect(), ..Filter::default() };
        let (_, failures) = exec::evaluate_ticks(&sig, &set, ticks, &filter);
        report_failures(&failures)?;
        per_rule.push((started.elapsed().as_secs_f64(), id.clone()));
    }
    per_rule.sort_by(|a, b| b.0.total_cmp(&a.0));
    outln!("slowest rules over all ticks:");
    for (secs, id) in per_rule.iter().take(8) {
        outln!("  {secs:>7.3} s  {id}");
    }
    Ok(())
}

pub(super) fn bench(args: &RuleArgs, signals: &Path, at: &str, runs: u32, engine: &EngineArgs) -> CliResult {
    let set = load_rules(args)?;
    let now = parse_time(at, "--at")?;
    let mut times = Vec::new();
    let mut findings = 0;
    for _ in 0..runs.max(1) {
        let started = std::time::Instant::now();
        let sig = engine.load(signals)?;
        let loaded = started.elapsed();
        let found = exec::evaluate(&sig, &set, now, &Filter::default()).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        let total = started.elapsed();
        findings = found.len();
        times.push((loaded, total));
    }
    let peak = peak_memory_kib();
    // Time per rule (on one loaded copy), slowest first.
    let sig = engine.load(signals)?;
    let mut per_rule = Vec::new();
    for rule in set.patterns() {
        let started = std::time::Instant::now();
        exec::evaluate_rule(&sig, &set, rule, now, &set.params_for(rule)).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        per_rule.push((started.elapsed().as_secs_f64(), rule.header.id.clone()));
    }
    for a in set.anomalies() {
        let started = std::time::Instant::now();
        exec::evaluate_anomaly(&sig, &set, a, now).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        per_rule.push((started.elapsed().as_secs_f64(), a.header.id.clone()));
    }
    per_rule.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (i, (loaded, total)) in times.iter().enumerate() {
        outln!("run {}: load {:.3} s, load + audit {:.3} s", i + 1, loaded.as_secs_f64(), total.as_secs_f64());
    }
    let mut totals: Vec<f64> = times.iter().map(|(_, t)| t.as_secs_f64()).collect();
    totals.sort_by(f64::total_cmp);
    outln!("rules: {} (+ {} anomaly rules), findings: {findings}", set.patterns().count(), set.anomalies().count());
    outln!("load + audit: best {:.3} s, median {:.3} s", totals[0], totals[totals.len() / 2]);
    outln!("peak memory (VmHWM): {:.1} MiB", peak as f64 / 1024.0);
    outln!("slowest rules:");
    for (secs, id) in per_rule.iter().take(8) {
        outln!("  {secs:>7.3} s  {id}");
    }
    // Rows per table, and rows inside the widest time range any rule reads.
    let mut widest: std::collections::BTreeMap<&str, Option<i64>> = std::collections::BTreeMap::new();
    for rule in set.patterns() {
        for (table, lookback) in plan::read_ranges(rule, &set.params_for(rule)) {
            let bound = lookback.map(|l| now - l);
            let slot = widest.entry(table).or_insert(bound);
            *slot = match (*slot, bound) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
        }
    }
    let (mut all_rows, mut read_rows) = (0i64, 0i64);
    for table in vigil_engine::schema::contract_tables() {
        let count = |within| sig.count_rows(table, within).map_err(|e| CliError::Eval(format!("error: {e}")));
        let total = count(None)?;
        let read = match (widest.get(table.name), table.event_time) {
            (None, _) => 0,
            (Some(Some(bound)), Some(_)) => count(Some((*bound, now)))?,
            (Some(_), _) => total,
        };
        all_rows += total;
        read_rows += read;
        outln!("  {:<20} {:>12} rows, {:>12} inside the time ranges the rules read", table.name, total, read);
    }
    outln!("rows: {all_rows} in all, {read_rows} inside the time ranges the rules read");
    // The evaluation alone (load and, on Spark, staging left out): what sizes a cluster.
    let evaluation = times.iter().map(|(loaded, total)| (*total - *loaded).as_secs_f64()).fold(f64::INFINITY, f64::min);
    outln!("evaluation alone: best {evaluation:.3} s, {:.0} rows read per second", read_rows as f64 / evaluation.max(f64::MIN_POSITIVE));
    Ok(())
}

/// Peak resident memory of this process, in KiB (Linux), or 0 when unknown.
pub(super) fn bench_baselines(args: &RuleArgs, sites: u32, days: u32) -> CliResult {
    let set = load_rules(args)?;
    let metrics: Vec<vigil_engine::anomaly::Metric> = set.metrics.iter().filter(|m| m.table.name == "metrics").cloned().collect();
    if metrics.is_empty() || sites == 0 || days == 0 {
        return Err(input_err("need --sites and --days above 0 and a metric over the `metrics` table in the rules"));
    }
    let dir = std::env::temp_dir().join(format!("vigil-bench-baselines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(input_err)?;
    let sig = load::load(&dir).map_err(input_err)?; // every contract table, empty
    let start = parse_time("2025-09-01T00:00:00Z", "start")?;
    let end = start + i64::from(days) * 86_400_000_000;
    let started = std::time::Instant::now();
    vigil_engine::generate::fill_metrics(&sig.conn, sites, start, days).map_err(|e| CliError::Eval(format!("error: {e}")))?;
    let metrics_table = vigil_engine::schema::table("metrics").ok_or_else(|| CliError::Eval("error: no `metrics` table".into()))?;
    let rows = sig.count_rows(metrics_table, None).map_err(|e| CliError::Eval(format!("error: {e}")))?;
    outln!("generated {sites} sites x {days} days: {rows} metric rows in {:.1} s", started.elapsed().as_secs_f64());
    let state = dir.join("state.duckdb");
    let (_, window) = set.baseline_metrics();
    let hour = 3_600_000_000;
    for (label, until) in [(format!("backfill of {days} days minus the last hour"), end - hour), ("the last hour".to_string(), end)] {
        let t = std::time::Instant::now();
        let folded =
            vigil_engine::baseline::update(&sig, &metrics, &state, until, window).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        let buckets: i64 = folded.iter().map(|f| f.samples).sum();
        outln!("{label}: {buckets} buckets folded in {:.2} s", t.elapsed().as_secs_f64());
    }
    outln!("peak memory (VmHWM): {:.1} MiB", peak_memory_kib() as f64 / 1024.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub(super) fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
