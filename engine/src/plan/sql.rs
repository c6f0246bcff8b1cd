//! A small typed SQL tree and its one renderer.
//!
//! Invariants:
//! - This is the only place SQL text is made. Everything above it builds
//!   [`Statement`]s, [`Query`]s and [`SqlExpr`]s and never spells a keyword,
//!   an operator or a function name of the database.
//! - Identifiers reach the text only from the schema or from names the grammar
//!   allows (ASCII letters, digits, `_`), always double-quoted; values are
//!   rendered as escaped literals or bound as parameters (`?`). Nothing else is
//!   ever concatenated into SQL.
//! - The renderer takes a [`Dialect`]: how a function, a type, a timestamp
//!   literal or a list is spelled belongs to the dialect, not to the tree.

use std::fmt::Write as _;

/// The SQL dialect a tree is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Embedded DuckDB (the default backend).
    #[default]
    DuckDb,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (true division)
    Div,
    /// integer division, truncating towards zero
    IntDiv,
    /// remainder, with the sign of the dividend
    Mod,
    /// string concatenation
    Concat,
}

/// A function, by what it does; the dialect spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// absolute value
    Abs,
    /// arc sine
    Asin,
    /// cosine
    Cos,
    /// sine
    Sin,
    /// square root
    Sqrt,
    /// `pow(x, y)`
    Pow,
    /// degrees to radians
    Radians,
    /// `round(x, digits)`
    Round,
    /// first non-NULL argument
    Coalesce,
    /// largest argument (NULLs ignored)
    Greatest,
    /// smallest argument (NULLs ignored)
    Least,
    /// lower case
    Lower,
    /// upper case
    Upper,
    /// `contains(haystack, needle)`
    Contains,
    /// 1-based position of a substring, 0 when absent
    Strpos,
    /// `replace(text, from, to)`
    Replace,
    /// does the whole text match the regular expression?
    RegexpFullMatch,
    /// `concat_ws(separator, parts...)`
    ConcatWs,
    /// TIMESTAMP to BIGINT microseconds since the epoch
    EpochMicros,
    /// BIGINT microseconds since the epoch to TIMESTAMP
    FromEpochMicros,
    /// BIGINT microseconds to an INTERVAL
    MicrosInterval,
    /// TIMESTAMP to `YYYY-MM-DDTHH:MM:SSZ` text
    IsoUtc,
    /// aggregate: the first value met (any, when all are equal)
    First,
    /// aggregate: smallest
    Min,
    /// aggregate: largest
    Max,
    /// aggregate: sum
    Sum,
    /// aggregate: mean
    Avg,
    /// aggregate: count of non-NULL values
    Count,
    /// aggregate: sample standard deviation
    StddevSamp,
    /// aggregate: population variance
    VarPop,
    /// aggregate: median
    Median,
    /// aggregate: median absolute deviation from the median
    Mad,
    /// aggregate: the values as a list
    List,
    /// aggregate: the first argument of the row with the largest second argument
    ArgMax,
    /// window: the row's number in its partition
    RowNumber,
    /// `mean_abs_deviation(list, center)`: the mean of |v - center| over a list
    MeanAbsDeviation,
    /// `unnest_range(start, stop, step)`: one row per value in [start, stop)
    UnnestRange,
    /// next value of a sequence (its one argument is the sequence's name as text)
    NextVal,
}

/// A column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// 64-bit integer
    BigInt,
    /// 64-bit float
    Double,
    /// boolean
    Boolean,
    /// timestamp without zone (UTC by convention)
    Timestamp,
    /// timestamp with zone (read from files, converted at once)
    TimestampTz,
    /// text
    Varchar,
}

/// A SQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlExpr {
    /// `rel."col"`
    Col(String, String),
    /// `"col"` of the only relation in scope
    Bare(String),
    /// `rel.*`
    Star(String),
    /// `*`
    AllColumns,
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
    /// a bound parameter, `?`
    Param,
    /// `TIMESTAMP '...'` from microseconds since the epoch (UTC)
    Timestamp(i64),
    /// `lhs op rhs`
    Bin(Op, Box<SqlExpr>, Box<SqlExpr>),
    /// `NOT e`
    Not(Box<SqlExpr>),
    /// `-e`
    Neg(Box<SqlExpr>),
    /// `e IS [NOT] NULL`
    IsNull(Box<SqlExpr>, bool),
    /// `f(args)`
    Func(Func, Vec<SqlExpr>),
    /// `count(DISTINCT e)`
    CountDistinct(Box<SqlExpr>),
    /// `count(*)`
    CountStar,
    /// the last value of an aggregate's group, rows ordered by the keys
    LastBy(Box<SqlExpr>, Vec<SqlExpr>),
    /// `CASE WHEN .. THEN .. ELSE .. END`
    Case(Vec<(SqlExpr, SqlExpr)>, Box<SqlExpr>),
    /// `(SELECT ...)`
    Subquery(Box<Select>),
    /// `EXISTS (SELECT ...)`
    Exists(Box<Select>),
    /// `e IN (a, b)`
    InList(Box<SqlExpr>, Vec<SqlExpr>),
    /// `e IN (SELECT ...)`
    InSelect(Box<SqlExpr>, Box<Select>),
    /// `CAST(e AS type)`
    Cast(Box<SqlExpr>, SqlType),
    /// `f(..) OVER window`: a window function over a named window of the select.
    Over(Box<SqlExpr>, String),
    /// `f(..) OVER (spec)`: a window function over an inline window.
    OverInline(Box<SqlExpr>, Box<Window>),
    /// Does a temporary table of this name exist on the connection?
    TempTableExists(String),
    /// Does a table of this name exist in the attached database (or schema) `database`?
    TableExists {
        /// The attached database.
        database: String,
        /// The table.
        table: String,
    },
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

    /// `"col"`
    pub fn bare(col: &str) -> SqlExpr {
        SqlExpr::Bare(col.to_string())
    }

    /// `a op b`
    pub fn bin(op: Op, a: SqlExpr, b: SqlExpr) -> SqlExpr {
        SqlExpr::Bin(op, Box::new(a), Box::new(b))
    }

    /// `f(args)`
    pub fn func(f: Func, args: Vec<SqlExpr>) -> SqlExpr {
        SqlExpr::Func(f, args)
    }

    /// `a = b`
    pub fn eq(a: SqlExpr, b: SqlExpr) -> SqlExpr {
        SqlExpr::bin(Op::Eq, a, b)
    }

    /// `CAST(e AS ty)`
    pub fn cast(e: SqlExpr, ty: SqlType) -> SqlExpr {
        SqlExpr::Cast(Box::new(e), ty)
    }

    /// `a AND b`, skipping a missing side.
    pub fn and_all(parts: Vec<SqlExpr>) -> Option<SqlExpr> {
        parts.into_iter().reduce(|a, b| SqlExpr::bin(Op::And, a, b))
    }

    /// `CASE WHEN c THEN v ... ELSE otherwise END`
    pub fn case(whens: Vec<(SqlExpr, SqlExpr)>, otherwise: SqlExpr) -> SqlExpr {
        SqlExpr::Case(whens, Box::new(otherwise))
    }
}

/// How two relations are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// rows with a match only
    Inner,
    /// every row of the left side
    Left,
}

/// Where a SELECT reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// a table or CTE with an alias
    Table { name: String, alias: String },
    /// a table of an attached database or schema, with an alias
    InSchema { schema: String, name: String, alias: String },
    /// a loaded signal table in the `raw` schema, with an alias
    Raw { name: String, alias: String },
    /// a derived table: `(SELECT ...) AS alias`
    Derived { select: Box<Select>, alias: String },
    /// a file read by the database: a Parquet file
    Parquet { path: String, alias: String },
    /// the database's catalog of columns (database_name, table_name,
    /// column_name, data_type, column_index), with an alias
    CatalogColumns { alias: String },
    /// nothing (SELECT of constants)
    Nothing,
    /// every row of a relation once per tick: `rel, "__ticks" AS alias`
    PerTick {
        /// The relation.
        rows: Box<From>,
        /// The alias of the ticks relation (its one column is [`TICK`]).
        ticks: String,
    },
    /// `left [LEFT] JOIN right ON on`
    Join { left: Box<From>, right: Box<From>, kind: JoinKind, on: SqlExpr },
}

impl From {
    /// `name AS alias`
    pub fn table(name: &str, alias: &str) -> From {
        From::Table { name: name.to_string(), alias: alias.to_string() }
    }

    /// `self [LEFT] JOIN right ON on`
    pub fn join(self, kind: JoinKind, right: From, on: SqlExpr) -> From {
        From::Join { left: Box::new(self), right: Box::new(right), kind, on }
    }
}

/// An ORDER BY key: ascending with NULLs first, or descending with NULLs last.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// The expression.
    pub expr: SqlExpr,
    /// Descending.
    pub desc: bool,
}

impl OrderKey {
    /// Ascending, NULLs first.
    pub fn asc(expr: SqlExpr) -> OrderKey {
        OrderKey { expr, desc: false }
    }

    /// Descending, NULLs last.
    pub fn desc(expr: SqlExpr) -> OrderKey {
        OrderKey { expr, desc: true }
    }
}

/// A window of rows before the current one: `ROWS BETWEEN start PRECEDING AND end PRECEDING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Rows back where the frame starts; `None`: unbounded.
    pub start: Option<u32>,
    /// Rows back where it ends.
    pub end: u32,
}

/// A window: partition, order, frame; named when it is listed in a select's WINDOW clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Its name in the WINDOW clause (unused inline).
    pub name: String,
    /// PARTITION BY
    pub partition_by: Vec<SqlExpr>,
    /// ORDER BY
    pub order_by: Vec<OrderKey>,
    /// The frame; `None`: the default.
    pub frame: Option<Frame>,
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
    /// GROUP BY
    pub group_by: Vec<SqlExpr>,
    /// named windows (WINDOW clause)
    pub windows: Vec<Window>,
    /// ORDER BY
    pub order_by: Vec<OrderKey>,
    /// LIMIT
    pub limit: Option<u64>,
}

impl Default for Select {
    fn default() -> Self {
        Select {
            distinct: false,
            items: vec![],
            from: From::Nothing,
            filter: None,
            group_by: vec![],
            windows: vec![],
            order_by: vec![],
            limit: None,
        }
    }
}

impl Select {
    /// `SELECT items FROM name alias`
    pub fn from_table(name: &str, alias: &str, items: Vec<(SqlExpr, Option<String>)>) -> Select {
        Select { items, from: From::table(name, alias), ..Select::default() }
    }

    /// `SELECT items FROM from`
    pub fn new(from: From, items: Vec<(SqlExpr, Option<String>)>) -> Select {
        Select { items, from, ..Select::default() }
    }

    /// With a WHERE clause of the conjunction of `parts` (none: no WHERE).
    pub fn filtered(mut self, parts: Vec<SqlExpr>) -> Select {
        self.filter = SqlExpr::and_all(parts);
        self
    }
}

/// One part of a WITH clause: a select, or several glued by UNION ALL (or UNION).
#[derive(Debug, Clone, PartialEq)]
pub struct Cte {
    /// Its name.
    pub name: String,
    /// One or more selects, UNION ALL-ed.
    pub parts: Vec<Select>,
    /// UNION (duplicates removed) instead of UNION ALL.
    pub distinct: bool,
}

impl Cte {
    /// `name AS (select)`
    pub fn new(name: &str, select: Select) -> Cte {
        Cte { name: name.to_string(), parts: vec![select], distinct: false }
    }

    /// `name AS (a UNION ALL b ...)`
    pub fn union_all(name: &str, parts: Vec<Select>) -> Cte {
        Cte { name: name.to_string(), parts, distinct: false }
    }
}

/// A whole query: WITH ctes SELECT body. A query may read the [`TICKS`]
/// relation (one row per evaluation time, column [`TICK`]), which the renderer
/// defines from the ticks it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Common table expressions, in dependency order.
    pub ctes: Vec<Cte>,
    /// The final select.
    pub body: Select,
}

/// A table, possibly in an attached database or schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableName {
    /// The attached database or schema.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// `schema.name`
    pub fn in_schema(schema: &str, name: &str) -> TableName {
        TableName { schema: Some(schema.to_string()), name: name.to_string() }
    }

    /// `name` (temporary tables)
    pub fn local(name: &str) -> TableName {
        TableName { schema: None, name: name.to_string() }
    }
}

/// One column of a CREATE TABLE.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: SqlType,
    /// NOT NULL?
    pub not_null: bool,
}

/// What an INSERT writes.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertSource {
    /// `VALUES (..), (..)`
    Values(Vec<Vec<SqlExpr>>),
    /// `SELECT ...`
    Query(Box<Query>),
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// a query
    Query(Box<Query>),
    /// `CREATE SCHEMA name`
    CreateSchema(String),
    /// `CREATE [TEMP] TABLE [IF NOT EXISTS] name (columns, PRIMARY KEY (..))`;
    /// a temporary table replaces one of the same name.
    CreateTable {
        /// The table.
        table: TableName,
        /// Its columns.
        columns: Vec<ColumnDef>,
        /// Its primary key (empty: none).
        primary_key: Vec<String>,
        /// Connection-local, replacing an earlier one.
        temporary: bool,
    },
    /// `CREATE OR REPLACE TEMP TABLE name AS query`
    CreateTempTableAs {
        /// The table (local).
        name: String,
        /// Its rows.
        query: Box<Query>,
    },
    /// `CREATE VIEW schema.name AS select`
    CreateView {
        /// The view.
        view: TableName,
        /// Its rows.
        select: Box<Select>,
    },
    /// `DESCRIBE select`: the name and type of each column it returns
    Describe(Box<Select>),
    /// `CREATE SEQUENCE IF NOT EXISTS name`
    CreateSequence(TableName),
    /// `INSERT [OR REPLACE] INTO table source`
    Insert {
        /// The table.
        table: TableName,
        /// The rows.
        source: InsertSource,
        /// Replace rows with the same primary key.
        replace: bool,
    },
    /// `UPDATE table SET col = e, .. WHERE filter`
    Update {
        /// The table.
        table: TableName,
        /// Assignments.
        set: Vec<(String, SqlExpr)>,
        /// Which rows.
        filter: Option<SqlExpr>,
    },
    /// `DELETE FROM table WHERE filter`
    Delete {
        /// The table.
        table: TableName,
        /// Which rows.
        filter: Option<SqlExpr>,
    },
    /// `ATTACH [IF NOT EXISTS] 'path' AS alias [(READ_ONLY)]`
    Attach {
        /// The database file.
        path: String,
        /// Its alias.
        alias: String,
        /// Opened read-only.
        read_only: bool,
    },
    /// `DETACH alias`
    Detach(String),
    /// `BEGIN TRANSACTION`
    Begin,
    /// `COMMIT`
    Commit,
    /// `ROLLBACK`
    Rollback,
}

impl Statement {
    /// A query as a statement.
    pub fn query(q: Query) -> Statement {
        Statement::Query(Box::new(q))
    }

    /// A lone select as a statement.
    pub fn select(s: Select) -> Statement {
        Statement::Query(Box::new(Query { ctes: vec![], body: s }))
    }
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
            Statement::CreateTempTableAs { name, query } => {
                format!("CREATE OR REPLACE TEMP TABLE {} AS\n{}", ident(name), self.query(query))
            }
            Statement::CreateView { view, select } => format!("CREATE VIEW {} AS {}", self.table_name(view), self.select(select, 0)),
            Statement::Describe(select) => format!("DESCRIBE {}", self.select(select, 0)),
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
            .map(|k| format!("{} {}", self.expr(&k.expr, depth), if k.desc { "DESC NULLS LAST" } else { "NULLS FIRST" }))
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
