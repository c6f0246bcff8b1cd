//! Anomaly rules against hand-computed statistics (CATALOG.md "Baselines and
//! anomalies"): mean/std and median/MAD, the degenerate-spread fallbacks, cold
//! start levels, zero buckets while a guard is on duty, buckets straddling T,
//! and DST changes in both directions.

mod common;

use std::path::Path;

use vigil_engine::exec::{self, Filter};
use vigil_engine::load::{self, parse_timestamp};
use vigil_engine::ruleset::{self, RuleSet};
use vigil_engine::Finding;

const HOUR: i64 = 3_600_000_000;
const WEEK: i64 = 7 * 24 * HOUR;

fn t(s: &str) -> i64 {
    parse_timestamp(s).expect("timestamp")
}

fn iso(micros: i64) -> String {
    exec::iso(micros)
}

/// The shipped runbooks and categories plus `extra` rule text.
fn rules_with(extra: &str) -> RuleSet {
    let root = common::root();
    let mut texts = Vec::new();
    for f in ruleset::vigil_files(&root.join("runbooks")).expect("runbooks") {
        texts.push((f.display().to_string(), std::fs::read_to_string(&f).expect("read")));
    }
    for name in ["categories.vigil", "anomalies.vigil"] {
        let f = root.join("rules").join(name);
        texts.push((f.display().to_string(), std::fs::read_to_string(&f).expect("read")));
    }
    texts.push(("<test>".into(), extra.to_string()));
    ruleset::load_texts(vigil_engine::diag::Sources::new(), texts).unwrap_or_else(|f| panic!("{f:?}"))
}

fn site(zone: &str) -> String {
    format!("tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,Site,{zone},51.5,-0.1,200,true\n")
}

/// `metrics.csv` with one row per (time, value) of metric `m`.
fn metrics(rows: &[(i64, f64)]) -> String {
    let mut out = String::from("tenant_id,site_id,metric,ts,value\n");
    for (ts, v) in rows {
        out.push_str(&format!("T1,S1,m,{},{v}\n", iso(*ts)));
    }
    out
}

fn run(dir: &Path, rules: &RuleSet, id: &str, at: i64) -> Vec<Finding> {
    let signals = load::load(dir).expect("load");
    let filter = Filter { rules: [id.to_string()].into_iter().collect(), ..Filter::default() };
    exec::evaluate(&signals, rules, at, &filter).expect("evaluate")
}

fn num(f: &Finding, key: &str) -> f64 {
    f.evidence.get(key).and_then(|v| v.as_f64()).unwrap_or_else(|| panic!("evidence {key} in {:?}", f.evidence))
}

fn text<'a>(f: &'a Finding, key: &str) -> &'a str {
    f.evidence.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

const TEST_RULE: &str = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly LOW_STD { title "t" metric m_sum direction below statistic mean_std stable_after 3 threshold 2 severity MEDIUM severity HIGH beyond 4 }
anomaly LOW_MAD { title "t" metric m_sum direction below statistic median_mad stable_after 3 threshold 2 min_spread 2 }
anomaly HIGH_STD { title "t" metric m_sum direction above statistic mean_std stable_after 3 threshold 2 min_spread 2 }
"#;

/// Mondays 09:00 UTC of four weeks, then the observed Monday.
fn mondays(first: &str, values: &[f64]) -> Vec<(i64, f64)> {
    values.iter().enumerate().map(|(i, v)| (t(first) + i as i64 * WEEK, *v)).collect()
}

#[test]
fn mean_std_and_median_mad_match_hand_computation() {
    // History 10, 12, 14, 16 in the Monday 09:00 slot; observed 5.
    // mean 13, sample sd sqrt(20/3) = 2.581989, z = -8 / 2.581989 = -3.098387.
    // median 13, |x - 13| = 3,1,1,3 -> MAD 2, spread 1.4826 * 2 = 2.9652, z = -2.697963.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 16.0, 5.0]);
    let dir = common::write_dir("anomaly-hand", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let rules = rules_with(TEST_RULE);
    let at = t("2025-09-29T10:00:00Z");
    let std = run(&dir, &rules, "LOW_STD", at);
    assert_eq!(std.len(), 1, "{std:?}");
    let f = &std[0];
    assert!(close(num(f, "expected"), 13.0));
    assert!(close(num(f, "spread"), (20.0f64 / 3.0).sqrt()), "{:?}", f.evidence);
    assert!(close(num(f, "z"), -8.0 / (20.0f64 / 3.0).sqrt()), "{:?}", f.evidence);
    assert_eq!(num(f, "samples"), 4.0);
    assert_eq!(num(f, "observed"), 5.0);
    assert_eq!(text(f, "level"), "hour_of_week");
    assert_eq!(text(f, "bucket_start"), "2025-09-29T09:00:00Z");
    assert_eq!(f.severity, "MEDIUM");
    assert_eq!((f.guard_id.as_deref(), f.entity_id.as_deref()), (None, None));

    let mad = run(&dir, &rules, "LOW_MAD", at);
    assert_eq!(mad.len(), 1);
    assert!(close(num(&mad[0], "expected"), 13.0));
    assert!(close(num(&mad[0], "z"), -8.0 / (1.4826 * 2.0)), "{:?}", mad[0].evidence);

    // The bucket is the last complete one until the next completes: also at 10:59:59.
    assert_eq!(run(&dir, &rules, "LOW_STD", t("2025-09-29T10:59:59Z")).len(), 1);
    // At 09:59:59 the observed bucket is still running: the last complete one (08:00) has no sample.
    assert!(run(&dir, &rules, "LOW_STD", t("2025-09-29T09:59:59Z")).is_empty());
    // At 11:00 the last complete bucket is 10:00-11:00: no sample, no finding.
    assert!(run(&dir, &rules, "LOW_STD", t("2025-09-29T11:00:00Z")).is_empty());
}

#[test]
fn severity_rises_beyond_four_and_the_threshold_is_inclusive() {
    // History 10, 12, 14, 16 (mean 13, sd 2.581989): observed 2 gives z = -4.260281 -> HIGH.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 16.0, 2.0]);
    let dir = common::write_dir("anomaly-high", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let rules = rules_with(TEST_RULE);
    let found = run(&dir, &rules, "LOW_STD", t("2025-09-29T10:00:00Z"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, "HIGH");
    // History 10, 12, 14: mean 12, sd 2; observed 8 is exactly z = -2.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 8.0]);
    let dir = common::write_dir("anomaly-edge", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let found = run(&dir, &rules, "LOW_STD", t("2025-09-22T10:00:00Z"));
    assert_eq!(found.len(), 1, "z = -2 exactly fires at threshold 2");
    assert!(close(num(&found[0], "z"), -2.0));
    // Observed 8.5: z = -1.75, quiet.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 8.5]);
    let dir = common::write_dir("anomaly-edge2", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    assert!(run(&dir, &rules, "LOW_STD", t("2025-09-22T10:00:00Z")).is_empty());
}

#[test]
fn rows_without_a_value_are_no_sample() {
    // The observed hour's only row has no value: no sample, no finding; baselines still fold.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 16.0]);
    let mut csv = metrics(&rows);
    csv.push_str("T1,S1,m,2025-09-29T09:10:00Z,\n");
    let dir = common::write_dir("anomaly-null", &[("sites.csv", &site("UTC")), ("metrics.csv", &csv)]);
    let rules = rules_with(TEST_RULE);
    assert!(run(&dir, &rules, "LOW_STD", t("2025-09-29T10:00:00Z")).is_empty());
    let signals = load::load(&dir).expect("load");
    let state = common::temp_dir("anomaly-null-state").join("s.duckdb");
    let folded = vigil_engine::baseline::update(&signals, &rules.metrics, &state, t("2025-09-29T10:00:00Z"), 52).expect("fold");
    assert_eq!(folded.iter().find(|f| f.metric == "m_sum").map(|f| f.samples), Some(4));
}

#[test]
fn not_stable_means_no_finding() {
    // Two samples only (stable_after 3): no finding however low.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 0.0]);
    let dir = common::write_dir("anomaly-unstable", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let rules = rules_with(TEST_RULE);
    assert!(run(&dir, &rules, "LOW_STD", t("2025-09-15T10:00:00Z")).is_empty());
}

#[test]
fn zero_mad_falls_back_to_mean_absolute_deviation_then_min_spread() {
    // History 10, 10, 10, 14: median 10, MAD = median(0,0,0,4) = 0,
    // mean |x - 10| = 1, spread 1.2533; observed 6: z = -4 / 1.2533 = -3.191574.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 10.0, 10.0, 14.0, 6.0]);
    let dir = common::write_dir("anomaly-meanad", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let rules = rules_with(TEST_RULE);
    let found = run(&dir, &rules, "LOW_MAD", t("2025-09-29T10:00:00Z"));
    assert_eq!(found.len(), 1);
    assert!(close(num(&found[0], "spread"), 1.2533), "{:?}", found[0].evidence);
    assert!(close(num(&found[0], "z"), -4.0 / 1.2533));

    // History all 10: MAD 0 and mean abs dev 0 -> min_spread 2; observed 5: z = -2.5.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 10.0, 10.0, 5.0]);
    let dir = common::write_dir("anomaly-minspread", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let found = run(&dir, &rules, "LOW_MAD", t("2025-09-22T10:00:00Z"));
    assert_eq!(found.len(), 1);
    assert!(close(num(&found[0], "z"), -2.5), "{:?}", found[0].evidence);
    // The same for mean/std: sd 0 -> min_spread 2; observed 15 is z = +2.5 above.
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 10.0, 10.0, 15.0]);
    let dir = common::write_dir("anomaly-minspread2", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let found = run(&dir, &rules, "HIGH_STD", t("2025-09-22T10:00:00Z"));
    assert_eq!(found.len(), 1);
    assert!(close(num(&found[0], "z"), 2.5));
}

#[test]
fn cold_start_falls_back_to_hour_of_day_then_all_hours() {
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly COLD { title "t" metric m_sum direction below stable_after 3 threshold 2 fallback hour_of_day (stable_after 4), all_hours (stable_after 6) }
"#;
    let rules = rules_with(rule);
    // 09:00 on Tue..Fri of one week: 10, 12, 14, 16; observed Monday 09:00 next week: 5.
    // hour_of_week has no earlier Monday 09:00 (n 0 < 3); hour_of_day has n 4 >= 4:
    // mean 13, sd 2.581989, z -3.098387.
    let mut rows: Vec<(i64, f64)> =
        [10.0, 12.0, 14.0, 16.0].iter().enumerate().map(|(i, v)| (t("2025-09-02T09:00:00Z") + i as i64 * 24 * HOUR, *v)).collect();
    rows.push((t("2025-09-08T09:00:00Z"), 5.0));
    let dir = common::write_dir("anomaly-hod", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let found = run(&dir, &rules, "COLD", t("2025-09-08T10:00:00Z"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(text(&found[0], "level"), "hour_of_day");
    assert_eq!(num(&found[0], "samples"), 4.0);
    assert!(close(num(&found[0], "z"), -8.0 / (20.0f64 / 3.0).sqrt()));

    // Only three 09:00 samples (hour_of_day needs 4) but six hours in all: all_hours.
    // History 10, 12, 14 at 09:00 and 20, 22, 24 at 15:00 (Tue..Thu): mean 17, squared deviations 49+25+9+9+25+49 = 166, sd sqrt(166/5) = 5.761944;
    // observed 5: z = -12 / 5.761944 = -2.082630.
    let mut rows: Vec<(i64, f64)> = Vec::new();
    for (i, (a, b)) in [(10.0, 20.0), (12.0, 22.0), (14.0, 24.0)].iter().enumerate() {
        rows.push((t("2025-09-02T09:00:00Z") + i as i64 * 24 * HOUR, *a));
        rows.push((t("2025-09-02T15:00:00Z") + i as i64 * 24 * HOUR, *b));
    }
    rows.push((t("2025-09-08T09:00:00Z"), 5.0));
    let dir = common::write_dir("anomaly-all", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let found = run(&dir, &rules, "COLD", t("2025-09-08T10:00:00Z"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(text(&found[0], "level"), "all_hours");
    assert_eq!(num(&found[0], "samples"), 6.0);
    assert!(close(num(&found[0], "z"), -12.0 / (166.0f64 / 5.0).sqrt()), "{:?}", found[0].evidence);

    // With five samples in all, no level is stable: no finding.
    rows.retain(|(ts, _)| *ts != t("2025-09-04T15:00:00Z"));
    let dir = common::write_dir("anomaly-none", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    assert!(run(&dir, &rules, "COLD", t("2025-09-08T10:00:00Z")).is_empty());
}

/// Phone events at Monday 09:00 of `weeks` weeks (`per_week` events each), a guard
/// checked in around each of those hours, and the observed Monday with `observed`
/// events and a guard checked in or not.
fn phone_fleet(weeks: i64, per_week: &[usize], observed: usize, on_duty: bool) -> std::path::PathBuf {
    let start = t("2025-01-06T09:00:00Z");
    let mut events = String::from("tenant_id,site_id,guard_id,device_id,ts,kind\n");
    let mut shifts = String::from("tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at\n");
    for w in 0..=weeks {
        let hour = start + w * WEEK;
        let n = if w == weeks { observed } else { per_week[w as usize % per_week.len()] };
        for i in 0..n {
            events.push_str(&format!("T1,S1,G1,D1,{},heartbeat\n", iso(hour + (i as i64 + 1) * 60_000_000)));
        }
        if w < weeks || on_duty {
            let (a, b) = (iso(hour - HOUR / 2), iso(hour + HOUR + HOUR / 2));
            shifts.push_str(&format!("T1,S1,SH{w},G1,{a},{b},{a},{b}\n"));
        }
    }
    common::write_dir("anomaly-phone", &[("sites.csv", &site("UTC")), ("phone_events.csv", &events), ("shifts.csv", &shifts)])
}

#[test]
fn shipped_phone_rule_needs_thirty_samples_and_counts_silent_hours_on_duty_as_zero() {
    let rules = common::shipped_rules();
    // 30 earlier Mondays with 10, 11, 12 events (repeating): mean 11, sample sd
    // sqrt(20 / 29) = 0.830455; an observed 0 while a guard is checked in: z = -13.245.
    let dir = phone_fleet(30, &[10, 11, 12], 0, true);
    let at = t("2025-01-06T10:00:00Z") + 30 * WEEK;
    let found = run(&dir, &rules, "ANOMALY_PHONE_EVENTS_BELOW", at);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(num(f, "observed"), 0.0);
    assert_eq!(num(f, "samples"), 30.0);
    assert!(close(num(f, "expected"), 11.0));
    assert!(close(num(f, "z"), -11.0 / (20.0f64 / 29.0).sqrt()), "{:?}", f.evidence);
    assert_eq!((f.severity.as_str(), f.category.as_str(), f.runbook.as_str()), ("HIGH", "OPERATIONAL", "ANOMALY_PHONE_EVENTS_BELOW"));

    // No guard on duty and no events: the hour is missing, not zero.
    let dir = phone_fleet(30, &[10, 11, 12], 0, false);
    assert!(run(&dir, &rules, "ANOMALY_PHONE_EVENTS_BELOW", at).is_empty());

    // A guard checked in but whose shift ended before the hour (never checked out) is
    // not on duty in it: the silent hour is missing, not zero.
    let dir = phone_fleet(30, &[10, 11, 12], 0, false);
    let shifts = std::fs::read_to_string(dir.join("shifts.csv")).expect("shifts");
    let hour = t("2025-01-06T09:00:00Z") + 30 * WEEK;
    let (a, b) = (iso(hour - 2 * HOUR), iso(hour - HOUR));
    std::fs::write(dir.join("shifts.csv"), format!("{shifts}T1,S1,SHX,G1,{a},{b},{a},\n")).expect("write");
    assert!(run(&dir, &rules, "ANOMALY_PHONE_EVENTS_BELOW", at).is_empty());

    // 29 earlier Mondays: not stable, no finding.
    let dir = phone_fleet(29, &[10, 11, 12], 0, true);
    assert!(run(&dir, &rules, "ANOMALY_PHONE_EVENTS_BELOW", t("2025-01-06T10:00:00Z") + 29 * WEEK).is_empty());

    // 9 events is z = -2.408: quiet at MEDIUM (2.5); 8 is z = -3.612: MEDIUM.
    let dir = phone_fleet(30, &[10, 11, 12], 9, true);
    assert!(run(&dir, &rules, "ANOMALY_PHONE_EVENTS_BELOW", at).is_empty());
    let dir = phone_fleet(30, &[10, 11, 12], 8, true);
    let found = run(&dir, &rules, "ANOMALY_PHONE_EVENTS_BELOW", at);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, "MEDIUM");
}

/// Monday 09:00 site-local on four weeks before a DST change and one after.
fn dst_case(zone: &str, before: [&str; 4], after: &str, wrong_after: &str) {
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly DST_LOW { title "t" metric m_sum direction below stable_after 4 threshold 2 }
"#;
    let rules = rules_with(rule);
    let mut rows: Vec<(i64, f64)> = before.iter().zip([10.0, 12.0, 14.0, 16.0]).map(|(ts, v)| (t(ts), v)).collect();
    rows.push((t(after), 5.0));
    let dir = common::write_dir("anomaly-dst", &[("sites.csv", &site(zone)), ("metrics.csv", &metrics(&rows))]);
    let at = t(after) + HOUR;
    let found = run(&dir, &rules, "DST_LOW", at);
    assert_eq!(found.len(), 1, "{zone}: Monday 09:00 local after the change is the same slot: {found:?}");
    assert_eq!(num(&found[0], "samples"), 4.0);
    assert_eq!(text(&found[0], "bucket_start"), iso(t(after)));

    // The same value one UTC hour off (Monday 08:00 or 10:00 local) has no history.
    rows.pop();
    rows.push((t(wrong_after), 5.0));
    let dir = common::write_dir("anomaly-dst-wrong", &[("sites.csv", &site(zone)), ("metrics.csv", &metrics(&rows))]);
    assert!(run(&dir, &rules, "DST_LOW", t(wrong_after) + HOUR).is_empty(), "{zone}: {wrong_after} is another slot");
}

#[test]
fn dst_spring_forward_keeps_monday_nine_in_its_bucket() {
    // Europe/London: GMT until 2025-03-30, then BST. Monday 09:00 local = 09:00Z before, 08:00Z after.
    dst_case(
        "Europe/London",
        ["2025-03-03T09:00:00Z", "2025-03-10T09:00:00Z", "2025-03-17T09:00:00Z", "2025-03-24T09:00:00Z"],
        "2025-03-31T08:00:00Z",
        "2025-03-31T09:00:00Z",
    );
    // America/New_York: EST (-5) until 2025-03-09, then EDT (-4). Monday 09:00 = 14:00Z, then 13:00Z.
    dst_case(
        "America/New_York",
        ["2025-02-10T14:00:00Z", "2025-02-17T14:00:00Z", "2025-02-24T14:00:00Z", "2025-03-03T14:00:00Z"],
        "2025-03-10T13:00:00Z",
        "2025-03-10T14:00:00Z",
    );
}

#[test]
fn dst_fall_back_keeps_monday_nine_in_its_bucket() {
    // Europe/London: BST until 2025-10-26, then GMT. Monday 09:00 = 08:00Z before, 09:00Z after.
    dst_case(
        "Europe/London",
        ["2025-09-29T08:00:00Z", "2025-10-06T08:00:00Z", "2025-10-13T08:00:00Z", "2025-10-20T08:00:00Z"],
        "2025-10-27T09:00:00Z",
        "2025-10-27T08:00:00Z",
    );
    // America/New_York: EDT until 2025-11-02, then EST. Monday 09:00 = 13:00Z before, 14:00Z after.
    dst_case(
        "America/New_York",
        ["2025-10-06T13:00:00Z", "2025-10-13T13:00:00Z", "2025-10-20T13:00:00Z", "2025-10-27T13:00:00Z"],
        "2025-11-03T14:00:00Z",
        "2025-11-03T13:00:00Z",
    );
}

#[test]
fn half_hour_zones_align_buckets_to_the_local_clock() {
    // Asia/Kolkata is UTC+5:30: local 09:00-10:00 is 03:30Z-04:30Z. Rows at 03:40Z and
    // 04:20Z fall in one bucket (value 10 + 2 = 12 each week), observed 3.
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly IST_LOW { title "t" metric m_sum direction below stable_after 3 threshold 2 min_spread 1 }
"#;
    let rules = rules_with(rule);
    let mut rows = Vec::new();
    for (w, v) in [(0, 10.0), (1, 12.0), (2, 14.0)] {
        rows.push((t("2025-09-01T03:40:00Z") + w * WEEK, v));
        rows.push((t("2025-09-01T04:20:00Z") + w * WEEK, 2.0));
    }
    rows.push((t("2025-09-22T03:40:00Z"), 3.0));
    let dir = common::write_dir("anomaly-ist", &[("sites.csv", &site("Asia/Kolkata")), ("metrics.csv", &metrics(&rows))]);
    let found = run(&dir, &rules, "IST_LOW", t("2025-09-22T04:30:00Z"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(text(&found[0], "bucket_start"), "2025-09-22T03:30:00Z");
    // Weekly sums 12, 14, 16: mean 14, sd 2; observed 3: z = -5.5.
    assert!(close(num(&found[0], "z"), -5.5), "{:?}", found[0].evidence);
}

#[test]
fn anomaly_findings_are_suppressed_by_maintenance_windows() {
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 16.0, 5.0]);
    let windows =
        "tenant_id,site_id,starts_at,ends_at,reason,finding_types\nT1,S1,2025-09-29T08:00:00Z,2025-09-29T12:00:00Z,works,LOW_STD\n";
    let dir = common::write_dir(
        "anomaly-mw",
        &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows)), ("maintenance_windows.csv", windows)],
    );
    let found = run(&dir, &rules_with(TEST_RULE), "LOW_STD", t("2025-09-29T10:00:00Z"));
    assert_eq!(found.len(), 1);
    assert!(found[0].suppressed);
}

#[test]
fn anomaly_rules_are_checked_with_diagnostics() {
    let bad = r#"
metric m1 { count phone_event }
metric m2 { sum metrics.valu }
metric m3 { count phone_events bucket 45m }
anomaly A1 { title "t" metric m9 direction sideways sensitivity EXTREME }
"#;
    let mut texts = vec![("bad.vigil".to_string(), bad.to_string())];
    texts.push(("ok.vigil".into(), String::new()));
    let failure = match ruleset::load_texts(vigil_engine::diag::Sources::new(), texts) {
        Ok(_) => panic!("bad rules loaded"),
        Err(f) => f,
    };
    let text = failure.sources.render(&failure.diagnostics, false);
    for expected in [
        "unknown table `phone_event`",
        "did you mean `phone_events`",
        "has no column `valu`",
        "a bucket is 30m or 60m",
        "no metric `m9`",
        "`direction` takes",
        "`sensitivity` takes",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

/// (series, level, slot, n, mean, std)
type Stat = (String, &'static str, i64, i64, f64, Option<f64>);

/// Stored baselines: (series, level, slot) -> (n, mean, std) for one site and metric.
fn stored(dir: &Path, state: &Path, site: &str, metric: &str) -> Vec<Stat> {
    use vigil_engine::anomaly::Level;
    let signals = load::load(dir).expect("load");
    let mut out = Vec::new();
    for level in Level::ALL {
        for (_, series, s) in vigil_engine::baseline::show(&signals, state, None, site, metric, level).expect("show") {
            out.push((series, level.name(), s.slot, s.n, s.mean, s.std));
        }
    }
    out
}

fn same_stats(a: &[Stat], b: &[Stat]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.0, x.1, x.2, x.3), (&y.0, y.1, y.2, y.3));
        assert!((x.4 - y.4).abs() < 1e-6 * x.4.abs().max(1.0), "{x:?} vs {y:?}");
        match (x.5, y.5) {
            (Some(p), Some(q)) => assert!((p - q).abs() < 1e-6 * p.abs().max(1.0), "{x:?} vs {y:?}"),
            (p, q) => assert_eq!(p, q),
        }
    }
}

#[test]
fn incremental_baseline_updates_equal_one_batch_and_a_two_pass_reference() {
    // Random-length steps over a random series (seeded LCG), folded hour by hour, in
    // random chunks, and in one run: all three states agree, and agree with a
    // two-pass computation over the samples.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    let start = t("2025-03-20T00:00:00Z");
    let hours = 24 * 21;
    let mut rows: Vec<(i64, f64)> = Vec::new();
    for h in 0..hours {
        // About one hour in five has no row at all (missing, not zero: a metrics series).
        if next() % 5 != 0 {
            rows.push((start + h * HOUR + (next() % 3600) * 1_000_000, (next() % 1000) as f64 / 10.0));
        }
    }
    let dir = common::write_dir("baseline-prop", &[("sites.csv", &site("Europe/London")), ("metrics.csv", &metrics(&rows))]);
    let rules = rules_with("");
    let metric: Vec<_> = rules.metrics.iter().filter(|m| m.name == "platform_metrics").cloned().collect();
    let signals = load::load(&dir).expect("load");
    let end = start + hours * HOUR;

    let once = common::temp_dir("state-once").join("s.duckdb");
    vigil_engine::baseline::update(&signals, &metric, &once, end, 52).expect("update");
    // Running it again changes nothing.
    let again = vigil_engine::baseline::update(&signals, &metric, &once, end, 52).expect("update");
    assert_eq!(again[0].samples, 0);

    let hourly = common::temp_dir("state-hourly").join("s.duckdb");
    let mut tick = start;
    while tick <= end {
        vigil_engine::baseline::update(&signals, &metric, &hourly, tick, 52).expect("update");
        tick += HOUR;
    }
    let chunks = common::temp_dir("state-chunks").join("s.duckdb");
    let mut tick = start;
    while tick < end {
        tick = (tick + (1 + next() % 40) * HOUR + (next() % 60) * 60_000_000).min(end);
        vigil_engine::baseline::update(&signals, &metric, &chunks, tick, 52).expect("update");
    }
    let a = stored(&dir, &once, "S1", "platform_metrics");
    assert!(a.iter().any(|r| r.1 == "hour_of_week" && r.3 >= 2), "{a:?}");
    same_stats(&a, &stored(&dir, &hourly, "S1", "platform_metrics"));
    same_stats(&a, &stored(&dir, &chunks, "S1", "platform_metrics"));

    // Two-pass reference from the raw rows: hourly sums per site-local hour (London).
    let all = a.iter().find(|r| r.1 == "all_hours").expect("all hours");
    let mut sums: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for (ts, v) in &rows {
        *sums.entry(ts - ts.rem_euclid(HOUR)).or_default() += v;
    }
    let xs: Vec<f64> = sums.values().copied().collect();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert_eq!(all.3, xs.len() as i64);
    assert!((all.4 - mean).abs() < 1e-9 * mean.max(1.0) && (all.5.expect("sd") - sd).abs() < 1e-9 * sd.max(1.0), "{all:?} vs {mean} {sd}");
}

/// Gauges (engine v2): an irregularly sampled value is averaged (or its last value
/// taken) per bucket, so the baseline measures the value, not the sampling rate.
/// Monday 09:00 UTC, rows per week: 10, 20 | 12 | 18, 18, 18 | observed 40, 44.
/// avg: 15, 12, 18 -> mean 15, sd 3; observed 42 -> z = 9.
/// last: 20, 12, 18 -> mean 16.6667, sd sqrt(34.6667 / 2) = 4.163332; observed 44 -> z = 6.565254.
/// sum (what a gauge used to get): 30, 12, 54 -> mean 32, sd 21.071308; observed 84 -> z = 2.467811 (< 2.5).
#[test]
fn gauges_are_aggregated_per_bucket_by_avg_min_max_or_last() {
    let rules = rules_with(
        r#"
metric g_avg { avg metrics.value where metric = "m" bucket 60m }
metric g_last { last metrics.value where metric = "m" bucket 60m }
metric g_min { min metrics.value where metric = "m" bucket 60m }
metric g_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly G_AVG { title "t" metric g_avg direction above stable_after 3 threshold 2.5 }
anomaly G_LAST { title "t" metric g_last direction above stable_after 3 threshold 2.5 }
anomaly G_MIN { title "t" metric g_min direction above stable_after 3 threshold 2.5 }
anomaly G_SUM { title "t" metric g_sum direction above stable_after 3 threshold 2.5 }
"#,
    );
    let rows = [
        ("2025-01-06T09:10:00Z", 10.0),
        ("2025-01-06T09:40:00Z", 20.0),
        ("2025-01-13T09:20:00Z", 12.0),
        ("2025-01-20T09:05:00Z", 18.0),
        ("2025-01-20T09:25:00Z", 18.0),
        ("2025-01-20T09:45:00Z", 18.0),
        ("2025-01-27T09:15:00Z", 40.0),
        ("2025-01-27T09:50:00Z", 44.0),
    ];
    let rows: Vec<(i64, f64)> = rows.iter().map(|(at, v)| (t(at), *v)).collect();
    let dir = common::write_dir("anomaly-gauge", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let at = t("2025-01-27T10:00:00Z");
    let avg = run(&dir, &rules, "G_AVG", at);
    assert_eq!(avg.len(), 1, "{avg:?}");
    assert!(
        close(num(&avg[0], "observed"), 42.0) && close(num(&avg[0], "expected"), 15.0) && close(num(&avg[0], "z"), 9.0),
        "{:?}",
        avg[0].evidence
    );
    let last = run(&dir, &rules, "G_LAST", at);
    assert_eq!(last.len(), 1);
    assert!(close(num(&last[0], "observed"), 44.0) && close(num(&last[0], "z"), 6.565254), "{:?}", last[0].evidence);
    // min: 10, 12, 18 -> mean 13.333333, sd 4.163332; observed 40 -> z = 6.405126.
    let min = run(&dir, &rules, "G_MIN", at);
    assert_eq!(min.len(), 1);
    assert!(close(num(&min[0], "z"), 6.405126), "{:?}", min[0].evidence);
    assert!(run(&dir, &rules, "G_SUM", at).is_empty(), "summed, the gauge's sampling rate hides the jump");
    // An hour without rows is missing for a gauge (no zero): at 11:00 nothing is observed.
    assert!(run(&dir, &rules, "G_AVG", t("2025-01-27T11:00:00Z")).is_empty());
}

/// Overrides reach anomaly rules: `threshold` per tenant or site. History 10, 12, 14,
/// 16 and observed 5 give z = -3.098387 (see above): LOW_STD (threshold 2) fires; a site
/// override of 3.5 silences it there; 3.0 still fires, and the evidence shows 3.
#[test]
fn a_site_override_changes_an_anomaly_threshold_there_only() {
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 14.0, 16.0, 5.0]);
    let dir = common::write_dir("anomaly-override", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let at = t("2025-09-29T10:00:00Z");
    let silenced = rules_with(&format!("{TEST_RULE}\noverride site \"S1\" {{ LOW_STD.threshold = 3.5 }}\n"));
    assert!(run(&dir, &silenced, "LOW_STD", at).is_empty());
    let elsewhere = rules_with(&format!("{TEST_RULE}\noverride tenant \"T9\" {{ LOW_STD.threshold = 3.5 }}\n"));
    let found = run(&dir, &elsewhere, "LOW_STD", at);
    assert_eq!(found.len(), 1);
    assert!(close(num(&found[0], "threshold"), 2.0));
    let lower = rules_with(&format!("{TEST_RULE}\noverride tenant \"T1\" site \"S1\" {{ LOW_STD.threshold = 3.0 }}\n"));
    let found = run(&dir, &lower, "LOW_STD", at);
    assert_eq!(found.len(), 1);
    assert!(close(num(&found[0], "threshold"), 3.0), "{:?}", found[0].evidence);
    // Only `threshold` can be overridden, with a number.
    let root = common::root();
    let mut texts = Vec::new();
    for f in ruleset::vigil_files(&root.join("runbooks")).expect("runbooks") {
        texts.push((f.display().to_string(), std::fs::read_to_string(&f).expect("read")));
    }
    texts.push(("<bad>".into(), format!("{TEST_RULE}\noverride site \"S1\" {{ LOW_STD.window = 3 LOW_STD.threshold = 1h }}\n")));
    let Err(failure) = ruleset::load_texts(vigil_engine::diag::Sources::new(), texts) else { panic!("bad overrides load") };
    let text = failure.sources.render(&failure.diagnostics, false);
    assert!(text.contains("rule `LOW_STD` has no parameter `window`") && text.contains("its parameters: threshold"), "{text}");
    assert!(text.contains("`LOW_STD.threshold` is a number, not a duration"), "{text}");
}

#[test]
fn a_metric_whose_bucket_changed_is_refused_by_its_stored_baseline() {
    let start = t("2025-03-20T00:00:00Z");
    let rows: Vec<(i64, f64)> = (0..30).map(|h| (start + h * HOUR, 10.0)).collect();
    let dir = common::write_dir("baseline-bucket", &[("sites.csv", &site("Europe/London")), ("metrics.csv", &metrics(&rows))]);
    let signals = load::load(&dir).expect("load");
    let rules = rules_with("");
    let mut metric: Vec<_> = rules.metrics.iter().filter(|m| m.name == "platform_metrics").cloned().collect();
    let state = common::temp_dir("state-bucket").join("s.duckdb");
    vigil_engine::baseline::update(&signals, &metric, &state, start + 24 * HOUR, 52).expect("first fold");
    metric[0].bucket = HOUR / 2;
    let e = vigil_engine::baseline::update(&signals, &metric, &state, start + 30 * HOUR, 52).expect_err("refused");
    assert!(
        matches!(e, vigil_engine::store::StateError::BucketChanged { folded, declared, .. } if folded == HOUR && declared == HOUR / 2),
        "{e}"
    );
    assert!(e.to_string().contains("folded with 60-minute buckets and is now declared with 30"), "{e}");
}

// ---------------------------------------------------------------- anomaly v2 (issue 16)

/// Hourly readings of metric `m` from `first`, one per value (`None`: no reading).
fn hourly(first: &str, values: &[Option<f64>]) -> Vec<(i64, f64)> {
    values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (t(first) + i as i64 * HOUR, v))).collect()
}

#[test]
fn ewma_matches_hand_computation_across_a_dst_change() {
    // Europe/London, Monday 09:00 local: 2025-10-06, -13, -20 (BST, 08:00Z), -27 (GMT,
    // 09:00Z), observed 2025-11-03 09:00Z. History 10, 20, 30, 40; observed 100.
    // half_life 1: weights 1/8, 1/4, 1/2, 1 (the last sample 1): W = 1.875,
    // mean = (1.25 + 5 + 15 + 40) / 1.875 = 32.666667; sum w (v - mean)^2 = 161.666667,
    // sum w^2 = 1.328125, sd = sqrt(161.666667 / (1.875 - 1.328125 / 1.875)) = 11.771637,
    // z = 67.333333 / 11.771637 = 5.719964.
    // window 2 keeps 30, 40 (weights 1/2, 1): mean 36.666667, sd sqrt(33.333333 / (1.5 - 1.25 / 1.5)) = 7.071068.
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly EW { title "t" metric m_sum direction above statistic ewma half_life 1 stable_after 3 threshold 2 }
anomaly EW2 { title "t" metric m_sum direction above statistic ewma half_life 1 window 2 stable_after 3 threshold 2 }
"#;
    let rules = rules_with(rule);
    let when = ["2025-10-06T08:00:00Z", "2025-10-13T08:00:00Z", "2025-10-20T08:00:00Z", "2025-10-27T09:00:00Z", "2025-11-03T09:00:00Z"];
    let rows: Vec<(i64, f64)> = when.iter().zip([10.0, 20.0, 30.0, 40.0, 100.0]).map(|(ts, v)| (t(ts), v)).collect();
    let dir = common::write_dir("anomaly-ewma", &[("sites.csv", &site("Europe/London")), ("metrics.csv", &metrics(&rows))]);
    let at = t("2025-11-03T10:00:00Z");
    let found = run(&dir, &rules, "EW", at);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert!(close(num(f, "expected"), 32.666667), "{:?}", f.evidence);
    assert!(close(num(f, "spread"), 11.771637), "{:?}", f.evidence);
    assert!(close(num(f, "z"), 5.719964), "{:?}", f.evidence);
    assert_eq!(num(f, "samples"), 4.0);
    assert_eq!(text(f, "statistic"), "ewma");
    let found = run(&dir, &rules, "EW2", at);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(close(num(&found[0], "expected"), 36.666667), "{:?}", found[0].evidence);
    assert!(close(num(&found[0], "spread"), 7.071068), "{:?}", found[0].evidence);
    // Many ticks in one statement give the same finding as one tick.
    let signals = load::load(&dir).expect("load");
    let filter = Filter { rules: ["EW".to_string()].into_iter().collect(), ..Filter::default() };
    let (many, failures) = exec::evaluate_ticks(&signals, &rules, &[at - HOUR, at, at + HOUR], &filter);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(many.len(), 1, "{many:?}");
    assert!(close(num(&many[0], "z"), 5.719964));
}

#[test]
fn outliers_flagged_are_kept_out_of_later_baselines() {
    // Mondays 09:00 UTC: 10, 12, 10, 12, 40, 10, 12, observed 20.
    // First pass: the 40 against 10, 12, 10, 12 (mean 11, sd 1.154701) has z 25.11 >= 3:
    // kept out. The 10 and 12 after it (z -0.52, -0.31 against all earlier) are kept.
    // Baseline of the observed: 10, 12, 10, 12, 10, 12: mean 11, sd sqrt(6 / 5) = 1.095445,
    // z = 9 / 1.095445 = 8.215838. With the 40 kept in: mean 15.142857, sd 11.006492,
    // z = 0.441298: nothing.
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly KEPT_OUT { title "t" metric m_sum direction above stable_after 3 threshold 2 exclude_outliers 3 }
anomaly KEPT_IN { title "t" metric m_sum direction above stable_after 3 threshold 2 }
"#;
    let rules = rules_with(rule);
    let rows = mondays("2025-09-01T09:00:00Z", &[10.0, 12.0, 10.0, 12.0, 40.0, 10.0, 12.0, 20.0]);
    let dir = common::write_dir("anomaly-outliers", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let at = t("2025-10-20T10:00:00Z");
    let found = run(&dir, &rules, "KEPT_OUT", at);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(close(num(&found[0], "expected"), 11.0), "{:?}", found[0].evidence);
    assert!(close(num(&found[0], "spread"), 1.095445), "{:?}", found[0].evidence);
    assert!(close(num(&found[0], "z"), 8.215838), "{:?}", found[0].evidence);
    assert_eq!(num(&found[0], "samples"), 6.0, "the outlier is not counted");
    assert!(run(&dir, &rules, "KEPT_IN", at).is_empty());
}

#[test]
fn confirmation_waits_for_consecutive_buckets_and_hysteresis_holds_until_clear() {
    // All-hours level (hour of week never stable): 20 hours of 10 from 2025-01-06 00:00 UTC,
    // then 20, 20, 20, 15, 10. z against all earlier hours (spread 1 while sd is 0):
    // hour 20: 10.000; 21: 4.364358 (mean 10.476190, sd 2.182179);
    // 22: 3.089572 (10.909091, 2.942449); 23: 1.073225 (11.304348, 3.443502); 24: -0.422550.
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly CONFIRMED { title "t" metric m_sum direction above threshold 2 stable_after 1000 fallback all_hours (stable_after 3) confirm 3 clear_below 1 }
anomaly NO_HYSTERESIS { title "t" metric m_sum direction above threshold 2 stable_after 1000 fallback all_hours (stable_after 3) confirm 3 }
anomaly AT_ONCE { title "t" metric m_sum direction above threshold 2 stable_after 1000 fallback all_hours (stable_after 3) }
"#;
    let rules = rules_with(rule);
    let mut values = vec![Some(10.0); 20];
    values.extend([20.0, 20.0, 20.0, 15.0, 10.0].map(Some));
    let rows = hourly("2025-01-06T00:00:00Z", &values);
    let dir = common::write_dir("anomaly-confirm", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    // Tick at the end of hour k: 2025-01-06T00:00 + (k + 1) h.
    let tick = |k: i64| t("2025-01-06T00:00:00Z") + (k + 1) * HOUR;
    let fired = |id: &str| -> Vec<i64> { (20..=24).filter(|k| !run(&dir, &rules, id, tick(*k)).is_empty()).collect() };
    assert_eq!(fired("AT_ONCE"), vec![20, 21, 22], "one bucket beyond 2 is enough without confirmation");
    assert_eq!(fired("NO_HYSTERESIS"), vec![22], "the third consecutive bucket beyond 2");
    assert_eq!(fired("CONFIRMED"), vec![22, 23], "holds at z 1.073 >= 1, clears at -0.42");
    let held = run(&dir, &rules, "CONFIRMED", tick(23));
    assert!(close(num(&held[0], "z"), 1.073225), "{:?}", held[0].evidence);
    assert!(close(num(&held[0], "threshold"), 2.0), "{:?}", held[0].evidence);
    // Replay over all the ticks at once agrees with one tick at a time.
    let signals = load::load(&dir).expect("load");
    let filter = Filter { rules: ["CONFIRMED".to_string()].into_iter().collect(), ..Filter::default() };
    let ticks: Vec<i64> = (18..=26).map(tick).collect();
    let (many, failures) = exec::evaluate_ticks(&signals, &rules, &ticks, &filter);
    assert!(failures.is_empty(), "{failures:?}");
    let at: Vec<String> = many.iter().map(|f| f.detected_at.clone()).collect();
    assert_eq!(at, vec![iso(tick(22)), iso(tick(23))]);

    // A missing bucket breaks the run: 20 at hours 20, 22, 23, 24 (none at 21).
    // z: hour 22 4.364358, 23 3.089572, 24 2.525235 (mean 11.304348, sd 3.443502):
    // three consecutive from hour 22, confirmed at 24.
    let mut values = vec![Some(10.0); 20];
    values.extend([Some(20.0), None, Some(20.0), Some(20.0), Some(20.0)]);
    let rows = hourly("2025-01-06T00:00:00Z", &values);
    let dir = common::write_dir("anomaly-confirm-gap", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let fired: Vec<i64> = (20..=24).filter(|k| !run(&dir, &rules, "NO_HYSTERESIS", tick(*k)).is_empty()).collect();
    assert_eq!(fired, vec![24]);
    let f = run(&dir, &rules, "NO_HYSTERESIS", tick(24));
    assert!(close(num(&f[0], "z"), 2.525235), "{:?}", f[0].evidence);

    // Across the end of BST (Europe/London, 2025-10-26 01:00Z: 01:00 local happens twice):
    // the same readings with hour 20 at 2025-10-26T00:00Z, so the run of 20s spans the
    // change. Buckets are consecutive in UTC; the outcome is the same.
    let mut values = vec![Some(10.0); 20];
    values.extend([20.0, 20.0, 20.0, 15.0, 10.0].map(Some));
    let rows = hourly("2025-10-25T04:00:00Z", &values);
    let dir = common::write_dir("anomaly-confirm-dst", &[("sites.csv", &site("Europe/London")), ("metrics.csv", &metrics(&rows))]);
    let tick = |k: i64| t("2025-10-25T04:00:00Z") + (k + 1) * HOUR;
    let fired: Vec<i64> = (20..=24).filter(|k| !run(&dir, &rules, "CONFIRMED", tick(*k)).is_empty()).collect();
    assert_eq!(fired, vec![22, 23]);
    let held = run(&dir, &rules, "CONFIRMED", tick(23));
    assert_eq!(text(&held[0], "bucket_start"), "2025-10-26T03:00:00Z");
    assert!(close(num(&held[0], "z"), 1.073225), "{:?}", held[0].evidence);
}

#[test]
fn young_levels_have_wider_thresholds() {
    // young_factor: the Student-t quantile (Cornish-Fisher) over the normal one, times
    // sqrt(1 + 1/n). Known value: t(0.995, 30 df) = 2.7500 against z 2.575829.
    let z995 = 2.575_829_303_5;
    let t30 = vigil_engine::anomaly::young_factor(z995, 31.0) * z995 / (1.0 + 1.0 / 31.0f64).sqrt();
    assert!((t30 - 2.7500).abs() < 5e-4, "{t30}");
    assert!((vigil_engine::anomaly::young_factor(2.5, 4.0) * 2.5 - 5.870975).abs() < 1e-5);
    assert_eq!(vigil_engine::anomaly::young_factor(2.5, 1.0), 1.0);
    // All hours from 2025-01-06 00:00 UTC: 10, 12, 10, 12, then 16 and 20.
    // Hour 4 (16) against 4 samples: mean 11, sd 1.154701, z 4.330127: beyond 2.5, not
    // beyond the young threshold 2.5 x young_factor(2.5, 4) = 5.870975.
    // Hour 5 (20) against 5 samples (mean 12, sd 2.449490): z 3.265986 < 2.5 x
    // young_factor(2.5, 5) = 4.686; quiet too, while the fixed threshold fires.
    let rule = r#"
metric m_sum { sum metrics.value where metric = "m" bucket 60m }
anomaly YOUNG { title "t" metric m_sum direction above threshold 2.5 stable_after 1000 fallback all_hours (stable_after 4) young widen }
anomaly FIXED { title "t" metric m_sum direction above threshold 2.5 stable_after 1000 fallback all_hours (stable_after 4) }
anomaly YOUNG_SURE { title "t" metric m_sum direction above threshold 1 stable_after 1000 fallback all_hours (stable_after 4) young widen }
"#;
    let rules = rules_with(rule);
    let rows = hourly("2025-01-06T00:00:00Z", &[10.0, 12.0, 10.0, 12.0, 16.0, 20.0].map(Some));
    let dir = common::write_dir("anomaly-young", &[("sites.csv", &site("UTC")), ("metrics.csv", &metrics(&rows))]);
    let tick = |k: i64| t("2025-01-06T00:00:00Z") + (k + 1) * HOUR;
    assert!(run(&dir, &rules, "YOUNG", tick(4)).is_empty());
    assert!(run(&dir, &rules, "YOUNG", tick(5)).is_empty());
    assert_eq!(run(&dir, &rules, "FIXED", tick(4)).len(), 1);
    assert_eq!(run(&dir, &rules, "FIXED", tick(5)).len(), 1);
    // Threshold 1 widened at n = 4: 1 x young_factor(1, 4) = 2.197...; z 4.330 fires and
    // the evidence gives the widened threshold.
    let f = run(&dir, &rules, "YOUNG_SURE", tick(4));
    assert_eq!(f.len(), 1);
    let widened = vigil_engine::anomaly::young_factor(1.0, 4.0);
    // By hand: nu = 3: 1 + 2/12 + 24/864 + 24/10368 = 1.196759; x sqrt(1.25) = 1.338018.
    assert!((widened - 1.338018).abs() < 1e-5, "{widened}");
    assert!(close(num(&f[0], "threshold"), widened), "{:?}", f[0].evidence);
}

#[test]
fn v2_settings_are_checked() {
    let bad = |extra: &str, needle: &str| {
        let text = format!(
            "metric m_sum {{ sum metrics.value where metric = \"m\" bucket 60m }}\nanomaly X {{ title \"t\" metric m_sum direction above {extra} }}\n"
        );
        match ruleset::load_texts(vigil_engine::diag::Sources::new(), vec![("x.vigil".into(), text)]) {
            Ok(_) => panic!("{extra} checks"),
            Err(f) => {
                let shown = f.sources.render(&f.diagnostics, false);
                assert!(shown.contains(needle) && shown.contains("x.vigil:2:"), "{extra}: {shown}");
            }
        }
    };
    bad("confirm 0", "`confirm` takes a whole number of buckets");
    bad("clear_below 3", "is above the threshold 2.5");
    bad("half_life 4", "`half_life` is for `statistic ewma`");
    bad("statistic ewma half_life 0", "`half_life` takes a positive number");
    bad("young maybe", "`young` takes `widen` or `fixed`");
    bad("exclude_outliers 0", "`exclude_outliers` takes a positive |z|");
}

/// Issue 16's bar: on NAB's NYC taxi series (fixtures/nyc_taxi) the shipped
/// ANOMALY_METRIC_* rules find all 5 labelled events with a NAB standard score >= 90.
/// The same figures come from the independent reference (tools/anomaly_v2/output.md:
/// 91.4, 5/5, 6 false alarms).
#[test]
fn shipped_metric_rules_score_at_least_90_on_nyc_taxi() {
    use chrono::TimeZone;
    let ny = |local: &str| {
        let naive = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").expect("time");
        chrono_tz::America::New_York.from_local_datetime(&naive).earliest().expect("exists").timestamp_micros()
    };
    let signals = load::load(&common::root().join("fixtures/nyc_taxi")).expect("load");
    let rules = common::shipped_rules();
    let (first, last) = (ny("2014-07-01 01:00"), ny("2015-02-01 00:00"));
    let ticks: Vec<i64> = (0..).map(|i| first + i * HOUR).take_while(|t| *t <= last).collect();
    let filter =
        Filter { rules: ["ANOMALY_METRIC_ABOVE", "ANOMALY_METRIC_BELOW"].map(String::from).into_iter().collect(), ..Filter::default() };
    let (found, failures) = exec::evaluate_ticks(&signals, &rules, &ticks, &filter);
    assert!(failures.is_empty(), "{failures:?}");
    // Raised = holding at a tick and not at the tick before (per rule).
    let mut held: std::collections::BTreeSet<(String, i64)> = std::collections::BTreeSet::new();
    for f in &found {
        held.insert((f.rule.clone(), t(&f.detected_at)));
    }
    let step = HOUR / 2;
    let series_start = ny("2014-07-01 00:00");
    let point = |t: i64| usize::try_from((t - series_start) / step).expect("after the start");
    let detections: Vec<usize> =
        held.iter().filter(|(rule, at)| !held.contains(&(rule.clone(), at - HOUR))).map(|(_, at)| point(at - step)).collect();
    let windows: Vec<vigil_engine::nab::Window> = [
        ("2014-10-30 15:30", "2014-11-03 22:30"),
        ("2014-11-25 12:00", "2014-11-29 19:00"),
        ("2014-12-23 11:30", "2014-12-27 18:30"),
        ("2014-12-29 21:30", "2015-01-03 04:30"),
        ("2015-01-24 20:30", "2015-01-29 03:30"),
    ]
    .iter()
    .map(|(a, b)| vigil_engine::nab::Window { start: point(ny(a)), end: point(ny(b)) })
    .collect();
    let points = point(ny("2015-01-31 23:30")) + 1;
    let scored = vigil_engine::nab::score(points, &detections, &windows, vigil_engine::nab::STANDARD);
    assert!(scored.detected.iter().all(Option::is_some), "{scored:?}");
    assert!(scored.normalized >= 90.0, "{scored:?}");
    assert_eq!(scored.false_positives.len(), 6, "{scored:?}");
    assert!((scored.normalized - 91.385).abs() < 0.01, "the reference's 91.385: {}", scored.normalized);
}
