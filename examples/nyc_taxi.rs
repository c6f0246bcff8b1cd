//! The NYC taxi evaluation of README "Baselines and anomalies".
//!
//! `cargo run --release --example nyc_taxi [fixtures/nyc_taxi]`
//!
//! Loads the NAB taxi series (fixtures/nyc_taxi: one site in America/New_York,
//! metric `passengers` every 30 minutes, converted to UTC) and evaluates, at
//! every hour of the seven months, four variants of the ANOMALY_METRIC_* rules
//! through the engine: hour-of-week only (the signal-count types' setting) or with
//! the hour-of-day and all-hours fallbacks (shipped for ANOMALY_METRIC_*), each with
//! mean/std and with median/MAD. The rules run with `direction both` and a near-zero threshold so
//! that one pass yields z for every stable hour; the thresholds of LOW, MEDIUM
//! and HIGH and the replay rule (a finding is reported at the first tick where
//! it holds; one that clears and holds again is new) are then applied here.
//! Prints markdown: detections of the five NAB events with lead times, false
//! alarms per week once a baseline is stable, and NAB's normalized scores (standard,
//! low-FP and low-FN profiles; `vigil_engine::nab`) of each variant's findings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use vigil_engine::exec::{self, Filter};
use vigil_engine::ruleset;

const EVENTS: &[(&str, &str, &str, &str)] = &[
    ("NYC marathon", "2014-11-01T19:00", "2014-10-30T15:30", "2014-11-03T22:30"),
    ("Thanksgiving", "2014-11-27T15:30", "2014-11-25T12:00", "2014-11-29T19:00"),
    ("Christmas", "2014-12-25T15:00", "2014-12-23T11:30", "2014-12-27T18:30"),
    ("New Year", "2015-01-01T01:00", "2014-12-29T21:30", "2015-01-03T04:30"),
    ("Snowstorm", "2015-01-27T00:00", "2015-01-24T20:30", "2015-01-29T03:30"),
];

const HOUR: i64 = 3_600_000_000;
/// The series' step: one point every 30 minutes.
const STEP: i64 = HOUR / 2;

fn ny(local: &str) -> i64 {
    use chrono::TimeZone;
    let naive = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M").expect("event times parse");
    chrono_tz::America::New_York.from_local_datetime(&naive).earliest().expect("event times exist").timestamp_micros()
}

fn local(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .map(|d| d.with_timezone(&chrono_tz::America::New_York).format("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_default()
}

/// One evaluated hour: (tick, z, observed, expected, level).
type Tick = (i64, f64, f64, f64, String);

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fixtures/nyc_taxi".into()));
    let signals = vigil_engine::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut texts = Vec::new();
    for d in ["rules", "runbooks"] {
        for f in ruleset::vigil_files(std::path::Path::new(d)).expect("rules and runbooks directories") {
            texts.push((f.display().to_string(), std::fs::read_to_string(&f).expect("readable rule file")));
        }
    }
    let variants = [
        ("A", "hour_of_week only", "mean_std", ""),
        ("A", "hour_of_week only", "median_mad", ""),
        ("B", "fallback hour_of_day, all_hours (shipped)", "mean_std", "fallback hour_of_day, all_hours"),
        ("B", "fallback hour_of_day, all_hours (shipped)", "median_mad", "fallback hour_of_day, all_hours"),
    ];
    let mut extra = String::new();
    for (i, (_, _, stat, fallback)) in variants.iter().enumerate() {
        extra.push_str(&format!(
            "anomaly NYC_VARIANT_{i} {{\n title \"variant\"\n metric platform_metrics\n direction both\n threshold 0.000000001\n statistic {stat}\n {fallback}\n}}\n"
        ));
    }
    texts.push(("<variants>".into(), extra));
    let set = ruleset::load_texts(vigil_engine::diag::Sources::new(), texts).unwrap_or_else(|f| panic!("{f:?}"));

    let (first, last) = (ny("2014-07-01T01:00"), ny("2015-02-01T00:00"));
    let ticks: Vec<i64> = (0..).map(|i| first + i * HOUR).take_while(|t| *t <= last).collect();
    let started = std::time::Instant::now();
    let mut per_variant: Vec<Vec<Tick>> = vec![Vec::new(); variants.len()];
    // All ticks of a variant in one statement per chunk of ticks (engine v2).
    let filter = Filter { rules: (0..4).map(|i| format!("NYC_VARIANT_{i}")).collect(), ..Filter::default() };
    let (found, failures) = exec::evaluate_ticks(&signals, &set, &ticks, &filter);
    assert!(failures.is_empty(), "{failures:?}");
    for f in found {
        let t = vigil_engine::load::parse_timestamp(&f.detected_at).expect("detected_at is a time");
        let i: usize = f.rule.trim_start_matches("NYC_VARIANT_").parse().expect("variant id");
        let num = |k: &str| f.evidence.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let level = f.evidence.get("level").and_then(|v| v.as_str()).unwrap_or("").to_string();
        per_variant[i].push((t, num("z"), num("observed"), num("expected"), level));
    }
    let seconds = started.elapsed().as_secs_f64();
    for v in &mut per_variant {
        v.sort_by_key(|x| x.0);
    }

    println!("Evaluated {} hourly ticks x {} variants through the engine in {seconds:.0} s.\n", ticks.len(), variants.len());
    // NAB scores by points of the series: a finding at tick T is the point at T - 30 min
    // (the last point of the bucket it judged); windows by their first and last points.
    let series_start = ny("2014-07-01T00:00");
    let point = |t: i64| usize::try_from((t - series_start).div_euclid(STEP)).unwrap_or(0);
    let points = point(ny("2015-01-31T23:30")) + 1;
    let windows: Vec<vigil_engine::nab::Window> =
        EVENTS.iter().map(|(_, _, from, to)| vigil_engine::nab::Window { start: point(ny(from)), end: point(ny(to)) }).collect();
    println!("| levels | statistic | sensitivity | events found | false alarms | weeks stable | per week | findings | NAB standard | NAB low FP | NAB low FN |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut details = BTreeMap::new();
    for (i, (cfg, levels, stat, _)) in variants.iter().enumerate() {
        let evaluated = &per_variant[i];
        let Some(stable_from) = evaluated.first().map(|x| x.0) else {
            println!("| {cfg}: {levels} | {stat} | - | never stable | | | | |");
            continue;
        };
        let weeks = (last - stable_from) as f64 / (7.0 * 24.0 * HOUR as f64);
        for (sens, thr) in [("LOW", 3.0), ("MEDIUM", 2.5), ("HIGH", 2.0)] {
            let mut findings: Vec<(i64, &'static str, &Tick)> = Vec::new();
            for (dir, holds) in [("ABOVE", &(|z: f64| z >= thr) as &dyn Fn(f64) -> bool), ("BELOW", &|z: f64| z <= -thr)] {
                let mut previous: Option<i64> = None;
                for x in evaluated {
                    if holds(x.1) {
                        if previous != Some(x.0 - HOUR) {
                            findings.push((x.0, dir, x));
                        }
                        previous = Some(x.0);
                    }
                }
            }
            findings.sort_by_key(|f| f.0);
            let in_window = |t: i64| EVENTS.iter().any(|(_, _, from, to)| ny(from) <= t && t <= ny(to));
            let false_alarms = findings.iter().filter(|f| !in_window(f.0)).count();
            let mut found = Vec::new();
            for (name, label, from, to) in EVENTS {
                if let Some(f) = findings.iter().find(|f| ny(from) <= f.0 && f.0 <= ny(to)) {
                    let lead = (ny(label) - f.0) as f64 / HOUR as f64;
                    found.push(format!("{name} {} {:+.1} h ({}, z {:.2})", f.1, lead, local(f.0), f.2 .1));
                }
            }
            let detections: Vec<usize> = findings.iter().map(|f| point(f.0 - STEP)).collect();
            let nab = |profile| vigil_engine::nab::score(points, &detections, &windows, profile).normalized;
            println!(
                "| {cfg}: {levels} | {stat} | {sens} | {}/5 | {false_alarms} | {weeks:.1} | {:.2} | {} | {:.1} | {:.1} | {:.1} |",
                found.len(),
                false_alarms as f64 / weeks.max(1e-9),
                findings.len(),
                nab(vigil_engine::nab::STANDARD),
                nab(vigil_engine::nab::LOW_FP),
                nab(vigil_engine::nab::LOW_FN)
            );
            details.insert((i, sens), found);
        }
    }
    println!("\nFirst detection in each NAB window (lead = label time - detection time; positive is earlier):\n");
    for ((i, sens), found) in &details {
        let (cfg, _, stat, _) = variants[*i];
        if found.is_empty() {
            continue;
        }
        println!("- {cfg} {stat} {sens}: {}", found.join("; "));
    }
}
