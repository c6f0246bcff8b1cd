//! Keyword categorization of finding types, as written in a `categories` block.
//!
//! Invariant: a [`Categories`] names only the five contract categories.

use crate::diag::Diagnostic;
use crate::schema::Category;
use crate::syntax::ast::{CategoriesDef, Span};

/// Ordered keyword lists with a fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Categories {
    /// (category, keywords), tried in order.
    pub rules: Vec<(Category, Vec<String>)>,
    /// The category when no keyword matches.
    pub fallback: Category,
    /// The `categories` block, when the rule set has one.
    pub span: Option<Span>,
}

impl Default for Categories {
    /// Without a `categories` block everything is OPERATIONAL.
    fn default() -> Self {
        Categories { rules: Vec::new(), fallback: Category::Operational, span: None }
    }
}

impl Categories {
    /// The category of a finding type and the keyword that chose it (`None`: the fallback).
    pub fn categorize(&self, finding_type: &str) -> (Category, Option<&str>) {
        let upper = finding_type.to_ascii_uppercase();
        for (category, keywords) in &self.rules {
            if let Some(k) = keywords.iter().find(|k| upper.contains(k.as_str())) {
                return (*category, Some(k));
            }
        }
        (self.fallback, None)
    }

    /// Keywords listed under more than one category: (keyword, first, later).
    pub fn shared_keywords(&self) -> Vec<(String, Category, Category)> {
        let mut out = Vec::new();
        for (i, (first, keywords)) in self.rules.iter().enumerate() {
            for (later, others) in &self.rules[i + 1..] {
                out.extend(keywords.iter().filter(|k| others.contains(k)).map(|k| (k.clone(), *first, *later)));
            }
        }
        out
    }
}

/// Checks a `categories` block.
pub fn check_categories(def: &CategoriesDef) -> Result<Categories, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut valid = |id: &crate::syntax::ast::Ident| match crate::diag::parse_word::<Category>(id) {
        Ok(c) => Some(c),
        Err(d) => {
            errors.push(d);
            None
        }
    };
    let rules: Vec<(Category, Vec<String>)> =
        def.rules.iter().filter_map(|(c, ks)| valid(c).map(|c| (c, ks.iter().map(|k| k.name.to_ascii_uppercase()).collect()))).collect();
    let fallback = def.fallback.as_ref().map(&mut valid);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Categories { rules, fallback: fallback.flatten().unwrap_or(Category::Operational), span: Some(def.span) })
}

/// Parses a `--context` value: a number, a duration (`90m`), true/false, null, or text.
pub fn parse_context_value(text: &str) -> crate::check::Value {
    use crate::check::Value;
    if let Ok(n) = text.parse::<f64>() {
        return Value::Number(n);
    }
    if let Some(d) = crate::syntax::duration_micros(text) {
        return Value::Duration(d);
    }
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => Value::String(text.to_string()),
    }
}

/// The outcome of [`severity_for`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityOutcome {
    /// The severity.
    pub severity: crate::schema::Severity,
    /// The 1-based step that matched (`None`: the base severity).
    pub step: Option<usize>,
    /// Names the steps read that the context did not give (or gave with another type).
    pub missing: std::collections::BTreeSet<String>,
}

/// The severity of a finding of `rule` whose figures are `given` (name -> value),
/// as the origin system's `categorize_finding(type, context)` gave it. The steps go
/// through the planner and DuckDB like the rule itself ([`crate::plan::plan_context_severity`]),
/// so there is one evaluator of the language. A `given` parameter replaces its default.
pub fn severity_for(
    rule: &crate::check::CheckedRule,
    given: &std::collections::HashMap<String, crate::check::Value>,
) -> Result<SeverityOutcome, duckdb::Error> {
    use crate::check::TKind;
    let mut params = crate::plan::default_params(rule);
    for p in &rule.params {
        if let Some(v) = given.get(&p.name).filter(|v| v.ty() == p.default.ty()) {
            params.values.insert(p.name.clone(), v.clone());
        }
    }
    let mut missing = std::collections::BTreeSet::new();
    for (_, cond) in &rule.severity_steps {
        cond.walk(&mut |e| {
            let (name, ty) = match &e.kind {
                TKind::Let(name) => (name.as_str(), e.ty),
                TKind::Column { scope: 0, column } => (*column, e.ty),
                _ => return,
            };
            if given.get(name).is_none_or(|v| v.ty() != ty) {
                missing.insert(name.to_string());
            }
        });
    }
    let query = crate::plan::plan_context_severity(rule, &params, given);
    let conn = crate::load::open_database()?;
    let step: i64 = conn.query_row(&crate::sql::render(&query, &[], crate::sql::Dialect::DuckDb), [], |r| r.get(0))?;
    let step = usize::try_from(step).ok().filter(|s| *s > 0);
    let severity = match step.and_then(|s| rule.severity_steps.get(s - 1)) {
        Some((level, _)) => *level,
        None => rule.header.base_severity,
    };
    Ok(SeverityOutcome { severity, step, missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Categories {
        let kw = |c: Category, ks: &[&str]| (c, ks.iter().map(|k| k.to_string()).collect());
        Categories {
            rules: vec![
                kw(Category::Safety, &["LONE_WORKER", "PANIC", "EMERGENCY", "DISTRESS"]),
                kw(Category::Security, &["TOUR", "CHECKPOINT", "GEOFENCE", "ACCESS", "PHANTOM"]),
                kw(Category::DeviceHealth, &["DEVICE", "OFFLINE", "GPS", "BATTERY", "CONNECTIVITY", "SIGNAL"]),
                kw(Category::Compliance, &["REPORT", "ATTENDANCE", "LEGAL"]),
                kw(Category::Operational, &["SLA", "TASK", "SCHEDULE", "SILENT", "COVERAGE", "ESCALATION", "RESOURCE"]),
            ],
            fallback: Category::Operational,
            span: None,
        }
    }

    #[test]
    fn first_match_wins() {
        let c = catalog();
        assert_eq!(c.categorize("EMERGENCY_ESCALATION_DELAYED"), (Category::Safety, Some("EMERGENCY")));
        assert_eq!(c.categorize("CORRELATION_ESCALATION_CHAIN_BREAK"), (Category::Operational, Some("ESCALATION")));
        assert_eq!(c.categorize("CRITICAL_SIGNAL_PHONE_EVENTS_LOW"), (Category::DeviceHealth, Some("SIGNAL")));
        assert_eq!(c.categorize("FIELD_SUPPORT_DELAYED"), (Category::Operational, None));
    }
}
