//! Backtests: what a rule change does to the findings over a span of history.
//!
//! Two rule sets (the current one and a baseline) are evaluated at the same ticks
//! over the same signals, and compared tick by tick: a finding (its identity) that
//! holds at a tick under one set and not under the other is added or removed there;
//! one that holds under both with another severity has changed. Rules whose
//! evaluation cannot differ (the same plan, title, category, scripts and runbook
//! inputs) are not evaluated twice: they are reported as unchanged.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::exec::{self, ExecError, Filter, Finding, Identity};
use crate::load::Signals;
use crate::ruleset::RuleSet;

/// One finding that differs, with the first tick where it does.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The finding as the set that has it produced it (the current set for added
    /// and changed findings, the baseline for removed ones).
    pub finding: Finding,
    /// For a severity change: the baseline's severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_severity: Option<String>,
    /// The first tick where it differs, ISO-8601 UTC.
    pub first_tick: String,
    /// At how many ticks it differs.
    pub ticks: usize,
}

/// How one rule's findings differ.
#[derive(Debug, Clone, Serialize)]
pub struct RuleImpact {
    /// The rule id.
    pub rule: String,
    /// `changed`, `unchanged` (evaluated, same findings), `same_plan` (not evaluated:
    /// nothing that shapes its findings changed), `added` (only in the current set) or
    /// `removed` (only in the baseline).
    pub status: &'static str,
    /// Findings that hold at some tick under the current set and not the baseline.
    pub added: usize,
    /// Findings that hold at some tick under the baseline and not the current set.
    pub removed: usize,
    /// Findings that hold under both at some tick with another severity.
    pub severity_changed: usize,
    /// The first tick with any difference, ISO-8601 UTC.
    pub first_difference: Option<String>,
    /// A few added findings.
    pub added_examples: Vec<Example>,
    /// A few removed findings.
    pub removed_examples: Vec<Example>,
    /// A few findings whose severity changed.
    pub changed_examples: Vec<Example>,
}

impl RuleImpact {
    /// Does this rule's output differ?
    pub fn differs(&self) -> bool {
        self.added + self.removed + self.severity_changed > 0
    }
}

/// The impact of a rule change over a span of history.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// How many ticks were evaluated.
    pub ticks: usize,
    /// First tick, ISO-8601 UTC.
    pub from: String,
    /// Last tick, ISO-8601 UTC.
    pub to: String,
    /// Per rule, in id order.
    pub rules: Vec<RuleImpact>,
}

impl Impact {
    /// Does any rule's output differ?
    pub fn differs(&self) -> bool {
        self.rules.iter().any(RuleImpact::differs)
    }
}

/// What shapes a rule's findings, as text: equal fingerprints give equal findings
/// on any signals, so such a rule need not be evaluated twice.
fn fingerprints(set: &RuleSet, probe: &[i64]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (rule, planned) in set.planned() {
        let scripts: Vec<&str> = rule.scripts.iter().map(|s| set.sources.slice(s.span)).collect();
        let text = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{}",
            rule.header.finding_type,
            rule.header.title,
            rule.header.category,
            crate::sql::render(&planned.query, probe, crate::sql::Dialect::DuckDb),
            rule.header.actions,
            scripts.join("\u{0}")
        );
        out.insert(rule.header.id.clone(), text);
    }
    for a in set.anomalies() {
        let text = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}",
            a.header.finding_type,
            a.header.title,
            a.header.category,
            crate::anomaly::evaluation_sql(a, probe),
            a.header.actions
        );
        out.insert(a.header.id.clone(), text);
    }
    out
}

/// Evaluates `current` and `baseline` at `ticks` and compares them rule by rule.
/// Runbook matching is part of each finding but not of the comparison: the
/// impact is on what fires and how severe it is. `examples` bounds the examples
/// kept per rule and kind.
pub fn backtest(signals: &Signals, current: &RuleSet, baseline: &RuleSet, ticks: &[i64], examples: usize) -> (Impact, Vec<ExecError>) {
    let mut ticks = ticks.to_vec();
    ticks.sort_unstable();
    ticks.dedup();
    let probe = [ticks.first().copied().unwrap_or(0), ticks.last().copied().unwrap_or(0)];
    let (now_prints, base_prints) = (fingerprints(current, &probe), fingerprints(baseline, &probe));
    let mut ids: Vec<&String> = now_prints.keys().chain(base_prints.keys()).collect();
    ids.sort();
    ids.dedup();
    let to_run: Vec<String> = ids.iter().filter(|id| now_prints.get(**id) != base_prints.get(**id)).map(|id| (*id).clone()).collect();
    let filter = Filter { rules: to_run.iter().cloned().collect(), ..Default::default() };
    let mut failures = Vec::new();
    let mut now_findings = Vec::new();
    let mut base_findings = Vec::new();
    if !to_run.is_empty() {
        let (found, failed) = exec::evaluate_ticks(signals, current, &ticks, &filter);
        now_findings = found;
        failures.extend(failed);
        let (found, failed) = exec::evaluate_ticks(signals, baseline, &ticks, &filter);
        base_findings = found;
        failures.extend(failed.into_iter().map(|e| ExecError { rule: format!("{} (baseline)", e.rule), message: e.message }));
    }
    let tick_index: HashMap<String, usize> = ticks.iter().enumerate().map(|(i, t)| (exec::iso(*t), i)).collect();
    let mut rules = Vec::new();
    for id in ids {
        let status = match (now_prints.contains_key(id), base_prints.contains_key(id)) {
            (true, false) => "added",
            (false, true) => "removed",
            _ if now_prints.get(id) == base_prints.get(id) => "same_plan",
            _ => "changed",
        };
        let of_rule = |all: &[Finding]| -> Vec<Finding> { all.iter().filter(|f| f.rule == *id).cloned().collect() };
        let mut impact = compare_rule(id, &of_rule(&now_findings), &of_rule(&base_findings), &tick_index, examples);
        impact.status = if status == "changed" && !impact.differs() { "unchanged" } else { status };
        rules.push(impact);
    }
    let impact = Impact {
        ticks: ticks.len(),
        from: ticks.first().map(|t| exec::iso(*t)).unwrap_or_default(),
        to: ticks.last().map(|t| exec::iso(*t)).unwrap_or_default(),
        rules,
    };
    (impact, failures)
}

/// Per identity: the ticks (by index) where it holds, with the finding there.
type Holdings = BTreeMap<Identity, BTreeMap<usize, Finding>>;

fn holdings(findings: &[Finding], tick_index: &HashMap<String, usize>) -> Holdings {
    let mut out: Holdings = BTreeMap::new();
    for f in findings {
        if let Some(i) = tick_index.get(&f.detected_at) {
            out.entry(f.identity()).or_default().insert(*i, f.clone());
        }
    }
    out
}

fn compare_rule(id: &str, now: &[Finding], base: &[Finding], tick_index: &HashMap<String, usize>, examples: usize) -> RuleImpact {
    let (now, base) = (holdings(now, tick_index), holdings(base, tick_index));
    let mut impact = RuleImpact {
        rule: id.to_string(),
        status: "changed",
        added: 0,
        removed: 0,
        severity_changed: 0,
        first_difference: None,
        added_examples: Vec::new(),
        removed_examples: Vec::new(),
        changed_examples: Vec::new(),
    };
    let mut first: Option<(usize, String)> = None;
    let mut note_first = |tick: usize, at: &str| {
        if first.as_ref().is_none_or(|(t, _)| tick < *t) {
            first = Some((tick, at.to_string()));
        }
    };
    let empty = BTreeMap::new();
    // Ticks where one side holds and the other does not.
    let one_sided = |mine: &Holdings, other: &Holdings, count: &mut usize, kept: &mut Vec<Example>, note: &mut dyn FnMut(usize, &str)| {
        for (identity, at) in mine {
            let theirs = other.get(identity).unwrap_or(&empty);
            let only: Vec<(&usize, &Finding)> = at.iter().filter(|(t, _)| !theirs.contains_key(*t)).collect();
            if let Some((tick, finding)) = only.first() {
                *count += 1;
                note(**tick, &finding.detected_at);
                if kept.len() < examples {
                    kept.push(Example {
                        finding: (*finding).clone(),
                        baseline_severity: None,
                        first_tick: finding.detected_at.clone(),
                        ticks: only.len(),
                    });
                }
            }
        }
    };
    one_sided(&now, &base, &mut impact.added, &mut impact.added_examples, &mut note_first);
    one_sided(&base, &now, &mut impact.removed, &mut impact.removed_examples, &mut note_first);
    for (identity, at) in &now {
        let Some(theirs) = base.get(identity) else { continue };
        let changed: Vec<(&Finding, &Finding)> =
            at.iter().filter_map(|(t, f)| theirs.get(t).filter(|b| b.severity != f.severity).map(|b| (f, b))).collect();
        if let Some((f, b)) = changed.first() {
            impact.severity_changed += 1;
            if let Some(i) = tick_index.get(&f.detected_at) {
                note_first(*i, &f.detected_at);
            }
            if impact.changed_examples.len() < examples {
                impact.changed_examples.push(Example {
                    finding: (*f).clone(),
                    baseline_severity: Some(b.severity.clone()),
                    first_tick: f.detected_at.clone(),
                    ticks: changed.len(),
                });
            }
        }
    }
    impact.first_difference = first.map(|(_, at)| at);
    impact
}
