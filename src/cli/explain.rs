//! `vigil explain`: a rule, its source and SQL; with signals, every candidate and why it
//! fires or not.

use super::*;

pub(super) fn explain(
    set: &RuleSet,
    id: &str,
    now: i64,
    signals: Option<&Path>,
    site: Option<&str>,
    sql_in: Option<sql::Dialect>,
) -> CliResult {
    use vigil_engine::ruleset::Rule;
    let Some(rule) = set.find(id) else {
        let hint = vigil_engine::diag::closest(id, set.headers().map(|h| h.id.as_str()))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(input_err(format!("no rule `{id}`{hint}")));
    };
    // What the rule is: the shared header, then what its body compares.
    match rule {
        Rule::Pattern(r, _) => {
            let steps =
                if r.severity_steps.is_empty() { String::new() } else { format!(" (+{} conditional step(s))", r.severity_steps.len()) };
            print_header(set, "rule", &r.header, &steps);
            outln!("  cadence      {}   for {} (rows of {})", r.header.cadence, r.entity.entity.name, r.entity.table.name);
            for p in &r.params {
                outln!("  param        {} = {}", p.name, p.default);
                print_overrides(set, &r.header.id, &p.name);
            }
        }
        Rule::Anomaly(a) => {
            let steps: String = a.escalations.iter().map(|(l, z)| format!(", {l} when |z| >= {z}")).collect();
            print_header(set, "anomaly", &a.header, &steps);
            describe_anomaly(a);
            print_overrides(set, &a.header.id, "threshold");
        }
    }
    for inh in set.inhibitions.iter().filter(|i| i.inhibited.contains(&rule.header().finding_type)) {
        let (line, _) = set.sources.line_col(inh.span);
        let scope = if inh.same_guard { "guard" } else { "site" };
        outln!("  inhibited    while {} holds at the same {scope} ({}:{line})", inh.by, set.sources.name(inh.span.file));
    }
    if let Some(doc) = &rule.header().doc {
        outln!("\n{doc}");
    }
    outln!("\n-- source ------------------------------------------------------------");
    outln!("{}", rule.text(&set.sources));
    // The SQL it runs at `now`: the plan made when the set loaded, or the anomaly statement.
    if let Some(dialect) = sql_in {
        let on = if dialect == sql::Dialect::Spark { " (Spark SQL)" } else { "" };
        outln!("\n-- SQL as of {}{on} ------------------------------------------", exec::iso(now));
        match rule {
            Rule::Pattern(_, plan) => outln!("{}", sql::render(&plan.query, &[now], dialect)),
            Rule::Anomaly(a) => outln!("{}", vigil_engine::anomaly::evaluation_sql_in(a, &[now], dialect)),
        }
    }
    let Some(path) = signals else { return Ok(()) };
    // With signals: every candidate and whether it fires.
    let sig = load_signals(path)?;
    fn eval(e: impl std::fmt::Display) -> CliError {
        CliError::Eval(format!("error: {e}"))
    }
    let ((columns, rows), nothing) = match rule {
        Rule::Pattern(r, _) => {
            let found = exec::explain_candidates(&sig, r, now, &set.params_for(r)).map_err(eval)?;
            if !found.conditions.is_empty() {
                outln!("\n-- the `when` conditions (all must hold) ------------------------------");
                for (i, span) in found.conditions.iter().enumerate() {
                    let text: String = set.sources.slice(*span).split_whitespace().collect::<Vec<_>>().join(" ");
                    outln!("  when[{}]  {text}", i + 1);
                }
            }
            if !found.severity_steps.is_empty() {
                outln!("\n-- severity steps (the first that holds wins; otherwise {}) ----------", r.header.base_severity);
                for (i, (level, span)) in found.severity_steps.iter().enumerate() {
                    let text: String = set.sources.slice(*span).split_whitespace().collect::<Vec<_>>().join(" ");
                    outln!("  severity[{}]  {level} when {text}", i + 1);
                }
            }
            outln!("\n-- candidates as of {} (one row per {}) --", exec::iso(now), r.entity.entity.name);
            ((found.columns, found.rows), format!("no candidate rows: no {} matched the rule's `for` line", r.entity.entity.name))
        }
        Rule::Anomaly(a) => {
            outln!("\n-- last complete bucket of every series as of {} --", exec::iso(now));
            (vigil_engine::anomaly::explain(&sig.conn, a, now).map_err(eval)?, "no series has a complete bucket before T".to_string())
        }
    };
    let mut shown = 0;
    for row in rows.iter().filter(|r| site.is_none_or(|s| r.get(1).map(String::as_str) == Some(s))) {
        shown += 1;
        let cells: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{c}={v}")).collect();
        outln!("{}", cells.join("  "));
    }
    if shown == 0 {
        outln!("{nothing}");
    }
    Ok(())
}

/// The overrides of one parameter, most specific first, as `explain` lists them.
fn print_overrides(set: &RuleSet, id: &str, param: &str) {
    let mut scoped: Vec<_> = set.overrides_of(id).into_iter().filter(|s| s.param == param).collect();
    scoped.sort_by_key(|s| (s.site.is_none(), s.tenant.is_none(), s.tenant.clone(), s.site.clone()));
    for s in scoped {
        let scope = match (&s.tenant, &s.site) {
            (Some(t), Some(site)) => format!("tenant \"{t}\" site \"{site}\""),
            (Some(t), None) => format!("tenant \"{t}\""),
            (None, Some(site)) => format!("site \"{site}\""),
            (None, None) => "everywhere".to_string(),
        };
        outln!("               {} = {} (override {scope})", param, s.value);
    }
}

/// What an anomaly rule's body compares: its metric, when it fires, its levels.
fn describe_anomaly(a: &vigil_engine::anomaly::AnomalyRule) {
    let m = &a.metric;
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
    if a.statistic == vigil_engine::anomaly::Statistic::Ewma {
        outln!("  baseline     weights halve every {} samples back, over the last {}", a.half_life, a.window);
    }
    if a.young_widen {
        outln!("  young        thresholds widened while a level has few samples (Student-t prediction interval)");
    }
    if a.confirm > 1 || a.clear_below.is_some() {
        outln!(
            "  confirm      raised after {} consecutive bucket(s) beyond the threshold; holds while |z| >= {}",
            a.confirm,
            a.clear_below.map(|c| c.to_string()).unwrap_or_else(|| "the threshold".into())
        );
    }
    if let Some(z) = a.exclude_outliers {
        outln!("  outliers     samples with |z| >= {z} are kept out of later baselines");
    }
}

/// The lines every rule's explanation starts with, pattern or anomaly.
fn print_header(set: &RuleSet, kind: &str, h: &vigil_engine::check::RuleHeader, severity_steps: &str) {
    let (line, _) = set.sources.line_col(h.span);
    outln!("{kind} {} -> finding {}", h.id, h.finding_type);
    outln!("  defined at   {}:{line}", set.sources.name(h.span.file));
    outln!("  title        {}", h.title);
    outln!("  category     {}   severity {}{severity_steps}", h.category, h.base_severity);
}
