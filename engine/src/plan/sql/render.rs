//! The renderer: the one place SQL text is made, in a [`Dialect`].

use std::fmt::Write as _;

use super::*;

/// Quotes an identifier. Identifiers come from the schema or the grammar, but
/// doubling quotes keeps even a surprising name harmless.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string value.
pub fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Renders a UTC instant as a TIMESTAMP literal. Times outside what a TIMESTAMP
/// holds are refused where they are read (signals, flags), so the fallback here
/// only keeps the text well-formed: `NULL`, never a wrong time.
pub fn timestamp_literal(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => format!("TIMESTAMP '{}'", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")),
        None => "CAST(NULL AS TIMESTAMP)".to_string(),
    }
}

/// How a dialect spells a column type (also as its catalog reports it).
pub fn type_name(ty: SqlType, dialect: Dialect) -> &'static str {
    match (dialect, ty) {
        (Dialect::DuckDb, SqlType::BigInt) => "BIGINT",
        (Dialect::DuckDb, SqlType::Double) => "DOUBLE",
        (Dialect::DuckDb, SqlType::Boolean) => "BOOLEAN",
        (Dialect::DuckDb, SqlType::Timestamp) => "TIMESTAMP",
        (Dialect::DuckDb, SqlType::TimestampTz) => "TIMESTAMPTZ",
        (Dialect::DuckDb, SqlType::Varchar) => "VARCHAR",
    }
}

/// Renders a query for a set of evaluation times (ascending), with line breaks
/// between clauses, for `explain` and execution. Without ticks the ticks
/// relation is not defined.
pub fn render(q: &Query, ticks: &[i64], dialect: Dialect) -> String {
    Renderer { ticks, dialect }.query(q)
}

/// Renders a statement that reads no ticks.
pub fn render_statement(s: &Statement, dialect: Dialect) -> String {
    Renderer { ticks: &[], dialect }.statement(s)
}

/// Renders statements as one batch, each ended by `;`.
pub fn render_batch(statements: &[Statement], dialect: Dialect) -> String {
    statements.iter().map(|s| format!("{};\n", render_statement(s, dialect))).collect()
}

/// Renders one expression; it must not read the ticks.
pub fn render_expression(e: &SqlExpr, dialect: Dialect) -> String {
    Renderer { ticks: &[], dialect }.expr(e, 0)
}

struct Renderer<'a> {
    ticks: &'a [i64],
    dialect: Dialect,
}

impl Renderer<'_> {
    fn query(&self, q: &Query) -> String {
        let mut ctes = Vec::new();
        if !self.ticks.is_empty() {
            ctes.push(format!("{} AS (\n  SELECT {} AS {}\n)", ident(TICKS), self.timestamp_rows(self.ticks), ident(TICK)));
        }
        for cte in &q.ctes {
            let parts: Vec<String> = cte.parts.iter().map(|s| self.select(s, 1)).collect();
            let glue = if cte.distinct { "\n  UNION\n  " } else { "\n  UNION ALL\n  " };
            ctes.push(format!("{} AS (\n  {}\n)", ident(&cte.name), parts.join(glue)));
        }
        let body = self.select(&q.body, 0);
        if ctes.is_empty() {
            body
        } else {
            format!("WITH\n{}\n{body}", ctes.join(",\n"))
        }
    }

    /// A select item that yields one row per timestamp.
    fn timestamp_rows(&self, times: &[i64]) -> String {
        let list: Vec<String> = times.iter().map(|t| timestamp_literal(*t)).collect();
        match self.dialect {
            Dialect::DuckDb => format!("unnest([{}]::TIMESTAMP[])", list.join(", ")),
        }
    }

    fn table_name(&self, t: &TableName) -> String {
        match &t.schema {
            Some(s) => format!("{}.{}", ident(s), ident(&t.name)),
            None => ident(&t.name),
        }
    }

    fn sql_type(&self, ty: SqlType) -> &'static str {
        type_name(ty, self.dialect)
    }

    fn statement(&self, s: &Statement) -> String {
        match s {
            Statement::Query(q) => self.query(q),
            Statement::CreateSchema(name) => format!("CREATE SCHEMA {}", ident(name)),
            Statement::CreateTable { table, columns, primary_key, temporary } => {
                let mut defs: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} {}{}", ident(&c.name), self.sql_type(c.ty), if c.not_null { " NOT NULL" } else { "" }))
                    .collect();
                if !primary_key.is_empty() {
                    let keys: Vec<String> = primary_key.iter().map(|k| ident(k)).collect();
                    defs.push(format!("PRIMARY KEY ({})", keys.join(", ")));
                }
                let head = if *temporary { "CREATE OR REPLACE TEMP TABLE" } else { "CREATE TABLE IF NOT EXISTS" };
                format!("{head} {} ({})", self.table_name(table), defs.join(", "))
            }
            Statement::CreateTableAs { table, query } => {
                format!("CREATE OR REPLACE TABLE {} AS\n{}", self.table_name(table), self.query(query))
            }
            Statement::CopyTo { query, path, format } => {
                let options = match (self.dialect, format) {
                    (Dialect::DuckDb, CopyFormat::Parquet) => "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880",
                    (Dialect::DuckDb, CopyFormat::Csv) => "FORMAT csv, HEADER true",
                };
                format!("COPY (\n{}\n) TO {} ({options})", self.query(query), string_literal(path))
            }
            Statement::CreateTempTableAs { name, query } => {
                format!("CREATE OR REPLACE TEMP TABLE {} AS\n{}", ident(name), self.query(query))
            }
            Statement::CreateView { view, select } => format!("CREATE VIEW {} AS {}", self.table_name(view), self.select(select, 0)),
            Statement::Describe(select) => format!("DESCRIBE {}", self.select(select, 0)),
            Statement::AddColumn { table, column } => format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}",
                self.table_name(table),
                ident(&column.name),
                self.sql_type(column.ty),
                if column.not_null { " NOT NULL" } else { "" }
            ),
            Statement::CreateSequence(name) => format!("CREATE SEQUENCE IF NOT EXISTS {}", self.table_name(name)),
            Statement::Insert { table, source, replace } => {
                let head = if *replace { "INSERT OR REPLACE INTO" } else { "INSERT INTO" };
                let rows = match source {
                    InsertSource::Values(rows) => {
                        let rows: Vec<String> = rows
                            .iter()
                            .map(|r| format!("({})", r.iter().map(|e| self.expr(e, 0)).collect::<Vec<_>>().join(", ")))
                            .collect();
                        format!("VALUES {}", rows.join(", "))
                    }
                    InsertSource::Query(q) => self.query(q),
                };
                format!("{head} {}\n{rows}", self.table_name(table))
            }
            Statement::Update { table, set, filter } => {
                let set: Vec<String> = set.iter().map(|(c, e)| format!("{} = {}", ident(c), self.expr(e, 0))).collect();
                let mut out = format!("UPDATE {} SET {}", self.table_name(table), set.join(", "));
                if let Some(f) = filter {
                    let _ = write!(out, " WHERE {}", self.expr(f, 0));
                }
                out
            }
            Statement::Delete { table, filter } => {
                let mut out = format!("DELETE FROM {}", self.table_name(table));
                if let Some(f) = filter {
                    let _ = write!(out, " WHERE {}", self.expr(f, 0));
                }
                out
            }
            Statement::Attach { path, alias, read_only } => {
                format!("ATTACH IF NOT EXISTS {} AS {}{}", string_literal(path), ident(alias), if *read_only { " (READ_ONLY)" } else { "" })
            }
            Statement::Detach(alias) => format!("DETACH {}", ident(alias)),
            Statement::Begin => "BEGIN TRANSACTION".to_string(),
            Statement::Commit => "COMMIT".to_string(),
            Statement::Rollback => "ROLLBACK".to_string(),
        }
    }

    fn from(&self, from: &From, depth: usize) -> String {
        match from {
            From::Table { name, alias } => format!("{} AS {}", ident(name), ident(alias)),
            From::InSchema { schema, name, alias } => format!("{}.{} AS {}", ident(schema), ident(name), ident(alias)),
            From::Raw { name, alias } => format!("{}.{} AS {}", ident(RAW_SCHEMA), ident(name), ident(alias)),
            From::Derived { select, alias } => {
                let pad = "  ".repeat(depth + 1);
                format!("(\n{pad}  {}\n{pad}) AS {}", self.select(select, depth + 2), ident(alias))
            }
            From::Parquet { path, alias } => format!("read_parquet({}) AS {}", string_literal(path), ident(alias)),
            From::CatalogColumns { alias } => match self.dialect {
                Dialect::DuckDb => format!("duckdb_columns() AS {}", ident(alias)),
            },
            From::Nothing => String::new(),
            From::Series { start, stop, alias, column } => match self.dialect {
                Dialect::DuckDb => {
                    format!("range({}, {}) AS {}({})", self.expr(start, depth), self.expr(stop, depth), ident(alias), ident(column))
                }
            },
            From::Cross(parts) => parts.iter().map(|p| self.from(p, depth)).collect::<Vec<_>>().join(", "),
            From::PerTick { rows, ticks } => format!("{}, {} AS {}", self.from(rows, depth), ident(TICKS), ident(ticks)),
            From::Join { left, right, kind, on } => {
                let pad = "  ".repeat(depth + 1);
                let join = match kind {
                    JoinKind::Inner => "JOIN",
                    JoinKind::Left => "LEFT JOIN",
                };
                format!("{}\n{pad}{join} {} ON {}", self.from(left, depth), self.from(right, depth), self.expr(on, depth))
            }
        }
    }

    fn order_keys(&self, keys: &[OrderKey], depth: usize) -> String {
        let keys: Vec<String> = keys
            .iter()
            .map(|k| {
                let order = match (k.desc, k.nulls_last) {
                    (false, false) => "NULLS FIRST",
                    (false, true) => "NULLS LAST",
                    (true, false) => "DESC NULLS FIRST",
                    (true, true) => "DESC NULLS LAST",
                };
                format!("{} {order}", self.expr(&k.expr, depth))
            })
            .collect();
        keys.join(", ")
    }

    fn window(&self, w: &Window, depth: usize) -> String {
        let mut parts = Vec::new();
        if !w.partition_by.is_empty() {
            let keys: Vec<String> = w.partition_by.iter().map(|e| self.expr(e, depth)).collect();
            parts.push(format!("PARTITION BY {}", keys.join(", ")));
        }
        if !w.order_by.is_empty() {
            parts.push(format!("ORDER BY {}", self.order_keys(&w.order_by, depth)));
        }
        if let Some(f) = w.frame {
            let start = match f.start {
                Some(n) => format!("{n} PRECEDING"),
                None => "UNBOUNDED PRECEDING".to_string(),
            };
            parts.push(format!("ROWS BETWEEN {start} AND {} PRECEDING", f.end));
        }
        parts.join(" ")
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
            let _ = write!(out, "\n{pad}FROM {}", self.from(&s.from, depth));
        }
        if let Some(f) = &s.filter {
            let _ = write!(out, "\n{pad}WHERE {}", self.expr(f, depth));
        }
        if !s.group_by.is_empty() {
            let keys: Vec<String> = s.group_by.iter().map(|e| self.expr(e, depth)).collect();
            let _ = write!(out, "\n{pad}GROUP BY {}", keys.join(", "));
        }
        if !s.windows.is_empty() {
            let ws: Vec<String> = s.windows.iter().map(|w| format!("{} AS ({})", ident(&w.name), self.window(w, depth))).collect();
            let _ = write!(out, "\n{pad}WINDOW {}", ws.join(&format!(",\n{pad}       ")));
        }
        if !s.order_by.is_empty() {
            let _ = write!(out, "\n{pad}ORDER BY {}", self.order_keys(&s.order_by, depth));
        }
        if let Some(n) = s.limit {
            let _ = write!(out, "\n{pad}LIMIT {n}");
        }
        out
    }

    fn op(&self, op: Op) -> &'static str {
        match (self.dialect, op) {
            (_, Op::And) => "AND",
            (_, Op::Or) => "OR",
            (_, Op::Eq) => "=",
            (_, Op::Ne) => "<>",
            (_, Op::Lt) => "<",
            (_, Op::Le) => "<=",
            (_, Op::Gt) => ">",
            (_, Op::Ge) => ">=",
            (_, Op::Add) => "+",
            (_, Op::Sub) => "-",
            (_, Op::Mul) => "*",
            (_, Op::Div) => "/",
            (Dialect::DuckDb, Op::IntDiv) => "//",
            (_, Op::Mod) => "%",
            (_, Op::Concat) => "||",
        }
    }

    /// The name of a function that is a plain call in this dialect.
    fn func_name(&self, f: Func) -> &'static str {
        match (self.dialect, f) {
            (_, Func::Abs) => "abs",
            (_, Func::Asin) => "asin",
            (_, Func::Cos) => "cos",
            (_, Func::Sin) => "sin",
            (_, Func::Sqrt) => "sqrt",
            (_, Func::Pow) => "pow",
            (_, Func::Radians) => "radians",
            (_, Func::Round) => "round",
            (_, Func::Coalesce) => "coalesce",
            (_, Func::Greatest) => "greatest",
            (_, Func::Least) => "least",
            (_, Func::Lower) => "lower",
            (_, Func::Upper) => "upper",
            (_, Func::Contains) => "contains",
            (_, Func::Strpos) => "strpos",
            (_, Func::Replace) => "replace",
            (Dialect::DuckDb, Func::RegexpFullMatch) => "regexp_full_match",
            (_, Func::ConcatWs) => "concat_ws",
            (Dialect::DuckDb, Func::EpochMicros) => "epoch_us",
            (Dialect::DuckDb, Func::FromEpochMicros) => "make_timestamp",
            (Dialect::DuckDb, Func::MicrosInterval) => "to_microseconds",
            (_, Func::First) => "first",
            (_, Func::Min) => "min",
            (_, Func::Max) => "max",
            (_, Func::Sum) => "sum",
            (_, Func::Avg) => "avg",
            (_, Func::Count) => "count",
            (_, Func::StddevSamp) => "stddev_samp",
            (_, Func::VarPop) => "var_pop",
            (_, Func::Median) => "median",
            (Dialect::DuckDb, Func::Mad) => "mad",
            (Dialect::DuckDb, Func::List) => "list",
            (Dialect::DuckDb, Func::ArgMax) => "arg_max",
            (_, Func::RowNumber) => "row_number",
            (Dialect::DuckDb, Func::NextVal) => "nextval",
            (Dialect::DuckDb, Func::Hash) => "hash",
            (_, Func::Lpad) => "lpad",
            (_, Func::NullIf) => "nullif",
            (Dialect::DuckDb, Func::IsoUtc | Func::MeanAbsDeviation | Func::UnnestRange) => "",
        }
    }

    fn call(&self, f: Func, args: &[SqlExpr], depth: usize) -> String {
        let a: Vec<String> = args.iter().map(|x| self.expr(x, depth)).collect();
        let arg = |i: usize| a.get(i).cloned().unwrap_or_else(|| "NULL".to_string());
        match (self.dialect, f) {
            (Dialect::DuckDb, Func::IsoUtc) => format!("strftime({}, '%Y-%m-%dT%H:%M:%SZ')", arg(0)),
            (Dialect::DuckDb, Func::MeanAbsDeviation) => {
                format!("list_avg(list_transform({}, lambda v: abs(v - {})))", arg(0), arg(1))
            }
            (Dialect::DuckDb, Func::UnnestRange) => format!("unnest(range({}, {}, {}))", arg(0), arg(1), arg(2)),
            _ => format!("{}({})", self.func_name(f), a.join(", ")),
        }
    }

    fn expr(&self, e: &SqlExpr, depth: usize) -> String {
        match e {
            SqlExpr::Col(rel, col) => format!("{}.{}", ident(rel), ident(col)),
            SqlExpr::Bare(col) => ident(col),
            SqlExpr::Star(rel) => format!("{}.*", ident(rel)),
            SqlExpr::AllColumns => "*".to_string(),
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
            SqlExpr::UInt(u) => u.to_string(),
            SqlExpr::Decimal { digits, scale } => {
                let scale = *scale as usize;
                let mut text = format!("{:0>width$}", digits.unsigned_abs(), width = scale + 1);
                if scale > 0 {
                    text.insert(text.len() - scale, '.');
                }
                if *digits < 0 {
                    text.insert(0, '-');
                }
                text
            }
            SqlExpr::Bool(b) => b.to_string(),
            SqlExpr::Null => "NULL".to_string(),
            SqlExpr::Param => "?".to_string(),
            SqlExpr::Timestamp(t) => timestamp_literal(*t),
            SqlExpr::Bin(op, a, b) => format!("({} {} {})", self.expr(a, depth), self.op(*op), self.expr(b, depth)),
            SqlExpr::Not(a) => format!("(NOT {})", self.expr(a, depth)),
            SqlExpr::Neg(a) => format!("(- {})", self.expr(a, depth)),
            SqlExpr::IsNull(a, negated) => format!("({} IS {}NULL)", self.expr(a, depth), if *negated { "NOT " } else { "" }),
            SqlExpr::Func(f, args) => self.call(*f, args, depth),
            SqlExpr::CountDistinct(a) => format!("count(DISTINCT {})", self.expr(a, depth)),
            SqlExpr::CountStar => "count(*)".to_string(),
            SqlExpr::LastBy(v, keys) => {
                let keys: Vec<String> = keys.iter().map(|k| self.expr(k, depth)).collect();
                format!("last({} ORDER BY {})", self.expr(v, depth), keys.join(", "))
            }
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
            SqlExpr::ListItem(items, index) => {
                let items: Vec<String> = items.iter().map(|i| self.expr(i, depth)).collect();
                match self.dialect {
                    Dialect::DuckDb => format!("[{}][({} + 1)]", items.join(", "), self.expr(index, depth)),
                }
            }
            SqlExpr::InSelect(a, s) => {
                format!(
                    "({} IN (\n{}  {}\n{}))",
                    self.expr(a, depth),
                    "  ".repeat(depth + 1),
                    self.select(s, depth + 2),
                    "  ".repeat(depth + 1)
                )
            }
            SqlExpr::Cast(a, ty) => format!("CAST({} AS {})", self.expr(a, depth), self.sql_type(*ty)),
            SqlExpr::Over(f, window) => format!("{} OVER {}", self.expr(f, depth), ident(window)),
            SqlExpr::OverInline(f, window) => format!("{} OVER ({})", self.expr(f, depth), self.window(window, depth)),
            SqlExpr::TempTableExists(name) => match self.dialect {
                Dialect::DuckDb => {
                    format!("EXISTS (SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = {})", string_literal(name))
                }
            },
            SqlExpr::TableExists { database, table } => match self.dialect {
                Dialect::DuckDb => format!(
                    "EXISTS (SELECT 1 FROM duckdb_tables() WHERE database_name = {} AND table_name = {})",
                    string_literal(database),
                    string_literal(table)
                ),
            },
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

    #[test]
    fn statements_render_with_quoted_names_and_literal_values() {
        let t = TableName::in_schema("st", "reloads");
        let insert = Statement::Insert {
            table: t.clone(),
            source: InsertSource::Values(vec![vec![SqlExpr::Str("it's".into()), SqlExpr::Param]]),
            replace: false,
        };
        assert_eq!(render_statement(&insert, Dialect::DuckDb), "INSERT INTO \"st\".\"reloads\"\nVALUES ('it''s', ?)");
        let update = Statement::Update {
            table: t,
            set: vec![("ok".into(), SqlExpr::Bool(false))],
            filter: Some(SqlExpr::eq(SqlExpr::bare("revision"), SqlExpr::Param)),
        };
        assert_eq!(render_statement(&update, Dialect::DuckDb), "UPDATE \"st\".\"reloads\" SET \"ok\" = false WHERE (\"revision\" = ?)");
    }

    #[test]
    fn decimals_render_exactly() {
        let d = |digits, scale| render_expression(&SqlExpr::Decimal { digits, scale }, Dialect::DuckDb);
        assert_eq!(
            (d(510, 1), d(-10, 1), d(1, 2), d(0, 1), d(7, 0)),
            ("51.0".into(), "-1.0".into(), "0.01".into(), "0.0".into(), "7".into())
        );
    }

    #[test]
    fn windows_group_by_and_joins_render() {
        let w = Window {
            name: "earlier".into(),
            partition_by: vec![SqlExpr::bare("site_id")],
            order_by: vec![OrderKey::asc(SqlExpr::bare("b"))],
            frame: Some(Frame { start: None, end: 1 }),
        };
        let from =
            From::table("a", "a").join(JoinKind::Left, From::table("b", "b"), SqlExpr::eq(SqlExpr::col("a", "k"), SqlExpr::col("b", "k")));
        let s = Select {
            items: vec![(SqlExpr::Over(Box::new(SqlExpr::CountStar), "earlier".into()), Some("n".into()))],
            from,
            group_by: vec![SqlExpr::col("a", "k")],
            windows: vec![w],
            ..Select::default()
        };
        let text = render(&Query { ctes: vec![], body: s }, &[], Dialect::DuckDb);
        assert_eq!(
            text,
            "SELECT count(*) OVER \"earlier\" AS \"n\"\nFROM \"a\" AS \"a\"\n  LEFT JOIN \"b\" AS \"b\" ON (\"a\".\"k\" = \"b\".\"k\")\n\
             GROUP BY \"a\".\"k\"\nWINDOW \"earlier\" AS (PARTITION BY \"site_id\" ORDER BY \"b\" NULLS FIRST ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
        );
    }
}
