//! The renderer: the one place SQL text is made, in a [`Dialect`].

use std::fmt::Write as _;

use super::*;

/// How the renderer's Spark text begins what it cannot translate (`check --engine spark`
/// finds it there).
pub const SPARK_UNSUPPORTED: &str = "not supported on Spark: ";

/// Quotes an identifier (DuckDB). Identifiers come from the schema or the grammar, but
/// doubling quotes keeps even a surprising name harmless.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an identifier in Spark SQL, where a double-quoted name is a string: backticks,
/// doubled inside.
pub fn spark_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string value (DuckDB).
pub fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quotes a string value in Spark SQL. Spark reads backslash escapes in literals and
/// joins adjacent literals (`'a''b'` is `ab`), so a quote is escaped with a backslash
/// and a backslash is doubled; control characters are written as `\uXXXX`.
pub fn spark_string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
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

/// Renders a UTC instant as a Spark TIMESTAMP literal with an explicit offset (Spark's
/// TIMESTAMP is an instant shown in the session's zone; the offset makes the literal
/// the same instant whatever that zone is).
pub fn spark_timestamp_literal(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => format!("TIMESTAMP '{}+00:00'", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")),
        None => "CAST(NULL AS TIMESTAMP)".to_string(),
    }
}

/// Spark: the median of an array of numbers without NULLs, interpolated as DuckDB's
/// `median` is (`lo + (hi - lo) * 0.5`); NULL when it is empty. The sorted array is bound
/// once, as the element of a one-element `aggregate`, so it is sorted once per row.
fn spark_array_median(values: &str) -> String {
    // `element_at` takes an INT position; `div` gives a BIGINT.
    let at = |position: &str| format!("element_at(vigil_s, CAST({position} AS INT))");
    let (mid, lo, hi) = (at("(size(vigil_s) + 1) div 2"), at("size(vigil_s) div 2"), at("size(vigil_s) div 2 + 1"));
    format!(
        "aggregate(array(array_sort({values})), CAST(NULL AS DOUBLE), (vigil_acc, vigil_s) -> CASE WHEN size(vigil_s) = 0 THEN CAST(NULL AS DOUBLE) \
         WHEN size(vigil_s) % 2 = 1 THEN CAST({mid} AS DOUBLE) ELSE {lo} + ({hi} - {lo}) * CAST(0.5 AS DOUBLE) END)"
    )
}

/// Spark: the median absolute deviation of an array of numbers without NULLs, the
/// median of |v - median| (as DuckDB's `mad`), with the array and its median bound once.
fn spark_array_mad(values: &str) -> String {
    format!(
        "aggregate(array({values}), CAST(NULL AS DOUBLE), (vigil_acc_x, vigil_xs) -> aggregate(array({}), CAST(NULL AS DOUBLE), \
         (vigil_acc_m, vigil_m) -> {}))",
        spark_array_median("vigil_xs"),
        spark_array_median("transform(vigil_xs, vigil_v -> abs(vigil_v - vigil_m))")
    )
}

/// How a dialect spells a column type (also as its catalog reports it).
pub fn type_name(ty: SqlType, dialect: Dialect) -> &'static str {
    match (dialect, ty) {
        (Dialect::Spark, SqlType::BigInt) => "BIGINT",
        (Dialect::Spark, SqlType::Double) => "DOUBLE",
        (Dialect::Spark, SqlType::Boolean) => "BOOLEAN",
        // Spark has no zoned type: TIMESTAMP is an instant (the session zone is UTC).
        (Dialect::Spark, SqlType::Timestamp | SqlType::TimestampTz) => "TIMESTAMP",
        (Dialect::Spark, SqlType::Varchar) => "STRING",
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
    fn ident(&self, name: &str) -> String {
        match self.dialect {
            Dialect::DuckDb => ident(name),
            Dialect::Spark => spark_ident(name),
        }
    }

    fn string(&self, value: &str) -> String {
        match self.dialect {
            Dialect::DuckDb => string_literal(value),
            Dialect::Spark => spark_string_literal(value),
        }
    }

    fn timestamp(&self, micros: i64) -> String {
        match self.dialect {
            Dialect::DuckDb => timestamp_literal(micros),
            Dialect::Spark => spark_timestamp_literal(micros),
        }
    }

    /// What Spark cannot do here: an expression that fails with this message if it is
    /// ever run (`vigil check --engine spark` refuses such rules before anything runs).
    fn unsupported(&self, what: &str) -> String {
        format!("raise_error({})", self.string(&format!("{SPARK_UNSUPPORTED}{what}")))
    }

    /// The name of a loaded signal table: `raw.<name>` in DuckDB; in Spark a temporary
    /// view `vigil_raw_<name>` (temporary views have no schema).
    fn raw_table(&self, name: &str) -> String {
        match self.dialect {
            Dialect::DuckDb => format!("{}.{}", self.ident(RAW_SCHEMA), self.ident(name)),
            Dialect::Spark => self.ident(&format!("vigil_{RAW_SCHEMA}_{name}")),
        }
    }

    fn query(&self, q: &Query) -> String {
        let mut ctes = Vec::new();
        if !self.ticks.is_empty() {
            ctes.push(format!("{} AS (\n  SELECT {} AS {}\n)", self.ident(TICKS), self.timestamp_rows(self.ticks), self.ident(TICK)));
        }
        for cte in &q.ctes {
            let parts: Vec<String> = cte.parts.iter().map(|s| self.select(s, 1)).collect();
            let glue = if cte.distinct { "\n  UNION\n  " } else { "\n  UNION ALL\n  " };
            ctes.push(format!("{} AS (\n  {}\n)", self.ident(&cte.name), parts.join(glue)));
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
        let list: Vec<String> = times.iter().map(|t| self.timestamp(*t)).collect();
        match self.dialect {
            Dialect::DuckDb => format!("unnest([{}]::TIMESTAMP[])", list.join(", ")),
            Dialect::Spark => format!("explode(array({}))", list.join(", ")),
        }
    }

    fn table_name(&self, t: &TableName) -> String {
        match &t.schema {
            Some(s) if s == RAW_SCHEMA => self.raw_table(&t.name),
            Some(s) => format!("{}.{}", self.ident(s), self.ident(&t.name)),
            None => self.ident(&t.name),
        }
    }

    fn sql_type(&self, ty: SqlType) -> &'static str {
        type_name(ty, self.dialect)
    }

    fn statement(&self, s: &Statement) -> String {
        match s {
            Statement::Query(q) => self.query(q),
            Statement::CreateSchema(name) => format!("CREATE SCHEMA {}", self.ident(name)),
            Statement::CreateTable { table, columns, primary_key, temporary } => {
                let mut defs: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} {}{}", self.ident(&c.name), self.sql_type(c.ty), if c.not_null { " NOT NULL" } else { "" }))
                    .collect();
                if !primary_key.is_empty() {
                    let keys: Vec<String> = primary_key.iter().map(|k| self.ident(k)).collect();
                    defs.push(format!("PRIMARY KEY ({})", keys.join(", ")));
                }
                let head = if *temporary { "CREATE OR REPLACE TEMP TABLE" } else { "CREATE TABLE IF NOT EXISTS" };
                format!("{head} {} ({})", self.table_name(table), defs.join(", "))
            }
            Statement::CreateTableAs { table, query } => {
                format!("CREATE OR REPLACE TABLE {} AS\n{}", self.table_name(table), self.query(query))
            }
            Statement::CopyTo { query, path, format } => {
                let options = match format {
                    CopyFormat::Parquet => "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880",
                    CopyFormat::Csv => "FORMAT csv, HEADER true",
                };
                format!("COPY (\n{}\n) TO {} ({options})", self.query(query), self.string(path))
            }
            Statement::CreateTempTableAs { name, query } => {
                format!("CREATE OR REPLACE TEMP TABLE {} AS\n{}", self.ident(name), self.query(query))
            }
            Statement::CreateView { view, select } => match self.dialect {
                Dialect::DuckDb => format!("CREATE VIEW {} AS {}", self.table_name(view), self.select(select, 0)),
                // Views of a Spark Connect session are temporary: they end with it.
                Dialect::Spark => format!("CREATE OR REPLACE TEMPORARY VIEW {} AS {}", self.table_name(view), self.select(select, 0)),
            },
            Statement::Describe(select) => format!("DESCRIBE {}", self.select(select, 0)),
            Statement::AddColumn { table, column } => format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}",
                self.table_name(table),
                self.ident(&column.name),
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
                let set: Vec<String> = set.iter().map(|(c, e)| format!("{} = {}", self.ident(c), self.expr(e, 0))).collect();
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
                format!(
                    "ATTACH IF NOT EXISTS {} AS {}{}",
                    self.string(path),
                    self.ident(alias),
                    if *read_only { " (READ_ONLY)" } else { "" }
                )
            }
            Statement::Detach(alias) => format!("DETACH {}", self.ident(alias)),
            Statement::Begin => "BEGIN TRANSACTION".to_string(),
            Statement::Commit => "COMMIT".to_string(),
            Statement::Rollback => "ROLLBACK".to_string(),
        }
    }

    fn from(&self, from: &From, depth: usize) -> String {
        match from {
            From::Table { name, alias } => format!("{} AS {}", self.ident(name), self.ident(alias)),
            From::InSchema { schema, name, alias } => format!("{}.{} AS {}", self.ident(schema), self.ident(name), self.ident(alias)),
            From::Raw { name, alias } => format!("{} AS {}", self.raw_table(name), self.ident(alias)),
            From::Derived { select, alias } => {
                let pad = "  ".repeat(depth + 1);
                format!("(\n{pad}  {}\n{pad}) AS {}", self.select(select, depth + 2), self.ident(alias))
            }
            From::Lateral { select, alias } => {
                let pad = "  ".repeat(depth + 1);
                format!("LATERAL (\n{pad}  {}\n{pad}) AS {}", self.select(select, depth + 2), self.ident(alias))
            }
            From::Parquet { path, alias } => match self.dialect {
                Dialect::DuckDb => format!("read_parquet({}) AS {}", self.string(path), self.ident(alias)),
                Dialect::Spark => format!("parquet.{} AS {}", self.ident(path), self.ident(alias)),
            },
            From::CatalogColumns { alias } => match self.dialect {
                Dialect::DuckDb => format!("duckdb_columns() AS {}", self.ident(alias)),
                Dialect::Spark => format!("(SELECT {}) AS {}", self.unsupported("the catalog's columns"), self.ident(alias)),
            },
            From::Nothing => String::new(),
            From::Series { start, stop, alias, column } => match self.dialect {
                Dialect::DuckDb => {
                    format!(
                        "range({}, {}) AS {}({})",
                        self.expr(start, depth),
                        self.expr(stop, depth),
                        self.ident(alias),
                        self.ident(column)
                    )
                }
                Dialect::Spark => format!(
                    "(SELECT {} AS {}) AS {}",
                    self.spark_range(&self.expr(start, depth), &self.expr(stop, depth), "1"),
                    self.ident(column),
                    self.ident(alias)
                ),
            },
            From::Cross(parts) => parts.iter().map(|p| self.from(p, depth)).collect::<Vec<_>>().join(", "),
            From::PerTick { rows, ticks } => format!("{}, {} AS {}", self.from(rows, depth), self.ident(TICKS), self.ident(ticks)),
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
        let lateral = if self.dialect == Dialect::Spark { spark_lateral(s) } else { None };
        let s = lateral.as_ref().unwrap_or(s);
        let pad = "  ".repeat(depth);
        let mut out = String::from("SELECT ");
        if s.distinct {
            out.push_str("DISTINCT ");
        }
        let items: Vec<String> = s
            .items
            .iter()
            .map(|(e, alias)| match alias {
                Some(a) => format!("{} AS {}", self.expr(e, depth), self.ident(a)),
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
            let ws: Vec<String> = s.windows.iter().map(|w| format!("{} AS ({})", self.ident(&w.name), self.window(w, depth))).collect();
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
            (Dialect::Spark, Op::IntDiv) => "div",
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
            (Dialect::DuckDb, Func::Strpos) => "strpos",
            (Dialect::Spark, Func::Strpos) => "instr",
            (_, Func::Replace) => "replace",
            (Dialect::DuckDb, Func::RegexpFullMatch) => "regexp_full_match",
            (_, Func::ConcatWs) => "concat_ws",
            (Dialect::DuckDb, Func::EpochMicros) => "epoch_us",
            (Dialect::Spark, Func::EpochMicros) => "unix_micros",
            (Dialect::DuckDb, Func::FromEpochMicros) => "make_timestamp",
            (Dialect::Spark, Func::FromEpochMicros) => "timestamp_micros",
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
            // Spark's drops NULLs and keeps no order: it only feeds mean_abs_deviation,
            // which ignores both.
            (Dialect::Spark, Func::List) => "collect_list",
            (Dialect::DuckDb, Func::ArgMax) => "arg_max",
            (Dialect::Spark, Func::ArgMax) => "max_by",
            (_, Func::RowNumber) => "row_number",
            (Dialect::DuckDb, Func::NextVal) => "nextval",
            (Dialect::DuckDb, Func::Hash) => "hash",
            (Dialect::Spark, Func::RegexpFullMatch | Func::MicrosInterval | Func::Mad | Func::NextVal | Func::Hash) => "",
            (_, Func::Lpad) => "lpad",
            (_, Func::NullIf) => "nullif",
            (_, Func::IsoUtc | Func::MeanAbsDeviation | Func::UnnestRange) => "",
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
            (Dialect::Spark, Func::IsoUtc) => format!("date_format({}, {})", arg(0), self.string("yyyy-MM-dd'T'HH:mm:ss'Z'")),
            // Spark's regular expressions find; anchored, they match the whole text.
            (Dialect::Spark, Func::RegexpFullMatch) => format!("regexp_like({}, concat('^(?:', {}, ')$'))", arg(0), arg(1)),
            // Whole microseconds, exactly: a day-time interval times a BIGINT.
            (Dialect::Spark, Func::MicrosInterval) => format!("(INTERVAL '0.000001' SECOND * CAST({} AS BIGINT))", arg(0)),
            (Dialect::Spark, Func::MeanAbsDeviation) => {
                format!("(aggregate({0}, CAST(0 AS DOUBLE), (acc, v) -> acc + abs(v - {1})) / nullif(size({0}), 0))", arg(0), arg(1))
            }
            (Dialect::Spark, Func::UnnestRange) => self.spark_range(&arg(0), &arg(1), &arg(2)),
            (Dialect::Spark, Func::Mad) => self.unsupported("the median absolute deviation outside a window"),
            (Dialect::Spark, Func::NextVal) => self.unsupported("sequences"),
            (Dialect::Spark, Func::Hash) => self.unsupported("DuckDB's hash"),
            _ => format!("{}({})", self.func_name(f), a.join(", ")),
        }
    }

    /// Spark: one row per value in [start, stop) by `step` (> 0). `sequence` includes its
    /// end and fails on an empty range, so the end is `stop - 1` and empty is explicit.
    fn spark_range(&self, start: &str, stop: &str, step: &str) -> String {
        format!("explode(CASE WHEN {stop} > {start} THEN sequence({start}, {stop} - 1, {step}) ELSE CAST(array() AS ARRAY<BIGINT>) END)")
    }

    fn expr(&self, e: &SqlExpr, depth: usize) -> String {
        match e {
            SqlExpr::Col(rel, col) => format!("{}.{}", self.ident(rel), self.ident(col)),
            SqlExpr::Bare(col) => self.ident(col),
            SqlExpr::Star(rel) => format!("{}.*", self.ident(rel)),
            SqlExpr::AllColumns => "*".to_string(),
            SqlExpr::Str(s) => self.string(s),
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
            SqlExpr::Timestamp(t) => self.timestamp(*t),
            // ANSI Spark raises on a zero divisor where DuckDB gives NULL: NULLIF makes it NULL.
            SqlExpr::Bin(op @ (Op::Div | Op::IntDiv | Op::Mod), a, b) if self.dialect == Dialect::Spark => {
                format!("({} {} nullif({}, 0))", self.expr(a, depth), self.op(*op), self.expr(b, depth))
            }
            SqlExpr::Bin(op, a, b) => format!("({} {} {})", self.expr(a, depth), self.op(*op), self.expr(b, depth)),
            SqlExpr::Not(a) => format!("(NOT {})", self.expr(a, depth)),
            SqlExpr::Neg(a) => format!("(- {})", self.expr(a, depth)),
            SqlExpr::IsNull(a, negated) => format!("({} IS {}NULL)", self.expr(a, depth), if *negated { "NOT " } else { "" }),
            SqlExpr::Func(f, args) => self.call(*f, args, depth),
            SqlExpr::CountDistinct(a) => format!("count(DISTINCT {})", self.expr(a, depth)),
            SqlExpr::CountStar => "count(*)".to_string(),
            SqlExpr::LastBy(v, keys) => {
                let keys: Vec<String> = keys.iter().map(|k| self.expr(k, depth)).collect();
                match self.dialect {
                    Dialect::DuckDb => format!("last({} ORDER BY {})", self.expr(v, depth), keys.join(", ")),
                    // The row with the largest keys, compared in order as a struct.
                    Dialect::Spark => format!("max_by({}, struct({}))", self.expr(v, depth), keys.join(", ")),
                }
            }
            SqlExpr::Case(whens, otherwise) => {
                let mut out = String::from("CASE");
                for (c, v) in whens {
                    let _ = write!(out, " WHEN {} THEN {}", self.expr(c, depth), self.expr(v, depth));
                }
                let _ = write!(out, " ELSE {} END", self.expr(otherwise, depth));
                out
            }
            SqlExpr::Subquery(s) => {
                let projected = if self.dialect == Dialect::Spark { spark_projected(s) } else { None };
                let s = projected.as_ref().unwrap_or(s);
                format!("(\n{}  {}\n{})", "  ".repeat(depth + 1), self.select(s, depth + 2), "  ".repeat(depth + 1))
            }
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
                    Dialect::Spark => format!("try_element_at(array({}), ({} + 1))", items.join(", "), self.expr(index, depth)),
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
            // Spark refuses a median over a window frame: the median of the frame's values,
            // collected (without NULLs, as the aggregate ignores them) and sorted.
            SqlExpr::Over(f, window)
                if self.dialect == Dialect::Spark && matches!(&**f, SqlExpr::Func(Func::Median | Func::Mad, args) if args.len() == 1) =>
            {
                let SqlExpr::Func(func, args) = &**f else { unreachable!("matched above") };
                let values = format!("collect_list({}) OVER {}", self.expr(&args[0], depth), self.ident(window));
                match func {
                    Func::Median => spark_array_median(&values),
                    _ => spark_array_mad(&values),
                }
            }
            // Spark has no count(DISTINCT) OVER: the size of the window's set of values.
            SqlExpr::Over(f, window) if self.dialect == Dialect::Spark && matches!(**f, SqlExpr::CountDistinct(_)) => match &**f {
                SqlExpr::CountDistinct(a) => format!("size(collect_set({}) OVER {})", self.expr(a, depth), self.ident(window)),
                _ => unreachable!("matched above"),
            },
            SqlExpr::Over(f, window) => format!("{} OVER {}", self.expr(f, depth), self.ident(window)),
            SqlExpr::OverInline(f, window) => format!("{} OVER ({})", self.expr(f, depth), self.window(window, depth)),
            SqlExpr::TempTableExists(name) => match self.dialect {
                Dialect::DuckDb => {
                    format!("EXISTS (SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = {})", self.string(name))
                }
                Dialect::Spark => self.unsupported("DuckDB's catalog"),
            },
            SqlExpr::TableExists { database, table } => match self.dialect {
                Dialect::DuckDb => format!(
                    "EXISTS (SELECT 1 FROM duckdb_tables() WHERE database_name = {} AND table_name = {})",
                    self.string(database),
                    self.string(table)
                ),
                Dialect::Spark => self.unsupported("DuckDB's catalog"),
            },
            SqlExpr::TickBound { latest, offset } => {
                let tick = if *latest { self.ticks.last() } else { self.ticks.first() };
                match tick.and_then(|t| t.checked_add(*offset)) {
                    Some(t) => self.timestamp(t),
                    None => "CAST(NULL AS TIMESTAMP)".to_string(),
                }
            }
        }
    }
}

/// The alias of the derived table [`spark_projected`] writes.
const SPARK_PROJECTED: &str = "vigil_projected";

/// Spark refuses a correlated scalar subquery whose aggregate's argument mixes the
/// subquery's own columns with outer ones (`AGGREGATE_FUNCTION_MIXED_OUTER_LOCAL_REFERENCES`:
/// `max(distance_m(lat, lon, mean_lat, mean_lon))` with the lets of the outer row). The
/// same aggregate over a derived table that computes each argument first is accepted, and
/// means the same (the same rows, the same values aggregated):
/// `(SELECT max(f(r.x, o.y)) FROM t r WHERE p)` becomes
/// `(SELECT max(vigil_projected.v0) FROM (SELECT f(r.x, o.y) AS v0 FROM t r WHERE p) vigil_projected)`.
/// `None` when the subquery has no such argument (or is not a plain one-item aggregate).
fn spark_projected(s: &Select) -> Option<Select> {
    let plain =
        s.items.len() == 1 && !s.distinct && s.group_by.is_empty() && s.windows.is_empty() && s.order_by.is_empty() && s.limit.is_none();
    if !plain {
        return None;
    }
    let mut local = Vec::new();
    from_aliases(&s.from, &mut local);
    let (item, alias) = &s.items[0];
    let mut args = Vec::new();
    let item = project_aggregate_args(item, &mut args);
    if !args.iter().any(|a| refers_outside(a, &local)) {
        return None;
    }
    let inner = Select {
        items: args.into_iter().enumerate().map(|(i, a)| (a, Some(format!("v{i}")))).collect(),
        from: s.from.clone(),
        filter: s.filter.clone(),
        ..Select::default()
    };
    Some(Select {
        items: vec![(item, alias.clone())],
        from: From::Derived { select: Box::new(inner), alias: SPARK_PROJECTED.into() },
        ..Select::default()
    })
}

/// Where Spark needs an aggregate's arguments computed first ([`spark_projected`]), the
/// scalar subquery is taken out of the SELECT's items and WHERE and joined as `LEFT JOIN
/// LATERAL (...) ON true`, its value read from the joined row. Spark 4.0 decorrelates the
/// derived-table form wrongly when it stays in an expression (a run fails with
/// SCALAR_SUBQUERY_TOO_MANY_ROWS or "subquery has not finished"); the lateral join of an
/// aggregate without GROUP BY gives exactly one row per outer row, with the value the
/// scalar subquery would give.
fn spark_lateral(s: &Select) -> Option<Select> {
    // One relation, not grouped (a grouped select could not read the joined column).
    if !matches!(s.from, From::Table { .. } | From::Raw { .. } | From::InSchema { .. } | From::Derived { .. }) || !s.group_by.is_empty() {
        return None;
    }
    let mut out = s.clone();
    let mut joined = Vec::new();
    for (item, _) in out.items.iter_mut() {
        hoist_projected(item, &mut joined);
    }
    if let Some(filter) = out.filter.as_mut() {
        hoist_projected(filter, &mut joined);
    }
    if joined.is_empty() {
        return None;
    }
    for (i, select) in joined.into_iter().enumerate() {
        let from = std::mem::replace(&mut out.from, From::Nothing);
        let lateral = From::Lateral { select: Box::new(select), alias: lateral_alias(i) };
        out.from = from.join(JoinKind::Left, lateral, SqlExpr::Bool(true));
    }
    Some(out)
}

fn lateral_alias(i: usize) -> String {
    format!("vigil_lateral_{i}")
}

/// Replaces each scalar subquery of `e` (not those inside other subqueries, which are
/// rendered on their own) that [`spark_projected`] rewrites by the column `v` of a lateral
/// join, the join's select appended to `joined`.
fn hoist_projected(e: &mut SqlExpr, joined: &mut Vec<Select>) {
    match e {
        SqlExpr::Subquery(sub) => {
            if let Some(mut projected) = spark_projected(sub) {
                projected.items[0].1 = Some("v".into());
                *e = SqlExpr::col(&lateral_alias(joined.len()), "v");
                joined.push(projected);
            }
        }
        SqlExpr::Bin(_, a, b) => {
            hoist_projected(a, joined);
            hoist_projected(b, joined);
        }
        SqlExpr::Not(a) | SqlExpr::Neg(a) | SqlExpr::IsNull(a, _) | SqlExpr::CountDistinct(a) | SqlExpr::Cast(a, _) => {
            hoist_projected(a, joined)
        }
        SqlExpr::Func(_, xs) => xs.iter_mut().for_each(|x| hoist_projected(x, joined)),
        SqlExpr::Case(whens, otherwise) => {
            for (c, v) in whens.iter_mut() {
                hoist_projected(c, joined);
                hoist_projected(v, joined);
            }
            hoist_projected(otherwise, joined);
        }
        SqlExpr::InList(a, xs) | SqlExpr::ListItem(xs, a) => {
            hoist_projected(a, joined);
            xs.iter_mut().for_each(|x| hoist_projected(x, joined));
        }
        _ => {}
    }
}

/// The aliases a FROM clause binds.
fn from_aliases(f: &From, out: &mut Vec<String>) {
    match f {
        From::Table { alias, .. }
        | From::InSchema { alias, .. }
        | From::Raw { alias, .. }
        | From::Derived { alias, .. }
        | From::Lateral { alias, .. }
        | From::Parquet { alias, .. }
        | From::CatalogColumns { alias }
        | From::Series { alias, .. } => out.push(alias.clone()),
        From::Nothing => {}
        From::Cross(parts) => parts.iter().for_each(|p| from_aliases(p, out)),
        From::PerTick { rows, ticks } => {
            from_aliases(rows, out);
            out.push(ticks.clone());
        }
        From::Join { left, right, .. } => {
            from_aliases(left, out);
            from_aliases(right, out);
        }
    }
}

/// `e` with the argument of every aggregate in it replaced by a column of the derived
/// table [`SPARK_PROJECTED`] (`v0`, `v1`, ...), the arguments appended to `args`.
fn project_aggregate_args(e: &SqlExpr, args: &mut Vec<SqlExpr>) -> SqlExpr {
    fn take(a: &SqlExpr, args: &mut Vec<SqlExpr>) -> SqlExpr {
        args.push(a.clone());
        SqlExpr::col(SPARK_PROJECTED, &format!("v{}", args.len() - 1))
    }
    match e {
        SqlExpr::Func(f @ (Func::First | Func::Min | Func::Max | Func::Sum | Func::Avg | Func::Count), a) if a.len() == 1 => {
            SqlExpr::Func(*f, vec![take(&a[0], args)])
        }
        SqlExpr::CountDistinct(a) => SqlExpr::CountDistinct(Box::new(take(a, args))),
        SqlExpr::Func(f, a) => SqlExpr::Func(*f, a.iter().map(|x| project_aggregate_args(x, args)).collect()),
        SqlExpr::Cast(a, ty) => SqlExpr::Cast(Box::new(project_aggregate_args(a, args)), *ty),
        SqlExpr::Bin(op, a, b) => {
            let a = project_aggregate_args(a, args);
            SqlExpr::Bin(*op, Box::new(a), Box::new(project_aggregate_args(b, args)))
        }
        other => other.clone(),
    }
}

/// Does `e` name a relation other than `local` (an outer one)? A nested subquery counts
/// as doing so (its own aliases are not looked into).
fn refers_outside(e: &SqlExpr, local: &[String]) -> bool {
    let any = |xs: &[SqlExpr]| xs.iter().any(|x| refers_outside(x, local));
    match e {
        SqlExpr::Col(rel, _) | SqlExpr::Star(rel) => !local.contains(rel),
        SqlExpr::Bin(_, a, b) => refers_outside(a, local) || refers_outside(b, local),
        SqlExpr::Not(a) | SqlExpr::Neg(a) | SqlExpr::IsNull(a, _) | SqlExpr::CountDistinct(a) | SqlExpr::Cast(a, _) => {
            refers_outside(a, local)
        }
        SqlExpr::Func(_, xs) => any(xs),
        SqlExpr::LastBy(v, keys) => refers_outside(v, local) || any(keys),
        SqlExpr::Case(whens, otherwise) => {
            whens.iter().any(|(c, v)| refers_outside(c, local) || refers_outside(v, local)) || refers_outside(otherwise, local)
        }
        SqlExpr::InList(a, xs) | SqlExpr::ListItem(xs, a) => refers_outside(a, local) || any(xs),
        SqlExpr::Subquery(_) | SqlExpr::Exists(_) | SqlExpr::InSelect(..) => true,
        SqlExpr::Over(a, _) | SqlExpr::OverInline(a, _) => refers_outside(a, local),
        _ => false,
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

    /// Each translation of the Spark dialect, with the DuckDB text beside it.
    mod spark {
        use super::*;

        fn both(e: &SqlExpr) -> (String, String) {
            (render_expression(e, Dialect::DuckDb), render_expression(e, Dialect::Spark))
        }

        fn col(c: &str) -> SqlExpr {
            SqlExpr::col("r", c)
        }

        #[test]
        fn an_aggregate_over_outer_and_own_columns_is_computed_in_a_derived_table_first() {
            // max(|r.x - o.m|) over the rows of t matching the outer row o.
            let arg = SqlExpr::func(Func::Abs, vec![SqlExpr::bin(Op::Sub, SqlExpr::col("r", "x"), SqlExpr::col("o", "m"))]);
            let mut sel = Select::from_table("t", "r", vec![(SqlExpr::func(Func::Max, vec![arg]), None)]);
            sel.filter = Some(SqlExpr::eq(SqlExpr::col("r", "k"), SqlExpr::col("o", "k")));
            let e = SqlExpr::Subquery(Box::new(sel.clone()));
            let flat = |t: String| t.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(
                flat(render_expression(&e, Dialect::DuckDb)),
                "( SELECT max(abs((\"r\".\"x\" - \"o\".\"m\"))) FROM \"t\" AS \"r\" WHERE (\"r\".\"k\" = \"o\".\"k\") )"
            );
            assert_eq!(
                flat(render_expression(&e, Dialect::Spark)),
                "( SELECT max(`vigil_projected`.`v0`) FROM ( SELECT abs((`r`.`x` - `o`.`m`)) AS `v0` FROM `t` AS `r` \
                 WHERE (`r`.`k` = `o`.`k`) ) AS `vigil_projected` )"
            );
            // Only the subquery's own columns in the argument: Spark takes it as written.
            let mut own = sel;
            own.items = vec![(SqlExpr::func(Func::Max, vec![SqlExpr::col("r", "x")]), None)];
            let text = flat(render_expression(&SqlExpr::Subquery(Box::new(own)), Dialect::Spark));
            assert_eq!(text, "( SELECT max(`r`.`x`) FROM `t` AS `r` WHERE (`r`.`k` = `o`.`k`) )");
        }

        #[test]
        fn such_a_subquery_is_joined_laterally() {
            // A rule's let layer: every column of the previous one, plus the aggregate.
            let arg = SqlExpr::bin(Op::Sub, SqlExpr::col("r3", "lat"), SqlExpr::col("r0", "l_mean"));
            let mut sub = Select::from_table("location_updates", "r3", vec![(SqlExpr::func(Func::Max, vec![arg]), None)]);
            sub.filter = Some(SqlExpr::eq(SqlExpr::col("r3", "guard_id"), SqlExpr::col("r0", "guard_id")));
            let layer = Select::from_table(
                "lets_0",
                "r0",
                vec![(SqlExpr::Star("r0".into()), None), (SqlExpr::Subquery(Box::new(sub)), Some("l_spread".into()))],
            );
            let q = Statement::select(layer);
            let flat = |t: String| t.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(
                flat(render_statement(&q, Dialect::DuckDb)),
                "SELECT \"r0\".*, ( SELECT max((\"r3\".\"lat\" - \"r0\".\"l_mean\")) FROM \"location_updates\" AS \"r3\" \
                 WHERE (\"r3\".\"guard_id\" = \"r0\".\"guard_id\") ) AS \"l_spread\" FROM \"lets_0\" AS \"r0\""
            );
            assert_eq!(
                flat(render_statement(&q, Dialect::Spark)),
                "SELECT `r0`.*, `vigil_lateral_0`.`v` AS `l_spread` FROM `lets_0` AS `r0` LEFT JOIN LATERAL ( \
                 SELECT max(`vigil_projected`.`v0`) AS `v` FROM ( SELECT (`r3`.`lat` - `r0`.`l_mean`) AS `v0` \
                 FROM `location_updates` AS `r3` WHERE (`r3`.`guard_id` = `r0`.`guard_id`) ) AS `vigil_projected` \
                 ) AS `vigil_lateral_0` ON true"
            );
        }

        #[test]
        fn identifiers_are_backticked_because_double_quotes_are_strings() {
            assert_eq!(both(&col("site_id")), ("\"r\".\"site_id\"".into(), "`r`.`site_id`".into()));
            assert_eq!(spark_ident("a`b"), "`a``b`");
        }

        #[test]
        fn string_literals_escape_backslashes_and_quotes() {
            let e = SqlExpr::Str("x'); DROP TABLE t; -- \\' \n".into());
            assert_eq!(both(&e), ("'x''); DROP TABLE t; -- \\'' \n'".into(), "'x\\'); DROP TABLE t; -- \\\\\\' \\u000a'".into()));
            // Spark would join `'a''b'` into `ab`; a backslash keeps the quote.
            assert_eq!(spark_string_literal("a'b"), "'a\\'b'");
        }

        #[test]
        fn timestamps_are_literals_with_an_explicit_offset() {
            let t = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z
            assert_eq!(
                both(&SqlExpr::Timestamp(t)),
                ("TIMESTAMP '2025-01-01 00:00:00.000000'".into(), "TIMESTAMP '2025-01-01 00:00:00.000000+00:00'".into())
            );
            assert_eq!(type_name(SqlType::TimestampTz, Dialect::Spark), "TIMESTAMP");
            assert_eq!(type_name(SqlType::Varchar, Dialect::Spark), "STRING");
        }

        #[test]
        fn ticks_are_exploded_from_an_array() {
            let q = Query { ctes: vec![], body: Select::from_table(TICKS, "k", vec![(SqlExpr::col("k", TICK), None)]) };
            let spark = render(&q, &[0, 3_600_000_000], Dialect::Spark);
            assert!(spark.starts_with(
                "WITH\n`__ticks` AS (\n  SELECT explode(array(TIMESTAMP '1970-01-01 00:00:00.000000+00:00', TIMESTAMP '1970-01-01 01:00:00.000000+00:00')) AS `__tick`\n)"
            ), "{spark}");
            let duck = render(&q, &[0], Dialect::DuckDb);
            assert!(duck.contains("unnest([TIMESTAMP '1970-01-01 00:00:00.000000']::TIMESTAMP[])"), "{duck}");
        }

        #[test]
        fn time_arithmetic_uses_microseconds_never_boundary_counting() {
            let epoch = SqlExpr::func(Func::EpochMicros, vec![col("ts")]);
            assert_eq!(both(&epoch), ("epoch_us(\"r\".\"ts\")".into(), "unix_micros(`r`.`ts`)".into()));
            let back = SqlExpr::func(Func::FromEpochMicros, vec![SqlExpr::Int(5)]);
            assert_eq!(both(&back), ("make_timestamp(5)".into(), "timestamp_micros(5)".into()));
            let minus = SqlExpr::bin(Op::Sub, col("ts"), SqlExpr::func(Func::MicrosInterval, vec![SqlExpr::Int(3_600_000_000)]));
            assert_eq!(
                both(&minus),
                (
                    "(\"r\".\"ts\" - to_microseconds(3600000000))".into(),
                    "(`r`.`ts` - (INTERVAL '0.000001' SECOND * CAST(3600000000 AS BIGINT)))".into()
                )
            );
            let iso = SqlExpr::func(Func::IsoUtc, vec![col("ts")]);
            assert_eq!(
                both(&iso),
                ("strftime(\"r\".\"ts\", '%Y-%m-%dT%H:%M:%SZ')".into(), "date_format(`r`.`ts`, 'yyyy-MM-dd\\'T\\'HH:mm:ss\\'Z\\'')".into())
            );
        }

        #[test]
        fn division_by_zero_is_null_not_an_error() {
            let d = |op| both(&SqlExpr::bin(op, col("a"), col("b")));
            assert_eq!(d(Op::Div), ("(\"r\".\"a\" / \"r\".\"b\")".into(), "(`r`.`a` / nullif(`r`.`b`, 0))".into()));
            assert_eq!(d(Op::IntDiv), ("(\"r\".\"a\" // \"r\".\"b\")".into(), "(`r`.`a` div nullif(`r`.`b`, 0))".into()));
            assert_eq!(d(Op::Mod), ("(\"r\".\"a\" % \"r\".\"b\")".into(), "(`r`.`a` % nullif(`r`.`b`, 0))".into()));
        }

        #[test]
        fn arg_max_last_and_positions_are_spelled_for_spark() {
            let am = SqlExpr::func(Func::ArgMax, vec![col("v"), col("t")]);
            assert_eq!(both(&am), ("arg_max(\"r\".\"v\", \"r\".\"t\")".into(), "max_by(`r`.`v`, `r`.`t`)".into()));
            let last = SqlExpr::LastBy(Box::new(col("v")), vec![col("t"), col("v")]);
            assert_eq!(
                both(&last),
                ("last(\"r\".\"v\" ORDER BY \"r\".\"t\", \"r\".\"v\")".into(), "max_by(`r`.`v`, struct(`r`.`t`, `r`.`v`))".into())
            );
            let pos = SqlExpr::func(Func::Strpos, vec![col("a"), SqlExpr::Str(",".into())]);
            assert_eq!(both(&pos), ("strpos(\"r\".\"a\", ',')".into(), "instr(`r`.`a`, ',')".into()));
        }

        #[test]
        fn ranges_become_exploded_sequences_that_exclude_their_end() {
            let r = SqlExpr::func(Func::UnnestRange, vec![SqlExpr::Int(0), col("o"), SqlExpr::Int(3)]);
            assert_eq!(
                both(&r),
                (
                    "unnest(range(0, \"r\".\"o\", 3))".into(),
                    "explode(CASE WHEN `r`.`o` > 0 THEN sequence(0, `r`.`o` - 1, 3) ELSE CAST(array() AS ARRAY<BIGINT>) END)".into()
                )
            );
        }

        #[test]
        fn count_distinct_over_a_window_is_the_size_of_a_set() {
            let e = SqlExpr::Over(Box::new(SqlExpr::CountDistinct(Box::new(col("g")))), "w".into());
            assert_eq!(both(&e), ("count(DISTINCT \"r\".\"g\") OVER \"w\"".into(), "size(collect_set(`r`.`g`) OVER `w`)".into()));
        }

        #[test]
        fn null_ordering_is_always_explicit_in_windows_and_order_by() {
            let w = Window {
                name: "w".into(),
                partition_by: vec![col("site_id")],
                order_by: vec![OrderKey::asc(col("b")), OrderKey::desc(col("t"))],
                frame: Some(Frame { start: Some(3), end: 1 }),
            };
            let e = SqlExpr::OverInline(Box::new(SqlExpr::func(Func::RowNumber, vec![])), Box::new(w));
            assert_eq!(
                both(&e).1,
                "row_number() OVER (PARTITION BY `r`.`site_id` ORDER BY `r`.`b` NULLS FIRST, `r`.`t` DESC NULLS LAST ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)"
            );
        }

        #[test]
        fn signal_tables_are_temporary_views() {
            let s = Select::new(From::Raw { name: "tasks".into(), alias: "r".into() }, vec![(SqlExpr::CountStar, None)]);
            let q = Query { ctes: vec![], body: s };
            assert_eq!(render(&q, &[], Dialect::DuckDb), "SELECT count(*)\nFROM \"raw\".\"tasks\" AS \"r\"");
            assert_eq!(render(&q, &[], Dialect::Spark), "SELECT count(*)\nFROM `vigil_raw_tasks` AS `r`");
        }

        #[test]
        fn mean_absolute_deviation_folds_a_collected_list() {
            let e = SqlExpr::func(Func::MeanAbsDeviation, vec![col("xs"), col("m")]);
            assert_eq!(
                both(&e),
                (
                    "list_avg(list_transform(\"r\".\"xs\", lambda v: abs(v - \"r\".\"m\")))".into(),
                    "(aggregate(`r`.`xs`, CAST(0 AS DOUBLE), (acc, v) -> acc + abs(v - `r`.`m`)) / nullif(size(`r`.`xs`), 0))".into()
                )
            );
            let mad = SqlExpr::func(Func::Mad, vec![col("x")]);
            assert_eq!(both(&mad).1, "raise_error('not supported on Spark: the median absolute deviation outside a window')");
        }

        #[test]
        fn medians_over_a_window_frame_sort_the_collected_frame() {
            let over = |f| SqlExpr::Over(Box::new(SqlExpr::func(f, vec![col("x")])), "recent".into());
            assert_eq!(both(&over(Func::Median)).0, "median(\"r\".\"x\") OVER \"recent\"");
            let values = "collect_list(`r`.`x`) OVER `recent`";
            let median = |v: &str| {
                format!(
                    "aggregate(array(array_sort({v})), CAST(NULL AS DOUBLE), (vigil_acc, vigil_s) -> CASE WHEN size(vigil_s) = 0 THEN CAST(NULL AS DOUBLE) \
                     WHEN size(vigil_s) % 2 = 1 THEN CAST(element_at(vigil_s, CAST((size(vigil_s) + 1) div 2 AS INT)) AS DOUBLE) \
                     ELSE element_at(vigil_s, CAST(size(vigil_s) div 2 AS INT)) + (element_at(vigil_s, CAST(size(vigil_s) div 2 + 1 AS INT)) \
                     - element_at(vigil_s, CAST(size(vigil_s) div 2 AS INT))) * CAST(0.5 AS DOUBLE) END)"
                )
            };
            assert_eq!(both(&over(Func::Median)).1, median(values));
            assert_eq!(both(&over(Func::Mad)).0, "mad(\"r\".\"x\") OVER \"recent\"");
            let mad = format!(
                "aggregate(array({values}), CAST(NULL AS DOUBLE), (vigil_acc_x, vigil_xs) -> aggregate(array({}), CAST(NULL AS DOUBLE), (vigil_acc_m, vigil_m) -> {}))",
                median("vigil_xs"),
                median("transform(vigil_xs, vigil_v -> abs(vigil_v - vigil_m))")
            );
            assert_eq!(both(&over(Func::Mad)).1, mad);
        }
    }
}
