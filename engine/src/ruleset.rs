//! A complete rule set: every rule and runbook of a library, checked together.
//!
//! Invariant: a [`RuleSet`] exists only when every file parsed and checked
//! without errors; a broken file yields diagnostics and no rule set at all, so
//! callers can keep running the last good one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::categorize::{self, Categories};
use crate::check::Value;
use crate::check::{self, CheckedRule, Macros};
use crate::diag::{codes, Diagnostic, Sources};
use crate::plan::{ParamValues, ScopedValue};
use crate::runbook::{self, Runbook};
use crate::syntax::ast::Literal;
use crate::syntax::{self, ast::RuleFile};

/// The built-in macros (on_duty, overdue, delayed, outside_geofence, ...).
pub const PRELUDE: &str = include_str!("prelude.vigil");

/// A checked, complete set of rules and runbooks.
pub struct RuleSet {
    /// Every rule: pattern rules in file order (files sorted by name), then anomaly rules.
    pub rules: Vec<Rule>,
    /// Metrics (series for baselines), by name order of definition.
    pub metrics: Vec<crate::anomaly::Metric>,
    /// Runbooks, tenant-specific and global.
    pub runbooks: Vec<Runbook>,
    /// Keyword categories.
    pub categories: Categories,
    /// The runbook matching cascade.
    pub cascade: runbook::Cascade,
    /// Parameter overrides per tenant or site: (rule id, value).
    pub overrides: Vec<(String, ScopedValue)>,
    /// The text of every file, for diagnostics and `explain`.
    pub sources: Sources,
    /// Warnings found while checking.
    pub warnings: Vec<Diagnostic>,
    /// `inhibit` lines: which findings another one's presence marks as inhibited.
    pub inhibitions: Vec<Inhibition>,
}

/// A checked `inhibit A, B while C holds at the same site|guard`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inhibition {
    /// The finding types inhibited.
    pub inhibited: Vec<String>,
    /// The finding type whose finding inhibits them.
    pub by: String,
    /// Same guard rather than same site.
    pub same_guard: bool,
    /// Where it is written.
    pub span: crate::syntax::ast::Span,
}

/// One rule of a set. Every kind has the same header (id, finding type, title, doc,
/// category, severity, cadence, actions: [`Rule::header`]) and goes through the same
/// overrides, strict checks, provenance, runbook checks, finding builder and
/// `explain`; the body says what it compares.
#[derive(Debug, Clone)]
pub enum Rule {
    /// A pattern rule, with its plan (made once, when the set loads).
    Pattern(Box<CheckedRule>, Box<crate::plan::SqlPlan>),
    /// An anomaly rule: a metric against its baseline (its statement depends on the
    /// span of the ticks, so it is planned for each evaluation).
    Anomaly(Box<crate::anomaly::AnomalyRule>),
}

impl Rule {
    /// The shared header.
    pub fn header(&self) -> &crate::check::RuleHeader {
        match self {
            Rule::Pattern(r, _) => &r.header,
            Rule::Anomaly(a) => &a.header,
        }
    }

    /// The rule's meaning as text, for change detection and provenance: its block, and
    /// for an anomaly rule its metric's block too.
    pub fn text(&self, sources: &Sources) -> String {
        match self {
            Rule::Pattern(r, _) => sources.slice(r.header.span).to_string(),
            Rule::Anomaly(a) => format!("{}\n{}", sources.slice(a.header.span), sources.slice(a.metric.span)),
        }
    }
}

/// Diagnostics of a rule set that did not load, with the files they point into.
pub struct LoadFailure {
    /// The files read.
    pub sources: Sources,
    /// Every error and warning found.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Debug for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sources.render(&self.diagnostics, false))
    }
}

impl RuleSet {
    /// The header of every rule, pattern rules first, then anomaly rules.
    pub fn headers(&self) -> impl Iterator<Item = &crate::check::RuleHeader> {
        self.rules.iter().map(Rule::header)
    }

    /// Each pattern rule with its plan.
    pub fn planned(&self) -> impl Iterator<Item = (&CheckedRule, &crate::plan::SqlPlan)> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Pattern(rule, plan) => Some((&**rule, &**plan)),
            Rule::Anomaly(_) => None,
        })
    }

    /// The pattern rules, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &CheckedRule> {
        self.planned().map(|(r, _)| r)
    }

    /// The anomaly rules, in order.
    pub fn anomalies(&self) -> impl Iterator<Item = &crate::anomaly::AnomalyRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Anomaly(a) => Some(a.as_ref()),
            Rule::Pattern(..) => None,
        })
    }

    /// Any rule by id.
    pub fn find(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.header().id == id)
    }

    /// A pattern rule by id.
    pub fn rule(&self, id: &str) -> Option<&CheckedRule> {
        self.patterns().find(|r| r.header.id == id)
    }

    /// What `vigil baseline update` folds: each metric an anomaly rule uses (once), and
    /// the largest median window any of them keeps.
    pub fn baseline_metrics(&self) -> (Vec<crate::anomaly::Metric>, u32) {
        let mut metrics: Vec<crate::anomaly::Metric> = Vec::new();
        for a in self.anomalies() {
            if !metrics.iter().any(|m| m.name == a.metric.name) {
                metrics.push(a.metric.clone());
            }
        }
        (metrics, self.anomalies().map(|a| a.window).max().unwrap_or(52))
    }

    /// For each signal table any rule reads, how far before a tick its event times
    /// reach (`None`: every row up to the tick). The activity view reads its source
    /// tables, and anomaly rules their metric's table, without a window.
    pub fn read_ranges(&self) -> std::collections::BTreeMap<&'static str, Option<i64>> {
        let mut out: std::collections::BTreeMap<&'static str, Option<i64>> = std::collections::BTreeMap::new();
        let mut merge = |table: &'static str, lookback: Option<i64>| {
            let slot = out.entry(table).or_insert(lookback);
            *slot = match (*slot, lookback) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        };
        for rule in self.patterns() {
            for (table, lookback) in crate::plan::read_ranges(rule, &self.params_for(rule)) {
                match crate::schema::table(table) {
                    Some(t) if t.derived => {
                        for source in crate::plan::ACTIVITY_SOURCES {
                            merge(source, None);
                        }
                    }
                    _ => merge(table, lookback),
                }
            }
        }
        for a in self.anomalies() {
            merge(a.metric.table.name, None);
        }
        // Every rule reads sites (time zones, activity) and maintenance windows (suppression).
        merge("sites", None);
        merge("maintenance_windows", None);
        out
    }

    /// The ids of the rules and anomaly rules an evaluation with `filter` ran to
    /// completion: their open findings that did not come back no longer hold.
    pub fn completed_rules(&self, filter: &crate::exec::Filter, failures: &[crate::exec::ExecError]) -> Vec<String> {
        self.headers()
            .map(|h| &h.id)
            .filter(|id| filter.rules.is_empty() || filter.rules.contains(*id))
            .filter(|id| failures.iter().all(|f| f.rule != **id))
            .cloned()
            .collect()
    }

    /// The parameter values a rule runs with: its defaults and the overrides for it.
    pub fn params_for(&self, rule: &CheckedRule) -> ParamValues {
        let mut params = crate::plan::default_params(rule);
        params.scoped = self.overrides_of(&rule.header.id);
        params
    }

    /// The overrides for one rule (pattern or anomaly), by id.
    pub fn overrides_of(&self, id: &str) -> Vec<ScopedValue> {
        self.overrides.iter().filter(|(rule, _)| rule == id).map(|(_, v)| v.clone()).collect()
    }
}

/// "`what` `name` is defined twice", pointing at both definitions.
fn defined_twice(what: &str, name: &str, span: crate::syntax::ast::Span, first: crate::syntax::ast::Span) -> Diagnostic {
    Diagnostic::error(codes::DUPLICATE_ID, format!("{what} `{name}` is defined twice"), span, "defined again here")
        .with_context(first, "first defined here")
}

/// Checks the one block of a kind a rule set may have (`categories`, `cascade`);
/// a second one is an error. `None` when there is none or it does not check.
fn single_block<'a, B: 'a, T>(
    mut blocks: impl Iterator<Item = (&'a B, crate::syntax::ast::Span)>,
    what: &str,
    diagnostics: &mut Vec<Diagnostic>,
    check: impl FnOnce(&B) -> Result<T, Vec<Diagnostic>>,
) -> Option<T> {
    let (first, first_span) = blocks.next()?;
    for (_, span) in blocks {
        diagnostics.push(
            Diagnostic::error(codes::DUPLICATE_ID, format!("a second `{what}` block"), span, format!("a rule set has one `{what}` block"))
                .with_context(first_span, "the first one"),
        );
    }
    match check(first) {
        Ok(t) => Some(t),
        Err(errs) => {
            diagnostics.extend(errs);
            None
        }
    }
}

/// Checks `override` blocks against the rules: the rule and parameter must
/// exist and the value must have the parameter's type.
fn check_overrides(
    files: &[RuleFile],
    rules: &[CheckedRule],
    anomalies: &[crate::anomaly::AnomalyRule],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(String, ScopedValue)> {
    // Every rule with what may be overridden: a pattern rule's parameters, an anomaly
    // rule's `threshold`.
    let targets: Vec<(&crate::check::RuleHeader, Vec<crate::check::Param>)> =
        rules.iter().map(|r| (&r.header, r.params.clone())).chain(anomalies.iter().map(|a| (&a.header, a.params()))).collect();
    let mut out = Vec::new();
    for block in files.iter().flat_map(|f| f.overrides.iter()) {
        if block.tenant.is_none() && block.site.is_none() {
            diagnostics.push(Diagnostic::error(
                codes::MISSING_ITEM,
                "an override needs `tenant \"T\"`, `site \"S\"` or both",
                block.span,
                "applies to whom?",
            ));
            continue;
        }
        for set in &block.settings {
            let Some((rule, params)) = targets.iter().find(|(h, _)| h.id == set.rule.name) else {
                diagnostics.push(
                    Diagnostic::error(codes::UNKNOWN_NAME, format!("no rule `{}`", set.rule.name), set.rule.span, "unknown rule")
                        .suggest(&set.rule.name, targets.iter().map(|(h, _)| h.id.as_str())),
                );
                continue;
            };
            let Some(param) = params.iter().find(|p| p.name == set.param.name) else {
                let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                diagnostics.push(
                    Diagnostic::error(
                        codes::UNKNOWN_NAME,
                        format!("rule `{}` has no parameter `{}`", rule.id, set.param.name),
                        set.param.span,
                        "unknown parameter",
                    )
                    .suggest(&set.param.name, names.iter().copied())
                    .note(format!("its parameters: {}", if names.is_empty() { "none".to_string() } else { names.join(", ") })),
                );
                continue;
            };
            let value = match &set.value {
                Literal::Duration { micros, .. } => Value::Duration(*micros),
                Literal::Number { value, .. } => Value::Number(*value),
                Literal::String(s) => Value::String(s.value.clone()),
                Literal::Bool { value, .. } => Value::Bool(*value),
                Literal::Null { .. } => Value::Null,
            };
            if value.ty() != param.default.ty() {
                diagnostics.push(
                    Diagnostic::error(
                        codes::TYPE_MISMATCH,
                        format!("`{}.{}` is {}, not {}", rule.id, param.name, param.default.ty().name(), value.ty().name()),
                        set.value.span(),
                        "wrong type",
                    )
                    .with_context(param.span, "declared here"),
                );
                continue;
            }
            if matches!(value, Value::Duration(d) if d <= 0) {
                diagnostics.push(Diagnostic::error(
                    codes::BAD_WINDOW,
                    "a duration parameter must be longer than zero",
                    set.value.span(),
                    "zero",
                ));
                continue;
            }
            out.push((
                rule.id.clone(),
                ScopedValue {
                    param: param.name.clone(),
                    tenant: block.tenant.as_ref().map(|t| t.value.clone()),
                    site: block.site.as_ref().map(|s| s.value.clone()),
                    value,
                },
            ));
        }
    }
    out
}

/// The `.vigil` files of a directory, sorted; a missing directory has none.
pub fn vigil_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "vigil")).collect();
    files.sort();
    Ok(files)
}

/// Reads and checks the rules of `rules_dir` and the runbooks of `runbooks_dir`.
pub fn load_dirs(rules_dir: &Path, runbooks_dir: &Path) -> Result<RuleSet, LoadFailure> {
    let mut texts = Vec::new();
    let mut io_errors = Vec::new();
    let mut not_utf8 = Vec::new();
    for dir in [rules_dir, runbooks_dir] {
        match vigil_files(dir) {
            Ok(files) => {
                for f in files {
                    match std::fs::read(&f) {
                        Ok(bytes) => match String::from_utf8(bytes) {
                            Ok(t) => texts.push((f.display().to_string(), t)),
                            Err(e) => not_utf8.push((f.display().to_string(), e)),
                        },
                        Err(e) => io_errors.push(format!("{}: {e}", f.display())),
                    }
                }
            }
            Err(e) => io_errors.push(format!("{}: {e}", dir.display())),
        }
    }
    let mut sources = Sources::new();
    if !io_errors.is_empty() {
        let file = sources.add("<io>", io_errors.join("\n"));
        let span = crate::syntax::ast::Span { file, start: 0, end: 0 };
        let diagnostics = io_errors.iter().map(|e| Diagnostic::error(codes::INTERNAL, format!("cannot read {e}"), span, "")).collect();
        return Err(LoadFailure { sources, diagnostics });
    }
    if !not_utf8.is_empty() {
        // The file is shown with U+FFFD for what is not UTF-8; the text before the first
        // bad byte is the same in both, so the span points at it.
        let diagnostics = not_utf8
            .into_iter()
            .map(|(name, e)| {
                let at = e.utf8_error().valid_up_to();
                let byte = e.as_bytes().get(at).copied().unwrap_or(0);
                let file = sources.add(name, String::from_utf8_lossy(e.as_bytes()).into_owned());
                let span = crate::syntax::ast::Span { file, start: at, end: at + char::REPLACEMENT_CHARACTER.len_utf8() };
                Diagnostic::error(codes::SYNTAX, "rule files are UTF-8 text; this one is not", span, format!("byte 0x{byte:02x}"))
                    .hint("save the file as UTF-8")
            })
            .collect();
        return Err(LoadFailure { sources, diagnostics });
    }
    load_texts(sources, texts)
}

/// Checks a rule set given as (file name, text) pairs.
pub fn load_texts(mut sources: Sources, texts: Vec<(String, String)>) -> Result<RuleSet, LoadFailure> {
    let mut diagnostics = Vec::new();
    let mut files: Vec<RuleFile> = Vec::new();
    let prelude_id = sources.add("<prelude>", PRELUDE);
    match syntax::parse(PRELUDE, prelude_id) {
        Ok(f) => files.push(f),
        Err(d) => diagnostics.push(d),
    }
    for (name, text) in texts {
        let id = sources.add(name, text.clone());
        match syntax::parse(&text, id) {
            Ok(f) => files.push(f),
            Err(d) => diagnostics.push(d),
        }
    }

    let mut macros = Macros::default();
    for m in files.iter().flat_map(|f| f.macros.iter()) {
        if let Some(first) = macros.get(&m.name.name) {
            diagnostics.push(defined_twice("macro", &m.name.name, m.name.span, first.name.span));
        } else {
            macros.macros.insert(m.name.name.clone(), m.clone());
        }
    }
    for s in files.iter().flat_map(|f| f.sources.iter()) {
        if let Some(first) = macros.sources.get(&s.name.name) {
            diagnostics.push(defined_twice("source", &s.name.name, s.name.span, first.name.span));
        } else if let Some(table) = crate::schema::table(&s.name.name) {
            diagnostics.push(
                Diagnostic::error(
                    codes::DUPLICATE_ID,
                    format!("source `{}` has the name of a table", s.name.name),
                    s.name.span,
                    "a table's name",
                )
                .hint(format!("name it after what it selects, e.g. `open_{}`", table.name)),
            );
        } else {
            macros.sources.insert(s.name.name.clone(), s.clone());
        }
    }

    let mut rules: Vec<CheckedRule> = Vec::new();
    let mut seen_rules: HashMap<String, crate::syntax::ast::Span> = HashMap::new();
    for def in files.iter().flat_map(|f| f.rules.iter()) {
        if let Some(first) = seen_rules.get(&def.id.name) {
            diagnostics.push(defined_twice("rule", &def.id.name, def.id.span, *first));
            continue;
        }
        seen_rules.insert(def.id.name.clone(), def.id.span);
        let finding_type = check::finding_type_of(def);
        let adjustments: Vec<_> = files
            .iter()
            .flat_map(|f| f.severities.iter())
            .filter(|s| s.finding_type.name == finding_type)
            .flat_map(|s| s.steps.iter().cloned())
            .collect();
        let read_script = |span: crate::syntax::ast::Span, name: &str| -> Result<String, String> {
            let rule_file = Path::new(sources.name(span.file));
            let path = rule_file.parent().unwrap_or(Path::new(".")).join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        match check::check_rule(def, &macros, &adjustments, &read_script) {
            Ok((r, warnings)) => {
                rules.push(r);
                diagnostics.extend(warnings);
            }
            Err(errs) => diagnostics.extend(errs),
        }
    }

    let (metrics, mut anomalies) = check_anomalies(&files, &macros, &seen_rules, &mut diagnostics);

    let mut runbooks: Vec<Runbook> = Vec::new();
    let mut seen_runbooks: HashMap<(String, Option<String>), crate::syntax::ast::Span> = HashMap::new();
    for def in files.iter().flat_map(|f| f.runbooks.iter()) {
        match runbook::check_runbook(def) {
            Ok(r) => {
                let key = (r.id.clone(), r.tenant.clone());
                if let Some(first) = seen_runbooks.get(&key) {
                    diagnostics.push(defined_twice("runbook", &r.id, def.id.span, *first));
                } else {
                    seen_runbooks.insert(key, def.id.span);
                    runbooks.push(r);
                }
            }
            Err(errs) => diagnostics.extend(errs),
        }
    }

    for block in files.iter().flat_map(|f| f.severities.iter()) {
        if !files.iter().flat_map(|f| f.rules.iter()).any(|r| check::finding_type_of(r) == block.finding_type.name) {
            diagnostics.push(
                Diagnostic::error(
                    codes::UNKNOWN_NAME,
                    format!("no rule raises `{}`", block.finding_type.name),
                    block.finding_type.span,
                    "unknown finding type",
                )
                .suggest(&block.finding_type.name, files.iter().flat_map(|f| f.rules.iter()).map(check::finding_type_of)),
            );
        }
    }

    let blocks = files.iter().flat_map(|f| f.categories.iter()).map(|b| (b, b.span));
    let categories = single_block(blocks, "categories", &mut diagnostics, categorize::check_categories).unwrap_or_default();
    // Categories and runbooks: the same checks for every rule, pattern or anomaly.
    let headers = rules.iter_mut().map(|r| &mut r.header).chain(anomalies.iter_mut().map(|a| &mut a.header));
    for h in headers {
        let (by_keyword, keyword) = categories.categorize(&h.finding_type);
        match h.category_stated {
            None => h.category = by_keyword,
            Some(span) if h.category != by_keyword => {
                let why = keyword
                    .map(|k| format!("keyword `{k}` gives {by_keyword}"))
                    .unwrap_or_else(|| format!("no keyword matches, so the fallback gives {by_keyword}"));
                diagnostics.push(
                    Diagnostic::warning(
                        codes::CATEGORY_DISAGREES,
                        format!("`{}` states category {}, but {why}", h.finding_type, h.category),
                        span,
                        "stated here",
                    )
                    .hint("change the keywords in the categories block, or drop the rule's `category` line"),
                );
            }
            Some(_) => {}
        }
        if !runbooks.iter().any(|b| b.matches == runbook::Matches::Finding(h.finding_type.clone())) {
            // A runbook of that name that matches something else is the likelier fix.
            let hint = match runbooks.iter().find(|b| b.id == h.finding_type) {
                Some(b) => format!(
                    "runbook `{}` ({}) does not match it: write `matches finding {}` there",
                    b.id,
                    sources.name(b.span.file),
                    h.finding_type
                ),
                None => format!("add runbooks/{}.vigil with `matches finding {}`", h.finding_type.to_lowercase(), h.finding_type),
            };
            diagnostics.push(
                Diagnostic::warning(codes::NO_RUNBOOK, format!("no runbook matches `{}` exactly", h.finding_type), h.id_span, "this rule")
                    .hint(hint),
            );
        }
    }
    // A runbook for a finding type no rule raises is never used: an error when a type
    // of the set is one typo away, a warning otherwise (a runbooks directory may serve
    // a larger library than the rules at hand).
    let types: Vec<&str> =
        rules.iter().map(|r| &r.header).chain(anomalies.iter().map(|a| &a.header)).map(|h| h.finding_type.as_str()).collect();
    for b in &runbooks {
        if let runbook::Matches::Finding(t) = &b.matches {
            if !types.contains(&t.as_str()) {
                let message = format!("runbook `{}` matches finding `{t}`, which no rule raises", b.id);
                let d = match crate::diag::closest(t, types.iter().copied()) {
                    Some(_) => Diagnostic::error(codes::UNKNOWN_NAME, message, b.matches_span, "unknown finding type"),
                    None => Diagnostic::warning(codes::UNUSED_RUNBOOK, message, b.matches_span, "never used by these rules"),
                };
                diagnostics.push(d.suggest(t, types.iter().copied()));
            }
        }
    }

    let overrides = check_overrides(&files, &rules, &anomalies, &mut diagnostics);
    let inhibitions = check_inhibitions(&files, &types, &mut diagnostics);

    let blocks = files.iter().flat_map(|f| f.cascades.iter()).map(|b| (b, b.span));
    let cascade = single_block(blocks, "cascade", &mut diagnostics, |b| runbook::check_cascade(b, &runbooks)).unwrap_or_default();

    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(LoadFailure { sources, diagnostics });
    }
    let mut set =
        RuleSet { rules: Vec::new(), metrics, runbooks, categories, cascade, overrides, sources, warnings: diagnostics, inhibitions };
    let planned: Vec<Rule> = rules
        .into_iter()
        .map(|r| {
            let plan = crate::plan::plan(&r, &set.params_for(&r));
            Rule::Pattern(Box::new(r), Box::new(plan))
        })
        .chain(anomalies.into_iter().map(|a| Rule::Anomaly(Box::new(a))))
        .collect();
    set.rules = planned;
    Ok(set)
}

/// Checks `inhibit` lines: every type is raised by a rule of the set, and no type
/// inhibits itself.
fn check_inhibitions(files: &[RuleFile], types: &[&str], diagnostics: &mut Vec<Diagnostic>) -> Vec<Inhibition> {
    let mut out = Vec::new();
    for def in files.iter().flat_map(|f| f.inhibits.iter()) {
        let mut ok = true;
        for name in def.inhibited.iter().chain(std::iter::once(&def.by)) {
            if !types.contains(&name.name.as_str()) {
                ok = false;
                diagnostics.push(
                    Diagnostic::error(
                        codes::UNKNOWN_NAME,
                        format!("no rule raises finding type `{}`", name.name),
                        name.span,
                        "unknown finding type",
                    )
                    .suggest(&name.name, types.iter().copied()),
                );
            }
        }
        if let Some(same) = def.inhibited.iter().find(|n| n.name == def.by.name) {
            ok = false;
            diagnostics.push(Diagnostic::error(
                codes::UNKNOWN_NAME,
                format!("`{}` cannot inhibit itself", same.name),
                same.span,
                "inhibits itself",
            ));
        }
        if ok {
            out.push(Inhibition {
                inhibited: def.inhibited.iter().map(|n| n.name.clone()).collect(),
                by: def.by.name.clone(),
                same_guard: def.same_guard,
                span: def.span,
            });
        }
    }
    out
}

/// What changed between two rule sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetDiff {
    /// Rule ids only in the new set.
    pub added: Vec<String>,
    /// Rule ids in both whose meaning changed: their text, or what overrides,
    /// severity blocks and categories make of them (their SQL, category or severity).
    pub changed: Vec<String>,
    /// Rule ids only in the old set.
    pub removed: Vec<String>,
    /// Other parts that changed: `overrides`, `categories`, `cascade`, `inhibitions`, `runbooks`.
    pub sections: Vec<&'static str>,
}

/// What changed between two rule sets, each list sorted.
pub fn diff(old: &RuleSet, new: &RuleSet) -> SetDiff {
    // A rule's meaning: its text, its header's category and severity, and the SQL it
    // runs (which holds its parameters with overrides and its severity steps).
    let meaning = |set: &RuleSet| -> std::collections::BTreeMap<String, String> {
        set.rules
            .iter()
            .map(|r| {
                let h = r.header();
                let sql = match r {
                    Rule::Pattern(_, plan) => crate::sql::render(&plan.query, &[0], crate::sql::Dialect::DuckDb),
                    Rule::Anomaly(a) => {
                        let scoped = set.overrides_of(&h.id);
                        let query = crate::plan::anomaly::statement(&[(a, &scoped)], 0, 0, false);
                        crate::sql::render(&query, &[0], crate::sql::Dialect::DuckDb)
                    }
                };
                (h.id.clone(), format!("{}\n{} {}\n{sql}", r.text(&set.sources), h.category, h.base_severity))
            })
            .collect()
    };
    let (a, b) = (meaning(old), meaning(new));
    let mut sections = Vec::new();
    if old.overrides != new.overrides {
        sections.push("overrides");
    }
    if old.categories != new.categories {
        sections.push("categories");
    }
    if old.cascade != new.cascade {
        sections.push("cascade");
    }
    let inhibits = |set: &RuleSet| -> Vec<(Vec<String>, String, bool)> {
        set.inhibitions.iter().map(|i| (i.inhibited.clone(), i.by.clone(), i.same_guard)).collect()
    };
    if inhibits(old) != inhibits(new) {
        sections.push("inhibitions");
    }
    let books = |set: &RuleSet| -> Vec<String> {
        let mut all: Vec<String> = set
            .runbooks
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} {:?} {:?} {} {:?} {:?}",
                    r.id,
                    r.title,
                    r.tenant,
                    r.matches,
                    r.escalate_after_minutes,
                    r.steps,
                    r.auto_actions.iter().map(|a| (a.label(), a.switch)).collect::<Vec<_>>()
                )
            })
            .collect();
        all.sort();
        all
    };
    if books(old) != books(new) {
        sections.push("runbooks");
    }
    SetDiff {
        added: b.keys().filter(|k| !a.contains_key(*k)).cloned().collect(),
        changed: b.iter().filter(|(k, v)| a.get(*k).is_some_and(|old| old != *v)).map(|(k, _)| k.clone()).collect(),
        removed: a.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
        sections,
    }
}

/// Checks `metric` and `anomaly` blocks: names unique (anomaly ids also against
/// rule ids), every metric and rule well-formed.
fn check_anomalies(
    files: &[RuleFile],
    macros: &Macros,
    rule_ids: &HashMap<String, crate::syntax::ast::Span>,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<crate::anomaly::Metric>, Vec<crate::anomaly::AnomalyRule>) {
    let mut metrics: Vec<crate::anomaly::Metric> = Vec::new();
    let mut by_name: HashMap<String, crate::anomaly::Metric> = HashMap::new();
    let mut metric_spans: HashMap<String, crate::syntax::ast::Span> = HashMap::new();
    for def in files.iter().flat_map(|f| f.metrics.iter()) {
        if let Some(first) = metric_spans.get(&def.name.name) {
            diagnostics.push(defined_twice("metric", &def.name.name, def.name.span, *first));
            continue;
        }
        metric_spans.insert(def.name.name.clone(), def.name.span);
        match crate::anomaly::check_metric(def, macros) {
            Ok(m) => {
                by_name.insert(m.name.clone(), m.clone());
                metrics.push(m);
            }
            Err(errs) => diagnostics.extend(errs),
        }
    }
    let mut anomalies: Vec<crate::anomaly::AnomalyRule> = Vec::new();
    let mut seen: HashMap<String, crate::syntax::ast::Span> = HashMap::new();
    for def in files.iter().flat_map(|f| f.anomalies.iter()) {
        if let Some(first) = seen.get(&def.id.name).or_else(|| rule_ids.get(&def.id.name)) {
            diagnostics.push(defined_twice("rule", &def.id.name, def.id.span, *first));
            continue;
        }
        seen.insert(def.id.name.clone(), def.id.span);
        // A metric that did not check has its own errors already; do not pile on.
        let unknown_metric_failed = def.items.iter().any(|i| match i {
            crate::syntax::ast::AnomalyItem::Setting { name, values, .. } if name.name == "metric" => values.iter().any(|v| {
                matches!(v, crate::syntax::ast::SettingValue::Name(n, _) if metric_spans.contains_key(&n.name) && !by_name.contains_key(&n.name))
            }),
            _ => false,
        });
        match crate::anomaly::check_anomaly(def, &by_name) {
            Ok(a) => anomalies.push(a),
            Err(errs) if unknown_metric_failed => {
                diagnostics.extend(errs.into_iter().filter(|d| !d.message.starts_with("no metric")));
            }
            Err(errs) => diagnostics.extend(errs),
        }
    }
    (metrics, anomalies)
}

/// For every finding type the set raises: (type, runbook id, cascade step that matched),
/// at the rule's base severity and for no particular tenant.
pub fn runbook_resolution(set: &RuleSet) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = set
        .headers()
        .map(|h| {
            let key = runbook::FindingKey { finding_type: &h.finding_type, category: h.category, severity: h.base_severity, tenant: "" };
            let (book, step, _) = runbook::match_runbook(&set.runbooks, &set.cascade, &key);
            (h.finding_type.clone(), book.map(|b| b.id.clone()).unwrap_or_else(|| set.cascade.fallback.clone()), step.name().to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// W0106 when no case file's `rules` line names the rule.
fn untested(id: &str, span: crate::syntax::ast::Span, cases: &[(String, String)]) -> Option<Diagnostic> {
    let tested = cases.iter().any(|(_, text)| {
        text.lines().any(|l| l.trim_start().strip_prefix("rules").is_some_and(|rest| rest.split_whitespace().any(|w| w == id)))
    });
    (!tested).then(|| {
        Diagnostic::warning(codes::NO_TEST, format!("no case file runs rule `{id}`"), span, "untested rule")
            .hint(format!("add tests/cases/{}_fires.case with `rules {id}`", id.to_lowercase()))
    })
}

/// W0107 when a finding type gets its runbook below the exact-type step of the cascade.
fn runbook_below_exact(
    set: &RuleSet,
    finding_type: &str,
    category: crate::schema::Category,
    severity: crate::schema::Severity,
    span: crate::syntax::ast::Span,
) -> Option<Diagnostic> {
    let key = runbook::FindingKey { finding_type, category, severity, tenant: "" };
    let (book, step, _) = runbook::match_runbook(&set.runbooks, &set.cascade, &key);
    // Only a match below the exact type is worth a warning.
    (step != runbook::RunbookMatch::Step(runbook::CascadeStep::FindingType)).then(|| {
        let message = match book {
            Some(b) => format!("`{finding_type}` gets runbook `{}` at cascade step `{step}`", b.id),
            None => format!("`{finding_type}` gets no runbook: the fallback `{}` is missing", set.cascade.fallback),
        };
        Diagnostic::warning(codes::RUNBOOK_STEP, message, span, "this rule")
    })
}

/// What a rule's statement uses that `dialect` cannot run (E0801), one diagnostic per
/// rule and thing, at the rule's id: found in the statement as the renderer writes it, so
/// whatever the renderer cannot translate is caught before anything runs.
pub fn engine_checks(rules: &[Rule], dialect: crate::sql::Dialect) -> Vec<Diagnostic> {
    use crate::sql::SPARK_UNSUPPORTED as MARK;
    let mut out = Vec::new();
    for rule in rules {
        let text = match rule {
            Rule::Pattern(_, plan) => crate::sql::render(&plan.query, &[0], dialect),
            Rule::Anomaly(a) => crate::anomaly::evaluation_sql_in(a, &[0], dialect),
        };
        let mut seen: Vec<&str> = Vec::new();
        for piece in text.split(MARK).skip(1) {
            let what = piece.split('\'').next().unwrap_or(piece);
            if seen.contains(&what) {
                continue;
            }
            seen.push(what);
            let header = rule.header();
            out.push(
                Diagnostic::error(
                    crate::diag::codes::ENGINE_UNSUPPORTED,
                    format!("rule `{}` cannot run on Spark: it uses {what}", header.id),
                    header.id_span,
                    "not expressible in Spark SQL",
                )
                .hint("run it on DuckDB (the default engine), or change what it uses"),
            );
        }
    }
    out
}

/// `vigil check --strict`: what a clean rule set should also satisfy. `cases`
/// are the case files (name, text) that test rules.
pub fn strict_checks(set: &RuleSet, cases: &[(String, String)]) -> Vec<Diagnostic> {
    use crate::check::{TKind, Value};
    let mut out = Vec::new();
    let headers: Vec<&crate::check::RuleHeader> = set.headers().collect();
    for (i, h) in headers.iter().enumerate() {
        if let Some(other) = headers[..i].iter().find(|o| o.finding_type == h.finding_type) {
            out.push(
                Diagnostic::warning(
                    codes::SHADOWED_RULE,
                    format!("`{}` also raises `{}`", h.id, h.finding_type),
                    h.id_span,
                    "second rule for this type",
                )
                .with_context(other.id_span, "first rule")
                .note("both rules' findings share one identity space; one may hide the other in a replay"),
            );
        }
        out.extend(untested(&h.id, h.id_span, cases));
        out.extend(runbook_below_exact(set, &h.finding_type, h.category, h.base_severity, h.id_span));
    }
    for r in set.patterns().filter(|r| matches!(r.condition.kind, TKind::Lit(Value::Bool(false)))) {
        out.push(Diagnostic::warning(
            codes::NEVER_FIRES,
            format!("rule `{}` can never fire", r.header.id),
            r.header.id_span,
            "its condition is false",
        ));
    }
    if let Some(span) = set.categories.span {
        for (keyword, first, later) in set.categories.shared_keywords() {
            out.push(Diagnostic::warning(
                codes::SHARED_KEYWORD,
                format!("keyword `{keyword}` is listed under {first} and {later}; {later} never gets it"),
                span,
                "categories block",
            ));
        }
    }
    out
}
