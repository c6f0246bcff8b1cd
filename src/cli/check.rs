//! `vigil check`: every diagnostic of the rule set, text or JSON; `--strict` adds the
//! runbook step per type and the warnings CI wants.

use super::*;

pub(super) fn check(
    args: &RuleArgs,
    short: bool,
    strict_tests: Option<&[PathBuf]>,
    format: CheckFormat,
    actions: Option<&Path>,
    engine: super::engine::Engine,
) -> CliResult {
    let runbooks = args.runbooks.clone().unwrap_or_else(|| sibling(&args.rules, "runbooks"));
    if !args.rules.is_dir() {
        return Err(input_err(format!("rules directory `{}` does not exist (use --rules DIR)", args.rules.display())));
    }
    let (sources, mut diagnostics, ok, (rules, anomaly_count), runbook_count) = match ruleset::load_dirs(&args.rules, &runbooks) {
        Ok(set) => {
            let mut warnings = set.warnings.clone();
            if let Some(paths) = strict_tests {
                let cases: Vec<(String, String)> = case_files(paths)?
                    .into_iter()
                    .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p.display().to_string(), t)))
                    .collect();
                warnings.extend(ruleset::strict_checks(&set, &cases));
                if format == CheckFormat::Text {
                    for (finding_type, book, step) in ruleset::runbook_resolution(&set) {
                        outln!("runbook: {finding_type:<34} -> {book} (cascade step `{step}`)");
                    }
                }
            }
            let (r, a, b) = (set.patterns().count(), set.anomalies().count(), set.runbooks.len());
            let mut sources = set.sources;
            let mut ok = true;
            if let Some(file) = actions {
                let text = std::fs::read_to_string(file).map_err(|e| input_err(format!("--actions {}: {e}", file.display())))?;
                let env = |name: &str| std::env::var(name).ok();
                match vigil_engine::actions::load(&mut sources, &file.display().to_string(), &text, &env) {
                    Ok(config) => warnings.extend(vigil_engine::actions::check_runbooks(&config, &set.runbooks)),
                    Err(errors) => warnings.extend(errors),
                }
                ok = !warnings.iter().any(|d| d.is_error());
            }
            if engine == super::engine::Engine::Spark {
                warnings.extend(ruleset::engine_checks(&set.rules, sql::Dialect::Spark));
                ok = ok && !warnings.iter().any(|d| d.is_error());
            }
            (sources, warnings, ok, (r, a), b)
        }
        Err(f) => (f.sources, f.diagnostics, false, (0, 0), 0),
    };
    diagnostics.sort_by_key(|d| (d.span.file, d.span.start));
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match format {
        CheckFormat::Json => {
            for d in &diagnostics {
                let (line, column) = sources.line_col(d.span);
                let v = serde_json::json!({
                    "file": sources.name(d.span.file),
                    "line": line,
                    "column": column,
                    "level": if d.is_error() { "error" } else { "warning" },
                    "code": d.code.id,
                    "message": d.message,
                });
                outln!("{v}");
            }
        }
        CheckFormat::Text if short => {
            for d in &diagnostics {
                outln!("{}", sources.render_short(d));
            }
        }
        CheckFormat::Text => out!("{}", sources.render(&diagnostics, false)),
    }
    let strict_failed = strict_tests.is_some() && warnings > 0;
    if ok && !strict_failed {
        if format == CheckFormat::Text {
            outln!("ok: {rules} rules, {anomaly_count} anomaly rules, {runbook_count} runbooks, {warnings} warning(s)");
        }
        Ok(())
    } else if ok {
        Err(CliError::Rules(format!("error: --strict: {warnings} warning(s)")))
    } else {
        Err(CliError::Rules(format!("error: {errors} error(s), {warnings} warning(s)")))
    }
}
