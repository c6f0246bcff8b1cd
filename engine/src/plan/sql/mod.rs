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

mod render;

pub use render::{
    ident, render, render_batch, render_expression, render_statement, spark_ident, spark_string_literal, spark_timestamp_literal,
    string_literal, timestamp_literal, type_name, SPARK_UNSUPPORTED,
};

/// The SQL dialect a tree is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Embedded DuckDB (the default backend).
    #[default]
    DuckDb,
    /// Spark SQL (4.x, ANSI mode, session time zone UTC) through Spark Connect.
    Spark,
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
    /// `nullif(a, b)`: NULL when a = b, else a
    NullIf,
    /// next value of a sequence (its one argument is the sequence's name as text)
    NextVal,
    /// a 64-bit hash of the arguments (synthetic data)
    Hash,
    /// `lpad(text, width, fill)`
    Lpad,
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
    /// an unsigned integer literal
    UInt(u64),
    /// an exact decimal literal: `digits` x 10^-`scale` (`51.0` is 510, 1)
    Decimal {
        /// The digits, signed.
        digits: i64,
        /// Digits after the point.
        scale: u32,
    },
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
    /// the item of a list of values at a 0-based index
    ListItem(Vec<SqlExpr>, Box<SqlExpr>),
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
    /// a derived table that may name the columns of the relations before it in the
    /// FROM clause: `LATERAL (SELECT ...) AS alias`
    Lateral { select: Box<Select>, alias: String },
    /// a file read by the database: a Parquet file
    Parquet { path: String, alias: String },
    /// the database's catalog of columns (database_name, table_name,
    /// column_name, data_type, column_index), with an alias
    CatalogColumns { alias: String },
    /// nothing (SELECT of constants)
    Nothing,
    /// the integers start..stop (stop excluded) as rows of one column
    Series { start: Box<SqlExpr>, stop: Box<SqlExpr>, alias: String, column: String },
    /// every combination of rows of several relations
    Cross(Vec<From>),
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

/// An ORDER BY key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// The expression.
    pub expr: SqlExpr,
    /// Descending.
    pub desc: bool,
    /// NULLs after every value (otherwise before).
    pub nulls_last: bool,
}

impl OrderKey {
    /// Ascending, NULLs first.
    pub fn asc(expr: SqlExpr) -> OrderKey {
        OrderKey { expr, desc: false, nulls_last: false }
    }

    /// Ascending, NULLs last.
    pub fn asc_nulls_last(expr: SqlExpr) -> OrderKey {
        OrderKey { expr, desc: false, nulls_last: true }
    }

    /// Descending, NULLs last.
    pub fn desc(expr: SqlExpr) -> OrderKey {
        OrderKey { expr, desc: true, nulls_last: true }
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

/// The file format of `COPY ... TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Parquet, zstd-compressed
    Parquet,
    /// CSV with a header row
    Csv,
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
    /// `CREATE OR REPLACE TABLE schema.name AS query`
    CreateTableAs {
        /// The table.
        table: TableName,
        /// Its rows.
        query: Box<Query>,
    },
    /// `COPY (query) TO 'path' (format)`
    CopyTo {
        /// The rows.
        query: Box<Query>,
        /// The file written.
        path: String,
        /// Its format.
        format: CopyFormat,
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
    /// `ALTER TABLE table ADD COLUMN IF NOT EXISTS column`
    AddColumn {
        /// The table.
        table: TableName,
        /// The new column.
        column: ColumnDef,
    },
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
