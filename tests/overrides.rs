//! Parameter overrides per tenant and per site change exactly the rows they name.

mod common;

use std::collections::HashSet;

use vigil_engine::exec::{self, Filter};
use vigil_engine::{load, ruleset};

const SIGNALS: &[(&str, &str)] = &[
    (
        "sites.csv",
        "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\n\
         T1,S1,A,Europe/London,51.5,-0.12,200,true\n\
         T1,S2,B,Europe/London,51.5,-0.12,200,true\n\
         T2,S2,C,Europe/London,51.5,-0.12,200,true\n",
    ),
    (
        "shifts.csv",
        "tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at\n\
         T1,S1,SH1,G1,2025-10-04T08:00:00Z,2025-10-04T16:00:00Z,2025-10-04T08:00:00Z,\n\
         T1,S2,SH2,G2,2025-10-04T08:00:00Z,2025-10-04T16:00:00Z,2025-10-04T08:00:00Z,\n\
         T2,S2,SH3,G3,2025-10-04T08:00:00Z,2025-10-04T16:00:00Z,2025-10-04T08:00:00Z,\n",
    ),
    // Every guard was last heard of 45 minutes before T.
    (
        "phone_events.csv",
        "tenant_id,site_id,guard_id,device_id,ts,kind\n\
         T1,S1,G1,D1,2025-10-04T11:15:00Z,heartbeat\n\
         T1,S2,G2,D2,2025-10-04T11:15:00Z,heartbeat\n\
         T2,S2,G3,D3,2025-10-04T11:15:00Z,heartbeat\n",
    ),
];

fn silent_sites(overrides: &str) -> Vec<(String, String)> {
    let dir = common::temp_dir("overrides-rules");
    for entry in std::fs::read_dir(common::root().join("rules")).expect("rules") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(dir.join("overrides.vigil"), overrides).expect("write");
    let rules = ruleset::load_dirs(&dir, &common::root().join("runbooks")).expect("rules check");
    let signals = load::load(&common::write_dir("overrides-signals", SIGNALS)).expect("load");
    let at = load::parse_timestamp("2025-10-04T12:00:00Z").expect("t");
    let filter = Filter { rules: HashSet::from(["CORRELATION_SILENT_SITE".to_string()]), ..Default::default() };
    exec::evaluate(&signals, &rules, at, &filter).expect("audit").into_iter().map(|f| (f.tenant_id, f.site_id)).collect()
}

fn pair(t: &str, s: &str) -> (String, String) {
    (t.to_string(), s.to_string())
}

#[test]
fn without_overrides_45_minutes_of_silence_is_fine() {
    assert!(silent_sites("").is_empty());
}

#[test]
fn a_site_override_applies_to_that_site_of_that_tenant_only() {
    let found = silent_sites("override tenant \"T1\" site \"S2\" {\n  CORRELATION_SILENT_SITE.silence = 30m\n}\n");
    assert_eq!(found, vec![pair("T1", "S2")]);
}

#[test]
fn a_site_override_without_tenant_applies_to_that_site_id_in_every_tenant() {
    let found = silent_sites("override site \"S2\" {\n  CORRELATION_SILENT_SITE.silence = 30m\n}\n");
    assert_eq!(found, vec![pair("T1", "S2"), pair("T2", "S2")]);
}

#[test]
fn a_tenant_override_applies_to_all_its_sites_and_a_site_override_wins_over_it() {
    let found = silent_sites(
        "override tenant \"T1\" {\n  CORRELATION_SILENT_SITE.silence = 30m\n}\n\
         override tenant \"T1\" site \"S1\" {\n  CORRELATION_SILENT_SITE.silence = 50m\n}\n",
    );
    assert_eq!(found, vec![pair("T1", "S2")]);
}

#[test]
fn overrides_are_checked_like_rules() {
    let dir = common::write_dir(
        "overrides-bad",
        &[(
            "overrides.vigil",
            "override tenant \"T1\" {\n  CORRELATION_SILENT_SITE.silense = 30m\n  CORRELATION_SILENT_SITE.silence = 30\n  NO_SUCH_RULE.x = 1\n}\n",
        )],
    );
    for entry in std::fs::read_dir(common::root().join("rules")).expect("rules") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    let failure = match ruleset::load_dirs(&dir, &common::root().join("runbooks")) {
        Ok(_) => panic!("bad overrides must not load"),
        Err(f) => f,
    };
    let text = failure.sources.render(&failure.diagnostics, false);
    assert!(text.contains("rule `CORRELATION_SILENT_SITE` has no parameter `silense`"), "{text}");
    assert!(text.contains("did you mean `silence`?"), "{text}");
    assert!(text.contains("`CORRELATION_SILENT_SITE.silence` is a duration, not a number"), "{text}");
    assert!(text.contains("no rule `NO_SUCH_RULE`"), "{text}");
}

fn rules_with(overrides: &str) -> vigil_engine::RuleSet {
    let dir = common::temp_dir("overrides-diff");
    for entry in std::fs::read_dir(common::root().join("rules")).expect("rules") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(dir.join("overrides.vigil"), overrides).expect("write");
    ruleset::load_dirs(&dir, &common::root().join("runbooks")).expect("rules check")
}

/// A reload that only adds or removes an override reports the rules it changes
/// (issue 11: it used to say `changed [] removed []`).
#[test]
fn removing_an_override_changes_the_rules_it_named() {
    let with = rules_with("override site \"S2\" {\n  CORRELATION_SILENT_SITE.silence = 30m\n  ANOMALY_METRIC_ABOVE.threshold = 3.5\n}\n");
    let without = rules_with("");
    let d = ruleset::diff(&with, &without);
    assert_eq!(d.changed, vec!["ANOMALY_METRIC_ABOVE".to_string(), "CORRELATION_SILENT_SITE".to_string()]);
    assert!(d.added.is_empty() && d.removed.is_empty(), "{d:?}");
    assert_eq!(d.sections, vec!["overrides"]);
    let same = ruleset::diff(&without, &rules_with(""));
    assert_eq!(same, ruleset::SetDiff::default());
}
