//! The report as one self-contained HTML page (styles and charts inline): a cover, the
//! contents, the summary with the trend against the previous period, then coverage,
//! patrols, findings, response against SLA, incidents and the charts. Nothing in it
//! depends on when or where it is rendered.

use std::fmt::Write as _;

use vigil_engine::report::Report;

use super::svg;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `87.5%`, or `—` when there is nothing to divide.
pub fn pct(num: u32, den: u32) -> String {
    if den == 0 {
        "—".into()
    } else {
        format!("{:.1}%", 100.0 * f64::from(num) / f64::from(den))
    }
}

/// The change against the previous period: `+3`, `−2`, `±0`.
pub fn delta(now: f64, before: f64) -> String {
    let d = now - before;
    if d.abs() < 0.05 {
        "±0".into()
    } else if d > 0.0 {
        format!("+{}", trim(d))
    } else {
        format!("−{}", trim(-d))
    }
}

fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// The summary lines, shared by every format: (measure, this period, previous, change).
pub fn summary(r: &Report) -> Vec<(String, String, String, String)> {
    let (t, p) = (&r.totals, &r.previous);
    let ratio = |a: u32, b: u32| if b == 0 { 0.0 } else { 100.0 * f64::from(a) / f64::from(b) };
    let pp = |a: f64, b: f64, has: bool| if has { format!("{} pts", delta(a, b)) } else { "—".into() };
    vec![
        ("Shifts scheduled".into(), t.shifts.to_string(), p.shifts.to_string(), delta(f64::from(t.shifts), f64::from(p.shifts))),
        (
            "Shifts worked".into(),
            format!("{} ({})", t.worked, pct(t.worked, t.shifts)),
            format!("{} ({})", p.worked, pct(p.worked, p.shifts)),
            pp(ratio(t.worked, t.shifts), ratio(p.worked, p.shifts), t.shifts > 0 && p.shifts > 0),
        ),
        ("No-shows".into(), t.no_shows.to_string(), p.no_shows.to_string(), delta(f64::from(t.no_shows), f64::from(p.no_shows))),
        (
            "Hours on duty".into(),
            format!("{:.1}", t.hours_on_duty),
            format!("{:.1}", p.hours_on_duty),
            delta(t.hours_on_duty, p.hours_on_duty),
        ),
        ("Tours scheduled".into(), t.tours.to_string(), p.tours.to_string(), delta(f64::from(t.tours), f64::from(p.tours))),
        (
            "Tours completed".into(),
            format!("{} ({})", t.completed, pct(t.completed, t.tours)),
            format!("{} ({})", p.completed, pct(p.completed, p.tours)),
            pp(ratio(t.completed, t.tours), ratio(p.completed, p.tours), t.tours > 0 && p.tours > 0),
        ),
        (
            "Checkpoint coverage".into(),
            pct(t.checkpoints_scanned, t.checkpoints_expected),
            pct(p.checkpoints_scanned, p.checkpoints_expected),
            pp(
                ratio(t.checkpoints_scanned, t.checkpoints_expected),
                ratio(p.checkpoints_scanned, p.checkpoints_expected),
                t.checkpoints_expected > 0 && p.checkpoints_expected > 0,
            ),
        ),
        ("Findings".into(), t.findings.to_string(), p.findings.to_string(), delta(f64::from(t.findings), f64::from(p.findings))),
    ]
}

/// The sentence that is never left out: what went wrong, or that nothing did.
pub fn headline(r: &Report) -> String {
    if r.no_exceptions {
        return format!(
            "No exceptions: every scheduled shift was worked, every scheduled tour was started and completed, and no finding was raised between {} and {}.",
            r.from, r.to
        );
    }
    let t = &r.totals;
    let missed: u32 = r.sites.iter().map(|s| s.patrols.missed).sum();
    let abandoned: u32 = r.sites.iter().map(|s| s.patrols.abandoned).sum();
    let mut parts = Vec::new();
    if t.no_shows > 0 {
        parts.push(format!("{} no-show(s)", t.no_shows));
    }
    if missed > 0 {
        parts.push(format!("{missed} tour(s) not started"));
    }
    if abandoned > 0 {
        parts.push(format!("{abandoned} tour(s) not completed"));
    }
    if t.findings > 0 {
        parts.push(format!("{} finding(s), {} incident(s) of high or critical severity", t.findings, r.incidents.len()));
    }
    format!("Exceptions in this period: {}.", parts.join("; "))
}

const STYLE: &str = r#"
body { font-family: "DejaVu Sans", system-ui, sans-serif; color: #1b2631; margin: 0 auto; max-width: 900px; padding: 24px; font-size: 14px; line-height: 1.45; }
h1 { font-size: 28px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 2px solid #1b2631; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.cover { border-bottom: 4px solid #1b2631; padding-bottom: 16px; }
.meta { color: #566573; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #d5d8dc; vertical-align: top; }
th { background: #f2f3f4; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.headline { font-size: 15px; padding: 10px 12px; background: #f2f3f4; border-left: 5px solid #1b2631; }
.none { color: #566573; font-style: italic; }
ol.steps { margin: 2px 0 10px; padding-left: 20px; }
nav ol { columns: 2; }
figure { margin: 8px 0 16px; } figcaption { font-size: 12px; color: #566573; }
"#;

/// The page.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let title = format!("Activity report {} · {} to {}", r.tenant, r.from, r.to);
    let _ = write!(h, "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n", esc(&title));
    let scope = match &r.site {
        Some(s) => format!("site {s}"),
        None => format!("{} site(s)", r.sites.len()),
    };
    let _ = write!(
        h,
        "<section class=\"cover\">\n<h1>Activity report</h1>\n<p><strong>Client {}</strong> · {} · {} to {} ({} day(s), each site in its local time)</p>\n<p class=\"meta\">Report {} · built from rule-set revision {}, {} finding(s) and {} signal row(s) · input hash {}{}</p>\n</section>\n",
        esc(&r.tenant),
        esc(&scope),
        r.from,
        r.to,
        r.days,
        esc(&r.id),
        esc(&r.built_from.revision),
        r.built_from.findings,
        r.built_from.signal_rows,
        esc(&r.built_from.input_hash),
        if r.internal { " · internal: operator names and notes included" } else { "" }
    );
    let sections = [
        ("summary", "Summary"),
        ("coverage", "Coverage"),
        ("patrols", "Patrols"),
        ("findings", "Findings"),
        ("sla", "Response times"),
        ("incidents", "Incidents"),
        ("charts", "Trends"),
    ];
    h.push_str("<nav><h2>Contents</h2><ol>");
    for (id, name) in sections {
        let _ = write!(h, "<li><a href=\"#{id}\">{name}</a></li>");
    }
    h.push_str("</ol></nav>\n");

    let _ = write!(h, "<h2 id=\"summary\">Summary</h2>\n<p class=\"headline\">{}</p>\n", esc(&headline(r)));
    h.push_str("<table><thead><tr><th>Measure</th><th class=\"n\">This period</th><th class=\"n\">Previous period</th><th class=\"n\">Change</th></tr></thead><tbody>");
    for (m, a, b, c) in summary(r) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&m),
            esc(&a),
            esc(&b),
            esc(&c)
        );
    }
    h.push_str("</tbody></table>\n");

    h.push_str("<h2 id=\"coverage\">Coverage</h2>\n<table><thead><tr><th>Site</th><th>Time zone</th><th class=\"n\">Hours in period</th><th class=\"n\">Shifts</th><th class=\"n\">Worked</th><th class=\"n\">No-shows</th><th class=\"n\">Late check-ins</th><th class=\"n\">Hours on duty</th></tr></thead><tbody>");
    for s in &r.sites {
        let c = &s.coverage;
        let _ = write!(
            h,
            "<tr><td>{} {}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td></tr>",
            esc(&s.site.site_id),
            esc(&s.site.name),
            esc(&s.site.timezone),
            s.hours_in_period,
            c.scheduled,
            c.worked,
            c.no_shows,
            c.late_checkins,
            c.hours_on_duty
        );
    }
    h.push_str("</tbody></table>\n");

    h.push_str("<h2 id=\"patrols\">Patrols</h2>\n<table><thead><tr><th>Site</th><th class=\"n\">Tours</th><th class=\"n\">Completed</th><th class=\"n\">Late</th><th class=\"n\">Abandoned</th><th class=\"n\">Not started</th><th class=\"n\">Checkpoints</th><th class=\"n\">Coverage</th></tr></thead><tbody>");
    for s in &r.sites {
        let p = &s.patrols;
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td></tr>",
            esc(&s.site.site_id),
            p.scheduled,
            p.completed,
            p.late,
            p.abandoned,
            p.missed,
            p.checkpoints_scanned,
            p.checkpoints_expected,
            pct(p.checkpoints_scanned, p.checkpoints_expected)
        );
    }
    h.push_str("</tbody></table>\n<h3>Tours with the lowest checkpoint coverage</h3>\n");
    let tours: Vec<_> = r.sites.iter().flat_map(|s| s.worst_tours.iter()).collect();
    if tours.is_empty() {
        h.push_str("<p class=\"none\">Every tour scanned all its checkpoints.</p>\n");
    } else {
        h.push_str("<table><thead><tr><th>Site</th><th>Tour</th><th>Guard</th><th>Scheduled (local)</th><th>Outcome</th><th class=\"n\">Scanned</th></tr></thead><tbody>");
        for t in tours {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{} / {} ({})</td></tr>",
                esc(&t.site_id),
                esc(&t.tour_id),
                esc(t.guard_id.as_deref().unwrap_or("—")),
                esc(&t.scheduled),
                t.outcome,
                t.scanned,
                t.expected,
                pct(t.scanned, t.expected)
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("<h3>Checkpoints scanned least often</h3>\n");
    let cps: Vec<_> = r.sites.iter().flat_map(|s| s.worst_checkpoints.iter()).collect();
    if cps.is_empty() {
        h.push_str("<p class=\"none\">Every checkpoint was scanned on every started tour.</p>\n");
    } else {
        h.push_str("<table><thead><tr><th>Site</th><th>Checkpoint</th><th class=\"n\">Tours that scanned it</th></tr></thead><tbody>");
        for c in cps {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{} of {} ({})</td></tr>",
                esc(&c.site_id),
                esc(&c.checkpoint_id),
                c.tours_scanned,
                c.tours,
                pct(c.tours_scanned, c.tours)
            );
        }
        h.push_str("</tbody></table>\n");
    }

    h.push_str("<h2 id=\"findings\">Findings</h2>\n");
    if r.by_category.is_empty() {
        h.push_str("<p class=\"none\">No findings in this period.</p>\n");
    } else {
        let severities = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
        h.push_str("<table><thead><tr><th>Category</th>");
        for s in severities {
            let _ = write!(h, "<th class=\"n\">{s}</th>");
        }
        h.push_str("<th class=\"n\">Total</th></tr></thead><tbody>");
        for (cat, sevs) in &r.by_category {
            let _ = write!(h, "<tr><td>{}</td>", esc(cat));
            for s in severities {
                let _ = write!(h, "<td class=\"n\">{}</td>", sevs.get(s).copied().unwrap_or(0));
            }
            let _ = write!(h, "<td class=\"n\">{}</td></tr>", sevs.values().sum::<u32>());
        }
        h.push_str("</tbody></table>\n");
    }

    h.push_str("<h2 id=\"sla\">Response times</h2>\n<p>Time from a finding to its acknowledgement (or resolution), against the escalation SLA of its runbook.</p>\n");
    if r.sla.is_empty() {
        h.push_str("<p class=\"none\">No findings, so nothing to respond to.</p>\n");
    } else {
        h.push_str("<table><thead><tr><th>Runbook</th><th class=\"n\">SLA</th><th class=\"n\">Findings</th><th class=\"n\">Met</th><th class=\"n\">Missed</th><th class=\"n\">Pending</th><th class=\"n\">Median to acknowledge</th><th class=\"n\">Median to resolve</th></tr></thead><tbody>");
        for s in &r.sla {
            let m = |v: Option<f64>| v.map_or("—".to_string(), |m| format!("{m:.1} min"));
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{} min</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&s.runbook),
                s.sla_minutes,
                s.findings,
                s.met,
                s.missed,
                s.pending,
                m(s.median_ack_minutes),
                m(s.median_resolve_minutes)
            );
        }
        h.push_str("</tbody></table>\n");
    }

    h.push_str("<h2 id=\"incidents\">Incidents</h2>\n");
    if r.incidents.is_empty() {
        h.push_str("<p class=\"none\">No incident of high or critical severity.</p>\n");
    }
    for i in &r.incidents {
        let _ = write!(
            h,
            "<h3>#{} {} · {} at {}{}</h3>\n<ol class=\"steps\">",
            i.id,
            esc(&i.severity),
            esc(&i.finding_type),
            esc(&i.site_id),
            i.guard_id.as_ref().map(|g| format!(" (guard {})", esc(g))).unwrap_or_default()
        );
        for s in &i.steps {
            let _ = write!(h, "<li>{} — {}</li>", esc(&s.at), esc(&s.what));
        }
        h.push_str("</ol>\n");
    }

    h.push_str("<h2 id=\"charts\">Trends</h2>\n");
    let _ =
        writeln!(h, "<figure>{}<figcaption>Findings per day, by category (local days).</figcaption></figure>", svg::daily_bars(&r.daily));
    let _ = writeln!(
        h,
        "<figure>{}<figcaption>Checkpoint coverage per day (tours by their scheduled start).</figcaption></figure>",
        svg::coverage_line(&r.daily)
    );
    let _ = writeln!(h, "<figure>{}<figcaption>Findings by local hour of week.</figcaption></figure>", svg::heat_map(&r.heat));
    h.push_str("</body>\n</html>\n");
    h
}
