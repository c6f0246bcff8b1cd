//! Stage 3, plan: [`CheckedRule`] to a set-based SQL [`Query`] over a relation of
//! evaluation times (ticks).
//!
//! Invariant: the query reads signal tables only through *as-of views* that pair
//! each row with every tick T that may see it: rows whose event time is after T
//! are not paired with T, and closing columns after T read as NULL, so no rule can
//! look ahead. One statement evaluates the rule for every tenant, site, guard and
//! tick at once; its output order is fixed by ORDER BY (tick first). A rule is
//! planned once per load; evaluating at some ticks only renders the ticks into it
//! ([`crate::sql::render`]).

pub mod anomaly;
pub mod sql;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use crate::check::{Builtin, CheckedRule, Let, TExpr, TKind, TSource, Value};
use crate::schema::{self, Table, Ty, Word};
use crate::sql::{Cte, From, Func, Op, OrderKey, Query, Select, SqlExpr, SqlType, TICK};
use crate::syntax::ast::{AggFn, BinOp};

/// The planned statement and the shape of its output.
#[derive(Debug, Clone)]
pub struct SqlPlan {
    /// The statement.
    pub query: Query,
    /// Evidence columns (`ev_<name>`) in order, with their types.
    pub evidence: Vec<(String, Ty)>,
    /// For rules with scripts: the lets, as columns after the evidence, for the scripts to read.
    pub script_inputs: Vec<(String, Ty)>,
}

/// A parameter value that applies to one tenant, one site, or one site of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedValue {
    /// The parameter.
    pub param: String,
    /// Only this tenant (`None`: any).
    pub tenant: Option<String>,
    /// Only this site (`None`: any).
    pub site: Option<String>,
    /// The value there.
    pub value: Value,
}

/// Effective parameter values: one value per name, plus per-tenant/per-site
/// overrides, which the SQL picks per entity row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamValues {
    /// Values for everyone (defaults unless replaced).
    pub values: HashMap<String, Value>,
    /// Overrides, any order: the most specific one wins (tenant and site, then site, then tenant).
    pub scoped: Vec<ScopedValue>,
}

impl ParamValues {
    /// The value of a parameter for one tenant and site (what the SQL's CASE picks).
    pub fn effective(&self, name: &str, tenant: &str, site: &str) -> Option<&Value> {
        let applies = |s: &&ScopedValue| {
            s.param == name && s.tenant.as_deref().is_none_or(|t| t == tenant) && s.site.as_deref().is_none_or(|x| x == site)
        };
        let rank = |s: &ScopedValue| match (&s.tenant, &s.site) {
            (Some(_), Some(_)) => 0,
            (None, Some(_)) => 1,
            _ => 2,
        };
        self.scoped.iter().filter(applies).min_by_key(|s| rank(s)).map(|s| &s.value).or_else(|| self.values.get(name))
    }
}

/// Output columns every plan produces, before the evidence columns; `tick` is the
/// evaluation time in microseconds since the epoch.
pub const FIXED_COLUMNS: &[&str] = &["tenant_id", "site_id", "guard_id", "entity_id", "severity", "suppressed", "tick"];

/// Plans a rule for evaluation at any set of ticks.
pub fn plan(rule: &CheckedRule, params: &ParamValues) -> SqlPlan {
    plan_with(rule, params, true)
}

/// Plans a rule; `push_down` moves the parts of the condition that read only the
/// entity row into the entity's own filter, so figures are computed only for rows
/// that can still fire (off for `explain`, which shows every candidate).
fn plan_with(rule: &CheckedRule, params: &ParamValues, push_down: bool) -> SqlPlan {
    let mut p = Planner::new(rule, params, Now::Ticks, push_down);
    p.collect_bounds();
    let body_and_layers = p.body();
    let mut ctes = p.as_of_views();
    ctes.extend(body_and_layers.0);
    let script_inputs = if rule.scripts.is_empty() { Vec::new() } else { rule.lets.iter().map(|l| (l.name.clone(), l.value.ty)).collect() };
    SqlPlan {
        query: Query { ctes, body: body_and_layers.1 },
        evidence: rule.evidence.iter().map(|e| (e.name.clone(), e.value.ty)).collect(),
        script_inputs,
    }
}

/// The statement `explain` runs: every candidate row, its lets, each conjunct of its
/// condition and whether the whole condition holds, without filtering.
#[derive(Debug, Clone)]
pub struct ExplainPlan {
    /// The statement.
    pub query: Query,
    /// Output column names.
    pub columns: Vec<String>,
    /// The language type of each column (`None`: keys and flags, shown as they are).
    pub types: Vec<Option<Ty>>,
    /// The `when` conjuncts, in order, each read by a column `when[N]`.
    pub conditions: Vec<crate::syntax::ast::Span>,
    /// The severity steps (level, condition), in order, each read by a column `severity[N]`.
    pub severity_steps: Vec<(schema::Severity, crate::syntax::ast::Span)>,
}

/// Plans the "why did it (not) fire" query of a rule (render it for one tick).
pub fn plan_explain(rule: &CheckedRule, params: &ParamValues) -> ExplainPlan {
    let mut planned = plan_with(rule, params, false);
    let r0 = rel(0);
    let condition = planned.query.body.filter.take().unwrap_or(SqlExpr::Bool(true));
    let mut items: Vec<(SqlExpr, Option<String>)> = planned.query.body.items.drain(..4).collect();
    let mut columns: Vec<String> = vec!["tenant_id".into(), "site_id".into(), "guard_id".into(), "entity_id".into()];
    let mut types: Vec<Option<Ty>> = vec![None; 4];
    for l in &rule.lets {
        let value = SqlExpr::col(&r0, &let_column(&l.name));
        // Times as ISO text; the other types as they are, formatted by the caller.
        let value = if l.value.ty == Ty::Time { SqlExpr::Func(Func::IsoUtc, vec![value]) } else { value };
        items.push((value, Some(l.name.clone())));
        columns.push(l.name.clone());
        types.push(Some(l.value.ty));
    }
    // Each conjunct of `when` as true, false or null, lowered like the whole condition
    // (same row, same tick, same scopes).
    let conjuncts = conjuncts(&rule.condition);
    let mut conditions = Vec::new();
    let mut p = Planner::new(rule, params, Now::Ticks, false);
    p.collect_bounds();
    if conjuncts.len() > 1 {
        for (i, c) in conjuncts.into_iter().enumerate() {
            let sql = p.expr(c);
            let name = format!("when[{}]", i + 1);
            items.push((sql, Some(name.clone())));
            columns.push(name);
            types.push(None);
            conditions.push(c.span);
        }
    }
    items.push((SqlExpr::Func(Func::Coalesce, vec![condition, SqlExpr::Bool(false)]), Some("fires".into())));
    columns.push("fires".into());
    types.push(None);
    // Each severity step's condition (the first that holds sets the severity).
    let mut severity_steps = Vec::new();
    for (i, (level, cond)) in rule.severity_steps.iter().enumerate() {
        let name = format!("severity[{}]", i + 1);
        items.push((p.expr(cond), Some(name.clone())));
        columns.push(name);
        types.push(None);
        severity_steps.push((*level, cond.span));
    }
    planned.query.body.items = items;
    ExplainPlan { query: planned.query, columns, types, conditions, severity_steps }
}

/// The signal tables the derived `activity` table is built from.
pub const ACTIVITY_SOURCES: [&str; 5] = ["phone_events", "location_updates", "checkpoint_scans", "tasks", "shifts"];

/// For each table a rule reads: how far before a tick T its event times reach
/// (rows with event time in (T - lookback, T]; `None`: all rows up to T, for plans
/// and tables read without a window).
pub fn read_ranges(rule: &CheckedRule, params: &ParamValues) -> BTreeMap<&'static str, Option<i64>> {
    let mut p = Planner::new(rule, params, Now::Ticks, true);
    p.collect_bounds();
    p.lookbacks
}

/// Is a finding of `finding_type` on row `row` (its tenant_id and site_id) covered by a
/// maintenance window at `now`? (CONTRACT.md: tenant matches, site matches or is NULL,
/// starts_at <= T < ends_at, finding_types NULL or listing the type.)
pub fn suppressed_sql(finding_type: &str, now: SqlExpr, row: &str) -> SqlExpr {
    let m = "mw";
    let r0 = row;
    let listed = SqlExpr::bin(
        Op::Gt,
        SqlExpr::Func(
            Func::Strpos,
            vec![
                SqlExpr::bin(
                    Op::Concat,
                    SqlExpr::bin(
                        Op::Concat,
                        SqlExpr::Str(",".into()),
                        SqlExpr::Func(
                            Func::Replace,
                            vec![SqlExpr::col(m, "finding_types"), SqlExpr::Str(" ".into()), SqlExpr::Str(String::new())],
                        ),
                    ),
                    SqlExpr::Str(",".into()),
                ),
                SqlExpr::Str(format!(",{},", finding_type)),
            ],
        ),
        SqlExpr::Int(0),
    );
    let filter = SqlExpr::and_all(vec![
        SqlExpr::bin(Op::Eq, SqlExpr::col(m, "tenant_id"), SqlExpr::col(r0, "tenant_id")),
        SqlExpr::bin(
            Op::Or,
            SqlExpr::IsNull(Box::new(SqlExpr::col(m, "site_id")), false),
            SqlExpr::bin(Op::Eq, SqlExpr::col(m, "site_id"), SqlExpr::col(r0, "site_id")),
        ),
        SqlExpr::bin(Op::Le, SqlExpr::col(m, "starts_at"), now.clone()),
        SqlExpr::bin(Op::Lt, now, SqlExpr::col(m, "ends_at")),
        SqlExpr::bin(Op::Or, SqlExpr::IsNull(Box::new(SqlExpr::col(m, "finding_types")), false), listed),
    ]);
    SqlExpr::Exists(Box::new(Select {
        items: vec![(SqlExpr::Int(1), None)],
        from: From::Raw { name: "maintenance_windows".into(), alias: m.into() },
        filter,
        ..Select::default()
    }))
}

/// SQL for a condition over one row of a table (a metric's filter), the row being `r0`.
/// The checker allows only columns, constants, operators and built-ins there
/// ([`crate::check::check_row_condition`]), so no rule context is needed.
pub fn row_condition_sql(e: &TExpr, table: &'static Table, now: i64) -> SqlExpr {
    let span = e.span;
    let rule = CheckedRule {
        header: crate::check::RuleHeader {
            id: String::new(),
            id_span: span,
            finding_type: String::new(),
            title: String::new(),
            doc: None,
            category: schema::Category::Operational,
            category_stated: None,
            base_severity: schema::Severity::Medium,
            cadence: schema::Cadence::Heartbeat,
            actions: Vec::new(),
            span,
        },
        severity_steps: Vec::new(),
        entity: crate::check::EntityScope { entity: &schema::ENTITIES[0], table, filter: None },
        params: Vec::new(),
        lets: Vec::new(),
        condition: e.clone(),
        evidence: Vec::new(),
        scripts: Vec::new(),
    };
    let params = ParamValues::default();
    let p = Planner::new(&rule, &params, Now::At(now), false);
    p.expr(e)
}

/// A value overridden per tenant or site, as SQL over the row `row` (its tenant_id
/// and site_id): the most specific override wins (tenant and site, then site, then
/// tenant), else `base`. Pattern and anomaly rules share it.
pub fn scoped_sql(base: SqlExpr, mut scoped: Vec<&ScopedValue>, row: &str) -> SqlExpr {
    if scoped.is_empty() {
        return base;
    }
    let specificity = |s: &ScopedValue| match (&s.tenant, &s.site) {
        (Some(_), Some(_)) => 0,
        (None, Some(_)) => 1,
        _ => 2,
    };
    scoped.sort_by_key(|s| specificity(s));
    let whens = scoped
        .into_iter()
        .map(|s| {
            let mut test = Vec::new();
            if let Some(t) = &s.tenant {
                test.push(SqlExpr::bin(Op::Eq, SqlExpr::col(row, "tenant_id"), SqlExpr::Str(t.clone())));
            }
            if let Some(site) = &s.site {
                test.push(SqlExpr::bin(Op::Eq, SqlExpr::col(row, "site_id"), SqlExpr::Str(site.clone())));
            }
            (SqlExpr::and_all(test).unwrap_or(SqlExpr::Bool(true)), value_sql(&s.value))
        })
        .collect();
    SqlExpr::Case(whens, Box::new(base))
}

/// A constant as SQL.
pub fn value_sql(v: &Value) -> SqlExpr {
    match v {
        Value::Number(n) => SqlExpr::Num(*n),
        Value::String(s) => SqlExpr::Str(s.clone()),
        Value::Bool(b) => SqlExpr::Bool(*b),
        Value::Duration(d) => SqlExpr::Int(*d),
        Value::Null => SqlExpr::Null,
    }
}

/// The default parameter values of a rule.
pub fn default_params(rule: &CheckedRule) -> ParamValues {
    ParamValues { values: rule.params.iter().map(|p| (p.name.clone(), p.default.clone())).collect(), scoped: Vec::new() }
}

/// What `now` is in the SQL.
#[derive(Debug, Clone, Copy)]
enum Now {
    /// The tick of the row being evaluated (rules).
    Ticks,
    /// A fixed time (a metric's row condition, evaluated by anomaly statements).
    At(i64),
    /// No time and no signals: figures given by hand (`vigil categorize`), where
    /// `now`, aggregates and site columns are unknown (NULL).
    Unknown,
}

/// The severity steps of a rule over figures given by hand, lowered like the
/// rule's own statement: one SELECT over a one-row relation `r0` holding the
/// given lets and entity columns (NULL where not given), returning the 1-based
/// step that holds first, or 0 for the base severity. `now`, aggregates and site
/// columns read as NULL, so a step that needs them does not hold.
pub fn plan_context_severity(rule: &CheckedRule, params: &ParamValues, given: &HashMap<String, Value>) -> Query {
    let p = Planner::new(rule, params, Now::Unknown, false);
    let r0 = rel(0);
    let typed = |name: &str, ty: Ty| -> SqlExpr {
        let sql_type = match ty {
            Ty::Number => SqlType::Double,
            Ty::Duration => SqlType::BigInt,
            Ty::Bool => SqlType::Boolean,
            Ty::Time => SqlType::Timestamp,
            Ty::String | Ty::Null => SqlType::Varchar,
        };
        let value = given.get(name).filter(|v| v.ty() == ty).map(|v| p.value(v)).unwrap_or(SqlExpr::Null);
        SqlExpr::Cast(Box::new(value), sql_type)
    };
    let mut items: Vec<(SqlExpr, Option<String>)> =
        rule.lets.iter().map(|l| (typed(&l.name, l.value.ty), Some(let_column(&l.name)))).collect();
    items.extend(rule.entity.table.columns.iter().map(|c| (typed(c.name, c.storage.ty()), Some(c.name.to_string()))));
    let row = Select { distinct: false, items, from: From::Nothing, ..Select::default() };
    let steps = rule.severity_steps.iter().enumerate().map(|(i, (_, cond))| (p.expr(cond), SqlExpr::Int(i as i64 + 1))).collect::<Vec<_>>();
    let step = if steps.is_empty() { SqlExpr::Int(0) } else { SqlExpr::Case(steps, Box::new(SqlExpr::Int(0))) };
    Query { ctes: vec![Cte::new("given", row)], body: Select::from_table("given", &r0, vec![(step, Some("step".into()))]) }
}

struct Planner<'a> {
    rule: &'a CheckedRule,
    params: &'a ParamValues,
    now: Now,
    /// Per table read: how far before the tick any use reads (None: all history).
    lookbacks: BTreeMap<&'static str, Option<i64>>,
    /// Move entity-only conditions into the entity filter.
    push_down: bool,
    /// The innermost row variable that carries a tick: `now` is its tick.
    tick_scope: Cell<usize>,
}

/// Does the as-of view of this table pair rows with ticks? Tables with no event
/// time and no closing column (sites, maintenance windows) look the same at every
/// tick and are read once.
fn per_tick(table: &Table) -> bool {
    table.derived || table.event_time.is_some() || !table.closing.is_empty()
}

/// The `and`-ed parts of a condition.
fn conjuncts(e: &TExpr) -> Vec<&TExpr> {
    match &e.kind {
        TKind::Binary { op: BinOp::And, lhs, rhs } => {
            let mut out = conjuncts(lhs);
            out.extend(conjuncts(rhs));
            out
        }
        _ => vec![e],
    }
}

/// The lets an expression reads, directly or through other lets.
fn lets_needed_by<'r>(rule: &'r CheckedRule, e: &TExpr) -> std::collections::HashSet<&'r str> {
    let mut needed = std::collections::HashSet::new();
    let mut todo: Vec<String> = Vec::new();
    let mut note = |x: &TExpr| {
        if let TKind::Let(name) = &x.kind {
            todo.push(name.clone());
        }
    };
    e.walk(&mut note);
    while let Some(name) = todo.pop() {
        let Some(l) = rule.lets.iter().find(|l| l.name == name) else { continue };
        if needed.insert(l.name.as_str()) {
            l.value.walk(&mut |x| {
                if let TKind::Let(inner) = &x.kind {
                    todo.push(inner.clone());
                }
            });
        }
    }
    needed
}

/// Does the expression read only the entity row (no lets, no aggregates)?
fn reads_only_entity_row(e: &TExpr) -> bool {
    let mut only = true;
    e.walk(&mut |x| {
        if matches!(x.kind, TKind::Let(_) | TKind::Agg { .. } | TKind::SiteColumn { .. }) {
            only = false;
        }
    });
    only
}

fn rel(scope: usize) -> String {
    format!("r{scope}")
}

fn let_column(name: &str) -> String {
    format!("l_{name}")
}

const MICROS_PER_MINUTE: f64 = 60_000_000.0;

impl<'a> Planner<'a> {
    fn new(rule: &'a CheckedRule, params: &'a ParamValues, now: Now, push_down: bool) -> Planner<'a> {
        Planner { rule, params, now, lookbacks: BTreeMap::new(), push_down, tick_scope: Cell::new(0) }
    }

    /// The evaluation time T where an expression is rendered.
    fn now_sql(&self) -> SqlExpr {
        match self.now {
            Now::Ticks => SqlExpr::col(&rel(self.tick_scope.get()), TICK),
            Now::At(t) => SqlExpr::Timestamp(t),
            Now::Unknown => SqlExpr::Cast(Box::new(SqlExpr::Null), SqlType::Timestamp),
        }
    }

    /// `now + offset` (offset in microseconds).
    fn now_plus(&self, offset: i64) -> SqlExpr {
        match (self.now, offset) {
            (Now::At(t), _) => SqlExpr::Timestamp(t + offset),
            (Now::Unknown, _) => self.now_sql(),
            (Now::Ticks, 0) => self.now_sql(),
            (Now::Ticks, o) if o < 0 => SqlExpr::bin(Op::Sub, self.now_sql(), micros_interval(SqlExpr::Int(-o))),
            (Now::Ticks, o) => SqlExpr::bin(Op::Add, self.now_sql(), micros_interval(SqlExpr::Int(o))),
        }
    }

    fn value(&self, v: &Value) -> SqlExpr {
        value_sql(v)
    }

    fn param(&self, name: &str) -> Option<&Value> {
        self.params.values.get(name).or_else(|| self.rule.params.iter().find(|p| p.name == name).map(|p| &p.default))
    }

    fn overrides_of<'p>(&'p self, name: &'p str) -> impl Iterator<Item = &'p ScopedValue> + 'p {
        self.params.scoped.iter().filter(move |s| s.param == name)
    }

    /// A parameter as SQL: its value, or a CASE over the entity row's tenant and
    /// site when some tenant or site overrides it.
    fn param_sql(&self, name: &str) -> SqlExpr {
        let base = self.param(name).map(|v| self.value(v)).unwrap_or(SqlExpr::Null);
        scoped_sql(base, self.overrides_of(name).collect(), &rel(0))
    }

    /// The longest value a duration expression can take for any tenant or site
    /// (for read ranges; equal to [`Self::const_duration`] without overrides).
    fn widest_duration(&self, e: &TExpr) -> Option<i64> {
        match &e.kind {
            TKind::Param(name) => {
                let base = match self.param(name) {
                    Some(Value::Duration(d)) => *d,
                    _ => return None,
                };
                Some(
                    self.overrides_of(name)
                        .filter_map(|s| if let Value::Duration(d) = s.value { Some(d) } else { None })
                        .fold(base, i64::max),
                )
            }
            _ => self.const_duration(e),
        }
    }

    /// A duration known before the query runs (literal or parameter).
    fn const_duration(&self, e: &TExpr) -> Option<i64> {
        match &e.kind {
            TKind::Lit(Value::Duration(d)) => Some(*d),
            TKind::Param(name) if self.overrides_of(name).next().is_none() => match self.param(name) {
                Some(Value::Duration(d)) => Some(*d),
                _ => None,
            },
            TKind::Binary { op: BinOp::Add, lhs, rhs } if e.ty == Ty::Duration => {
                Some(self.const_duration(lhs)? + self.const_duration(rhs)?)
            }
            TKind::Binary { op: BinOp::Sub, lhs, rhs } if e.ty == Ty::Duration => {
                Some(self.const_duration(lhs)? - self.const_duration(rhs)?)
            }
            _ => None,
        }
    }

    /// A time known relative to the tick (`now`, `now - 15m`, ...): its offset
    /// from the tick in microseconds.
    fn const_time(&self, e: &TExpr) -> Option<i64> {
        match &e.kind {
            TKind::Now => Some(0),
            TKind::Binary { op: BinOp::Add, lhs, rhs } if e.ty == Ty::Time => {
                if lhs.ty == Ty::Time {
                    Some(self.const_time(lhs)? + self.const_duration(rhs)?)
                } else {
                    Some(self.const_time(rhs)? + self.const_duration(lhs)?)
                }
            }
            TKind::Binary { op: BinOp::Sub, lhs, rhs } if e.ty == Ty::Time => Some(self.const_time(lhs)? - self.const_duration(rhs)?),
            _ => None,
        }
    }

    // ------------------------------------------------------------ read ranges

    /// Records, for each table, how far back its uses read (see [`Self::bound_of`]).
    fn collect_bounds(&mut self) {
        let entity = &self.rule.entity;
        let entity_bound = self.bound_of(entity.table, 0, entity.filter.as_ref());
        self.note_bound(entity.table.name, entity_bound);
        let mut sources: Vec<TSource> = Vec::new();
        let mut sites = false;
        let mut visit = |e: &TExpr| match &e.kind {
            TKind::Agg { source, .. } => sources.push((**source).clone()),
            TKind::SiteColumn { .. } => sites = true,
            _ => {}
        };
        let r = self.rule;
        if let Some(f) = &r.entity.filter {
            f.walk(&mut visit);
        }
        r.lets.iter().for_each(|l| l.value.walk(&mut visit));
        r.condition.walk(&mut visit);
        r.severity_steps.iter().for_each(|(_, c)| c.walk(&mut visit));
        r.evidence.iter().for_each(|e| e.value.walk(&mut visit));
        for s in &sources {
            let b = self.bound_of(s.table, s.scope, s.filter.as_ref());
            self.note_bound(s.table.name, b);
        }
        if sites {
            self.note_bound("sites", None);
        }
    }

    fn note_bound(&mut self, table: &'static str, lookback: Option<i64>) {
        let slot = self.lookbacks.entry(table).or_insert(lookback);
        *slot = match (*slot, lookback) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    /// How far before the tick a filter's event times can reach, when its
    /// top-level `and` parts include `event_time in last W` or `event_time >(=) now - D`.
    fn bound_of(&self, table: &Table, scope: usize, filter: Option<&TExpr>) -> Option<i64> {
        let event = table.event_time?;
        let parts = conjuncts(filter?);
        let is_event = |e: &TExpr| matches!(&e.kind, TKind::Column { scope: s, column } if *s == scope && *column == event);
        parts
            .iter()
            .filter_map(|p| match &p.kind {
                TKind::InLast { expr, window } if is_event(expr) => self.widest_duration(window),
                TKind::Binary { op: BinOp::Gt, lhs, rhs } if is_event(lhs) => self.const_time(rhs).map(|o| -o),
                // The as-of view keeps rows strictly after the bound: step back 1µs for `>=`.
                TKind::Binary { op: BinOp::Ge, lhs, rhs } if is_event(lhs) => self.const_time(rhs).map(|o| 1 - o),
                _ => None,
            })
            .min()
    }

    /// The as-of views of every table the rule reads.
    fn as_of_views(&self) -> Vec<Cte> {
        let mut out = Vec::new();
        let mut tables: Vec<(&'static str, Option<i64>)> = self.lookbacks.iter().map(|(t, b)| (*t, *b)).collect();
        tables.sort_by_key(|(t, _)| *t);
        for (name, lookback) in tables {
            let Some(table) = schema::table(name) else { continue };
            let parts = if table.derived { self.activity_parts(lookback) } else { vec![self.as_of_select(table, lookback)] };
            out.push(Cte::union_all(name, parts));
        }
        out
    }

    /// One table as seen at each tick: `(tick, row)` for every row the tick may
    /// see, closing columns after the tick read as NULL. The constant bounds from
    /// the first and last tick let scans skip row groups no tick needs.
    fn as_of_select(&self, table: &Table, lookback: Option<i64>) -> Select {
        let (r, k) = ("r", "k");
        let raw = From::Raw { name: table.name.to_string(), alias: r.to_string() };
        let columns = table.columns.iter().map(|c| (SqlExpr::col(r, c.name), Some(c.name.to_string())));
        if !per_tick(table) {
            return Select { distinct: false, items: columns.collect(), from: raw, ..Select::default() };
        }
        let now = SqlExpr::col(k, TICK);
        let mut items = vec![(now.clone(), Some(TICK.to_string()))];
        items.extend(columns.map(|(col, name)| {
            let closing = name.as_deref().is_some_and(|n| table.closing.contains(&n));
            let e = if closing {
                SqlExpr::Case(vec![(SqlExpr::bin(Op::Le, col.clone(), now.clone()), col)], Box::new(SqlExpr::Null))
            } else {
                col
            };
            (e, name)
        }));
        let filter = table.event_time.and_then(|ev| SqlExpr::and_all(visible_at_tick(r, ev, k, lookback)));
        Select { items, from: From::PerTick { rows: Box::new(raw), ticks: k.to_string() }, filter, ..Select::default() }
    }

    /// `activity`: every sign of life of a guard, with its time, at each tick.
    fn activity_parts(&self, lookback: Option<i64>) -> Vec<Select> {
        let (r, k) = ("r", "k");
        let part = |table: &str, guard: &str, time: &str, source: &str, extra: Option<SqlExpr>| {
            let mut filter = visible_at_tick(r, time, k, lookback);
            filter.extend(extra);
            Select {
                items: vec![
                    (SqlExpr::col(k, TICK), Some(TICK.into())),
                    (SqlExpr::col(r, "tenant_id"), Some("tenant_id".into())),
                    (SqlExpr::col(r, "site_id"), Some("site_id".into())),
                    (SqlExpr::col(r, guard), Some("guard_id".into())),
                    (SqlExpr::col(r, time), Some("ts".into())),
                    (SqlExpr::Str(source.into()), Some("source".into())),
                ],
                from: From::PerTick { rows: Box::new(From::Raw { name: table.into(), alias: r.into() }), ticks: k.into() },
                filter: SqlExpr::and_all(filter),
                ..Select::default()
            }
        };
        vec![
            part("phone_events", "guard_id", "ts", "phone_event", None),
            part("location_updates", "guard_id", "ts", "location_update", None),
            part("checkpoint_scans", "guard_id", "ts", "checkpoint_scan", None),
            part(
                "tasks",
                "assignee_id",
                "completed_at",
                "task_completed",
                Some(SqlExpr::bin(Op::Le, SqlExpr::col(r, "created_at"), SqlExpr::col(k, TICK))),
            ),
            part("shifts", "guard_id", "checked_in_at", "shift_checkin", None),
        ]
    }

    // ------------------------------------------------------------ the rule itself

    fn body(&self) -> (Vec<Cte>, Select) {
        let rule = self.rule;
        let entity = &rule.entity;
        let r0 = rel(0);
        let mut ctes = Vec::new();
        // Every entity row is evaluated once per tick: a table that looks the same
        // at every tick (sites) is paired with the ticks here.
        let rows = if per_tick(entity.table) {
            entity.table.name
        } else {
            let items = vec![(SqlExpr::Star("r".into()), None), (SqlExpr::col("k", TICK), Some(TICK.to_string()))];
            let rows =
                From::PerTick { rows: Box::new(From::Table { name: entity.table.name.into(), alias: "r".into() }), ticks: "k".into() };
            ctes.push(Cte::new("entity_rows", Select::new(rows, items)));
            "entity_rows"
        };
        let mut entity_select = if entity.entity.name == "guard" {
            // The guard column is `assignee_id` in tasks: read it through the table's guard key.
            let guard_column = entity.table.key("guard").map(|k| k.column).unwrap_or("guard_id");
            let items = vec![
                (SqlExpr::col(&r0, "tenant_id"), Some("tenant_id".to_string())),
                (SqlExpr::col(&r0, "site_id"), Some("site_id".to_string())),
                (SqlExpr::col(&r0, guard_column), Some("guard_id".to_string())),
                (SqlExpr::col(&r0, TICK), Some(TICK.to_string())),
            ];
            let mut s = Select::from_table(rows, &r0, items);
            s.distinct = true;
            let mut filter = vec![SqlExpr::IsNull(Box::new(SqlExpr::col(&r0, guard_column)), true)];
            filter.extend(entity.filter.as_ref().map(|f| self.expr(f)));
            s.filter = SqlExpr::and_all(filter);
            s
        } else {
            let mut s = Select::from_table(rows, &r0, vec![(SqlExpr::Star(r0.clone()), None)]);
            let mut filter: Vec<SqlExpr> = entity.filter.iter().map(|f| self.expr(f)).collect();
            if self.push_down {
                filter.extend(conjuncts(&rule.condition).into_iter().filter(|c| reads_only_entity_row(c)).map(|c| self.expr(c)));
            }
            s.filter = SqlExpr::and_all(filter);
            s
        };
        entity_select.order_by = vec![];
        ctes.push(Cte::new("entity", entity_select));

        // The lets the condition needs come first; the rows that fire are kept; the
        // lets only evidence, severities or scripts read are then computed for those
        // rows alone (most entity rows never fire). `explain` computes every let for
        // every candidate.
        let needed = lets_needed_by(rule, &rule.condition);
        let (first, rest): (Vec<&Let>, Vec<&Let>) = rule.lets.iter().partition(|l| !self.push_down || needed.contains(l.name.as_str()));
        let mut previous = "entity".to_string();
        self.let_layers(&first, "lets", &mut previous, &mut ctes);
        let prefiltered = !rest.is_empty();
        if prefiltered {
            let mut fires = Select::from_table(&previous, &r0, vec![(SqlExpr::Star(r0.clone()), None)]);
            fires.filter = Some(self.expr(&rule.condition));
            ctes.push(Cte::new("fires", fires));
            previous = "fires".into();
            self.let_layers(&rest, "more_lets", &mut previous, &mut ctes);
        }

        let col_or_null = |c: Option<&str>| match c {
            Some(c) => SqlExpr::Cast(Box::new(SqlExpr::col(&r0, c)), SqlType::Varchar),
            None => SqlExpr::Cast(Box::new(SqlExpr::Null), SqlType::Varchar),
        };
        let base = SqlExpr::Str(rule.header.base_severity.name().into());
        let severity = if rule.severity_steps.is_empty() {
            base
        } else {
            SqlExpr::Case(
                rule.severity_steps.iter().map(|(level, cond)| (self.expr(cond), SqlExpr::Str(level.name().into()))).collect(),
                Box::new(base),
            )
        };
        let mut items = vec![
            (SqlExpr::col(&r0, "tenant_id"), Some("tenant_id".to_string())),
            (SqlExpr::col(&r0, "site_id"), Some("site_id".to_string())),
            (col_or_null(entity.entity.guard_column), Some("guard_id".to_string())),
            (col_or_null(entity.entity.id_column), Some("entity_id".to_string())),
            (severity, Some("severity".to_string())),
            (self.suppressed(), Some("suppressed".to_string())),
            (SqlExpr::Func(Func::EpochMicros, vec![SqlExpr::col(&r0, TICK)]), Some("tick".to_string())),
        ];
        for ev in &rule.evidence {
            items.push((self.evidence_expr(&ev.value), Some(format!("ev_{}", ev.name))));
        }
        if !rule.scripts.is_empty() {
            for l in &rule.lets {
                let value = TExpr { kind: TKind::Let(l.name.clone()), ty: l.value.ty, span: l.value.span };
                items.push((self.evidence_expr(&value), Some(format!("in_{}", l.name))));
            }
        }
        let mut body = Select::from_table(&previous, &r0, items);
        body.filter = if prefiltered { None } else { Some(self.expr(&rule.condition)) };
        body.order_by =
            [TICK, "tenant_id", "site_id", "guard_id", "entity_id"].iter().map(|c| OrderKey::asc(SqlExpr::col(&r0, c))).collect();
        if entity.entity.guard_column.is_none() {
            body.order_by.retain(|k| k.expr != SqlExpr::col(&r0, "guard_id"));
        }
        if entity.entity.id_column.is_none() {
            body.order_by.retain(|k| k.expr != SqlExpr::col(&r0, "entity_id"));
        }
        if let Some(g) = entity.entity.guard_column.filter(|g| *g != "guard_id") {
            for k in &mut body.order_by {
                if k.expr == SqlExpr::col(&r0, "guard_id") {
                    k.expr = SqlExpr::col(&r0, g);
                }
            }
        }
        if let Some(id) = entity.entity.id_column {
            for k in &mut body.order_by {
                if k.expr == SqlExpr::col(&r0, "entity_id") {
                    k.expr = SqlExpr::col(&r0, id);
                }
            }
        }
        (ctes, body)
    }

    /// CTEs `{prefix}_0`, `{prefix}_1`, ... computing `lets` over `previous`: a let
    /// that reads another let of the group is computed one layer later.
    fn let_layers(&self, lets: &[&Let], prefix: &str, previous: &mut String, ctes: &mut Vec<Cte>) {
        let r0 = rel(0);
        let mut layer_of: HashMap<&str, usize> = HashMap::new();
        let mut layers: Vec<Vec<(SqlExpr, Option<String>)>> = Vec::new();
        for l in lets {
            let mut depth = 0;
            l.value.walk(&mut |e| {
                if let TKind::Let(name) = &e.kind {
                    depth = depth.max(layer_of.get(name.as_str()).map(|d| d + 1).unwrap_or(0));
                }
            });
            layer_of.insert(&l.name, depth);
            if layers.len() <= depth {
                layers.resize(depth + 1, Vec::new());
            }
            layers[depth].push((self.expr(&l.value), Some(let_column(&l.name))));
        }
        for (i, lets) in layers.into_iter().enumerate() {
            let name = format!("{prefix}_{i}");
            let mut items = vec![(SqlExpr::Star(r0.clone()), None)];
            items.extend(lets);
            ctes.push(Cte::new(&name, Select::from_table(previous, &r0, items)));
            *previous = name;
        }
    }

    /// Maintenance windows covering this finding at T (CONTRACT.md).
    fn suppressed(&self) -> SqlExpr {
        suppressed_sql(&self.rule.header.finding_type, self.now_sql(), &rel(0))
    }

    fn evidence_expr(&self, e: &TExpr) -> SqlExpr {
        let v = self.expr(e);
        match e.ty {
            Ty::Time => SqlExpr::Func(Func::IsoUtc, vec![v]),
            Ty::Number => SqlExpr::Cast(Box::new(v), SqlType::Double),
            Ty::Duration => SqlExpr::Cast(Box::new(v), SqlType::BigInt),
            Ty::Bool => SqlExpr::Cast(Box::new(v), SqlType::Boolean),
            Ty::String | Ty::Null => SqlExpr::Cast(Box::new(v), SqlType::Varchar),
        }
    }

    fn expr(&self, e: &TExpr) -> SqlExpr {
        match &e.kind {
            TKind::Lit(v) => self.value(v),
            TKind::Now => self.now_sql(),
            TKind::Param(name) => self.param_sql(name),
            TKind::Let(name) => SqlExpr::col(&rel(0), &let_column(name)),
            TKind::Column { scope, column } => SqlExpr::col(&rel(*scope), column),
            TKind::SiteColumn { .. } | TKind::Agg { .. } if matches!(self.now, Now::Unknown) => SqlExpr::Null,
            TKind::SiteColumn { scope, column } => {
                let s = format!("site{scope}");
                let r = rel(*scope);
                let mut sel = Select::from_table("sites", &s, vec![(SqlExpr::Func(Func::First, vec![SqlExpr::col(&s, column)]), None)]);
                sel.filter = SqlExpr::and_all(vec![
                    SqlExpr::bin(Op::Eq, SqlExpr::col(&s, "tenant_id"), SqlExpr::col(&r, "tenant_id")),
                    SqlExpr::bin(Op::Eq, SqlExpr::col(&s, "site_id"), SqlExpr::col(&r, "site_id")),
                ]);
                SqlExpr::Subquery(Box::new(sel))
            }
            TKind::Call(f, args) => self.call(*f, args),
            TKind::Agg { func, source, arg } => self.aggregate(*func, source, arg.as_deref()),
            TKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.ty),
            TKind::Not(a) => SqlExpr::Not(Box::new(self.expr(a))),
            TKind::Neg(a) => SqlExpr::Neg(Box::new(self.expr(a))),
            TKind::IsNull { expr, negated } => SqlExpr::IsNull(Box::new(self.expr(expr)), *negated),
            TKind::InLast { expr, window } => {
                let t = self.expr(expr);
                let lower = match self.const_duration(window) {
                    Some(w) => self.now_plus(-w),
                    None => SqlExpr::bin(Op::Sub, self.now_sql(), micros_interval(self.expr(window))),
                };
                SqlExpr::bin(Op::And, SqlExpr::bin(Op::Gt, t.clone(), lower), SqlExpr::bin(Op::Le, t, self.now_sql()))
            }
            TKind::InList { expr, list } => SqlExpr::InList(Box::new(self.expr(expr)), list.iter().map(|i| self.expr(i)).collect()),
        }
    }

    fn binary(&self, op: BinOp, lhs: &TExpr, rhs: &TExpr, ty: Ty) -> SqlExpr {
        if ty == Ty::Time {
            if let Some(t) = self.const_time(&TExpr {
                kind: TKind::Binary { op, lhs: Box::new(lhs.clone()), rhs: Box::new(rhs.clone()) },
                ty,
                span: lhs.span,
            }) {
                return self.now_plus(t);
            }
        }
        let (l, r) = (self.expr(lhs), self.expr(rhs));
        let interval = micros_interval;
        match (op, lhs.ty, rhs.ty) {
            (BinOp::Add, Ty::Time, Ty::Duration) => SqlExpr::bin(Op::Add, l, interval(r)),
            (BinOp::Add, Ty::Duration, Ty::Time) => SqlExpr::bin(Op::Add, r, interval(l)),
            (BinOp::Sub, Ty::Time, Ty::Duration) => SqlExpr::bin(Op::Sub, l, interval(r)),
            (BinOp::Sub, Ty::Time, Ty::Time) => {
                SqlExpr::bin(Op::Sub, SqlExpr::Func(Func::EpochMicros, vec![l]), SqlExpr::Func(Func::EpochMicros, vec![r]))
            }
            (BinOp::Mul, Ty::Duration, _) | (BinOp::Mul, _, Ty::Duration) => {
                SqlExpr::Cast(Box::new(SqlExpr::bin(Op::Mul, l, r)), SqlType::BigInt)
            }
            (BinOp::Div, Ty::Duration, Ty::Number) => SqlExpr::Cast(Box::new(SqlExpr::bin(Op::Div, l, r)), SqlType::BigInt),
            (BinOp::Div, _, _) => SqlExpr::bin(Op::Div, SqlExpr::Cast(Box::new(l), SqlType::Double), r),
            _ => {
                let sym = match op {
                    BinOp::Or => Op::Or,
                    BinOp::And => Op::And,
                    BinOp::Eq => Op::Eq,
                    BinOp::Ne => Op::Ne,
                    BinOp::Lt => Op::Lt,
                    BinOp::Le => Op::Le,
                    BinOp::Gt => Op::Gt,
                    BinOp::Ge => Op::Ge,
                    BinOp::Add => Op::Add,
                    BinOp::Sub => Op::Sub,
                    BinOp::Mul => Op::Mul,
                    BinOp::Div => Op::Div,
                };
                SqlExpr::bin(sym, l, r)
            }
        }
    }

    fn call(&self, f: Builtin, args: &[TExpr]) -> SqlExpr {
        let a: Vec<SqlExpr> = args.iter().map(|x| self.expr(x)).collect();
        let per = |unit: f64| SqlExpr::bin(Op::Div, SqlExpr::Cast(Box::new(a[0].clone()), SqlType::Double), SqlExpr::Num(unit));
        match f {
            Builtin::Minutes => per(MICROS_PER_MINUTE),
            Builtin::Hours => per(MICROS_PER_MINUTE * 60.0),
            Builtin::Days => per(MICROS_PER_MINUTE * 1440.0),
            Builtin::DistanceM => haversine(&a[0], &a[1], &a[2], &a[3]),
            Builtin::Greatest => SqlExpr::Func(Func::Greatest, a),
            Builtin::Least => SqlExpr::Func(Func::Least, a),
            Builtin::Coalesce => SqlExpr::Func(Func::Coalesce, a),
            Builtin::Abs => SqlExpr::Func(Func::Abs, a),
            Builtin::Lower => SqlExpr::Func(Func::Lower, a),
            Builtin::Upper => SqlExpr::Func(Func::Upper, a),
            Builtin::Contains => SqlExpr::Func(Func::Contains, a),
        }
    }

    /// An aggregate over related rows at the same tick. Inside the source, `now`
    /// is the source row's own tick (equal to the enclosing one), which keeps the
    /// correlation to plain equalities.
    fn aggregate(&self, func: AggFn, source: &TSource, arg: Option<&TExpr>) -> SqlExpr {
        let enclosing = self.tick_scope.get();
        let ticked = per_tick(source.table);
        if ticked {
            self.tick_scope.set(source.scope);
        }
        let sql = self.aggregate_at_tick(func, source, arg, ticked.then_some(enclosing));
        self.tick_scope.set(enclosing);
        sql
    }

    fn aggregate_at_tick(&self, func: AggFn, source: &TSource, arg: Option<&TExpr>, tick_of: Option<usize>) -> SqlExpr {
        let r = rel(source.scope);
        let mut filter: Vec<SqlExpr> = source
            .join
            .iter()
            .map(|(here, outer, there)| SqlExpr::bin(Op::Eq, SqlExpr::col(&r, here), SqlExpr::col(&rel(*outer), there)))
            .collect();
        filter.extend(tick_of.map(|outer| SqlExpr::bin(Op::Eq, SqlExpr::col(&r, TICK), SqlExpr::col(&rel(outer), TICK))));
        filter.extend(source.filter.as_ref().map(|f| self.expr(f)));
        if func == AggFn::CountDistinct && !source.join.is_empty() && source.join.iter().all(|(_, outer, _)| *outer == 0) {
            // DuckDB unnests a correlated count(DISTINCT) by aggregating the whole
            // source first; restricting the source to keys of candidate entities
            // (a semi-join) lets it aggregate only those rows (4x faster at 10k sites).
            let mut semi = Select::from_table("entity", "candidate", vec![(SqlExpr::Int(1), None)]);
            let mut keys: Vec<SqlExpr> = source
                .join
                .iter()
                .map(|(here, _, there)| SqlExpr::bin(Op::Eq, SqlExpr::col("candidate", there), SqlExpr::col(&r, here)))
                .collect();
            if tick_of.is_some() {
                keys.push(SqlExpr::bin(Op::Eq, SqlExpr::col("candidate", TICK), SqlExpr::col(&r, TICK)));
            }
            semi.filter = SqlExpr::and_all(keys);
            filter.push(SqlExpr::Exists(Box::new(semi)));
        }
        let arg_sql = arg.map(|a| self.expr(a));
        let item = match (func, arg_sql.clone()) {
            (AggFn::Count, _) => SqlExpr::CountStar,
            (AggFn::CountDistinct, Some(a)) => SqlExpr::CountDistinct(Box::new(a)),
            (AggFn::Min, Some(a)) => SqlExpr::Func(Func::Min, vec![a]),
            (AggFn::Max, Some(a)) => SqlExpr::Func(Func::Max, vec![a]),
            (AggFn::Sum, Some(a)) => SqlExpr::Func(Func::Coalesce, vec![SqlExpr::Func(Func::Sum, vec![a]), SqlExpr::Num(0.0)]),
            (AggFn::Avg, Some(a)) => SqlExpr::Func(Func::Avg, vec![a]),
            _ => SqlExpr::Int(1),
        };
        match (func, arg_sql) {
            (AggFn::Exists, _) | (AggFn::None, _) | (AggFn::All, _) | (AggFn::Any, _) => {
                let (negate, extra) = match (func, arg.map(|a| self.expr(a))) {
                    (AggFn::All, Some(p)) => {
                        (true, Some(SqlExpr::Not(Box::new(SqlExpr::Func(Func::Coalesce, vec![p, SqlExpr::Bool(false)])))))
                    }
                    (AggFn::Any, Some(p)) => (false, Some(p)),
                    (AggFn::None, _) => (true, None),
                    _ => (false, None),
                };
                filter.extend(extra);
                let mut sel = Select::from_table(source.table.name, &r, vec![(SqlExpr::Int(1), None)]);
                sel.filter = SqlExpr::and_all(filter);
                let exists = SqlExpr::Exists(Box::new(sel));
                if negate {
                    SqlExpr::Not(Box::new(exists))
                } else {
                    exists
                }
            }
            _ => {
                let mut sel = Select::from_table(source.table.name, &r, vec![(item, None)]);
                sel.filter = SqlExpr::and_all(filter);
                SqlExpr::Subquery(Box::new(sel))
            }
        }
    }
}

/// A duration (BIGINT microseconds) as an INTERVAL.
fn micros_interval(d: SqlExpr) -> SqlExpr {
    SqlExpr::Func(Func::MicrosInterval, vec![d])
}

/// The rows of a table whose event time `column` a tick sees: `(T - lookback, T]`,
/// plus the same bounds as constants from the first and last tick.
fn visible_at_tick(r: &str, column: &str, ticks: &str, lookback: Option<i64>) -> Vec<SqlExpr> {
    let at = SqlExpr::col(r, column);
    let tick = SqlExpr::col(ticks, TICK);
    let mut out = vec![
        SqlExpr::bin(Op::Le, at.clone(), tick.clone()),
        SqlExpr::bin(Op::Le, at.clone(), SqlExpr::TickBound { latest: true, offset: 0 }),
    ];
    if let Some(l) = lookback {
        out.push(SqlExpr::bin(Op::Gt, at.clone(), SqlExpr::bin(Op::Sub, tick, micros_interval(SqlExpr::Int(l)))));
        out.push(SqlExpr::bin(Op::Gt, at, SqlExpr::TickBound { latest: false, offset: -l }));
    }
    out
}

/// Great-circle distance in metres (Earth radius 6,371 km), all in SQL.
fn haversine(lat1: &SqlExpr, lon1: &SqlExpr, lat2: &SqlExpr, lon2: &SqlExpr) -> SqlExpr {
    let rad = |e: SqlExpr| SqlExpr::Func(Func::Radians, vec![e]);
    let half_sin_sq = |a: &SqlExpr, b: &SqlExpr| {
        SqlExpr::Func(
            Func::Pow,
            vec![
                SqlExpr::Func(Func::Sin, vec![SqlExpr::bin(Op::Div, rad(SqlExpr::bin(Op::Sub, b.clone(), a.clone())), SqlExpr::Num(2.0))]),
                SqlExpr::Num(2.0),
            ],
        )
    };
    let h = SqlExpr::bin(
        Op::Add,
        half_sin_sq(lat1, lat2),
        SqlExpr::bin(
            Op::Mul,
            SqlExpr::bin(Op::Mul, SqlExpr::Func(Func::Cos, vec![rad(lat1.clone())]), SqlExpr::Func(Func::Cos, vec![rad(lat2.clone())])),
            half_sin_sq(lon1, lon2),
        ),
    );
    SqlExpr::bin(
        Op::Mul,
        SqlExpr::Num(2.0 * 6_371_000.0),
        SqlExpr::Func(Func::Asin, vec![SqlExpr::Func(Func::Sqrt, vec![SqlExpr::Func(Func::Least, vec![SqlExpr::Num(1.0), h])])]),
    )
}
