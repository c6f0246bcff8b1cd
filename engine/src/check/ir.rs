//! The checked form of a rule: names resolved, types known.
//!
//! Invariant: a [`CheckedRule`] references only tables and columns of
//! [`crate::schema`], every expression has a type that fits where it is used, and
//! every macro has been expanded, so the planner cannot meet an unknown name.

use crate::schema::{Entity, Table, Ty};
use crate::syntax::ast::{AggFn, BinOp, Span};

/// What every rule has, pattern or anomaly: who it is and the finding it raises.
/// One type, so that runbook checks, strict checks, provenance and the finding
/// builder treat both kinds alike.
#[derive(Debug, Clone)]
pub struct RuleHeader {
    /// Rule id.
    pub id: String,
    /// `rule ID` / `anomaly ID`: where diagnostics about the whole rule point.
    pub id_span: Span,
    /// The finding type it raises.
    pub finding_type: String,
    /// One line for an operator.
    pub title: String,
    /// Longer description for `vigil explain`.
    pub doc: Option<String>,
    /// Category: as stated in the rule, else from the rule set's keyword categories.
    pub category: crate::schema::Category,
    /// Where the rule states its category, if it does.
    pub category_stated: Option<Span>,
    /// The severity when nothing raises it.
    pub base_severity: crate::schema::Severity,
    /// heartbeat, comprehensive or deep.
    pub cadence: crate::schema::Cadence,
    /// Recommended actions.
    pub actions: Vec<String>,
    /// The rule block in its file.
    pub span: Span,
}

/// A rule that passed the checker.
#[derive(Debug, Clone)]
pub struct CheckedRule {
    /// Id, finding type, title, category, base severity, cadence, actions.
    pub header: RuleHeader,
    /// `severity LEVEL when CONDITION` lines, first true wins.
    pub severity_steps: Vec<(crate::schema::Severity, TExpr)>,
    /// What each finding is about.
    pub entity: EntityScope,
    /// Parameters with their defaults.
    pub params: Vec<Param>,
    /// Named figures, in order.
    pub lets: Vec<Let>,
    /// All `when` lines, and-ed.
    pub condition: TExpr,
    /// Figures copied into the finding.
    pub evidence: Vec<EvidenceValue>,
    /// Rhai scripts run on each row the SQL produced (conditions, severities, evidence).
    pub scripts: Vec<crate::script::RuleScript>,
}

/// The rows a rule evaluates: one finding candidate per row.
#[derive(Debug, Clone)]
pub struct EntityScope {
    /// The entity kind.
    pub entity: &'static Entity,
    /// The table its rows come from.
    pub table: &'static Table,
    /// Row filter applied before grouping (for guards) or as the first condition.
    pub filter: Option<TExpr>,
}

/// A rule parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its default value.
    pub default: Value,
    /// Where it is declared.
    pub span: Span,
}

/// A constant value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// number
    Number(f64),
    /// string
    String(String),
    /// boolean
    Bool(bool),
    /// duration in microseconds
    Duration(i64),
    /// null
    Null,
}

impl std::fmt::Display for Value {
    /// The value as a rule would write it: `2h15m`, `0.8`, `'x'`, `true`, `null`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "'{}'", s.replace('\'', "\\'")),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Duration(d) => f.write_str(&crate::time::format_duration(*d)),
            Value::Null => f.write_str("null"),
        }
    }
}

impl Value {
    /// Its type.
    pub fn ty(&self) -> Ty {
        match self {
            Value::Number(_) => Ty::Number,
            Value::String(_) => Ty::String,
            Value::Bool(_) => Ty::Bool,
            Value::Duration(_) => Ty::Duration,
            Value::Null => Ty::Null,
        }
    }
}

/// A named figure computed per entity row.
#[derive(Debug, Clone)]
pub struct Let {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: TExpr,
}

/// An evidence field.
#[derive(Debug, Clone)]
pub struct EvidenceValue {
    /// The key in the finding's evidence.
    pub name: String,
    /// Its value.
    pub value: TExpr,
}

/// A typed, resolved expression.
#[derive(Debug, Clone)]
pub struct TExpr {
    /// Its shape.
    pub kind: TKind,
    /// Its type.
    pub ty: Ty,
    /// Where it was written (the macro use site for expanded macros).
    pub span: Span,
}

/// Identifies a row variable: 0 is the entity row, others are sources.
pub type ScopeId = usize;

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// duration to minutes (fractional)
    Minutes,
    /// duration to hours (fractional)
    Hours,
    /// duration to days (fractional)
    Days,
    /// haversine distance in metres
    DistanceM,
    /// largest argument
    Greatest,
    /// smallest argument
    Least,
    /// first non-null argument
    Coalesce,
    /// absolute value
    Abs,
    /// lower-case text
    Lower,
    /// upper-case text
    Upper,
    /// does the text contain the other?
    Contains,
}

/// The shapes of checked expressions.
#[derive(Debug, Clone)]
pub enum TKind {
    /// A constant.
    Lit(Value),
    /// The evaluation time T.
    Now,
    /// A rule parameter (rendered with its effective value).
    Param(String),
    /// A `let` of the entity row.
    Let(String),
    /// A column of a row variable.
    Column { scope: ScopeId, column: &'static str },
    /// A column of the site of a row variable's row.
    SiteColumn { scope: ScopeId, column: &'static str },
    /// A built-in function.
    Call(Builtin, Vec<TExpr>),
    /// An aggregate over related rows.
    Agg { func: AggFn, source: Box<TSource>, arg: Option<Box<TExpr>> },
    /// `a op b`
    Binary { op: BinOp, lhs: Box<TExpr>, rhs: Box<TExpr> },
    /// `not a`
    Not(Box<TExpr>),
    /// `-a`
    Neg(Box<TExpr>),
    /// `a is [not] null`
    IsNull { expr: Box<TExpr>, negated: bool },
    /// `t in last d`
    InLast { expr: Box<TExpr>, window: Box<TExpr> },
    /// `a in (b, c)`
    InList { expr: Box<TExpr>, list: Vec<TExpr> },
}

/// The rows of an aggregate, related to an enclosing row.
#[derive(Debug, Clone)]
pub struct TSource {
    /// The table.
    pub table: &'static Table,
    /// This source's row variable.
    pub scope: ScopeId,
    /// (column here, enclosing scope, column there) equalities.
    pub join: Vec<(&'static str, ScopeId, &'static str)>,
    /// Row filter.
    pub filter: Option<TExpr>,
}

impl TExpr {
    /// Visits this expression and every sub-expression (sources' filters included).
    pub fn walk(&self, f: &mut dyn FnMut(&TExpr)) {
        f(self);
        match &self.kind {
            TKind::Lit(_) | TKind::Now | TKind::Param(_) | TKind::Let(_) | TKind::Column { .. } | TKind::SiteColumn { .. } => {}
            TKind::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            TKind::Agg { source, arg, .. } => {
                if let Some(filter) = &source.filter {
                    filter.walk(f);
                }
                if let Some(arg) = arg {
                    arg.walk(f);
                }
            }
            TKind::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            TKind::Not(e) | TKind::Neg(e) | TKind::IsNull { expr: e, .. } => e.walk(f),
            TKind::InLast { expr, window } => {
                expr.walk(f);
                window.walk(f);
            }
            TKind::InList { expr, list } => {
                expr.walk(f);
                list.iter().for_each(|a| a.walk(f));
            }
        }
    }
}
