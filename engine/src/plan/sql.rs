//! A small typed SQL tree and its one renderer.
//!
//! Invariant: identifiers reach the text only from the schema or from names the
//! grammar allows (ASCII letters, digits, `_`), always double-quoted; values are
//! rendered as escaped literals. Nothing else is ever concatenated into SQL.

use std::fmt::Write as _;

/// A SQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlExpr {
    /// `rel."col"`
    Col(String, String),
    /// `rel.*`
    Star(String),
    /// `'text'`
    Str(String),
    /// a DOUBLE literal
    Num(f64),
    /// a BIGINT literal
    Int(i64),
    /// `true` / `false`
    Bool(bool),
    /// `NULL`
    Null,
    /// `TIMESTAMP '...'` from microseconds since the epoch (UTC)
    Timestamp(i64),
    /// `lhs op rhs`
    Bin(&'static str, Box<SqlExpr>, Box<SqlExpr>),
    /// `NOT e`
    Not(Box<SqlExpr>),
    /// `-e`
    Neg(Box<SqlExpr>),
    /// `e IS [NOT] NULL`
    IsNull(Box<SqlExpr>, bool),
    /// `f(args)`; `f` is always a name from this crate, never from a rule.
    Func(&'static str, Vec<SqlExpr>),
    /// `count(DISTINCT e)`
    CountDistinct(Box<SqlExpr>),
    /// `count(*)`
    CountStar,
    /// `CASE WHEN .. THEN .. ELSE .. END`
    Case(Vec<(SqlExpr, SqlExpr)>, Box<SqlExpr>),
    /// `(SELECT ...)`
    Subquery(Box<Select>),
    /// `EXISTS (SELECT ...)`
    Exists(Box<Select>),
    /// `e IN (a, b)`
    InList(Box<SqlExpr>, Vec<SqlExpr>),
    /// `CAST(e AS type)`; the type is a name from this crate.
    Cast(Box<SqlExpr>, &'static str),
    /// The first (`latest: false`) or last tick of the evaluation, plus `offset`
    /// microseconds, as a constant: filled in when a plan is rendered for a set of
    /// ticks, so scans can skip rows no tick can see.
    TickBound {
        /// The last tick rather than the first.
        latest: bool,
        /// Added to it (negative: earlier).
        offset: i64,
    },
}

impl SqlExpr {
    /// `rel."col"`
    pub fn col(rel: &str, col: &str) -> SqlExpr {
        SqlExpr::Col(rel.to_string(), col.to_string())
    }

    /// `a op b`
    pub fn bin(op: &'static str, a: SqlExpr, b: SqlExpr) -> SqlExpr {
        SqlExpr::Bin(op, Box::new(a), Box::new(b))
    }

    /// `a AND b`, skipping a missing side.
    pub fn and_all(parts: Vec<SqlExpr>) -> Option<SqlExpr> {
        parts.into_iter().reduce(|a, b| SqlExpr::bin("AND", a, b))
    }
}

/// Where a SELECT reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// a table or CTE with an alias
    Table { name: String, alias: String },
    /// a loaded signal table in the `raw` schema, with an alias
    Raw { name: String, alias: String },
    /// nothing (SELECT of constants)
    Nothing,
    /// every row of a relation once per tick: `rel, "__ticks" AS alias`
    PerTick {
        /// The relation.
        rows: Box<From>,
        /// The alias of the ticks relation (its one column is [`TICK`]).
        ticks: String,
    },
}

/// A SELECT statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// SELECT DISTINCT?
    pub distinct: bool,
    /// (expression, alias)
    pub items: Vec<(SqlExpr, Option<String>)>,
    /// FROM
    pub from: From,
    /// WHERE
    pub filter: Option<SqlExpr>,
    /// ORDER BY (expression, NULLS FIRST)
    pub order_by: Vec<SqlExpr>,
}

impl Select {
    /// `SELECT items FROM name alias`
    pub fn from_table(name: &str, alias: &str, items: Vec<(SqlExpr, Option<String>)>) -> Select {
        Select {
            distinct: false,
            items,
            from: From::Table { name: name.to_string(), alias: alias.to_string() },
            filter: None,
            order_by: vec![],
        }
    }
}

/// One part of a WITH clause: a select, or several glued by UNION ALL.
#[derive(Debug, Clone, PartialEq)]
pub struct Cte {
    /// Its name.
    pub name: String,
    /// One or more selects, UNION ALL-ed.
    pub parts: Vec<Select>,
}

/// A whole statement: WITH ctes SELECT body. Every query may read the
/// [`TICKS`] relation (one row per evaluation time, column [`TICK`]), which the
/// renderer defines from the ticks it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Common table expressions, in dependency order.
    pub ctes: Vec<Cte>,
    /// The final select.
    pub body: Select,
}

/// The schema that holds the loaded signal tables; rules read as-of views of them.
pub const RAW_SCHEMA: &str = "raw";

/// The relation of evaluation times a query is rendered for.
pub const TICKS: &str = "__ticks";

/// Its column: one evaluation time T (TIMESTAMP, UTC).
pub const TICK: &str = "__tick";

/// Quotes an identifier. Identifiers come from the schema or the grammar, but
/// doubling quotes keeps even a surprising name harmless.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string value.
pub fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Renders a UTC instant as a DuckDB TIMESTAMP literal. Times outside what
/// DuckDB's TIMESTAMP holds are refused where they are read (signals, flags), so
/// the fallback here only keeps the text well-formed: `NULL`, never a wrong time.
pub fn timestamp_literal(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => format!("TIMESTAMP '{}'", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")),
        None => "CAST(NULL AS TIMESTAMP)".to_string(),
    }
}

/// Renders a query for a set of evaluation times (ascending), with line breaks
/// between clauses, for `explain` and execution.
pub fn render(q: &Query, ticks: &[i64]) -> String {
    let r = Renderer { ticks };
    let mut out = String::from("WITH\n");
    let tick_list: Vec<String> = ticks.iter().map(|t| timestamp_literal(*t)).collect();
    let _ = write!(out, "{} AS (\n  SELECT unnest([{}]::TIMESTAMP[]) AS {}\n)", ident(TICKS), tick_list.join(", "), ident(TICK));
    for cte in &q.ctes {
        let _ = write!(out, ",\n{} AS (\n  ", ident(&cte.name));
        let parts: Vec<String> = cte.parts.iter().map(|s| r.select(s, 1)).collect();
        out.push_str(&parts.join("\n  UNION ALL\n  "));
        out.push_str("\n)");
    }
    out.push('\n');
    out.push_str(&r.select(&q.body, 0));
    out
}

/// Renders one expression, for statements assembled around it (anomaly rules);
/// it must not read the ticks.
pub fn render_expression(e: &SqlExpr) -> String {
    Renderer { ticks: &[] }.expr(e, 0)
}

struct Renderer<'a> {
    ticks: &'a [i64],
}

impl Renderer<'_> {
    fn from(&self, from: &From) -> String {
        match from {
            From::Table { name, alias } => format!("{} AS {}", ident(name), ident(alias)),
            From::Raw { name, alias } => format!("{}.{} AS {}", ident(RAW_SCHEMA), ident(name), ident(alias)),
            From::Nothing => String::new(),
            From::PerTick { rows, ticks } => format!("{}, {} AS {}", self.from(rows), ident(TICKS), ident(ticks)),
        }
    }

    fn select(&self, s: &Select, depth: usize) -> String {
        let pad = "  ".repeat(depth);
        let mut out = String::from("SELECT ");
        if s.distinct {
            out.push_str("DISTINCT ");
        }
        let items: Vec<String> = s
            .items
            .iter()
            .map(|(e, alias)| match alias {
                Some(a) => format!("{} AS {}", self.expr(e, depth), ident(a)),
                None => self.expr(e, depth),
            })
            .collect();
        out.push_str(&items.join(&format!(",\n{pad}       ")));
        if s.from != From::Nothing {
            let _ = write!(out, "\n{pad}FROM {}", self.from(&s.from));
        }
        if let Some(f) = &s.filter {
            let _ = write!(out, "\n{pad}WHERE {}", self.expr(f, depth));
        }
        if !s.order_by.is_empty() {
            let keys: Vec<String> = s.order_by.iter().map(|e| format!("{} NULLS FIRST", self.expr(e, depth))).collect();
            let _ = write!(out, "\n{pad}ORDER BY {}", keys.join(", "));
        }
        out
    }

    fn expr(&self, e: &SqlExpr, depth: usize) -> String {
        match e {
            SqlExpr::Col(rel, col) => format!("{}.{}", ident(rel), ident(col)),
            SqlExpr::Star(rel) => format!("{}.*", ident(rel)),
            SqlExpr::Str(s) => string_literal(s),
            SqlExpr::Num(n) => {
                if !n.is_finite() {
                    "NULL".to_string()
                } else if n.fract() == 0.0 && n.abs() < 1e15 {
                    format!("{}", *n as i64)
                } else {
                    format!("CAST({n:?} AS DOUBLE)")
                }
            }
            SqlExpr::Int(i) => i.to_string(),
            SqlExpr::Bool(b) => b.to_string(),
            SqlExpr::Null => "NULL".to_string(),
            SqlExpr::Timestamp(t) => timestamp_literal(*t),
            SqlExpr::Bin(op, a, b) => format!("({} {op} {})", self.expr(a, depth), self.expr(b, depth)),
            SqlExpr::Not(a) => format!("(NOT {})", self.expr(a, depth)),
            SqlExpr::Neg(a) => format!("(- {})", self.expr(a, depth)),
            SqlExpr::IsNull(a, negated) => format!("({} IS {}NULL)", self.expr(a, depth), if *negated { "NOT " } else { "" }),
            SqlExpr::Func(f, args) => {
                let args: Vec<String> = args.iter().map(|a| self.expr(a, depth)).collect();
                format!("{f}({})", args.join(", "))
            }
            SqlExpr::CountDistinct(a) => format!("count(DISTINCT {})", self.expr(a, depth)),
            SqlExpr::CountStar => "count(*)".to_string(),
            SqlExpr::Case(whens, otherwise) => {
                let mut out = String::from("CASE");
                for (c, v) in whens {
                    let _ = write!(out, " WHEN {} THEN {}", self.expr(c, depth), self.expr(v, depth));
                }
                let _ = write!(out, " ELSE {} END", self.expr(otherwise, depth));
                out
            }
            SqlExpr::Subquery(s) => format!("(\n{}  {}\n{})", "  ".repeat(depth + 1), self.select(s, depth + 2), "  ".repeat(depth + 1)),
            SqlExpr::Exists(s) => {
                format!("EXISTS (\n{}  {}\n{})", "  ".repeat(depth + 1), self.select(s, depth + 2), "  ".repeat(depth + 1))
            }
            SqlExpr::InList(a, list) => {
                let items: Vec<String> = list.iter().map(|i| self.expr(i, depth)).collect();
                format!("({} IN ({}))", self.expr(a, depth), items.join(", "))
            }
            SqlExpr::Cast(a, ty) => format!("CAST({} AS {ty})", self.expr(a, depth)),
            SqlExpr::TickBound { latest, offset } => {
                let tick = if *latest { self.ticks.last() } else { self.ticks.first() };
                match tick.and_then(|t| t.checked_add(*offset)) {
                    Some(t) => timestamp_literal(t),
                    None => "CAST(NULL AS TIMESTAMP)".to_string(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_cannot_break_out() {
        assert_eq!(string_literal("x'); DROP TABLE sites; --"), "'x''); DROP TABLE sites; --'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
