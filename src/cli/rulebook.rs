//! `vigil categorize` and `vigil runbook`: categories, severities and the runbook cascade
//! from outside.

use super::*;
use vigil_engine::schema::{Category, Severity, Word};

pub(super) fn categorize(args: &RuleArgs, finding_type: &str, context: &[String]) -> CliResult {
    use vigil_engine::categorize::{parse_context_value, severity_for};
    let set = load_rules(args)?;
    let mut values = std::collections::HashMap::new();
    for pair in context {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| input_err(format!("--context `{pair}`: write NAME=VALUE, e.g. overdue_minutes=120")))?;
        values.insert(k.trim().to_string(), parse_context_value(v.trim()));
    }
    let (by_keyword, keyword) = set.categories.categorize(finding_type);
    let rule = set.patterns().find(|r| r.header.finding_type == finding_type);
    let (category, why_category) = match rule {
        Some(r) if r.header.category_stated.is_some() => (r.header.category, format!("stated by rule {}", r.header.id)),
        _ => (by_keyword, keyword.map(|k| format!("keyword {k}")).unwrap_or_else(|| "fallback".to_string())),
    };
    outln!("finding_type  {finding_type}");
    outln!("category      {category}  ({why_category})");
    let Some(rule) = rule else {
        outln!("severity      unknown: no rule raises {finding_type}");
        return Ok(());
    };
    let outcome = severity_for(rule, &values).map_err(|e| CliError::Eval(format!("error: {e}")))?;
    let why = match outcome.step {
        Some(i) => format!("severity step {i}: the first whose condition holds"),
        None => format!("the base severity of rule {}", rule.header.id),
    };
    outln!("severity      {}  ({why})", outcome.severity);
    if outcome.step.is_none() && !outcome.missing.is_empty() {
        outln!("not given     {} (steps reading them did not match)", outcome.missing.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

/// A word of a closed vocabulary given on the command line.
fn word<T: Word>(text: &str, flag: &str) -> Result<T, CliError> {
    T::parse(text).ok_or_else(|| {
        let all: Vec<&str> = T::ALL.iter().map(|w| w.name()).collect();
        input_err(format!("{flag}: unknown {} `{text}` (one of {})", T::WHAT, all.join(", ")))
    })
}

pub(super) fn runbook_command(args: &RuleArgs, action: RunbookCommand) -> CliResult {
    use vigil_engine::runbook::{self, FindingKey};
    let set = load_rules(args)?;
    match action {
        RunbookCommand::Match { finding_type, category, severity, tenant } => {
            let rule = set.patterns().find(|r| r.header.finding_type == finding_type);
            let category = match category {
                Some(c) => word::<Category>(&c, "--category")?,
                None => rule.map(|r| r.header.category).unwrap_or_else(|| set.categories.categorize(&finding_type).0),
            };
            let severity = match severity {
                Some(s) => word::<Severity>(&s, "--severity")?,
                None => rule.map(|r| r.header.base_severity).unwrap_or(Severity::Medium),
            };
            let key = FindingKey { finding_type: &finding_type, category, severity, tenant: &tenant };
            let (found, step, attempts) = runbook::match_runbook(&set.runbooks, &set.cascade, &key);
            outln!(
                "finding {finding_type} (category {category}, severity {severity}{})",
                if tenant.is_empty() { String::new() } else { format!(", tenant {tenant}") }
            );
            for (i, a) in attempts.iter().enumerate() {
                let whose = if a.step == runbook::RunbookMatch::Otherwise {
                    "fallback".to_string()
                } else if a.tenant_pass {
                    format!("tenant {}", if tenant.is_empty() { "-" } else { &tenant })
                } else {
                    "global".to_string()
                };
                match &a.found {
                    Some(id) => outln!("  {}. {:<20} {:<12} -> {id}", i + 1, a.step, whose),
                    None => outln!("  {}. {:<20} {:<12} no runbook", i + 1, a.step, whose),
                }
            }
            match found {
                Some(r) => outln!("runbook {} (step {step})", r.id),
                None => outln!("no runbook: even the fallback `{}` is missing", set.cascade.fallback),
            }
            Ok(())
        }
        RunbookCommand::Show { id, tenant } => {
            let book = set
                .runbooks
                .iter()
                .find(|r| r.id == id && tenant.is_some() && r.tenant == tenant)
                .or_else(|| set.runbooks.iter().find(|r| r.id == id && r.tenant.is_none()))
                .or_else(|| set.runbooks.iter().find(|r| r.id == id));
            let Some(book) = book else {
                let ids: Vec<&str> = set.runbooks.iter().map(|r| r.id.as_str()).collect();
                let hint =
                    vigil_engine::diag::closest(&id, ids.iter().copied()).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                return Err(input_err(format!("no runbook `{id}`{hint}")));
            };
            outln!("{}: {}", book.id, book.title);
            let matches = match &book.matches {
                runbook::Matches::Finding(f) => format!("finding {f}"),
                runbook::Matches::Class { category, severity: Some(s) } => format!("category {category}, severity {s}"),
                runbook::Matches::Class { category, severity: None } => format!("category {category}"),
                runbook::Matches::Anything => "anything (fallback)".to_string(),
            };
            outln!("matches: {matches}{}", book.tenant.as_ref().map(|t| format!(" (tenant {t})")).unwrap_or_default());
            outln!("escalate after: {} min\n", book.escalate_after_minutes);
            for (i, step) in book.steps.iter().enumerate() {
                outln!("  {}. {step}", i + 1);
            }
            if !book.auto_actions.is_empty() {
                outln!();
                for auto in &book.auto_actions {
                    outln!("  auto {}: {}", auto.label(), auto.switch.name());
                }
            }
            Ok(())
        }
    }
}
