//! Stage 2, check: [`RuleDef`] to [`CheckedRule`] against the schema.
//!
//! The checker collects every error of a rule before giving up on it, so an
//! analyst sees all problems of a file in one run.

mod expr;
pub mod ir;

use std::collections::{HashMap, HashSet};

use crate::diag::{codes, Diagnostic};
use crate::schema::{self, Table, Ty};
use crate::syntax::ast::*;
pub use ir::*;

/// Macros visible to every rule of a rule set, by name.
/// What rules share by name: macros and named sources.
#[derive(Debug, Clone, Default)]
pub struct Macros {
    /// `macro` definitions.
    pub macros: HashMap<String, MacroDef>,
    /// `source` definitions.
    pub sources: HashMap<String, crate::syntax::ast::SourceDef>,
}

impl Macros {
    /// A macro by name.
    pub fn get(&self, name: &str) -> Option<&MacroDef> {
        self.macros.get(name)
    }

    /// Every macro's name.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.macros.keys()
    }
}

const BUILTINS: &[(&str, Builtin)] = &[
    ("minutes", Builtin::Minutes),
    ("hours", Builtin::Hours),
    ("days", Builtin::Days),
    ("distance_m", Builtin::DistanceM),
    ("greatest", Builtin::Greatest),
    ("least", Builtin::Least),
    ("coalesce", Builtin::Coalesce),
    ("abs", Builtin::Abs),
    ("lower", Builtin::Lower),
    ("upper", Builtin::Upper),
    ("contains", Builtin::Contains),
];

/// The finding type a rule raises: its `finding` line, else its id.
pub fn finding_type_of(rule: &RuleDef) -> &str {
    rule.items
        .iter()
        .find_map(|i| match i {
            RuleItem::Finding(f) => Some(f.name.as_str()),
            _ => None,
        })
        .unwrap_or(&rule.id.name)
}

/// Reads a script file named in a rule (`script_file("x.rhai")`), relative to the rule's file.
pub type ScriptFiles<'a> = &'a dyn Fn(Span, &str) -> Result<String, String>;

/// Checks one rule. `adjustments` are the `severity TYPE { ... }` steps for its
/// finding type, checked in the rule's scope and tried before its own steps.
/// Returns the checked rule with its warnings, or every error found in it.
pub fn check_rule<'m>(
    rule: &'m RuleDef,
    macros: &'m Macros,
    adjustments: &'m [(Ident, Expr)],
    script_files: ScriptFiles<'m>,
) -> Result<(CheckedRule, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut c = Checker {
        macros,
        errors: Vec::new(),
        scopes: Vec::new(),
        next_scope: 1,
        params: Vec::new(),
        lets: Vec::new(),
        macro_stack: Vec::new(),
        entity: None,
        script_files,
        pending_scripts: Vec::new(),
        used_params: HashSet::new(),
        misdeclared: HashSet::new(),
        warnings: Vec::new(),
    };
    let out = c.rule(rule, adjustments);
    match out {
        Some(r) if c.errors.is_empty() => {
            let mut warnings = c.warnings;
            warnings.extend(quadratic_aggregates(&r));
            Ok((r, warnings))
        }
        _ => Err(c.errors),
    }
}

/// W0110: an aggregate inside another aggregate, where either relates rows by tenant
/// alone (`match tenant`), pairs every row of a tenant with every other: the cost
/// grows with the square of the tenant's rows. Such a rule is left to the time
/// budget (`--rule-budget`) at run time; `check` says so before it runs.
fn quadratic_aggregates(rule: &CheckedRule) -> Vec<Diagnostic> {
    fn tenant_wide(source: &TSource) -> bool {
        !source.join.iter().any(|(column, _, _)| *column == "site_id")
    }
    fn inner_aggregates(e: &TExpr, out: &mut Vec<(Span, bool)>) {
        let TKind::Agg { source, arg, .. } = &e.kind else { return };
        let mut visit = |x: &TExpr| {
            x.walk(&mut |y| {
                if let TKind::Agg { source: inner, .. } = &y.kind {
                    out.push((y.span, tenant_wide(source) || tenant_wide(inner)));
                }
            })
        };
        if let Some(filter) = &source.filter {
            visit(filter);
        }
        if let Some(arg) = arg {
            visit(arg);
        }
    }
    let mut roots: Vec<&TExpr> = vec![&rule.condition];
    roots.extend(rule.lets.iter().map(|l| &l.value));
    roots.extend(rule.evidence.iter().map(|e| &e.value));
    roots.extend(rule.severity_steps.iter().map(|(_, e)| e));
    let mut found: Vec<(Span, bool)> = Vec::new();
    for root in roots {
        root.walk(&mut |e| inner_aggregates(e, &mut found));
    }
    found.sort_by_key(|(span, _)| (span.start, span.end));
    found.dedup_by_key(|(span, _)| (span.start, span.end));
    found
        .into_iter()
        .filter(|(_, wide)| *wide)
        .map(|(span, _)| {
            Diagnostic::warning(
                codes::QUADRATIC,
                format!("rule `{}` pairs every row of a tenant with every other", rule.header.id),
                span,
                "an aggregate inside an aggregate over `match tenant` rows",
            )
            .note("its cost grows with the square of a tenant's rows; at run time it is stopped at --rule-budget")
            .hint("relate the rows by site or guard, or bound both with a window (`ts in last 1h`)")
        })
        .collect()
}

/// Checks a condition over one row of `table` (a metric's `where`): its names are
/// the table's columns and macros. Lets, parameters, aggregates, site columns and
/// `now` have no meaning there and are refused.
pub fn check_row_condition(table: &'static Table, filter: &Expr, macros: &Macros) -> Result<TExpr, Vec<Diagnostic>> {
    let no_scripts = |_: Span, _: &str| -> Result<String, String> { Err("scripts cannot be used here".into()) };
    let mut c = Checker {
        macros,
        errors: Vec::new(),
        scopes: vec![RowScope { id: 0, names: vec![table.name.to_string()], table, only_columns: None }],
        next_scope: 1,
        params: Vec::new(),
        lets: Vec::new(),
        macro_stack: Vec::new(),
        entity: None,
        script_files: &no_scripts,
        pending_scripts: Vec::new(),
        used_params: HashSet::new(),
        misdeclared: HashSet::new(),
        warnings: Vec::new(),
    };
    let checked = c.condition(filter);
    if let Some(e) = &checked {
        e.walk(&mut |x| {
            let what = match x.kind {
                TKind::Now => Some("`now`"),
                TKind::Agg { .. } => Some("an aggregate"),
                TKind::SiteColumn { .. } => Some("a site column"),
                TKind::InLast { .. } => Some("`in last`"),
                _ => None,
            };
            if let Some(what) = what {
                c.errors.push(
                    Diagnostic::error(
                        codes::AGG_ARGUMENT,
                        format!("{what} cannot be used in a metric filter"),
                        x.span,
                        "not a column of the row",
                    )
                    .hint("a metric filter reads only the counted row's own columns, e.g. `where kind = \"heartbeat\"`"),
                );
            }
        });
    }
    match checked {
        Some(e) if c.errors.is_empty() => Ok(e),
        _ => Err(c.errors),
    }
}

/// A row variable in scope.
#[derive(Clone)]
struct RowScope {
    id: ScopeId,
    /// Names that refer to this row: the entity name, the alias or the table name.
    names: Vec<String>,
    table: &'static Table,
    /// For the guard entity only these columns exist on the entity row.
    only_columns: Option<&'static [&'static str]>,
}

struct Checker<'m> {
    macros: &'m Macros,
    errors: Vec<Diagnostic>,
    scopes: Vec<RowScope>,
    next_scope: ScopeId,
    params: Vec<Param>,
    lets: Vec<(String, Ty)>,
    /// Macro expansions in progress: name and argument bindings.
    macro_stack: Vec<(String, HashMap<String, TExpr>)>,
    entity: Option<&'static schema::Entity>,
    script_files: ScriptFiles<'m>,
    /// Scripts seen, compiled at the end of the rule when every name is known.
    pending_scripts: Vec<(ScriptCode<'m>, crate::script::ScriptRole)>,
    /// Parameters some expression reads.
    used_params: HashSet<String>,
    /// Parameters already reported as declared with the wrong type (reported once).
    misdeclared: HashSet<String>,
    /// Warnings (the rule still loads).
    warnings: Vec<Diagnostic>,
}

const GUARD_ENTITY_COLUMNS: &[&str] = &["tenant_id", "site_id", "guard_id"];

impl<'m> Checker<'m> {
    fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn rule(&mut self, rule: &'m RuleDef, adjustments: &'m [(Ident, Expr)]) -> Option<CheckedRule> {
        let mut finding = None;
        let mut title = None;
        let mut doc = None;
        let mut category = None;
        let mut base_severity: Option<schema::Severity> = None;
        let mut steps_src = Vec::new();
        let mut cadence = None;
        let mut for_item = None;
        let mut actions = Vec::new();

        // First pass: the header items, params and the entity (lets and conditions need them).
        for item in &rule.items {
            match item {
                RuleItem::Finding(id) => self.once(&mut finding, id.clone(), id.span, "finding"),
                RuleItem::Title(s) => self.once(&mut title, s.clone(), s.span, "title"),
                RuleItem::Doc(s) => self.once(&mut doc, s.value.clone(), s.span, "doc"),
                RuleItem::Category(c) => match crate::diag::parse_word::<schema::Category>(c) {
                    Ok(k) => self.once(&mut category, (k, c.span), c.span, "category"),
                    Err(d) => self.err(d),
                },
                RuleItem::Severity { level, when, span } => {
                    // An unknown word is reported once; MEDIUM stands in so that no
                    // second error says the rule has no severity.
                    let severity = self.severity_word(level);
                    match when {
                        None => {
                            self.once(&mut base_severity, severity.unwrap_or(schema::Severity::Medium), *span, "severity without `when`")
                        }
                        Some(cond) => steps_src.extend(severity.map(|s| (s, cond))),
                    }
                }
                RuleItem::Cadence(c) => match crate::diag::parse_word::<schema::Cadence>(c) {
                    Ok(k) => self.once(&mut cadence, k, c.span, "cadence"),
                    Err(d) => self.err(d),
                },
                RuleItem::For { span, .. } => self.once(&mut for_item, item, *span, "for"),
                RuleItem::Param { name, value, span } => self.param(name, value, *span),
                RuleItem::Action(s) => actions.push(s.value.clone()),
                RuleItem::Let { .. } | RuleItem::When(_) | RuleItem::Evidence(_) => {}
            }
        }
        let rule_head = Span { file: rule.span.file, start: rule.span.start, end: rule.id.span.end };
        if title.is_none() {
            self.err(
                Diagnostic::error(codes::MISSING_ITEM, format!("rule `{}` has no title", rule.id), rule_head, "this rule")
                    .hint("add a line such as: title \"Site silent while guards are on duty\""),
            );
        }
        if base_severity.is_none() {
            self.err(
                Diagnostic::error(codes::MISSING_ITEM, format!("rule `{}` has no base severity", rule.id), rule_head, "this rule")
                    .hint("add a line such as: severity HIGH (without `when`)"),
            );
        }
        let entity = match for_item {
            Some(RuleItem::For { entity, table, filter, .. }) => self.entity(entity, table.as_ref(), filter.as_ref()),
            _ => {
                self.err(
                    Diagnostic::error(
                        codes::MISSING_ITEM,
                        format!("rule `{}` does not say what it is about", rule.id),
                        rule_head,
                        "this rule",
                    )
                    .hint("add a line such as: for site, for tour, or for guard in shifts where on_duty"),
                );
                None
            }
        };
        let entity = entity?;

        // Second pass, in order: lets, conditions, evidence (a let is visible after its line).
        let mut lets = Vec::new();
        let mut conditions = Vec::new();
        let mut evidence = Vec::new();
        let mut seen_evidence = HashSet::new();
        for item in &rule.items {
            match item {
                RuleItem::Let { name, value, .. } => {
                    if self.name_taken(&name.name) {
                        self.err(Diagnostic::error(
                            codes::DUPLICATE_ID,
                            format!("`{}` is already defined in this rule", name.name),
                            name.span,
                            "defined again here",
                        ));
                    }
                    match self.expr(value) {
                        Some(v) => {
                            self.lets.push((name.name.clone(), v.ty));
                            lets.push(Let { name: name.name.clone(), value: v });
                        }
                        // Keep the name known (with a type that fits anywhere) so its
                        // uses do not repeat the error; the rule fails anyway.
                        None => self.lets.push((name.name.clone(), Ty::Null)),
                    }
                }
                RuleItem::When(e) => {
                    if let Some(code) = script_call(e) {
                        self.pending_scripts.push((code, crate::script::ScriptRole::Condition));
                    } else if let Some(v) = self.condition(e) {
                        conditions.push(v);
                    }
                }
                RuleItem::Evidence(fields) => {
                    for f in fields {
                        if !seen_evidence.insert(f.name.name.clone()) {
                            self.err(Diagnostic::error(
                                codes::DUPLICATE_ID,
                                format!("evidence `{}` is listed twice", f.name.name),
                                f.name.span,
                                "listed again here",
                            ));
                        }
                        if let Some(code) = f.value.as_ref().and_then(script_call) {
                            self.pending_scripts.push((code, crate::script::ScriptRole::Evidence(f.name.name.clone())));
                            continue;
                        }
                        let value = match &f.value {
                            Some(e) => self.expr(e),
                            None => self.path(None, &f.name, f.name.span),
                        };
                        if let Some(value) = value {
                            evidence.push(EvidenceValue { name: f.name.name.clone(), value });
                        }
                    }
                }
                _ => {}
            }
        }
        let mut severity_steps = Vec::new();
        let adjusted: Vec<(schema::Severity, &Expr)> =
            adjustments.iter().filter_map(|(level, cond)| self.severity_word(level).map(|s| (s, cond))).collect();
        for (level, cond) in adjusted.into_iter().chain(steps_src) {
            if let Some(code) = script_call(cond) {
                self.pending_scripts.push((code, crate::script::ScriptRole::Severity(level)));
            } else if let Some(c) = self.condition(cond) {
                severity_steps.push((level, c));
            }
        }
        // Scripts read the row: ids, severity, parameters, lets and evidence.
        let mut names: Vec<String> = ["tenant_id", "site_id", "guard_id", "entity_id", "severity"].map(String::from).to_vec();
        names.extend(self.params.iter().map(|p| p.name.clone()));
        names.extend(self.lets.iter().map(|(n, _)| n.clone()));
        names.extend(evidence.iter().map(|e: &EvidenceValue| e.name.clone()));
        let mut scripts = Vec::new();
        let script_texts: Vec<String> = self
            .pending_scripts
            .iter()
            .map(|(code, _)| match code {
                ScriptCode::Inline(s) => s.value.clone(),
                // A script file may read any parameter: count them all as used.
                ScriptCode::File(_) => self.params.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(" "),
            })
            .collect();
        for p in &self.params {
            let in_script = script_texts.iter().any(|t| t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == p.name));
            if !self.used_params.contains(&p.name) && !in_script {
                self.warnings.push(
                    Diagnostic::warning(codes::UNUSED_PARAM, format!("parameter `{}` is never used", p.name), p.span, "declared here")
                        .hint("use it in a condition, a window or evidence, or remove it"),
                );
            }
        }
        for (code, role) in std::mem::take(&mut self.pending_scripts) {
            if let crate::script::ScriptRole::Evidence(n) = &role {
                names.push(n.clone());
            }
            if let Some(s) = self.script(code, role, &names) {
                scripts.push(s);
            }
        }
        let script_conditions = scripts.iter().any(|s| s.role == crate::script::ScriptRole::Condition);
        if script_conditions && conditions.is_empty() {
            conditions.push(TExpr { kind: TKind::Lit(Value::Bool(true)), ty: Ty::Bool, span: rule_head });
        }
        if conditions.is_empty() && self.errors.is_empty() {
            self.err(
                Diagnostic::error(codes::MISSING_ITEM, format!("rule `{}` has no `when` condition", rule.id), rule_head, "this rule")
                    .hint("add a line such as: when recent_activity == 0"),
            );
        }
        self.scopes.clear();
        let condition = conditions.into_iter().reduce(|a, b| {
            let span = a.span.to(b.span);
            TExpr { kind: TKind::Binary { op: BinOp::And, lhs: Box::new(a), rhs: Box::new(b) }, ty: Ty::Bool, span }
        })?;
        let finding_type = finding.map(|f| f.name).unwrap_or_else(|| rule.id.name.clone());
        Some(CheckedRule {
            header: RuleHeader {
                id: rule.id.name.clone(),
                id_span: rule_head,
                category_stated: category.as_ref().map(|(_, span)| *span),
                category: category.map(|(c, _)| c).unwrap_or(schema::Category::Operational),
                finding_type,
                title: title.map(|t| t.value).unwrap_or_default(),
                doc,
                base_severity: base_severity.unwrap_or(schema::Severity::Medium),
                cadence: cadence.unwrap_or(schema::Cadence::Comprehensive),
                actions,
                span: rule.span,
            },
            severity_steps,
            entity,
            params: std::mem::take(&mut self.params),
            lets,
            condition,
            evidence,
            scripts,
        })
    }

    /// Compiles a script; errors point into the rule file (inline) or name the script file.
    fn script(&mut self, code: ScriptCode, role: crate::script::ScriptRole, names: &[String]) -> Option<crate::script::RuleScript> {
        let (text, span, inline) = match code {
            ScriptCode::Inline(s) => (s.value.clone(), s.span, true),
            ScriptCode::File(s) => match (self.script_files)(s.span, &s.value) {
                Ok(text) => (text, s.span, false),
                Err(e) => {
                    self.err(Diagnostic::error(
                        codes::UNKNOWN_NAME,
                        format!("cannot read script `{}`: {e}", s.value),
                        s.span,
                        "script file",
                    ));
                    return None;
                }
            },
        };
        match crate::script::compile(&text, names) {
            Ok(ast) => Some(crate::script::RuleScript { role, ast, span }),
            Err(e) => {
                let (at, label) = if inline {
                    let start = span.start + 1 + crate::script::offset_of(&text, e.line, e.column);
                    (Span { file: span.file, start, end: start + 1 }, "here".to_string())
                } else {
                    (span, format!("at line {}, column {} of the script", e.line, e.column))
                };
                self.err(Diagnostic::error(codes::SCRIPT, format!("the script does not compile: {}", e.message), at, label).hint(
                    "scripts are Rhai over the row's figures (ids, severity, parameters, lets, evidence); write them in single quotes",
                ));
                None
            }
        }
    }

    fn once<T>(&mut self, slot: &mut Option<T>, value: T, span: Span, what: &str) {
        if slot.is_some() {
            self.err(
                Diagnostic::error(codes::REPEATED_ITEM, format!("`{what}` appears twice in this rule"), span, "second one here")
                    .hint("keep one; for conditional severities write `severity LEVEL when CONDITION`"),
            );
        } else {
            *slot = Some(value);
        }
    }

    fn severity_word(&mut self, level: &Ident) -> Option<schema::Severity> {
        match crate::diag::parse_word::<schema::Severity>(level) {
            Ok(s) => Some(s),
            Err(d) => {
                self.err(d);
                None
            }
        }
    }

    fn name_taken(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name == name) || self.lets.iter().any(|(n, _)| n == name)
    }

    fn param(&mut self, name: &Ident, value: &Literal, span: Span) {
        if self.name_taken(&name.name) {
            self.err(Diagnostic::error(
                codes::DUPLICATE_ID,
                format!("parameter `{}` is declared twice", name.name),
                name.span,
                "declared again here",
            ));
            return;
        }
        let default = match value {
            Literal::Duration { micros, span } => {
                if *micros <= 0 {
                    self.err(
                        Diagnostic::error(codes::BAD_WINDOW, "a duration parameter must be longer than zero", *span, "zero")
                            .hint("use at least 1s"),
                    );
                }
                Value::Duration(*micros)
            }
            Literal::Number { value, .. } => Value::Number(*value),
            Literal::String(s) => Value::String(s.value.clone()),
            Literal::Bool { value, .. } => Value::Bool(*value),
            Literal::Null { span } => {
                self.err(Diagnostic::error(codes::TYPE_MISMATCH, "a parameter needs a value, not null", *span, "null"));
                Value::Null
            }
        };
        self.params.push(Param { name: name.name.clone(), default, span });
    }

    fn entity(&mut self, name: &Ident, table: Option<&Ident>, filter: Option<&Expr>) -> Option<EntityScope> {
        let Some(entity) = schema::entity(&name.name) else {
            self.err(
                Diagnostic::error(codes::UNKNOWN_ENTITY, format!("unknown entity `{}`", name.name), name.span, "not an entity")
                    .suggest(&name.name, schema::ENTITIES.iter().map(|e| e.name))
                    .hint("a rule is for site, guard, tour, task, alert, ticket, report or shift"),
            );
            return None;
        };
        self.entity = Some(entity);
        let table = match (table, entity.table) {
            (Some(t), _) => {
                let found = self.table(t)?;
                if entity.name == "guard" && found.key("guard").is_none() {
                    self.err(Diagnostic::error(codes::UNKNOWN_KEY, format!("`{}` has no guard column", t.name), t.span, "guards cannot come from here")
                        .hint("guards come from shifts, phone_events, location_updates, panic_events, tours, tasks, checkpoint_scans or activity"));
                    return None;
                }
                if entity.table.is_some_and(|own| own != found.name) {
                    self.err(
                        Diagnostic::error(
                            codes::UNKNOWN_ENTITY,
                            format!("a {} comes from `{}`, not `{}`", entity.name, entity.table.unwrap_or(""), t.name),
                            t.span,
                            "other table",
                        )
                        .hint("only `for guard` draws its rows from another table"),
                    );
                    return None;
                }
                found
            }
            (None, Some(own)) => schema::table(own)?,
            (None, None) => {
                self.err(
                    Diagnostic::error(codes::MISSING_ITEM, "say where the guards come from", name.span, "which guards?")
                        .hint("for guard in shifts where on_duty"),
                );
                return None;
            }
        };
        let filter = match filter {
            Some(f) => {
                // The filter sees the rows of the table itself (a shift, a panic event, ...).
                self.scopes.push(RowScope {
                    id: 0,
                    names: vec![entity.name.to_string(), table.name.to_string()],
                    table,
                    only_columns: None,
                });
                let checked = self.condition(f);
                self.scopes.pop();
                checked
            }
            None => None,
        };
        let only_columns = if entity.name == "guard" { Some(GUARD_ENTITY_COLUMNS) } else { None };
        self.scopes.push(RowScope { id: 0, names: vec![entity.name.to_string()], table, only_columns });
        Some(EntityScope { entity, table, filter })
    }

    fn table(&mut self, name: &Ident) -> Option<&'static Table> {
        let found = schema::table(&name.name);
        if found.is_none() {
            self.err(
                Diagnostic::error(codes::UNKNOWN_TABLE, format!("unknown table `{}`", name.name), name.span, "not in the signal schema")
                    .suggest(&name.name, schema::TABLES.iter().map(|t| t.name))
                    .note("tables are those of CONTRACT.md, plus `activity`"),
            );
        }
        found
    }
}

/// A script named in a rule.
#[derive(Clone, Copy)]
enum ScriptCode<'a> {
    /// `script('code')`
    Inline(&'a StringLit),
    /// `script_file('name.rhai')`
    File(&'a StringLit),
}

/// `script('...')` or `script_file('...')` as a whole expression.
fn script_call(e: &Expr) -> Option<ScriptCode<'_>> {
    let ExprKind::Call { name, args } = &e.kind else { return None };
    let [Expr { kind: ExprKind::Lit(Literal::String(s)), .. }] = args.as_slice() else { return None };
    match name.name.as_str() {
        "script" => Some(ScriptCode::Inline(s)),
        "script_file" => Some(ScriptCode::File(s)),
        _ => None,
    }
}
