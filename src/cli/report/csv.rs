//! The report's tables as CSV files in a directory, one per table, with a header row.

use std::fmt::Write as _;

use vigil_engine::report::Report;

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        let _ = writeln!(out, "{}", r.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
    }
    out
}

fn opt(v: Option<f64>) -> String {
    v.map(|m| format!("{m:.1}")).unwrap_or_default()
}

/// (file name, contents) of every table.
pub fn render(r: &Report) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    files.push((
        "report.csv",
        table(
            &[
                "report_id",
                "tenant_id",
                "site_id",
                "from",
                "to",
                "days",
                "no_exceptions",
                "revision",
                "findings_read",
                "signal_rows_read",
                "input_hash",
            ],
            vec![vec![
                r.id.clone(),
                r.tenant.clone(),
                r.site.clone().unwrap_or_default(),
                r.from.clone(),
                r.to.clone(),
                r.days.to_string(),
                r.no_exceptions.to_string(),
                r.built_from.revision.clone(),
                r.built_from.findings.to_string(),
                r.built_from.signal_rows.to_string(),
                r.built_from.input_hash.clone(),
            ]],
        ),
    ));
    files.push((
        "summary.csv",
        table(
            &["measure", "this_period", "previous_period", "change"],
            super::html::summary(r).into_iter().map(|(a, b, c, d)| vec![a, b, c, d]).collect(),
        ),
    ));
    files.push((
        "sites.csv",
        table(
            &[
                "site_id",
                "name",
                "timezone",
                "hours_in_period",
                "shifts",
                "worked",
                "no_shows",
                "late_checkins",
                "hours_on_duty",
                "tours",
                "completed",
                "late",
                "abandoned",
                "not_started",
                "checkpoints_expected",
                "checkpoints_scanned",
                "findings",
            ],
            r.sites
                .iter()
                .map(|s| {
                    let (c, p) = (&s.coverage, &s.patrols);
                    vec![
                        s.site.site_id.clone(),
                        s.site.name.clone(),
                        s.site.timezone.clone(),
                        s.hours_in_period.to_string(),
                        c.scheduled.to_string(),
                        c.worked.to_string(),
                        c.no_shows.to_string(),
                        c.late_checkins.to_string(),
                        format!("{:.2}", c.hours_on_duty),
                        p.scheduled.to_string(),
                        p.completed.to_string(),
                        p.late.to_string(),
                        p.abandoned.to_string(),
                        p.missed.to_string(),
                        p.checkpoints_expected.to_string(),
                        p.checkpoints_scanned.to_string(),
                        s.findings.to_string(),
                    ]
                })
                .collect(),
        ),
    ));
    files.push((
        "worst_tours.csv",
        table(
            &["site_id", "tour_id", "guard_id", "scheduled_local", "outcome", "scanned", "expected"],
            r.sites
                .iter()
                .flat_map(|s| s.worst_tours.iter())
                .map(|t| {
                    vec![
                        t.site_id.clone(),
                        t.tour_id.clone(),
                        t.guard_id.clone().unwrap_or_default(),
                        t.scheduled.clone(),
                        t.outcome.to_string(),
                        t.scanned.to_string(),
                        t.expected.to_string(),
                    ]
                })
                .collect(),
        ),
    ));
    files.push((
        "worst_checkpoints.csv",
        table(
            &["site_id", "checkpoint_id", "tours_scanned", "tours"],
            r.sites
                .iter()
                .flat_map(|s| s.worst_checkpoints.iter())
                .map(|c| vec![c.site_id.clone(), c.checkpoint_id.clone(), c.tours_scanned.to_string(), c.tours.to_string()])
                .collect(),
        ),
    ));
    files.push((
        "findings.csv",
        table(
            &["category", "severity", "findings"],
            r.by_category.iter().flat_map(|(c, sevs)| sevs.iter().map(move |(s, n)| vec![c.clone(), s.clone(), n.to_string()])).collect(),
        ),
    ));
    files.push((
        "sla.csv",
        table(
            &["runbook", "sla_minutes", "findings", "met", "missed", "pending", "median_ack_minutes", "median_resolve_minutes"],
            r.sla
                .iter()
                .map(|s| {
                    vec![
                        s.runbook.clone(),
                        s.sla_minutes.to_string(),
                        s.findings.to_string(),
                        s.met.to_string(),
                        s.missed.to_string(),
                        s.pending.to_string(),
                        opt(s.median_ack_minutes),
                        opt(s.median_resolve_minutes),
                    ]
                })
                .collect(),
        ),
    ));
    files.push((
        "incidents.csv",
        table(
            &["finding_id", "site_id", "finding_type", "severity", "guard_id", "at_local", "what"],
            r.incidents
                .iter()
                .flat_map(|i| {
                    i.steps.iter().map(move |s| {
                        vec![
                            i.id.to_string(),
                            i.site_id.clone(),
                            i.finding_type.clone(),
                            i.severity.clone(),
                            i.guard_id.clone().unwrap_or_default(),
                            s.at.clone(),
                            s.what.clone(),
                        ]
                    })
                })
                .collect(),
        ),
    ));
    files.push((
        "daily.csv",
        table(
            &["date", "safety", "security", "operational", "device_health", "compliance", "checkpoints_expected", "checkpoints_scanned"],
            r.daily
                .iter()
                .map(|d| {
                    let n = |c: &str| d.findings.get(c).copied().unwrap_or(0).to_string();
                    vec![
                        d.date.clone(),
                        n("SAFETY"),
                        n("SECURITY"),
                        n("OPERATIONAL"),
                        n("DEVICE_HEALTH"),
                        n("COMPLIANCE"),
                        d.expected.to_string(),
                        d.scanned.to_string(),
                    ]
                })
                .collect(),
        ),
    ));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
        assert_eq!(table(&["x", "y"], vec![vec!["1".into(), "a\nb".into()]]), "x,y\n1,\"a\nb\"\n");
    }
}
