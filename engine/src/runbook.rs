//! Runbooks: what an operator does about a finding, and the matching cascade.
//!
//! Invariant: a [`Runbook`] has a title, at least one step and an escalation
//! SLA; every runbook but `GENERIC` says what it matches.

use crate::diag::{codes, Diagnostic};
use crate::schema;
use crate::syntax::ast::{Literal, RunbookDef, RunbookItem, Span};

/// The runbook every finding falls back to.
pub const GENERIC: &str = "GENERIC";

/// What a runbook is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Matches {
    /// One finding type.
    Finding(String),
    /// A category, optionally only at one severity.
    Class { category: String, severity: Option<String> },
    /// Anything (only `GENERIC`).
    Anything,
}

/// A checked runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// A tenant's own runbook, or global (`None`).
    pub tenant: Option<String>,
    /// What it matches.
    pub matches: Matches,
    /// Minutes before the operator escalates.
    pub escalate_after_minutes: i64,
    /// Ordered steps.
    pub steps: Vec<String>,
    /// Auto-actions with their switch (off by default, never run by the engine yet).
    pub auto_actions: Vec<(String, bool)>,
    /// Where it was defined.
    pub span: Span,
}

/// The cascade step that matched a finding to a runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchStep {
    /// 1: exact finding type
    FindingType,
    /// 2: category and severity
    CategorySeverity,
    /// 3: category
    Category,
    /// 4: GENERIC
    Generic,
}

impl MatchStep {
    /// The name written into findings.
    pub fn name(self) -> &'static str {
        match self {
            MatchStep::FindingType => "finding_type",
            MatchStep::CategorySeverity => "category_severity",
            MatchStep::Category => "category",
            MatchStep::Generic => "generic",
        }
    }
}

/// Checks a parsed runbook.
pub fn check_runbook(def: &RunbookDef) -> Result<Runbook, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut title = None;
    let mut tenant = None;
    let mut matches = None;
    let mut sla = None;
    let mut steps = Vec::new();
    let mut auto_actions = Vec::new();
    for item in &def.items {
        match item {
            RunbookItem::Title(t) => title = Some(t.value.clone()),
            RunbookItem::Tenant(t) => tenant = Some(t.value.clone()),
            RunbookItem::MatchesFinding(f) => matches = Some(Matches::Finding(f.name.clone())),
            RunbookItem::MatchesClass { category, severity } => {
                if !schema::CATEGORIES.contains(&category.name.as_str()) {
                    errors.push(
                        Diagnostic::error(
                            codes::UNKNOWN_VALUE,
                            format!("unknown category `{}`", category.name),
                            category.span,
                            "not a category",
                        )
                        .suggest(&category.name, schema::CATEGORIES.iter().copied()),
                    );
                }
                if let Some(s) = severity {
                    if !schema::SEVERITIES.contains(&s.name.as_str()) {
                        errors.push(
                            Diagnostic::error(codes::UNKNOWN_VALUE, format!("unknown severity `{}`", s.name), s.span, "not a severity")
                                .suggest(&s.name, schema::SEVERITIES.iter().copied()),
                        );
                    }
                }
                matches = Some(Matches::Class { category: category.name.clone(), severity: severity.as_ref().map(|s| s.name.clone()) });
            }
            RunbookItem::EscalateAfter(Literal::Duration { micros, .. }) => sla = Some(micros / 60_000_000),
            RunbookItem::EscalateAfter(other) => errors.push(Diagnostic::error(
                codes::TYPE_MISMATCH,
                "escalate_after takes a duration such as 15m",
                other.span(),
                "not a duration",
            )),
            RunbookItem::Step(s) => steps.push(s.value.clone()),
            RunbookItem::Auto { action, enabled } => auto_actions.push((action.name.clone(), *enabled)),
        }
    }
    let head = Span { file: def.span.file, start: def.span.start, end: def.id.span.end };
    let missing = |what: &str, hint: &str| {
        Diagnostic::error(codes::RUNBOOK_INCOMPLETE, format!("runbook `{}` has no {what}", def.id.name), head, "this runbook")
            .hint(hint.to_string())
    };
    if title.is_none() {
        errors.push(missing("title", "title \"Silent site\""));
    }
    if steps.is_empty() {
        errors.push(missing("steps", "step \"Call the guard on duty\""));
    }
    if sla.is_none() {
        errors.push(missing("escalation SLA", "escalate_after 15m"));
    }
    let matches = match matches {
        Some(m) => m,
        None if def.id.name == GENERIC => Matches::Anything,
        None => {
            errors.push(missing("`matches` line", "matches finding CORRELATION_SILENT_SITE, or matches category SAFETY severity CRITICAL"));
            Matches::Anything
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Runbook {
        id: def.id.name.clone(),
        title: title.unwrap_or_default(),
        tenant,
        matches,
        escalate_after_minutes: sla.unwrap_or(0),
        steps,
        auto_actions,
        span: def.span,
    })
}

/// Finds the runbook for a finding: exact type, category + severity, category,
/// GENERIC; at each step the tenant's own runbooks before global ones.
pub fn match_runbook<'a>(
    runbooks: &'a [Runbook],
    finding_type: &str,
    category: &str,
    severity: &str,
    tenant: &str,
) -> (Option<&'a Runbook>, MatchStep) {
    let test = |step: MatchStep, m: &Matches| match step {
        MatchStep::FindingType => matches!(m, Matches::Finding(f) if f == finding_type),
        MatchStep::CategorySeverity => matches!(m, Matches::Class { category: c, severity: Some(s) } if c == category && s == severity),
        MatchStep::Category => matches!(m, Matches::Class { category: c, severity: None } if c == category),
        MatchStep::Generic => false,
    };
    for step in [MatchStep::FindingType, MatchStep::CategorySeverity, MatchStep::Category] {
        for tenant_pass in [true, false] {
            let owner_fits = |r: &Runbook| if tenant_pass { r.tenant.as_deref() == Some(tenant) } else { r.tenant.is_none() };
            if let Some(r) = runbooks.iter().find(|r| test(step, &r.matches) && owner_fits(r)) {
                return (Some(r), step);
            }
        }
    }
    let generic = runbooks
        .iter()
        .find(|r| r.id == GENERIC && r.tenant.as_deref() == Some(tenant))
        .or_else(|| runbooks.iter().find(|r| r.id == GENERIC && r.tenant.is_none()));
    (generic, MatchStep::Generic)
}
