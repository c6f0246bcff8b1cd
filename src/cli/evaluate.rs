//! `vigil evaluate-anomalies`: replay the anomaly rules over a labelled series and score
//! them as the Numenta Anomaly Benchmark does (`vigil_engine::nab`).
//!
//! The series (`timestamp,value`) becomes the `metrics` table of one site in the given
//! time zone; the labels (`start,end`) are anomaly windows. Every anomaly rule over
//! `metrics` (or those named) is evaluated at every hour; a detection is a finding at a
//! tick where it did not hold at the tick before, placed at the series' last point
//! before that tick.

use super::*;

use vigil_engine::nab;

/// Reads `timestamp,...` rows after a header: an ISO time with a zone, or a local time (`2014-07-01
/// 00:00:00`, `T` or space) in `zone`. Returns (line, instant, rest of the row).
fn read_rows(path: &Path, zone: chrono_tz::Tz, what: &str) -> Result<Vec<(usize, i64, Vec<String>)>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| input_err(format!("{what} {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split(',').map(|f| f.trim().trim_matches('"').to_string()).collect();
        let first = fields.first().cloned().unwrap_or_default();
        let at = read_time(&first, zone).ok_or_else(|| {
            input_err(format!("{}:{line_no}: `{first}` is not a time (ISO-8601, or local in the --timezone)", path.display()))
        })?;
        out.push((line_no, at, fields.into_iter().skip(1).collect()));
    }
    Ok(out)
}

pub(super) fn evaluate_anomalies(args: &RuleArgs, series: &Path, labels: &Path, zone: &str, only: &[String]) -> CliResult {
    let tz: chrono_tz::Tz = zone.parse().map_err(|_| input_err(format!("--timezone: `{zone}` is not an IANA time zone")))?;
    let set = load_rules(args)?;
    let chosen: Vec<&vigil_engine::anomaly::AnomalyRule> =
        set.anomalies().filter(|a| a.metric.table.name == "metrics" && (only.is_empty() || only.contains(&a.header.id))).collect();
    for id in only {
        if !chosen.iter().any(|a| &a.header.id == id) {
            return Err(input_err(format!("--rule: no anomaly rule over `metrics` named `{id}`")));
        }
    }
    if chosen.is_empty() {
        return Err(input_err("no anomaly rule over the `metrics` table in the rules"));
    }
    let mut rows = read_rows(series, tz, "--series")?;
    rows.sort_by_key(|r| r.1);
    let mut csv = String::from("tenant_id,site_id,metric,ts,value\n");
    for (line, at, rest) in &rows {
        let value: f64 = rest
            .first()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| input_err(format!("{}:{line}: the second column must be a number", series.display())))?;
        csv.push_str(&format!("T1,S1,value,{},{value}\n", exec::iso(*at)));
    }
    let windows_at = read_rows(labels, tz, "--labels")?
        .into_iter()
        .map(|(line, start, rest)| {
            let end = rest.first().ok_or_else(|| input_err(format!("{}:{line}: write start,end", labels.display())))?;
            let end = read_time(end, tz).ok_or_else(|| input_err(format!("{}:{line}: `{end}` is not a time", labels.display())))?;
            Ok((start, end))
        })
        .collect::<Result<Vec<(i64, i64)>, CliError>>()?;
    let (Some(first), Some(last)) = (rows.first().map(|r| r.1), rows.last().map(|r| r.1)) else {
        return Err(input_err(format!("{}: no rows", series.display())));
    };
    let dir = std::env::temp_dir().join(format!("vigil-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(input_err)?;
    let written = std::fs::write(dir.join("metrics.csv"), csv).and_then(|_| {
        std::fs::write(
            dir.join("sites.csv"),
            format!("tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,series,{zone},0,0,0,true\n"),
        )
    });
    let loaded = written.map_err(input_err).and_then(|_| load_signals(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let signals = loaded?;

    const HOUR: i64 = 3_600_000_000;
    let ticks: Vec<i64> = (1..).map(|i| first - first.rem_euclid(HOUR) + i * HOUR).take_while(|t| *t <= last + HOUR).collect();
    let filter = Filter { rules: chosen.iter().map(|a| a.header.id.clone()).collect(), ..Filter::default() };
    let (found, failures) = exec::evaluate_ticks(&signals, &set, &ticks, &filter);
    report_failures(&failures)?;
    // Points of the series: a detection at tick T is the last point before T.
    let times: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let point = |t: i64| times.partition_point(|x| *x < t).saturating_sub(1);
    let windows: Vec<nab::Window> = windows_at
        .iter()
        .map(|(s, e)| nab::Window { start: times.partition_point(|x| x < s), end: times.partition_point(|x| x <= e).saturating_sub(1) })
        .collect();
    let weeks = (last - first) as f64 / (7.0 * 24.0 * HOUR as f64);
    outln!("{} points, {} labelled window(s), {} hourly ticks, {:.1} weeks", times.len(), windows.len(), ticks.len(), weeks);
    outln!("\n| rule | detections | windows found | false alarms | per week | NAB standard | NAB low FP | NAB low FN |");
    outln!("|---|---|---|---|---|---|---|---|");
    let mut leads = Vec::new();
    let mut all: Vec<usize> = Vec::new();
    let row = |name: &str, detections: &[usize]| {
        let score = |p| nab::score(times.len(), detections, &windows, p);
        let standard = score(nab::STANDARD);
        let hits = standard.detected.iter().filter(|d| d.is_some()).count();
        outln!(
            "| {name} | {} | {hits}/{} | {} | {:.2} | {:.1} | {:.1} | {:.1} |",
            detections.len(),
            windows.len(),
            standard.false_positives.len(),
            standard.false_positives.len() as f64 / weeks.max(1e-9),
            standard.normalized,
            score(nab::LOW_FP).normalized,
            score(nab::LOW_FN).normalized
        );
        standard
    };
    for a in &chosen {
        // New findings: holding at T, not at the tick before.
        let mut at: Vec<i64> =
            found.iter().filter(|f| f.rule == a.header.id).filter_map(|f| parse_timestamp(&f.detected_at).ok()).collect();
        at.sort_unstable();
        at.dedup();
        let starts: Vec<i64> = at.iter().enumerate().filter(|(i, t)| *i == 0 || at[i - 1] != **t - HOUR).map(|(_, t)| *t).collect();
        let detections: Vec<usize> = starts.iter().map(|t| point(*t)).collect();
        all.extend(&detections);
        let standard = row(&a.header.id, &detections);
        for (w, d) in windows_at.iter().zip(&standard.detected) {
            if let Some(i) = d {
                let lead = (w.1 - times[*i]) as f64 / HOUR as f64;
                leads.push(format!(
                    "{}: window {} .. {} detected at {} ({lead:.1} h before its end)",
                    a.header.id,
                    exec::iso(w.0),
                    exec::iso(w.1),
                    exec::iso(times[*i])
                ));
            }
        }
    }
    if chosen.len() > 1 {
        // The rules together, as one detector (NAB scores a detector, not a direction).
        row("all together", &all);
    }
    if !leads.is_empty() {
        outln!("");
        for l in leads {
            outln!("- {l}");
        }
    }
    Ok(())
}

fn read_time(text: &str, zone: chrono_tz::Tz) -> Option<i64> {
    use chrono::TimeZone;
    parse_timestamp(text).ok().or_else(|| {
        ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(text.trim().trim_matches('"'), f).ok())
            .and_then(|n| zone.from_local_datetime(&n).earliest())
            .map(|t| t.timestamp_micros())
    })
}
