//! The SQL of every shipped rule at a fixed time, snapshotted so that a change
//! to the planner or a rule shows up as a reviewable diff.

mod common;

use vigil_engine::{load, plan, sql};

#[test]
fn sql_of_shipped_rules() {
    let rules = common::shipped_rules();
    let now = load::parse_timestamp("2025-10-04T12:00:00Z").expect("time");
    for rule in rules.patterns() {
        let planned = plan::plan(rule, &plan::default_params(rule));
        insta::assert_snapshot!(rule.header.id.clone(), sql::render(&planned.query, &[now], sql::Dialect::DuckDb));
    }
}

/// The statement of every shipped anomaly rule at a fixed time, likewise; and over
/// two ticks, where baselines come from window functions instead of one join.
#[test]
fn sql_of_shipped_anomaly_rules() {
    let rules = common::shipped_rules();
    let now = load::parse_timestamp("2025-10-04T12:00:00Z").expect("time");
    assert_eq!(rules.anomalies().count(), 5);
    for a in rules.anomalies() {
        insta::assert_snapshot!(a.header.id.clone(), vigil_engine::anomaly::evaluation_sql(a, &[now]));
        let hour_before = now - 3_600_000_000;
        insta::assert_snapshot!(format!("{}@two_ticks", a.header.id), vigil_engine::anomaly::evaluation_sql(a, &[hour_before, now]));
    }
}
