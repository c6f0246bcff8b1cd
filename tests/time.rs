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
