//! `vigil baseline update|show`: incremental baselines in the state database.

use super::*;

pub(super) fn baseline_command(args: &RuleArgs, action: BaselineCommand) -> CliResult {
    use vigil_engine::anomaly::Level;
    use vigil_engine::baseline;
    let set = load_rules(args)?;
    match action {
        BaselineCommand::Update { signals, until, state } => {
            let until = parse_time(&until, "until")?;
            let sig = load_signals(&signals)?;
            let (metrics, window) = set.baseline_metrics();
            let folded = baseline::update(&sig, &metrics, &state, until, window)
                .map_err(|e| CliError::Eval(format!("error: {}: {e}", state.display())))?;
            for f in folded {
                let from = f.from.map(exec::iso).unwrap_or_else(|| "the beginning".into());
                outln!("{}: folded {} bucket(s) after {from} up to {}", f.metric, f.samples, exec::iso(f.until));
            }
            Ok(())
        }
        BaselineCommand::Show { tenant, site, metric, level, state } => {
            let Some(level) = Level::ALL.into_iter().find(|l| l.name() == level) else {
                return Err(input_err(format!("unknown level `{level}` (hour_of_week, hour_of_day or all_hours)")));
            };
            let Some(m) = set.metrics.iter().find(|m| m.name == metric) else {
                let names: Vec<&str> = set.metrics.iter().map(|m| m.name.as_str()).collect();
                return Err(input_err(format!("no metric `{metric}` (metrics: {})", names.join(", "))));
            };
            if !state.exists() {
                return Err(input_err(format!("no state database `{}` (run `vigil baseline update` first)", state.display())));
            }
            let sig = load::Signals::from_connection(load::open_database().map_err(|e| CliError::Eval(format!("error: {e}")))?);
            let marks = baseline::watermarks(&sig, &state).map_err(|e| CliError::Eval(format!("error: {e}")))?;
            let mark = marks.iter().find(|(name, _, _)| *name == metric).map(|(_, _, t)| exec::iso(*t)).unwrap_or_else(|| "never".into());
            let rows = baseline::show(&sig, &state, tenant.as_deref(), &site, &metric, level)
                .map_err(|e| CliError::Eval(format!("error: {e}")))?;
            outln!("site {site}  metric {metric}  level {}  folded until {mark}  (site-local slots)", level.name());
            let per_level = match level {
                Level::HourOfWeek => 7 * 86_400_000_000 / m.bucket,
                Level::HourOfDay => 86_400_000_000 / m.bucket,
                Level::AllHours => 1,
            };
            let mut groups: Vec<(&str, &str)> = rows.iter().map(|(t, s, _)| (t.as_str(), s.as_str())).collect();
            groups.dedup();
            if groups.is_empty() {
                outln!("no stored baseline for this site and metric");
            }
            let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
            for (tenant_id, name) in groups {
                outln!("# tenant {tenant_id}, series {}", if name.is_empty() { "-" } else { name });
                outln!(
                    "{:<10} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6}",
                    "series",
                    "slot",
                    "n",
                    "mean",
                    "std",
                    "median",
                    "mad",
                    "kept"
                );
                for slot in 0..per_level {
                    let label = baseline::slot_label(level, slot, m.bucket);
                    match rows.iter().find(|(t, s, r)| t == tenant_id && s == name && r.slot == slot) {
                        Some((_, _, r)) => outln!(
                            "{:<10} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6}",
                            name,
                            label,
                            r.n,
                            f(Some(r.mean)),
                            f(r.std),
                            f(r.median),
                            f(r.mad),
                            r.kept
                        ),
                        None => outln!("{:<10} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6}", name, label, 0, "-", "-", "-", "-", 0),
                    }
                }
            }
            Ok(())
        }
    }
}
