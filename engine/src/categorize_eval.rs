//! Severity from outside: evaluates a rule's severity steps over figures given by
//! hand (`vigil categorize TOUR_OVERDUE --context overdue_minutes=120`), as the
//! origin system's `categorize_finding(type, context)` did.
//!
//! Invariant: only constants, parameters and the given figures are read; anything
//! else (aggregates, `now`) is unknown, and a step whose condition is unknown
//! does not match.

use std::collections::{BTreeSet, HashMap};

use crate::check::{Builtin, CheckedRule, TExpr, TKind, Value};
use crate::syntax::ast::BinOp;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// a number
    Num(f64),
    /// a string
    Str(String),
    /// a boolean
    Bool(bool),
    /// a duration in microseconds
    Dur(i64),
    /// null
    Null,
    /// not given
    Unknown,
}

impl Val {
    /// Parses a `--context` value: a number, a duration (`90m`), true/false, or text.
    pub fn parse(text: &str) -> Val {
        if let Ok(n) = text.parse::<f64>() {
            return Val::Num(n);
        }
        if let Some(d) = crate::syntax::duration_micros(text) {
            return Val::Dur(d);
        }
        match text {
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            "null" => Val::Null,
            _ => Val::Str(text.to_string()),
        }
    }
}

/// The outcome of [`severity_for`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityOutcome {
    /// The severity.
    pub severity: String,
    /// The 1-based step that matched (`None`: the base severity).
    pub step: Option<usize>,
    /// Names the steps read that the context did not give.
    pub missing: BTreeSet<String>,
}

/// Evaluates the severity steps of `rule` over `context` (name -> value).
pub fn severity_for(rule: &CheckedRule, context: &HashMap<String, Val>) -> SeverityOutcome {
    let mut missing = BTreeSet::new();
    for (i, (level, cond)) in rule.severity_steps.iter().enumerate() {
        if eval(cond, rule, context, &mut missing) == Val::Bool(true) {
            return SeverityOutcome { severity: level.clone(), step: Some(i + 1), missing };
        }
    }
    SeverityOutcome { severity: rule.base_severity.clone(), step: None, missing }
}

fn value(v: &Value) -> Val {
    match v {
        Value::Number(n) => Val::Num(*n),
        Value::String(s) => Val::Str(s.clone()),
        Value::Bool(b) => Val::Bool(*b),
        Value::Duration(d) => Val::Dur(*d),
        Value::Null => Val::Null,
    }
}

fn lookup(name: &str, context: &HashMap<String, Val>, missing: &mut BTreeSet<String>) -> Val {
    match context.get(name) {
        Some(v) => v.clone(),
        None => {
            missing.insert(name.to_string());
            Val::Unknown
        }
    }
}

fn eval(e: &TExpr, rule: &CheckedRule, ctx: &HashMap<String, Val>, missing: &mut BTreeSet<String>) -> Val {
    use Val::*;
    match &e.kind {
        TKind::Lit(v) => value(v),
        TKind::Param(name) => {
            ctx.get(name).cloned().or_else(|| rule.params.iter().find(|p| p.name == *name).map(|p| value(&p.default))).unwrap_or(Unknown)
        }
        TKind::Let(name) => lookup(name, ctx, missing),
        TKind::Column { scope: 0, column } => lookup(column, ctx, missing),
        TKind::Now | TKind::Column { .. } | TKind::SiteColumn { .. } | TKind::Agg { .. } => Unknown,
        TKind::Not(a) => match eval(a, rule, ctx, missing) {
            Bool(b) => Bool(!b),
            other => other,
        },
        TKind::Neg(a) => match eval(a, rule, ctx, missing) {
            Num(n) => Num(-n),
            Dur(d) => Dur(-d),
            other => other,
        },
        TKind::IsNull { expr, negated } => match eval(expr, rule, ctx, missing) {
            Unknown => Unknown,
            v => Bool((v == Null) != *negated),
        },
        TKind::InList { expr, list } => {
            let v = eval(expr, rule, ctx, missing);
            if v == Unknown {
                return Unknown;
            }
            Bool(list.iter().any(|i| eval(i, rule, ctx, missing) == v))
        }
        TKind::InLast { .. } => Unknown,
        TKind::Call(f, args) => {
            let a: Vec<Val> = args.iter().map(|x| eval(x, rule, ctx, missing)).collect();
            match (f, a.as_slice()) {
                (Builtin::Minutes, [Dur(d)]) => Num(*d as f64 / 60e6),
                (Builtin::Hours, [Dur(d)]) => Num(*d as f64 / 3600e6),
                (Builtin::Days, [Dur(d)]) => Num(*d as f64 / 86400e6),
                (Builtin::Abs, [Num(n)]) => Num(n.abs()),
                (Builtin::Lower, [Str(s)]) => Str(s.to_lowercase()),
                (Builtin::Upper, [Str(s)]) => Str(s.to_uppercase()),
                _ => Unknown,
            }
        }
        TKind::Binary { op, lhs, rhs } => {
            let (l, r) = (eval(lhs, rule, ctx, missing), eval(rhs, rule, ctx, missing));
            binary(*op, l, r)
        }
    }
}

fn binary(op: BinOp, l: Val, r: Val) -> Val {
    use std::cmp::Ordering;
    use Val::*;
    match op {
        BinOp::And => match (l, r) {
            (Bool(false), _) | (_, Bool(false)) => Bool(false),
            (Bool(true), Bool(true)) => Bool(true),
            _ => Unknown,
        },
        BinOp::Or => match (l, r) {
            (Bool(true), _) | (_, Bool(true)) => Bool(true),
            (Bool(false), Bool(false)) => Bool(false),
            _ => Unknown,
        },
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => match (op, l, r) {
            (BinOp::Add, Num(a), Num(b)) => Num(a + b),
            (BinOp::Sub, Num(a), Num(b)) => Num(a - b),
            (BinOp::Mul, Num(a), Num(b)) => Num(a * b),
            (BinOp::Div, Num(a), Num(b)) if b != 0.0 => Num(a / b),
            (BinOp::Add, Dur(a), Dur(b)) => Dur(a + b),
            (BinOp::Sub, Dur(a), Dur(b)) => Dur(a - b),
            _ => Unknown,
        },
        _ => {
            let ord = match (&l, &r) {
                (Num(a), Num(b)) => a.partial_cmp(b),
                (Dur(a), Dur(b)) => Some(a.cmp(b)),
                (Str(a), Str(b)) => Some(a.cmp(b)),
                (Bool(a), Bool(b)) => Some(a.cmp(b)),
                _ => None,
            };
            let Some(ord) = ord else { return Unknown };
            Bool(match op {
                BinOp::Eq => ord == Ordering::Equal,
                BinOp::Ne => ord != Ordering::Equal,
                BinOp::Lt => ord == Ordering::Less,
                BinOp::Le => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            })
        }
    }
}
