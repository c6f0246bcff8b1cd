//! Stage 4, execute: run planned SQL on DuckDB and turn rows into [`Finding`]s.
//!
//! Invariant: the findings of an evaluation are sorted by (detected_at,
//! tenant_id, site_id, finding_type, guard_id, entity_id), NULLs first, so two
//! runs over the same input print identical bytes.

pub mod backtest;
pub mod load;
#[cfg(feature = "spark")]
pub mod spark;

pub use crate::time::{format_duration, iso};

use std::collections::{BTreeMap, HashMap, HashSet};

use duckdb::types::Value as DbValue;
use serde::Serialize;

use crate::check::CheckedRule;
use crate::load::Signals;
use crate::plan::{self, ParamValues, SqlPlan};
use crate::ruleset::RuleSet;
use crate::runbook;
use crate::schema::{Severity, Ty, Word};
use crate::script::ScriptRole;
use crate::sql;

/// One finding, with every field of CONTRACT.md.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// e.g. CORRELATION_SILENT_SITE
    pub finding_type: String,
    /// id of the rule that raised it
    pub rule: String,
    /// tenant
    pub tenant_id: String,
    /// site
    pub site_id: String,
    /// the guard, if the finding is about one
    pub guard_id: Option<String>,
    /// the tour, task, alert, ticket, report or shift
    pub entity_id: Option<String>,
    /// SAFETY, SECURITY, OPERATIONAL, DEVICE_HEALTH or COMPLIANCE
    pub category: String,
    /// LOW, MEDIUM, HIGH or CRITICAL
    pub severity: String,
    /// the evaluation time, ISO-8601 UTC
    pub detected_at: String,
    /// one line for an operator
    pub title: String,
    /// the figures that made the rule fire
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// id of the matched runbook
    pub runbook: String,
    /// which cascade step matched the runbook
    pub runbook_match: crate::runbook::RunbookMatch,
    /// covered by a maintenance window
    pub suppressed: bool,
    /// what the rule recommends doing
    pub recommended_actions: Vec<String>,
    /// The finding whose presence inhibits this one (an `inhibit` line of the rules):
    /// it is still computed and stored, not raised as an alarm of its own. Absent from
    /// the output when nothing inhibits it, so the contract's fields are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<String>,
}

/// A finding's identity: (finding_type, tenant_id, site_id, guard_id, entity_id).
pub type Identity = (String, String, String, Option<String>, Option<String>);

impl Finding {
    /// Its identity (CONTRACT.md).
    pub fn identity(&self) -> Identity {
        (self.finding_type.clone(), self.tenant_id.clone(), self.site_id.clone(), self.guard_id.clone(), self.entity_id.clone())
    }

    /// One line naming it the way case files do:
    /// `TYPE tenant=T site=S guard=G entity=E severity=L` (`-` for null).
    pub fn describe(&self) -> String {
        format!(
            "{} tenant={} site={} guard={} entity={} severity={}",
            self.finding_type,
            self.tenant_id,
            self.site_id,
            self.guard_id.as_deref().unwrap_or("-"),
            self.entity_id.as_deref().unwrap_or("-"),
            self.severity
        )
    }

    fn sort_key(&self) -> (&str, &str, &str, &str, Option<&str>, Option<&str>) {
        (&self.detected_at, &self.tenant_id, &self.site_id, &self.finding_type, self.guard_id.as_deref(), self.entity_id.as_deref())
    }
}

/// Sorts findings in the contract's output order (`None` sorts first).
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// Why an evaluation failed.
#[derive(Debug)]
pub struct ExecError {
    /// The rule whose SQL failed.
    pub rule: String,
    /// DuckDB's message.
    pub message: String,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule `{}` failed to evaluate: {}", self.rule, self.message)
    }
}

impl std::error::Error for ExecError {}

/// Which findings to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this site.
    pub site: Option<String>,
    /// Only these rules (by id); empty means all.
    pub rules: HashSet<String>,
}

/// Evaluates every rule of the set at `now` and returns sorted findings, or the
/// first rule failure.
pub fn evaluate(signals: &Signals, rules: &RuleSet, now: i64, filter: &Filter) -> Result<Vec<Finding>, ExecError> {
    let (findings, mut failures) = evaluate_all(signals, rules, now, filter);
    match failures.is_empty() {
        true => Ok(findings),
        false => Err(failures.remove(0)),
    }
}

/// Evaluates every rule of the set at `now`. A rule that fails (a script that
/// blows a limit, say) is reported and skipped; the others still produce their
/// findings.
pub fn evaluate_all(signals: &Signals, rules: &RuleSet, now: i64, filter: &Filter) -> (Vec<Finding>, Vec<ExecError>) {
    evaluate_ticks(signals, rules, &[now], filter)
}

/// At most this many ticks go into one statement.
pub const TICKS_PER_STATEMENT: usize = 1024;

/// Rows x ticks one statement may pair for the tables a rule reads whole (plans such as
/// tasks and tours, which every tick sees): fewer ticks per statement for big fleets, so
/// a week of 5-minute ticks stays within a few GiB.
const ROW_TICKS_PER_STATEMENT: u64 = 8_000_000;

/// Evaluates every rule of the set at each of `ticks`, one statement per rule
/// over all ticks (in chunks of [`TICKS_PER_STATEMENT`]): the findings of every
/// tick, sorted in the contract's order, and the rules that failed (each once).
pub fn evaluate_ticks(signals: &Signals, rules: &RuleSet, ticks: &[i64], filter: &Filter) -> (Vec<Finding>, Vec<ExecError>) {
    let mut ticks = ticks.to_vec();
    ticks.sort_unstable();
    ticks.dedup();
    let wanted = |id: &str| filter.rules.is_empty() || filter.rules.contains(id);
    let mut jobs: Vec<Job> = rules.planned().filter(|(r, _)| wanted(&r.header.id)).map(|(r, p)| Job::Rule(r, p)).collect();
    // Anomaly rules with the same samples and baselines (ABOVE/BELOW of one metric)
    // share one statement.
    let mut groups: Vec<Vec<&crate::anomaly::AnomalyRule>> = Vec::new();
    for a in rules.anomalies().filter(|a| wanted(&a.header.id)) {
        match groups.iter_mut().find(|g| g.first().is_some_and(|first| crate::anomaly::same_baselines(first, a))) {
            Some(group) => group.push(a),
            None => groups.push(vec![a]),
        }
    }
    // Workers take jobs in order as they become free: the anomaly statements, the
    // longest jobs (samples and baselines of every series), go first so that no
    // worker starts one when the others are nearly done.
    jobs.splice(0..0, groups.into_iter().map(Job::Anomalies));
    // Rules are independent statements: on a small machine two run side by side on
    // two connections to the same database, each using DuckDB's threads when it can.
    // A remote backend parallelizes each statement itself, and stopping a rule over its
    // budget stops whatever the session runs: one statement at a time there.
    let workers = match signals.remote {
        Some(_) => 1,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4).min(jobs.len().max(1)),
    };
    let rows = table_rows(signals);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Vec<Finding>, Vec<ExecError>)> = Vec::new();
    let run_jobs = |view: &Signals| {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            let (found, failed) = run_job(view, rules, job, &ticks, &rows);
            mine.push((i, found, failed));
        }
        mine
    };
    if workers <= 1 {
        done = run_jobs(signals);
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (1..workers)
                .map(|_| {
                    let conn = signals.conn.try_clone();
                    let run_jobs = &run_jobs;
                    let remote = signals.remote.clone();
                    scope.spawn(move || match conn {
                        Ok(conn) => run_jobs(&Signals { remote, ..Signals::from_connection(conn) }),
                        // Without a second connection this worker takes no job; the others do them all.
                        Err(_) => Vec::new(),
                    })
                })
                .collect();
            done = run_jobs(signals);
            for h in handles {
                // A worker that panicked loses the jobs it had taken; they are
                // reported as failed below, so nothing counts as evaluated by mistake.
                if let Ok(results) = h.join() {
                    done.extend(results);
                }
            }
        });
    }
    for (i, job) in jobs.iter().enumerate() {
        if done.iter().all(|(j, _, _)| *j != i) {
            let failed = job.rule_ids().map(|rule| ExecError { rule, message: "its evaluation panicked".into() }).collect();
            done.push((i, Vec::new(), failed));
        }
    }
    done.sort_by_key(|(i, _, _)| *i);
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for (_, found, failed) in done {
        out.extend(found);
        failures.extend(failed);
    }
    inhibit(&mut out, &rules.inhibitions);
    out.retain(|f| filter.tenant.as_ref().is_none_or(|t| *t == f.tenant_id) && filter.site.as_ref().is_none_or(|s| *s == f.site_id));
    sort_findings(&mut out);
    // A finding is its identity: duplicated input rows (a site listed twice) give one finding.
    out.dedup_by(|a, b| a.detected_at == b.detected_at && a.identity() == b.identity());
    (out, failures)
}

/// One rule to evaluate at a set of ticks.
enum Job<'a> {
    Rule(&'a CheckedRule, &'a SqlPlan),
    Anomalies(Vec<&'a crate::anomaly::AnomalyRule>),
}

impl Job<'_> {
    /// The ids of the rules it evaluates.
    fn rule_ids(&self) -> impl Iterator<Item = String> + '_ {
        let ids: Vec<String> = match self {
            Job::Rule(rule, _) => vec![rule.header.id.clone()],
            Job::Anomalies(group) => group.iter().map(|a| a.header.id.clone()).collect(),
        };
        ids.into_iter()
    }
}

/// Rows per loaded table (0 when it cannot be counted).
fn table_rows(signals: &Signals) -> HashMap<&'static str, u64> {
    let mut rows: HashMap<&'static str, u64> = crate::schema::contract_tables()
        .map(|t| {
            // Only a size hint for chunking: a table that cannot be counted chunks as if empty.
            let n = signals.count_rows(t, None).unwrap_or(0);
            (t.name, u64::try_from(n).unwrap_or(0))
        })
        .collect();
    // `activity` is made of these (see the planner's activity view).
    let activity =
        ["phone_events", "location_updates", "checkpoint_scans", "tasks", "shifts"].iter().map(|t| rows.get(t).copied().unwrap_or(0)).sum();
    rows.insert("activity", activity);
    rows
}

/// How many ticks one statement of `rule` takes: [`TICKS_PER_STATEMENT`], fewer when
/// the tables it reads whole are big ([`ROW_TICKS_PER_STATEMENT`]).
fn ticks_per_statement(rule: &CheckedRule, params: &ParamValues, rows: &HashMap<&'static str, u64>) -> usize {
    let whole: u64 = plan::read_ranges(rule, params)
        .into_iter()
        .filter(|(_, lookback)| lookback.is_none())
        .map(|(table, _)| rows.get(table).copied().unwrap_or(0))
        .sum();
    usize::try_from(ROW_TICKS_PER_STATEMENT / whole.max(1)).unwrap_or(TICKS_PER_STATEMENT).clamp(16, TICKS_PER_STATEMENT)
}

/// Evaluates one rule (or anomaly rules sharing baselines) at every tick: the
/// findings, and the failures (the first per rule).
fn run_job(
    signals: &Signals,
    rules: &RuleSet,
    job: &Job,
    ticks: &[i64],
    rows: &HashMap<&'static str, u64>,
) -> (Vec<Finding>, Vec<ExecError>) {
    let mut out = Vec::new();
    let mut failed: Option<ExecError> = None;
    match job {
        Job::Rule(rule, planned) => {
            let params = rules.params_for(rule);
            let id = std::slice::from_ref(&rule.header.id);
            for chunk in ticks.chunks(ticks_per_statement(rule, &params, rows)) {
                match budgeted(signals, id, chunk.len(), || evaluate_planned(signals, rules, rule, planned, chunk, &params)) {
                    Ok(found) => out.extend(found),
                    // A rule stopped at its time budget is not tried again tick by tick:
                    // that would spend the budget once per tick.
                    Err(e) if e.message.starts_with(OVER_BUDGET) => {
                        failed.get_or_insert(e);
                        break;
                    }
                    // A failure (a script blowing a limit on one row) fails the rule at the
                    // ticks where it happens, not at every tick of the chunk.
                    // (A chunk that fails as a whole but whose ticks all succeed alone,
                    // out of memory say, is no failure.)
                    Err(_) if chunk.len() > 1 => {
                        for tick in chunk {
                            let one = std::slice::from_ref(tick);
                            match budgeted(signals, id, 1, || evaluate_planned(signals, rules, rule, planned, one, &params)) {
                                Ok(found) => out.extend(found),
                                Err(e) => {
                                    failed.get_or_insert(e);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        Job::Anomalies(group) => {
            let overrides: Vec<Vec<crate::plan::ScopedValue>> = group.iter().map(|a| rules.overrides_of(&a.header.id)).collect();
            let with: Vec<(&crate::anomaly::AnomalyRule, &[crate::plan::ScopedValue])> =
                group.iter().zip(&overrides).map(|(a, o)| (*a, o.as_slice())).collect();
            let ids: Vec<String> = group.iter().map(|a| a.header.id.clone()).collect();
            let run =
                || crate::anomaly::run_group(signals, &with, ticks).map_err(|e| ExecError { rule: String::new(), message: e.to_string() });
            match budgeted(signals, &ids, ticks.len(), run) {
                Ok(rows) => out.extend(rows.into_iter().filter_map(|(i, row)| group.get(i).map(|a| anomaly_finding(rules, a, row)))),
                Err(e) => {
                    let failures = ids.into_iter().map(|rule| ExecError { rule, message: e.message.clone() }).collect();
                    return (out, failures);
                }
            }
        }
    }
    (out, failed.into_iter().collect())
}

/// How the message of a rule stopped at its time budget begins.
pub const OVER_BUDGET: &str = "stopped at its time budget";

/// Runs one statement of the rules `ids` over `ticks` ticks under their time budget
/// ([`crate::limits::budget_for`]); a statement the watchdog interrupted fails with a
/// message that says so (and which flag raises the budget).
fn budgeted<T>(signals: &Signals, ids: &[String], ticks: usize, work: impl FnOnce() -> Result<T, ExecError>) -> Result<T, ExecError> {
    let budget = crate::limits::budget_for(ticks);
    let stopped = match &signals.remote {
        Some(remote) => crate::limits::within_budget_with(|| remote.interrupt(), budget, work),
        None => crate::limits::within_budget(&signals.conn, budget, work),
    };
    match stopped {
        (Err(_), true) => Err(ExecError {
            rule: ids.join(", "),
            message: format!(
                "{OVER_BUDGET} of {} ({} tick{}; `--rule-budget` sets it per tick)",
                format_duration(i64::try_from(budget.as_micros()).unwrap_or(i64::MAX)),
                ticks,
                if ticks == 1 { "" } else { "s" }
            ),
        }),
        (out, _) => out,
    }
}

/// Evaluates one rule at `now` with the given parameter values (planned anew:
/// for `bench` and one-off evaluations with other parameters).
pub fn evaluate_rule(
    signals: &Signals,
    rules: &RuleSet,
    rule: &CheckedRule,
    now: i64,
    params: &ParamValues,
) -> Result<Vec<Finding>, ExecError> {
    evaluate_planned(signals, rules, rule, &plan::plan(rule, params), &[now], params)
}

/// Runs a rule's plan at `ticks` (ascending) and builds its findings.
pub fn evaluate_planned(
    signals: &Signals,
    rules: &RuleSet,
    rule: &CheckedRule,
    planned: &SqlPlan,
    ticks: &[i64],
    params: &ParamValues,
) -> Result<Vec<Finding>, ExecError> {
    let rows = run(signals, planned, ticks).map_err(|message| ExecError { rule: rule.header.id.clone(), message })?;
    let mut findings = Vec::with_capacity(rows.len());
    for row in rows {
        let detected_at = match row.get(6) {
            Some(DbValue::BigInt(t)) => iso(*t),
            other => {
                return Err(ExecError { rule: rule.header.id.clone(), message: format!("the statement returned no tick ({other:?})") })
            }
        };
        let text = |i: usize| match row.get(i) {
            Some(DbValue::Text(s)) => Some(s.clone()),
            _ => None,
        };
        let tenant_id = text(0).unwrap_or_default();
        let site_id = text(1).unwrap_or_default();
        // The statement's severity is one of the rule's own words.
        let severity = text(4).and_then(|t| Severity::parse(&t)).unwrap_or(rule.header.base_severity);
        let suppressed = matches!(row.get(5), Some(DbValue::Boolean(true)));
        let mut evidence = serde_json::Map::new();
        for (i, (name, ty)) in planned.evidence.iter().enumerate() {
            evidence.insert(name.clone(), json_value(row.get(plan::FIXED_COLUMNS.len() + i), *ty));
        }
        let mut severity = severity;
        if !rule.scripts.is_empty() {
            let inputs_at = plan::FIXED_COLUMNS.len() + planned.evidence.len();
            let mut vars: Vec<(String, serde_json::Value)> = vec![
                ("tenant_id".into(), serde_json::Value::String(tenant_id.clone())),
                ("site_id".into(), serde_json::Value::String(site_id.clone())),
                ("guard_id".into(), text(2).map(serde_json::Value::String).unwrap_or(serde_json::Value::Null)),
                ("entity_id".into(), text(3).map(serde_json::Value::String).unwrap_or(serde_json::Value::Null)),
                ("severity".into(), serde_json::Value::String(severity.name().to_string())),
            ];
            for name in params.values.keys() {
                if let Some(value) = params.effective(name, &tenant_id, &site_id) {
                    vars.push((name.clone(), param_json(value)));
                }
            }
            for (i, (name, ty)) in planned.script_inputs.iter().enumerate() {
                // Durations reach scripts as whole seconds, like duration parameters.
                let value = match (row.get(inputs_at + i), ty) {
                    (Some(DbValue::BigInt(micros)), Ty::Duration) => serde_json::Value::from(micros / 1_000_000),
                    (v, _) => json_value(v, *ty),
                };
                vars.push((name.clone(), value));
            }
            for (k, v) in &evidence {
                vars.push((k.clone(), v.clone()));
            }
            match apply_scripts(rules, rule, &mut vars, &mut severity, &mut evidence) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(message) => return Err(ExecError { rule: rule.header.id.clone(), message }),
            }
        }
        let about = About { tenant_id, site_id, guard_id: text(2), entity_id: text(3) };
        findings.push(build_finding(rules, &rule.header, about, severity, detected_at, evidence, suppressed));
    }
    Ok(findings)
}

/// Where a finding is: tenant, site, and the guard and entity it is about.
struct About {
    tenant_id: String,
    site_id: String,
    guard_id: Option<String>,
    entity_id: Option<String>,
}

/// The one finding builder, for pattern and anomaly rules alike: the rule's header,
/// where it holds, its severity, time and evidence, and the runbook the cascade
/// matches for them.
fn build_finding(
    rules: &RuleSet,
    header: &crate::check::RuleHeader,
    about: About,
    severity: Severity,
    detected_at: String,
    evidence: serde_json::Map<String, serde_json::Value>,
    suppressed: bool,
) -> Finding {
    let key = runbook::FindingKey { finding_type: &header.finding_type, category: header.category, severity, tenant: &about.tenant_id };
    let (book, step, _) = runbook::match_runbook(&rules.runbooks, &rules.cascade, &key);
    Finding {
        finding_type: header.finding_type.clone(),
        rule: header.id.clone(),
        tenant_id: about.tenant_id,
        site_id: about.site_id,
        guard_id: about.guard_id,
        entity_id: about.entity_id,
        category: header.category.name().to_string(),
        severity: severity.name().to_string(),
        detected_at,
        title: header.title.clone(),
        evidence,
        runbook: book.map(|b| b.id.clone()).unwrap_or_else(|| rules.cascade.fallback.clone()),
        runbook_match: step,
        suppressed,
        recommended_actions: header.actions.clone(),
        inhibited_by: None,
    }
}

/// Marks findings inhibited by another finding of the same tick at the same site (or
/// guard), as the rule set's `inhibit` lines say. The inhibitor is named by its type,
/// tenant, site and guard.
pub fn inhibit(findings: &mut [Finding], inhibitions: &[crate::ruleset::Inhibition]) {
    if inhibitions.is_empty() {
        return;
    }
    // Every inhibiting finding by (type, time, tenant, site), with its guard: one pass,
    // then one lookup per inhibited finding (replays hold many ticks of findings).
    type Place<'a> = (&'a str, &'a str, &'a str, &'a str);
    let by_types: std::collections::HashSet<&str> = inhibitions.iter().map(|i| i.by.as_str()).collect();
    let mut holding: HashMap<Place, Vec<Option<&str>>> = HashMap::new();
    for g in findings.iter().filter(|g| by_types.contains(g.finding_type.as_str())) {
        holding.entry((&g.finding_type, &g.detected_at, &g.tenant_id, &g.site_id)).or_default().push(g.guard_id.as_deref());
    }
    let mut marks: Vec<(usize, String)> = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        for inh in inhibitions.iter().filter(|inh| inh.inhibited.contains(&f.finding_type)) {
            let Some(guards) = holding.get(&(inh.by.as_str(), f.detected_at.as_str(), f.tenant_id.as_str(), f.site_id.as_str())) else {
                continue;
            };
            let guard = if inh.same_guard {
                match guards.iter().find(|g| g.is_some() && **g == f.guard_id.as_deref()) {
                    Some(g) => *g,
                    None => continue,
                }
            } else {
                guards.first().copied().flatten()
            };
            let guard = guard.map(|x| format!(" guard={x}")).unwrap_or_default();
            marks.push((i, format!("{} tenant={} site={}{guard}", inh.by, f.tenant_id, f.site_id)));
            break;
        }
    }
    for (i, by) in marks {
        findings[i].inhibited_by = Some(by);
    }
}

/// Evaluates one anomaly rule: the last complete bucket before `now` of every
/// series against its baseline.
pub fn evaluate_anomaly(signals: &Signals, rules: &RuleSet, a: &crate::anomaly::AnomalyRule, now: i64) -> Result<Vec<Finding>, ExecError> {
    let rows =
        crate::anomaly::run_ticks(signals, a, &[now]).map_err(|e| ExecError { rule: a.header.id.clone(), message: e.to_string() })?;
    Ok(rows.into_iter().map(|row| anomaly_finding(rules, a, row)).collect())
}

/// The finding of one firing anomaly series.
fn anomaly_finding(rules: &RuleSet, a: &crate::anomaly::AnomalyRule, row: crate::anomaly::AnomalyRow) -> Finding {
    use crate::anomaly::figure;
    let mut evidence = serde_json::Map::new();
    evidence.insert("metric".into(), a.metric.name.clone().into());
    if a.metric.per.is_some() {
        evidence.insert("series".into(), row.series.clone().into());
    }
    evidence.insert("bucket_start".into(), iso(row.bucket_start).into());
    evidence.insert("bucket_end".into(), iso(row.bucket_start + a.metric.bucket).into());
    evidence.insert("observed".into(), figure(row.observed));
    evidence.insert("expected".into(), figure(row.expected));
    evidence.insert("z".into(), figure(row.z));
    evidence.insert("samples".into(), row.samples.into());
    evidence.insert("level".into(), row.level.clone().into());
    evidence.insert("statistic".into(), a.statistic.name().into());
    evidence.insert("spread".into(), figure(row.spread));
    evidence.insert("threshold".into(), figure(row.threshold));
    let about = About { tenant_id: row.tenant_id, site_id: row.site_id, guard_id: None, entity_id: None };
    build_finding(rules, &a.header, about, row.severity, iso(row.tick), evidence, row.suppressed)
}

fn param_json(v: &crate::check::Value) -> serde_json::Value {
    use crate::check::Value;
    match v {
        Value::Number(n) => serde_json::Number::from_f64(*n).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Duration(d) => serde_json::Value::from(d / 1_000_000),
        Value::Null => serde_json::Value::Null,
    }
}

/// Runs a rule's scripts on one row: all conditions must hold (returns false
/// otherwise), the first severity script returning true sets the severity, and
/// evidence scripts add their values. Any script failure fails the rule.
fn apply_scripts(
    rules: &RuleSet,
    rule: &CheckedRule,
    vars: &mut Vec<(String, serde_json::Value)>,
    severity: &mut Severity,
    evidence: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<bool, String> {
    let at = |s: &crate::script::RuleScript| {
        let (line, col) = rules.sources.line_col(s.span);
        format!("{}:{line}:{col}", rules.sources.name(s.span.file))
    };
    let mut severity_set = false;
    for s in &rule.scripts {
        let out = crate::script::run(s, vars.as_slice()).map_err(|e| format!("script at {} failed: {e}", at(s)))?;
        match &s.role {
            ScriptRole::Condition => match out.as_bool() {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(t) => return Err(format!("script at {} must return true or false, returned {t}", at(s))),
            },
            ScriptRole::Severity(level) => match out.as_bool() {
                Ok(hit) => {
                    if hit && !severity_set {
                        *severity = *level;
                        severity_set = true;
                    }
                }
                Err(t) => return Err(format!("script at {} must return true or false, returned {t}", at(s))),
            },
            ScriptRole::Evidence(name) => {
                let value = crate::script::to_json(&out);
                // Later scripts may read this figure too.
                vars.retain(|(n, _)| n != name);
                vars.push((name.clone(), value.clone()));
                evidence.insert(name.clone(), value);
            }
        }
    }
    Ok(true)
}

/// Runs a rule's statement where the signals' statements run: DuckDB, or the remote backend.
fn run(signals: &Signals, planned: &SqlPlan, ticks: &[i64]) -> Result<Vec<Vec<DbValue>>, String> {
    let width = plan::FIXED_COLUMNS.len() + planned.evidence.len() + planned.script_inputs.len();
    if let Some(remote) = &signals.remote {
        return remote.query(&sql::render(&planned.query, ticks, remote.dialect()), width);
    }
    let text = sql::render(&planned.query, ticks, sql::Dialect::DuckDb);
    let run = || -> Result<Vec<Vec<DbValue>>, duckdb::Error> {
        let mut stmt = signals.conn.prepare(&text)?;
        let rows = stmt.query_map([], |r| (0..width).map(|i| r.get::<_, DbValue>(i)).collect::<Result<Vec<_>, _>>())?;
        rows.collect()
    };
    run().map_err(|e| e.to_string())
}

fn json_value(v: Option<&DbValue>, ty: Ty) -> serde_json::Value {
    use serde_json::Value as J;
    let number = |f: f64| {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            J::from(f as i64)
        } else {
            serde_json::Number::from_f64((f * 1e6).round() / 1e6).map(J::Number).unwrap_or(J::Null)
        }
    };
    match (v, ty) {
        (None, _) | (Some(DbValue::Null), _) => J::Null,
        (Some(DbValue::Double(f)), _) => number(*f),
        (Some(DbValue::BigInt(i)), Ty::Duration) => J::String(format_duration(*i)),
        (Some(DbValue::BigInt(i)), _) => J::from(*i),
        (Some(DbValue::Boolean(b)), _) => J::Bool(*b),
        (Some(DbValue::Text(s)), _) => J::String(s.clone()),
        (Some(other), _) => J::String(format!("{other:?}")),
    }
}

/// Replays history: evaluates at every tick and reports each finding once, at the
/// first tick where it holds; one that clears and holds again is new. Rule
/// failures are reported once per rule and do not stop the replay.
///
/// Each rule runs as one statement per chunk of ticks ([`evaluate_ticks`]); the
/// first-tick bookkeeping then walks the ticks in order.
pub fn replay(signals: &Signals, rules: &RuleSet, from: i64, to: i64, every: i64, filter: &Filter) -> (Vec<Finding>, Vec<ExecError>) {
    replay_ticks(signals, rules, &tick_series(from, to, every), filter)
}

/// [`replay`] at the given ticks (ascending).
pub fn replay_ticks(signals: &Signals, rules: &RuleSet, ticks: &[i64], filter: &Filter) -> (Vec<Finding>, Vec<ExecError>) {
    let mut failures: Vec<ExecError> = Vec::new();
    let mut first = FirstSeen::default();
    let mut out = Vec::new();
    for chunk in ticks.chunks(TICKS_PER_STATEMENT) {
        let (findings, failed) = evaluate_ticks(signals, rules, chunk, filter);
        for f in failed {
            if failures.iter().all(|known| known.rule != f.rule) {
                failures.push(f);
            }
        }
        out.extend(first.fold(chunk, findings));
    }
    (out, failures)
}

/// The ticks from, from + every, ... <= to.
pub fn tick_series(from: i64, to: i64, every: i64) -> Vec<i64> {
    if to < from {
        return Vec::new();
    }
    if every <= 0 {
        return vec![from];
    }
    std::iter::successors(Some(from), |t| t.checked_add(every)).take_while(|t| *t <= to).collect()
}

/// Which findings hold at the previous tick: folds per-tick findings into the
/// ones that are new (CONTRACT.md: a finding is printed at the first tick where
/// it holds; one that clears and holds again is new).
#[derive(Debug, Default)]
pub struct FirstSeen {
    open: HashSet<Identity>,
}

impl FirstSeen {
    /// Takes the findings of `ticks` (ascending, following the ticks folded
    /// before) and returns those that are new at their tick.
    pub fn fold(&mut self, ticks: &[i64], findings: Vec<Finding>) -> Vec<Finding> {
        let mut by_tick: HashMap<String, Vec<Finding>> = HashMap::new();
        for f in findings {
            by_tick.entry(f.detected_at.clone()).or_default().push(f);
        }
        let mut out = Vec::new();
        for t in ticks {
            let at_tick = by_tick.remove(&iso(*t)).unwrap_or_default();
            let current: HashSet<Identity> = at_tick.iter().map(Finding::identity).collect();
            out.extend(at_tick.into_iter().filter(|f| !self.open.contains(&f.identity())));
            self.open = current;
        }
        out
    }
}

/// Counts findings per type, for summaries.
pub fn count_by_type(findings: &[Finding]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.finding_type.clone()).or_insert(0) += 1;
    }
    m
}

/// For `explain`: every candidate row of a rule with its lets and whether the
/// condition holds. Returns the column names and the rows as text.
pub fn explain_candidates(signals: &Signals, rule: &CheckedRule, now: i64, params: &ParamValues) -> Result<Explained, ExecError> {
    let planned = plan::plan_explain(rule, params);
    let fail = |e: duckdb::Error| ExecError { rule: rule.header.id.clone(), message: e.to_string() };
    let text = sql::render(&planned.query, &[now], sql::Dialect::DuckDb);
    let mut stmt = signals.conn.prepare(&text).map_err(fail)?;
    let types = planned.types.clone();
    let rows = stmt
        .query_map([], |r| {
            types.iter().enumerate().map(|(i, ty)| r.get::<_, DbValue>(i).map(|v| analyst_value(&v, *ty))).collect::<Result<Vec<_>, _>>()
        })
        .map_err(fail)?;
    let rows = rows.collect::<Result<Vec<_>, _>>().map_err(fail)?;
    Ok(Explained { columns: planned.columns, rows, conditions: planned.conditions, severity_steps: planned.severity_steps })
}

/// What `explain` shows of a rule's candidates.
#[derive(Debug, Clone)]
pub struct Explained {
    /// Column names: keys, lets, `when[N]` for each conjunct (when there are several), `fires`.
    pub columns: Vec<String>,
    /// Every candidate's values, in analyst units.
    pub rows: Vec<Vec<String>>,
    /// Where each conjunct `when[N]` is written.
    pub conditions: Vec<crate::syntax::ast::Span>,
    /// Each severity step `severity[N]`: its level and where its condition is written.
    pub severity_steps: Vec<(crate::schema::Severity, crate::syntax::ast::Span)>,
}

/// A value as an analyst reads it: durations as `2h15m`, numbers to at most three
/// decimals (whole numbers whole), everything else as it is.
fn analyst_value(v: &DbValue, ty: Option<crate::schema::Ty>) -> String {
    use crate::schema::Ty;
    let number = |f: f64| {
        let rounded = (f * 1000.0).round() / 1000.0;
        if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
            format!("{}", rounded as i64)
        } else {
            format!("{rounded}")
        }
    };
    match (v, ty) {
        (DbValue::BigInt(us), Some(Ty::Duration)) => crate::time::format_duration(*us),
        (DbValue::Double(f), Some(Ty::Duration)) => crate::time::format_duration(*f as i64),
        (DbValue::Double(f), _) => number(*f),
        (DbValue::Float(f), _) => number(f64::from(*f)),
        (DbValue::Text(s), Some(Ty::String)) => format!("'{s}'"),
        _ => display_value(v),
    }
}

fn display_value(v: &DbValue) -> String {
    match v {
        DbValue::Null => "null".to_string(),
        DbValue::Text(s) => s.clone(),
        DbValue::Boolean(b) => b.to_string(),
        DbValue::BigInt(i) => i.to_string(),
        DbValue::Double(d) => format!("{d}"),
        other => format!("{other:?}"),
    }
}
