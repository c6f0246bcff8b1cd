//! Runbooks: what an operator does about a finding, and the matching cascade.
//!
//! Invariant: a [`Runbook`] has a title, at least one step and an escalation
//! SLA; every runbook but `GENERIC` says what it matches.

use crate::diag::{codes, Diagnostic};
use crate::schema::{Category, Severity};
use crate::syntax::ast::{CascadeDef, Literal, MatchField, RunbookDef, RunbookItem, Span};

/// The runbook every finding falls back to.
pub const GENERIC: &str = "GENERIC";

/// What a runbook is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Matches {
    /// One finding type.
    Finding(String),
    /// A category, optionally only at one severity.
    Class { category: Category, severity: Option<Severity> },
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
    /// Where its `matches` line names what it matches (its block without one).
    pub matches_span: Span,
    /// Minutes before the operator escalates.
    pub escalate_after_minutes: i64,
    /// Ordered steps.
    pub steps: Vec<String>,
    /// Auto-actions in order, with their switch (see [`AutoAction`]).
    pub auto_actions: Vec<AutoAction>,
    /// Where it was defined.
    pub span: Span,
}

/// A runbook's own switch for one auto-action: `auto X off` never runs it, `auto X`
/// runs it at most in dry-run (records what it would send), `auto X on` lets it go
/// live where the actions configuration also says so (see `actions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Switch {
    /// `auto X off`
    Off,
    /// `auto X` (no switch written)
    Default,
    /// `auto X on`
    On,
}

impl Switch {
    /// As written in a runbook (`default` when no switch is written).
    pub fn name(self) -> &'static str {
        match self {
            Switch::Off => "off",
            Switch::Default => "default",
            Switch::On => "on",
        }
    }
}

/// One `auto NAME[:TARGET] [on|off]` line of a runbook, in order: the runbook's steps
/// that act. `escalate:ops_manager` is the action `escalate` to the target `ops_manager`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoAction {
    /// The action's name (defined in the actions configuration).
    pub name: String,
    /// Who or what it is for, after the colon.
    pub target: Option<String>,
    /// The runbook's switch.
    pub switch: Switch,
    /// Where the line names the action.
    pub span: Span,
}

impl AutoAction {
    /// `name` or `name:target`, as written.
    pub fn label(&self) -> String {
        match &self.target {
            Some(t) => format!("{}:{t}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Checks a parsed runbook.
pub fn check_runbook(def: &RunbookDef) -> Result<Runbook, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut title = None;
    let mut tenant = None;
    let mut matches = None;
    let mut matches_span = def.span;
    let mut sla = None;
    let mut steps = Vec::new();
    let mut auto_actions = Vec::new();
    for item in &def.items {
        match item {
            RunbookItem::Title(t) => title = Some(t.value.clone()),
            RunbookItem::Tenant(t) => tenant = Some(t.value.clone()),
            RunbookItem::MatchesFinding(f) => {
                matches = Some(Matches::Finding(f.name.clone()));
                matches_span = f.span;
            }
            RunbookItem::MatchesClass { category, severity } => {
                let category = crate::diag::parse_word::<Category>(category);
                let severity = severity.as_ref().map(crate::diag::parse_word::<Severity>).transpose();
                match (category, severity) {
                    (Ok(category), Ok(severity)) => matches = Some(Matches::Class { category, severity }),
                    (category, severity) => errors.extend(category.err().into_iter().chain(severity.err())),
                }
            }
            RunbookItem::EscalateAfter(Literal::Duration { micros, span }) => {
                if *micros <= 0 || micros % 60_000_000 != 0 {
                    errors.push(
                        Diagnostic::error(
                            codes::TYPE_MISMATCH,
                            "escalate_after must be a whole number of minutes, at least 1m",
                            *span,
                            "not whole minutes",
                        )
                        .hint("escalation SLAs are kept in minutes: write e.g. `escalate_after 1m` or `escalate_after 15m`"),
                    );
                }
                sla = Some(micros / 60_000_000);
            }
            RunbookItem::EscalateAfter(other) => errors.push(Diagnostic::error(
                codes::TYPE_MISMATCH,
                "escalate_after takes a duration such as 15m",
                other.span(),
                "not a duration",
            )),
            RunbookItem::Step(s) => steps.push(s.value.clone()),
            RunbookItem::Auto { action, enabled } => {
                let (name, target) = match action.name.split_once(':') {
                    Some((name, target)) => (name.to_string(), Some(target.to_string())),
                    None => (action.name.clone(), None),
                };
                let switch = match enabled {
                    None => Switch::Default,
                    Some(true) => Switch::On,
                    Some(false) => Switch::Off,
                };
                auto_actions.push(AutoAction { name, target, switch, span: action.span });
            }
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
        matches_span,
        escalate_after_minutes: sla.unwrap_or(0),
        steps,
        auto_actions,
        span: def.span,
    })
}

/// A step of the cascade: which fields of a finding a runbook's `matches` line
/// must equal. Only these three can ever match (the checker refuses the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CascadeStep {
    /// `matches finding TYPE`
    FindingType,
    /// `matches category C severity S`
    CategorySeverity,
    /// `matches category C`
    Category,
}

impl CascadeStep {
    /// Its name, as written into findings' `runbook_match`.
    pub fn name(self) -> &'static str {
        match self {
            CascadeStep::FindingType => "finding_type",
            CascadeStep::CategorySeverity => "category+severity",
            CascadeStep::Category => "category",
        }
    }

    /// The fields it compares, sorted.
    pub fn fields(self) -> &'static [MatchField] {
        match self {
            CascadeStep::FindingType => &[MatchField::FindingType],
            CascadeStep::CategorySeverity => &[MatchField::Category, MatchField::Severity],
            CascadeStep::Category => &[MatchField::Category],
        }
    }

    /// The step comparing exactly these fields (sorted, distinct), if a runbook can match it.
    fn of_fields(sorted: &[MatchField]) -> Option<CascadeStep> {
        [CascadeStep::FindingType, CascadeStep::CategorySeverity, CascadeStep::Category].into_iter().find(|s| s.fields() == sorted)
    }
}

/// Where the cascade found a finding's runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunbookMatch {
    /// at this step
    Step(CascadeStep),
    /// no step matched: the fallback runbook
    Otherwise,
}

impl RunbookMatch {
    /// Its name in findings' `runbook_match`.
    pub fn name(self) -> &'static str {
        match self {
            RunbookMatch::Step(s) => s.name(),
            RunbookMatch::Otherwise => "otherwise",
        }
    }
}

impl std::fmt::Display for RunbookMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl serde::Serialize for RunbookMatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The runbook matching cascade (written in a `cascade { ... }` block).
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// The steps, in order.
    pub steps: Vec<CascadeStep>,
    /// The runbook when no step matches.
    pub fallback: String,
}

impl Default for Cascade {
    /// CATALOG.md's cascade: exact type, category + severity, category, GENERIC.
    fn default() -> Self {
        Cascade {
            steps: vec![CascadeStep::FindingType, CascadeStep::CategorySeverity, CascadeStep::Category],
            fallback: GENERIC.to_string(),
        }
    }
}

/// The step a runbook's `matches` line answers (`None`: the GENERIC runbook, which
/// only the fallback reaches).
fn step_of(m: &Matches) -> Option<CascadeStep> {
    match m {
        Matches::Finding(_) => Some(CascadeStep::FindingType),
        Matches::Class { severity: Some(_), .. } => Some(CascadeStep::CategorySeverity),
        Matches::Class { severity: None, .. } => Some(CascadeStep::Category),
        Matches::Anything => None,
    }
}

/// What a finding looks like to the cascade.
#[derive(Debug, Clone, Copy)]
pub struct FindingKey<'a> {
    /// Its type.
    pub finding_type: &'a str,
    /// Its category.
    pub category: Category,
    /// Its severity.
    pub severity: Severity,
    /// Its tenant.
    pub tenant: &'a str,
}

fn runbook_matches(r: &Runbook, step: CascadeStep, key: &FindingKey) -> bool {
    if step_of(&r.matches) != Some(step) {
        return false;
    }
    match &r.matches {
        Matches::Finding(f) => f == key.finding_type,
        Matches::Class { category, severity } => *category == key.category && severity.is_none_or(|s| s == key.severity),
        Matches::Anything => false,
    }
}

/// One attempt of the cascade, for `vigil runbook match`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The step.
    pub step: RunbookMatch,
    /// True for the tenant's own runbooks, false for global ones.
    pub tenant_pass: bool,
    /// The runbook found, if any.
    pub found: Option<String>,
}

/// Finds the runbook for a finding by walking the cascade; at each step the
/// tenant's own runbooks come before global ones. Returns the runbook (`None`
/// only when even the fallback is missing), the step that matched, and every
/// attempt made.
pub fn match_runbook<'a>(
    runbooks: &'a [Runbook],
    cascade: &Cascade,
    key: &FindingKey,
) -> (Option<&'a Runbook>, RunbookMatch, Vec<Attempt>) {
    let mut attempts = Vec::new();
    for step in &cascade.steps {
        for tenant_pass in [true, false] {
            let owner_fits = |r: &Runbook| if tenant_pass { r.tenant.as_deref() == Some(key.tenant) } else { r.tenant.is_none() };
            let found = runbooks.iter().find(|r| owner_fits(r) && runbook_matches(r, *step, key));
            attempts.push(Attempt { step: RunbookMatch::Step(*step), tenant_pass, found: found.map(|r| r.id.clone()) });
            if let Some(r) = found {
                return (Some(r), RunbookMatch::Step(*step), attempts);
            }
        }
    }
    let by_id = |tenant: Option<&str>| runbooks.iter().find(|r| r.id == cascade.fallback && r.tenant.as_deref() == tenant);
    let fallback = by_id(Some(key.tenant)).or_else(|| by_id(None));
    attempts.push(Attempt { step: RunbookMatch::Otherwise, tenant_pass: false, found: fallback.map(|r| r.id.clone()) });
    (fallback, RunbookMatch::Otherwise, attempts)
}

/// Checks a `cascade` block: steps must name distinct fields, a step may not
/// repeat, and the fallback must be a runbook of the set.
pub fn check_cascade(def: &CascadeDef, runbooks: &[Runbook]) -> Result<Cascade, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut steps: Vec<CascadeStep> = Vec::new();
    for (fields, span) in &def.steps {
        let mut sorted = fields.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != fields.len() {
            errors.push(Diagnostic::error(codes::REPEATED_ITEM, "a step names the same field twice", *span, "repeated field"));
        } else {
            match CascadeStep::of_fields(&sorted) {
                Some(step) if steps.contains(&step) => errors.push(Diagnostic::error(
                    codes::REPEATED_ITEM,
                    "this step repeats an earlier one and can never match",
                    *span,
                    "unreachable step",
                )),
                Some(step) => steps.push(step),
                None => errors.push(
                    Diagnostic::error(codes::UNKNOWN_VALUE, "no runbook can match this step", *span, "unmatched combination")
                        .hint("runbooks match `finding TYPE`, `category C` or `category C severity S`"),
                ),
            }
        }
    }
    if !runbooks.iter().any(|r| r.id == def.fallback.name) {
        errors.push(
            Diagnostic::error(
                codes::UNKNOWN_NAME,
                format!("no runbook `{}`", def.fallback.name),
                def.fallback.span,
                "unknown fallback runbook",
            )
            .suggest(&def.fallback.name, runbooks.iter().map(|r| r.id.as_str())),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Cascade { steps, fallback: def.fallback.name.clone() })
}
