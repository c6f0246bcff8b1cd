//! Keyword categorization of finding types, as written in a `categories` block.
//!
//! Invariant: a [`Categories`] names only the five contract categories.

use crate::diag::{codes, Diagnostic};
use crate::schema;
use crate::syntax::ast::{CategoriesDef, Span};

/// Ordered keyword lists with a fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Categories {
    /// (category, keywords), tried in order.
    pub rules: Vec<(String, Vec<String>)>,
    /// The category when no keyword matches.
    pub fallback: String,
    /// The `categories` block, when the rule set has one.
    pub span: Option<Span>,
}

impl Default for Categories {
    /// Without a `categories` block everything is OPERATIONAL.
    fn default() -> Self {
        Categories { rules: Vec::new(), fallback: "OPERATIONAL".to_string(), span: None }
    }
}

impl Categories {
    /// The category of a finding type and the keyword that chose it (`None`: the fallback).
    pub fn categorize(&self, finding_type: &str) -> (&str, Option<&str>) {
        let upper = finding_type.to_ascii_uppercase();
        for (category, keywords) in &self.rules {
            if let Some(k) = keywords.iter().find(|k| upper.contains(k.as_str())) {
                return (category, Some(k));
            }
        }
        (&self.fallback, None)
    }

    /// Keywords listed under more than one category: (keyword, first, later).
    pub fn shared_keywords(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (i, (first, keywords)) in self.rules.iter().enumerate() {
            for (later, others) in &self.rules[i + 1..] {
                out.extend(keywords.iter().filter(|k| others.contains(k)).map(|k| (k.clone(), first.clone(), later.clone())));
            }
        }
        out
    }
}

/// Checks a `categories` block.
pub fn check_categories(def: &CategoriesDef) -> Result<Categories, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut valid = |id: &crate::syntax::ast::Ident| {
        if !schema::CATEGORIES.contains(&id.name.as_str()) {
            errors.push(
                Diagnostic::error(codes::UNKNOWN_VALUE, format!("unknown category `{}`", id.name), id.span, "not a category")
                    .suggest(&id.name, schema::CATEGORIES.iter().copied())
                    .hint(format!("categories are {}", schema::CATEGORIES.join(", "))),
            );
        }
    };
    for (c, _) in &def.rules {
        valid(c);
    }
    if let Some(f) = &def.fallback {
        valid(f);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Categories {
        rules: def.rules.iter().map(|(c, ks)| (c.name.clone(), ks.iter().map(|k| k.name.to_ascii_uppercase()).collect())).collect(),
        fallback: def.fallback.as_ref().map(|f| f.name.clone()).unwrap_or_else(|| "OPERATIONAL".to_string()),
        span: Some(def.span),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Categories {
        let kw = |c: &str, ks: &[&str]| (c.to_string(), ks.iter().map(|k| k.to_string()).collect());
        Categories {
            rules: vec![
                kw("SAFETY", &["LONE_WORKER", "PANIC", "EMERGENCY", "DISTRESS"]),
                kw("SECURITY", &["TOUR", "CHECKPOINT", "GEOFENCE", "ACCESS", "PHANTOM"]),
                kw("DEVICE_HEALTH", &["DEVICE", "OFFLINE", "GPS", "BATTERY", "CONNECTIVITY", "SIGNAL"]),
                kw("COMPLIANCE", &["REPORT", "ATTENDANCE", "LEGAL"]),
                kw("OPERATIONAL", &["SLA", "TASK", "SCHEDULE", "SILENT", "COVERAGE", "ESCALATION", "RESOURCE"]),
            ],
            fallback: "OPERATIONAL".into(),
            span: None,
        }
    }

    #[test]
    fn first_match_wins() {
        let c = catalog();
        assert_eq!(c.categorize("EMERGENCY_ESCALATION_DELAYED"), ("SAFETY", Some("EMERGENCY")));
        assert_eq!(c.categorize("CORRELATION_ESCALATION_CHAIN_BREAK"), ("OPERATIONAL", Some("ESCALATION")));
        assert_eq!(c.categorize("CRITICAL_SIGNAL_PHONE_EVENTS_LOW"), ("DEVICE_HEALTH", Some("SIGNAL")));
        assert_eq!(c.categorize("FIELD_SUPPORT_DELAYED"), ("OPERATIONAL", None));
    }
}
