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

/// A whole statement: WITH ctes SELECT body.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Common table expressions, in dependency order.
    pub ctes: Vec<Cte>,
    /// The final select.
    pub body: Select,
}

/// The schema that holds the loaded signal tables; rules read as-of views of them.
pub const RAW_SCHEMA: &str = "raw";

/// Quotes an identifier. Identifiers come from the schema or the grammar, but
/// doubling quotes keeps even a surprising name harmless.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string value.
pub fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Renders a UTC instant as a DuckDB TIMESTAMP literal.
pub fn timestamp_literal(micros: i64) -> String {
    let text = chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_else(|| "1970-01-01 00:00:00".to_string());
    format!("TIMESTAMP '{text}'")
}

/// Renders a query with line breaks between clauses, for `explain` and execution.
pub fn render(q: &Query) -> String {
    let mut out = String::new();
    if !q.ctes.is_empty() {
        out.push_str("WITH\n");
        for (i, cte) in q.ctes.iter().enumerate() {
            let _ = write!(out, "{} AS (\n  ", ident(&cte.name));
            let parts: Vec<String> = cte.parts.iter().map(|s| render_select(s, 1)).collect();
            out.push_str(&parts.join("\n  UNION ALL\n  "));
            out.push_str(if i + 1 == q.ctes.len() { "\n)\n" } else { "\n),\n" });
        }
    }
    out.push_str(&render_select(&q.body, 0));
    out
}

fn render_select(s: &Select, depth: usize) -> String {
    let pad = "  ".repeat(depth);
    let mut out = String::from("SELECT ");
    if s.distinct {
        out.push_str("DISTINCT ");
    }
    let items: Vec<String> = s
        .items
        .iter()
        .map(|(e, alias)| match alias {
            Some(a) => format!("{} AS {}", render_expr(e, depth), ident(a)),
            None => render_expr(e, depth),
        })
        .collect();
    out.push_str(&items.join(&format!(",\n{pad}       ")));
    match &s.from {
        From::Table { name, alias } => {
            let _ = write!(out, "\n{pad}FROM {} AS {}", ident(name), ident(alias));
        }
        From::Raw { name, alias } => {
            let _ = write!(out, "\n{pad}FROM {}.{} AS {}", ident(RAW_SCHEMA), ident(name), ident(alias));
        }
        From::Nothing => {}
    }
    if let Some(f) = &s.filter {
        let _ = write!(out, "\n{pad}WHERE {}", render_expr(f, depth));
    }
    if !s.order_by.is_empty() {
        let keys: Vec<String> = s.order_by.iter().map(|e| format!("{} NULLS FIRST", render_expr(e, depth))).collect();
        let _ = write!(out, "\n{pad}ORDER BY {}", keys.join(", "));
    }
    out
}

/// Renders one expression, for statements assembled around it (anomaly rules).
pub fn render_expression(e: &SqlExpr) -> String {
    render_expr(e, 0)
}

fn render_expr(e: &SqlExpr, depth: usize) -> String {
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
        SqlExpr::Bin(op, a, b) => format!("({} {op} {})", render_expr(a, depth), render_expr(b, depth)),
        SqlExpr::Not(a) => format!("(NOT {})", render_expr(a, depth)),
        SqlExpr::Neg(a) => format!("(- {})", render_expr(a, depth)),
        SqlExpr::IsNull(a, negated) => format!("({} IS {}NULL)", render_expr(a, depth), if *negated { "NOT " } else { "" }),
        SqlExpr::Func(f, args) => {
            let args: Vec<String> = args.iter().map(|a| render_expr(a, depth)).collect();
            format!("{f}({})", args.join(", "))
        }
        SqlExpr::CountDistinct(a) => format!("count(DISTINCT {})", render_expr(a, depth)),
        SqlExpr::CountStar => "count(*)".to_string(),
        SqlExpr::Case(whens, otherwise) => {
            let mut out = String::from("CASE");
            for (c, v) in whens {
                let _ = write!(out, " WHEN {} THEN {}", render_expr(c, depth), render_expr(v, depth));
            }
            let _ = write!(out, " ELSE {} END", render_expr(otherwise, depth));
            out
        }
        SqlExpr::Subquery(s) => format!("(\n{}  {}\n{})", "  ".repeat(depth + 1), render_select(s, depth + 2), "  ".repeat(depth + 1)),
        SqlExpr::Exists(s) => format!("EXISTS (\n{}  {}\n{})", "  ".repeat(depth + 1), render_select(s, depth + 2), "  ".repeat(depth + 1)),
        SqlExpr::InList(a, list) => {
            let items: Vec<String> = list.iter().map(|i| render_expr(i, depth)).collect();
            format!("({} IN ({}))", render_expr(a, depth), items.join(", "))
        }
        SqlExpr::Cast(a, ty) => format!("CAST({} AS {ty})", render_expr(a, depth)),
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
