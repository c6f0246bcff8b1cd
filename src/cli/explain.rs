//! `vigil explain`: a rule, its source and SQL; with signals, every candidate and why it
//! fires or not.

use super::*;

pub(super) fn explain(set: &RuleSet, id: &str, now: i64, signals: Option<&Path>, site: Option<&str>) -> CliResult {
    if let Some(a) = set.anomalies.iter().find(|a| a.header.id == id) {
        return explain_anomaly(set, a, now, signals, site);
    }
    let Some(rule) = set.rule(id) else {
        let hint = vigil_engine::diag::closest(id, set.headers().map(|h| h.id.as_str()))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(input_err(format!("no rule `{id}`{hint}")));
    };
    let steps =
        if rule.severity_steps.is_empty() { String::new() } else { format!(" (+{} conditional step(s))", rule.severity_steps.len()) };
    print_header(set, "rule", &rule.header, &steps);
    outln!("  cadence      {}   for {} (rows of {})", rule.header.cadence, rule.entity.entity.name, rule.entity.table.name);
    for p in &rule.params {
        outln!("  param        {} = {:?}", p.name, p.default);
    }
    if let Some(doc) = &rule.header.doc {
        outln!("\n{doc}");
    }
    outln!("\n-- source ------------------------------------------------------------");
    outln!("{}", set.sources.slice(rule.header.span));
    let params = set.params_for(rule);
    let planned = plan::plan(rule, &params);
    outln!("\n-- SQL as of {} ------------------------------------------", exec::iso(now));
    outln!("{}", sql::render(&planned.query, &[now], sql::Dialect::DuckDb));
    if let Some(path) = signals {
        let sig = load_signals(path)?;
        outln!("\n-- candidates as of {} (one row per {}) --", exec::iso(now), rule.entity.entity.name);
        let (columns, rows) = exec::explain_candidates(&sig, rule, now, &params).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        let mut shown = 0;
        for row in rows {
            if site.is_some_and(|s| row.get(1).map(String::as_str) != Some(s)) {
                continue;
            }
            shown += 1;
            let cells: Vec<String> = columns.iter().zip(&row).map(|(c, v)| format!("{c}={v}")).collect();
            outln!("{}", cells.join("  "));
        }
        if shown == 0 {
            outln!("no candidate rows: no {} matched the rule's `for` line", rule.entity.entity.name);
        }
    }
    Ok(())
}

pub(super) fn explain_anomaly(
    set: &RuleSet,
    a: &vigil_engine::anomaly::AnomalyRule,
    now: i64,
    signals: Option<&Path>,
    site: Option<&str>,
) -> CliResult {
    let m = &a.metric;
    let steps: String = a.escalations.iter().map(|(l, z)| format!(", {l} when |z| >= {z}")).collect();
    print_header(set, "anomaly", &a.header, &steps);
    outln!(
        "  metric       {} ({} of {}{}, {}-minute buckets in site-local time)",
        m.name,
        m.value_column.map(|v| format!("{} of {v}", m.aggregate.name())).unwrap_or_else(|| "count".into()),
        m.table.name,
        m.per.map(|p| format!(", one series per {p}")).unwrap_or_default(),
        m.bucket / 60_000_000
    );
    outln!(
        "  fires when   z {} {} ({})",
        match a.direction {
            vigil_engine::anomaly::Direction::Above => ">=",
            vigil_engine::anomaly::Direction::Below => "<= -",
            vigil_engine::anomaly::Direction::Both => "|z| >=",
        },
        a.threshold,
        a.statistic.name()
    );
    let levels: Vec<String> = a.levels.iter().map(|(l, n)| format!("{} (stable after {n})", l.name())).collect();
    outln!("  levels       {}", levels.join(", then "));
    if let Some(doc) = &a.header.doc {
        outln!("\n{doc}");
    }
    outln!("\n-- source ------------------------------------------------------------");
    outln!("{}", set.sources.slice(a.header.span));
    outln!("\n-- SQL as of {} ------------------------------------------", exec::iso(now));
    outln!("{}", vigil_engine::anomaly::evaluation_sql(a, &[now]));
    if let Some(path) = signals {
        let sig = load_signals(path)?;
        outln!("\n-- last complete bucket of every series as of {} --", exec::iso(now));
        let (columns, rows) = vigil_engine::anomaly::explain(&sig.conn, a, now).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        let mut shown = 0;
        for row in rows.iter().filter(|r| site.is_none_or(|s| r.get(1).map(String::as_str) == Some(s))) {
            shown += 1;
            let cells: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{c}={v}")).collect();
            outln!("{}", cells.join("  "));
        }
        if shown == 0 {
            outln!("no series has a complete bucket before T");
        }
    }
    Ok(())
}

/// The lines every rule's explanation starts with, pattern or anomaly.
fn print_header(set: &RuleSet, kind: &str, h: &vigil_engine::check::RuleHeader, severity_steps: &str) {
    let (line, _) = set.sources.line_col(h.span);
    outln!("{kind} {} -> finding {}", h.id, h.finding_type);
    outln!("  defined at   {}:{line}", set.sources.name(h.span.file));
    outln!("  title        {}", h.title);
    outln!("  category     {}   severity {}{severity_steps}", h.category, h.base_severity);
}
