//! Time semantics of CONTRACT.md: no look-ahead, and replay equals audit at
//! every tick.

mod common;

use std::collections::HashSet;

use vigil_engine::exec::{self, Filter};
use vigil_engine::load;

fn fixture() -> std::path::PathBuf {
    common::root().join("fixtures/demo")
}

#[test]
fn replay_reports_what_audit_finds_at_each_tick_once() {
    let rules = common::shipped_rules();
    let signals = load::load(&fixture()).expect("load");
    let from = load::parse_timestamp("2025-10-04T10:00:00Z").expect("t");
    let to = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let every = 15 * 60 * 1_000_000;
    let (replayed, failures) = exec::replay(&signals, &rules, from, to, every, &Filter::default());
    assert!(failures.is_empty(), "{failures:?}");

    // Rebuild the expected replay from independent audits at every tick.
    let mut expected = Vec::new();
    let mut previous: HashSet<exec::Identity> = HashSet::new();
    let mut tick = from;
    while tick <= to {
        let at_tick = exec::evaluate(&signals, &rules, tick, &Filter::default()).expect("audit");
        let ids: HashSet<_> = at_tick.iter().map(|f| f.identity()).collect();
        expected.extend(at_tick.into_iter().filter(|f| !previous.contains(&f.identity())));
        previous = ids;
        tick += every;
    }
    assert!(!expected.is_empty());
    assert_eq!(common::jsonl(&replayed), common::jsonl(&expected));
}

#[test]
fn rows_after_t_change_nothing_at_t() {
    let rules = common::shipped_rules();
    let at = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let base = exec::evaluate(&load::load(&fixture()).expect("load"), &rules, at, &Filter::default()).expect("audit");

    // Copy the fixture and add rows that only exist after T: a phone event and GPS
    // fix at T+1s for every site, completions and acknowledgements at T+1m.
    let dir = common::temp_dir("future");
    for entry in std::fs::read_dir(fixture()).expect("fixture") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    let sites = std::fs::read_to_string(dir.join("sites.csv")).expect("sites");
    let mut phone = std::fs::read_to_string(dir.join("phone_events.csv")).expect("phone");
    let mut gps = std::fs::read_to_string(dir.join("location_updates.csv")).expect("gps");
    for line in sites.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        phone.push_str(&format!("{},{},FUTURE,D,2025-10-04T12:00:01Z,checkin\n", cols[0], cols[1]));
        gps.push_str(&format!("{},{},FUTURE,D,2025-10-04T12:00:01Z,{},{},5\n", cols[0], cols[1], cols[4], cols[5]));
    }
    std::fs::write(dir.join("phone_events.csv"), phone).expect("write");
    std::fs::write(dir.join("location_updates.csv"), gps).expect("write");
    let tasks = std::fs::read_to_string(dir.join("tasks.csv")).expect("tasks");
    let completed_later: String = tasks
        .lines()
        .enumerate()
        .map(|(i, l)| if i > 0 && l.ends_with(',') { format!("{l}2025-10-04T12:01:00Z\n") } else { format!("{l}\n") })
        .collect();
    std::fs::write(dir.join("tasks.csv"), completed_later).expect("write");
    let alerts = std::fs::read_to_string(dir.join("alerts.csv")).expect("alerts");
    let acked_later: String = alerts
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut cols: Vec<String> = l.split(',').map(str::to_string).collect();
            if i > 0 && cols.len() == 9 && cols[6].is_empty() {
                cols[6] = "2025-10-04T12:01:00Z".into();
            }
            cols.join(",") + "\n"
        })
        .collect();
    std::fs::write(dir.join("alerts.csv"), acked_later).expect("write");

    let later = exec::evaluate(&load::load(&dir).expect("load"), &rules, at, &Filter::default()).expect("audit");
    assert_eq!(common::jsonl(&base), common::jsonl(&later));
}

/// What a replay must print: from audits at each tick, one at a time, the
/// findings not holding at the tick before (CONTRACT.md).
fn expected_replay(signals: &load::Signals, rules: &vigil_engine::RuleSet, ticks: &[i64], filter: &Filter) -> Vec<exec::Finding> {
    let mut expected = Vec::new();
    let mut previous: HashSet<exec::Identity> = HashSet::new();
    for tick in ticks {
        let at_tick = exec::evaluate(signals, rules, *tick, filter).expect("audit");
        let ids: HashSet<_> = at_tick.iter().map(|f| f.identity()).collect();
        expected.extend(at_tick.into_iter().filter(|f| !previous.contains(&f.identity())));
        previous = ids;
    }
    expected
}

/// Replay evaluates all ticks in one statement per rule; audit evaluates one. On
/// generated fleets whose span crosses the end of European summer time (London and
/// Berlin sites, 2025-10-26T01:00Z), with several seeds, they agree at every tick.
#[test]
fn replay_equals_audit_at_every_tick_on_generated_fleets_across_dst() {
    use vigil_engine::generate::{self, FleetSpec};
    let rules = common::shipped_rules();
    for seed in [3, 11] {
        let start = load::parse_timestamp("2025-10-25T14:00:00Z").expect("t");
        let spec = FleetSpec { sites: 16, hours: 20, seed, start, incident_percent: 40 };
        let conn = load::open_database().expect("database");
        generate::fill(&conn, &spec).expect("fleet");
        let signals = load::Signals::from_connection(conn);
        let (from, every) = (start + 6 * 3_600_000_000, 20 * 60 * 1_000_000);
        let (replayed, failures) = exec::replay(&signals, &rules, from, spec.end(), every, &Filter::default());
        assert!(failures.is_empty(), "{failures:?}");
        let ticks = exec::tick_series(from, spec.end(), every);
        assert!(ticks.contains(&load::parse_timestamp("2025-10-26T01:00:00Z").expect("t")), "the span crosses the DST change");
        let expected = expected_replay(&signals, &rules, &ticks, &Filter::default());
        assert!(expected.len() > 20, "seed {seed}: a fleet with incidents raises findings ({})", expected.len());
        assert_eq!(common::jsonl(&replayed), common::jsonl(&expected), "seed {seed}");
    }
}

/// Anomaly rules over many ticks (one statement, windows over each slot's samples)
/// equal one tick at a time, on the NYC taxi series (seven months, the 2014 DST end
/// in New York inside), with the cold-start fallback levels and both statistics so
/// that findings fire through every level.
#[test]
fn anomaly_rules_over_many_ticks_equal_one_tick_at_a_time() {
    let root = common::root();
    let mut texts = Vec::new();
    for dir in ["rules", "runbooks"] {
        for f in vigil_engine::ruleset::vigil_files(&root.join(dir)).expect("files") {
            texts.push((f.display().to_string(), std::fs::read_to_string(&f).expect("read")));
        }
    }
    let variants = "anomaly NYC_MEAN {\n title \"mean\"\n metric platform_metrics\n direction both\n threshold 1.5\n fallback hour_of_day (stable_after 5), all_hours (stable_after 3)\n}\n\
                    anomaly NYC_MEDIAN {\n title \"median\"\n metric platform_metrics\n direction both\n threshold 1.5\n statistic median_mad\n window 10\n fallback hour_of_day (stable_after 5), all_hours (stable_after 3)\n}\n\
                    anomaly NYC_WEEK {\n title \"hour of week\"\n metric platform_metrics\n direction both\n threshold 1.0\n stable_after 3\n}\n";
    texts.push(("<variants>".into(), variants.to_string()));
    let rules = vigil_engine::ruleset::load_texts(vigil_engine::diag::Sources::new(), texts).unwrap_or_else(|f| panic!("{f:?}"));
    let signals = load::load(&root.join("fixtures/nyc_taxi")).expect("load");
    let filter = Filter { rules: ["NYC_MEAN", "NYC_MEDIAN", "NYC_WEEK"].iter().map(|s| s.to_string()).collect(), ..Filter::default() };
    // Early July (young series: fallback levels) and around 2014-11-02T06:00Z (DST end).
    let mut ticks = exec::tick_series(
        load::parse_timestamp("2014-07-02T00:30:00Z").expect("t"),
        load::parse_timestamp("2014-07-04T00:30:00Z").expect("t"),
        3_600_000_000,
    );
    ticks.extend(exec::tick_series(
        load::parse_timestamp("2014-11-01T00:00:00Z").expect("t"),
        load::parse_timestamp("2014-11-03T12:00:00Z").expect("t"),
        45 * 60 * 1_000_000,
    ));
    let (together, failures) = exec::evaluate_ticks(&signals, &rules, &ticks, &filter);
    assert!(failures.is_empty(), "{failures:?}");
    let mut one_by_one = Vec::new();
    for t in &ticks {
        one_by_one.extend(exec::evaluate(&signals, &rules, *t, &filter).expect("evaluate"));
    }
    exec::sort_findings(&mut one_by_one);
    let levels: HashSet<&str> = together.iter().filter_map(|f| f.evidence.get("level").and_then(|l| l.as_str())).collect();
    assert!(levels.len() >= 3, "findings through every level: {levels:?}");
    assert!(together.len() > 30, "{} findings", together.len());
    assert_eq!(common::jsonl(&together), common::jsonl(&one_by_one));
}

/// A metric whose bucket time is not its event time (`count tasks at due_at`): a
/// task created at 10:40 although due at 09:30 must not count in the 09:00 bucket
/// before 10:40. Over many ticks the engine then evaluates tick by tick, and the
/// result equals audits one at a time.
#[test]
fn late_rows_of_a_metric_are_not_seen_before_they_exist() {
    let mut tasks = String::from("tenant_id,site_id,task_id,assignee_id,priority,created_at,due_at,completed_at\n");
    for h in 0..10 {
        tasks.push_str(&format!("T1,S1,K{h},G1,LOW,2025-10-04T00:00:00Z,2025-10-04T{h:02}:30:00Z,\n"));
    }
    tasks.push_str("T1,S1,LATE,G1,LOW,2025-10-04T10:40:00Z,2025-10-04T09:30:00Z,\n");
    let dir = common::write_dir(
        "late-metric",
        &[
            ("sites.csv", "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,Depot,UTC,51.5,-0.1,200,true\n"),
            ("tasks.csv", &tasks),
        ],
    );
    let root = common::root();
    let mut texts = Vec::new();
    for f in vigil_engine::ruleset::vigil_files(&root.join("runbooks")).expect("runbooks") {
        texts.push((f.display().to_string(), std::fs::read_to_string(&f).expect("read")));
    }
    texts.push((
        "<late>".into(),
        "metric due { count tasks at due_at bucket 60m }\nanomaly DUE_SHIFT { title \"t\" metric due direction both threshold 0.5 min_spread 0.5 fallback all_hours (stable_after 2) stable_after 50 }\n".into(),
    ));
    let rules = vigil_engine::ruleset::load_texts(vigil_engine::diag::Sources::new(), texts).unwrap_or_else(|f| panic!("{f:?}"));
    let signals = load::load(&dir).expect("load");
    let ticks = exec::tick_series(
        load::parse_timestamp("2025-10-04T10:00:00Z").expect("t"),
        load::parse_timestamp("2025-10-04T10:55:00Z").expect("t"),
        5 * 60 * 1_000_000,
    );
    let (together, failures) = exec::evaluate_ticks(&signals, &rules, &ticks, &Filter::default());
    assert!(failures.is_empty(), "{failures:?}");
    let mut one_by_one = Vec::new();
    for t in &ticks {
        one_by_one.extend(exec::evaluate(&signals, &rules, *t, &Filter::default()).expect("evaluate"));
    }
    exec::sort_findings(&mut one_by_one);
    // Before 10:40 the 09:00 bucket holds one task like every other hour (no finding);
    // from 10:40 it holds two.
    let fired: Vec<&str> = together.iter().map(|f| f.detected_at.as_str()).collect();
    assert_eq!(fired, ["2025-10-04T10:40:00Z", "2025-10-04T10:45:00Z", "2025-10-04T10:50:00Z", "2025-10-04T10:55:00Z"]);
    assert_eq!(common::jsonl(&together), common::jsonl(&one_by_one));
}
