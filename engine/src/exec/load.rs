//! Signal loading, exactly as CONTRACT.md says.
//!
//! Invariant: [`load`] either returns a [`Signals`] holding every contract table
//! (missing files are empty tables) with the contract's column types, or an
//! error naming the file, the row and the column; nothing is half-loaded,
//! because loading fills a fresh in-memory database that is dropped on error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::time::parse_timestamp;

use duckdb::types::{TimeUnit, Value as DbValue};
use duckdb::{Config, Connection, OptionalExt};

use crate::schema::{self, Storage, Table};
use crate::sql::{
    render_statement, type_name, ColumnDef, Dialect, From, Func, OrderKey, Select, SqlExpr, SqlType, Statement, TableName, Window,
    RAW_SCHEMA,
};

/// The alias a loaded DuckDB file is attached as.
const SOURCE_DB: &str = "signals_src";

fn sql(s: Statement) -> String {
    render_statement(&s, Dialect::DuckDb)
}

/// Loaded signal tables, ready for evaluation.
pub struct Signals {
    /// The database holding the `raw` schema.
    pub conn: Connection,
    /// Unknown files and other remarks.
    pub warnings: Vec<String>,
    /// Where the rules' statements run instead of `conn` (Spark), holding the same rows.
    pub remote: Option<std::sync::Arc<dyn Remote>>,
}

/// A database that runs the rules' statements in place of the embedded DuckDB, over the
/// same signal rows (staged to it by its backend): Spark through Spark Connect.
pub trait Remote: Send + Sync {
    /// The dialect its statements are rendered in.
    fn dialect(&self) -> Dialect;
    /// Runs a query: every row, each with exactly `width` values.
    fn query(&self, sql: &str, width: usize) -> Result<Vec<Vec<DbValue>>, String>;
    /// Stops what it is running (a rule over its time budget).
    fn interrupt(&self);
}

impl Signals {
    /// Rows of a loaded table; with `within: Some((after, until))`, only those whose
    /// event time is in (after, until] (the table must have one).
    pub fn count_rows(&self, table: &Table, within: Option<(i64, i64)>) -> Result<i64, duckdb::Error> {
        let r = "r";
        let mut count = Select::new(From::Raw { name: table.name.into(), alias: r.into() }, vec![(SqlExpr::CountStar, None)]);
        if let (Some((after, until)), Some(ev)) = (within, table.event_time) {
            count = count.filtered(vec![
                SqlExpr::bin(crate::sql::Op::Gt, SqlExpr::col(r, ev), SqlExpr::Timestamp(after)),
                SqlExpr::bin(crate::sql::Op::Le, SqlExpr::col(r, ev), SqlExpr::Timestamp(until)),
            ]);
        }
        self.conn.query_row(&sql(Statement::select(count)), [], |row| row.get(0))
    }

    /// Signals already in a connection's `raw` schema (generated, or another connection to loaded ones).
    pub fn from_connection(conn: Connection) -> Signals {
        Signals { conn, warnings: Vec::new(), remote: None }
    }
}

/// Why signals could not be loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    /// The file at fault.
    pub file: PathBuf,
    /// 1-based data row (header excluded), when one row is at fault.
    pub row: Option<u64>,
    /// 1-based line in the file, when known.
    pub line: Option<u64>,
    /// The column at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(row) = self.row {
            write!(f, "row {row}, ")?;
        }
        if let Some(col) = &self.column {
            write!(f, "column `{col}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

fn file_error(file: &Path, message: impl Into<String>) -> LoadError {
    LoadError { file: file.to_path_buf(), row: None, line: None, column: None, message: message.into() }
}

/// Opens an in-memory DuckDB that never reaches for the network, bounded by
/// [`crate::limits`] (memory limit, its own spill directory).
pub fn open_database() -> Result<Connection, duckdb::Error> {
    let mut config = Config::default().enable_autoload_extension(false)?.with("autoinstall_known_extensions", "false")?;
    for (name, value) in crate::limits::database_settings() {
        config = config.with(name, value)?;
    }
    let conn = Connection::open_in_memory_with_flags(config)?;
    conn.execute_batch(&sql(Statement::CreateSchema(RAW_SCHEMA.into())))?;
    Ok(conn)
}

/// The formats a signal file may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Parquet,
    JsonLines,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("csv") => Some(Format::Csv),
        Some("parquet") => Some(Format::Parquet),
        Some("jsonl") | Some("ndjson") | Some("json") => Some(Format::JsonLines),
        _ => None,
    }
}

/// No signals yet: every contract table, empty (ingested rows are copied in).
pub fn empty() -> Result<Signals, LoadError> {
    let nowhere = Path::new("(ingested signals)");
    let conn = open_database().map_err(|e| file_error(nowhere, format!("cannot open an in-memory database: {e}")))?;
    for table in schema::contract_tables() {
        create_table(&conn, table).map_err(|e| file_error(nowhere, e.to_string()))?;
    }
    Ok(Signals::from_connection(conn))
}

/// Loads `--signals PATH`: a DuckDB database file or a directory of table files.
pub fn load(path: &Path) -> Result<Signals, LoadError> {
    let conn = open_database().map_err(|e| file_error(path, format!("cannot open an in-memory database: {e}")))?;
    let mut signals = Signals::from_connection(conn);
    if path.is_dir() {
        load_directory(&mut signals, path)?;
    } else if path.is_file() {
        load_database_file(&mut signals, path)?;
    } else {
        return Err(file_error(path, "no such file or directory"));
    }
    Ok(signals)
}

fn load_directory(signals: &mut Signals, dir: &Path) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, format!("cannot read the directory: {e}")))?;
    let mut found: BTreeMap<&'static str, (PathBuf, Format)> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    for p in paths {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let table = schema::contract_tables().find(|t| t.name == stem);
        match (table, format_of(&p)) {
            (Some(t), Some(fmt)) => {
                if let Some((other, _)) = found.get(t.name) {
                    return Err(file_error(&p, format!("table `{}` is given twice (also {})", t.name, other.display())));
                }
                found.insert(t.name, (p, fmt));
            }
            _ => signals.warnings.push(format!("{}: ignored: not a contract table file (<table>.csv, .parquet or .jsonl)", p.display())),
        }
    }
    for table in schema::contract_tables() {
        match found.get(table.name) {
            Some((p, Format::Csv)) => load_csv(&signals.conn, table, p)?,
            Some((p, Format::JsonLines)) => load_jsonl(&signals.conn, table, p)?,
            Some((p, Format::Parquet)) => {
                let from = From::Parquet { path: p.to_string_lossy().into_owned(), alias: "src".into() };
                attach_view(&signals.conn, table, p, &from)?;
            }
            None => create_table(&signals.conn, table).map_err(|e| file_error(dir, e.to_string()))?,
        }
    }
    Ok(())
}

fn load_database_file(signals: &mut Signals, path: &Path) -> Result<(), LoadError> {
    let attach = Statement::Attach { path: path.to_string_lossy().into_owned(), alias: SOURCE_DB.into(), read_only: true };
    signals.conn.execute_batch(&sql(attach)).map_err(|e| file_error(path, format!("not a DuckDB database: {e}")))?;
    let mut present = Vec::new();
    {
        let c = "c";
        let mut tables = Select::new(From::CatalogColumns { alias: c.into() }, vec![(SqlExpr::col(c, "table_name"), None)])
            .filtered(vec![SqlExpr::eq(SqlExpr::col(c, "database_name"), SqlExpr::Str(SOURCE_DB.into()))]);
        tables.distinct = true;
        tables.order_by = vec![OrderKey::asc(SqlExpr::col(c, "table_name"))];
        let mut stmt = signals.conn.prepare(&sql(Statement::select(tables))).map_err(|e| file_error(path, e.to_string()))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| file_error(path, e.to_string()))?;
        for r in rows {
            present.push(r.map_err(|e| file_error(path, e.to_string()))?);
        }
    }
    for table in schema::contract_tables() {
        if present.iter().any(|p| p == table.name) {
            let from = From::InSchema { schema: SOURCE_DB.into(), name: table.name.into(), alias: "src".into() };
            attach_view(&signals.conn, table, &path.join(table.name), &from)?;
        } else {
            create_table(&signals.conn, table).map_err(|e| file_error(path, e.to_string()))?;
        }
    }
    for p in present {
        if schema::contract_tables().all(|t| t.name != p) {
            signals.warnings.push(format!("{}: table `{p}` ignored: not a contract table", path.display()));
        }
    }
    Ok(())
}

fn create_table(conn: &Connection, table: &Table) -> Result<(), duckdb::Error> {
    create_contract_table(conn, RAW_SCHEMA, table.name, table, &[])
}

/// Checks the column types of a typed source (Parquet, DuckDB) and exposes it
/// as a view with the contract's types; rows are read only when rules need them.
fn attach_view(conn: &Connection, table: &Table, file: &Path, from: &From) -> Result<(), LoadError> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    {
        let every = Select::new(from.clone(), vec![(SqlExpr::AllColumns, None)]);
        let mut stmt =
            conn.prepare(&sql(Statement::Describe(Box::new(every)))).map_err(|e| file_error(file, format!("cannot read: {e}")))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(|e| file_error(file, e.to_string()))?;
        for r in rows {
            let (name, ty) = r.map_err(|e| file_error(file, e.to_string()))?;
            types.insert(name, ty);
        }
    }
    let mut items = Vec::new();
    for c in table.columns {
        let Some(ty) = types.get(c.name) else {
            return Err(LoadError {
                column: Some(c.name.to_string()),
                ..file_error(file, format!("missing column `{}` (table `{}` needs {})", c.name, table.name, column_list(table)))
            });
        };
        let text_time = c.storage == Storage::Time && ty == "VARCHAR";
        if text_time {
            check_text_timestamps(conn, file, from, c.name)?;
        }
        if c.name == "timezone" {
            check_time_zones(conn, file, from, c.name)?;
        }
        let ok = match c.storage {
            Storage::Text => true,
            Storage::Time => ty.starts_with("TIMESTAMP") || text_time,
            Storage::Float | Storage::Int => is_numeric(ty),
            Storage::Bool => ty == "BOOLEAN",
        };
        if !ok {
            let want = match c.storage {
                Storage::Time => "a TIMESTAMP (UTC) or TIMESTAMP WITH TIME ZONE",
                Storage::Bool => "a BOOLEAN",
                _ => "a number",
            };
            return Err(LoadError {
                column: Some(c.name.to_string()),
                ..file_error(file, format!("column `{}` has type {ty}, expected {want}", c.name))
            });
        }
        let column = SqlExpr::bare(c.name);
        let want = c.storage.sql_type();
        let cast = if ty == type_name(want, Dialect::DuckDb) {
            column
        } else if text_time {
            // ISO-8601 text with a zone (checked above): through TIMESTAMPTZ to UTC.
            SqlExpr::cast(SqlExpr::cast(column, SqlType::TimestampTz), SqlType::Timestamp)
        } else {
            SqlExpr::cast(column, want)
        };
        items.push((cast, Some(c.name.to_string())));
    }
    let view =
        Statement::CreateView { view: TableName::in_schema(RAW_SCHEMA, table.name), select: Box::new(Select::new(from.clone(), items)) };
    conn.execute_batch(&sql(view)).map_err(|e| file_error(file, e.to_string()))
}

/// Refuses text timestamps without a zone (or not ISO-8601), naming the row.
fn check_text_timestamps(conn: &Connection, file: &Path, from: &From, column: &str) -> Result<(), LoadError> {
    const ISO_WITH_ZONE: &str = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)$";
    let v = SqlExpr::col("n", "v");
    let matches = SqlExpr::func(Func::RegexpFullMatch, vec![v.clone(), SqlExpr::Str(ISO_WITH_ZONE.into())]);
    let first = first_row_where(from, SqlExpr::bare(column), vec![SqlExpr::IsNull(Box::new(v), true), SqlExpr::Not(Box::new(matches))]);
    let bad: Option<(i64, String)> =
        conn.query_row(&sql(first), [], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(|e| file_error(file, e.to_string()))?;
    match bad {
        None => Ok(()),
        Some((row, value)) => Err(LoadError {
            row: Some(row as u64),
            column: Some(column.to_string()),
            ..file_error(
                file,
                parse_timestamp(&value).err().unwrap_or_else(|| format!("`{value}` is not an ISO-8601 timestamp with a zone")),
            )
        }),
    }
}

/// Refuses a time zone that is not an IANA name chrono-tz knows, naming the row
/// (the same rule as for CSV files: a site's local time must never silently be UTC).
fn check_time_zones(conn: &Connection, file: &Path, from: &From, column: &str) -> Result<(), LoadError> {
    let fail = |e: duckdb::Error| file_error(file, e.to_string());
    let text = SqlExpr::cast(SqlExpr::bare(column), SqlType::Varchar);
    let mut zones =
        Select::new(from.clone(), vec![(text.clone(), None)]).filtered(vec![SqlExpr::IsNull(Box::new(SqlExpr::bare(column)), true)]);
    zones.distinct = true;
    let mut stmt = conn.prepare(&sql(Statement::select(zones))).map_err(fail)?;
    let zones = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(fail)?.collect::<Result<Vec<String>, _>>().map_err(fail)?;
    let Some(bad) = zones.into_iter().find(|z| z.trim().parse::<chrono_tz::Tz>().is_err()) else {
        return Ok(());
    };
    let first = first_row_where(from, text, vec![SqlExpr::eq(SqlExpr::col("n", "v"), SqlExpr::Str(bad.clone()))]);
    let row: Option<i64> = conn.query_row(&sql(first), [], |r| r.get(0)).optional().map_err(fail)?;
    Err(LoadError {
        row: row.map(|r| r as u64),
        column: Some(column.to_string()),
        ..file_error(file, format!("`{bad}` is not an IANA time zone such as Europe/London"))
    })
}

/// `(rn, v)` of the first row (1-based, in file order) whose value `v` (the
/// expression `value` of the row) meets every condition on `n.v`.
fn first_row_where(from: &From, value: SqlExpr, conditions: Vec<SqlExpr>) -> Statement {
    let number = SqlExpr::OverInline(
        Box::new(SqlExpr::func(Func::RowNumber, vec![])),
        Box::new(Window { name: String::new(), partition_by: vec![], order_by: vec![], frame: None }),
    );
    let numbered = Select::new(from.clone(), vec![(number, Some("rn".into())), (value, Some("v".into()))]);
    let mut first = Select::new(
        From::Derived { select: Box::new(numbered), alias: "n".into() },
        vec![(SqlExpr::col("n", "rn"), None), (SqlExpr::col("n", "v"), None)],
    )
    .filtered(conditions);
    first.order_by = vec![OrderKey::asc(SqlExpr::col("n", "rn"))];
    first.limit = Some(1);
    Statement::select(first)
}

fn is_numeric(ty: &str) -> bool {
    ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL"]
        .iter()
        .any(|t| ty.starts_with(t))
}

fn column_list(table: &Table) -> String {
    table.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// One row of text fields, before typing.
struct RawRow {
    row: u64,
    line: u64,
    fields: Vec<Option<String>>,
}

fn load_csv(conn: &Connection, table: &Table, path: &Path) -> Result<(), LoadError> {
    let reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let rows = csv_rows(table, reader, path)?;
    insert_rows(conn, table, path, rows)
}

/// The formats of an ingested batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

/// Parses and types a batch of rows of `table` exactly as a file of that format is
/// read (the same checks and messages: line, row, column, reason); `origin` names
/// the batch in errors. Nothing is stored: a bad row fails the whole batch.
pub fn parse_batch(table: &Table, format: BatchFormat, text: &str, origin: &Path) -> Result<Vec<Vec<DbValue>>, LoadError> {
    let rows = match format {
        BatchFormat::Csv => {
            let reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
            csv_rows(table, reader, origin)?
        }
        BatchFormat::JsonLines => jsonl_rows(table, text, origin)?,
    };
    type_rows(table, origin, rows)
}

/// Appends typed rows to `schema.table` (which must exist).
pub fn append_rows(conn: &Connection, schema: &str, table: &str, rows: Vec<Vec<DbValue>>) -> Result<(), duckdb::Error> {
    let mut app = conn.appender_to_db(table, schema)?;
    for values in rows {
        app.append_row(duckdb::appender_params_from_iter(values))?;
    }
    app.flush()
}

/// Creates `schema.name` with the contract columns of `table` (plus `extra`).
pub fn create_contract_table(conn: &Connection, schema: &str, name: &str, table: &Table, extra: &[ColumnDef]) -> Result<(), duckdb::Error> {
    let mut columns: Vec<ColumnDef> =
        table.columns.iter().map(|c| ColumnDef { name: c.name.into(), ty: c.storage.sql_type(), not_null: false }).collect();
    columns.extend(extra.iter().cloned());
    let create = Statement::CreateTable { table: TableName::in_schema(schema, name), columns, primary_key: vec![], temporary: false };
    conn.execute_batch(&sql(create))
}

fn csv_rows<R: std::io::Read>(table: &Table, mut reader: csv::Reader<R>, path: &Path) -> Result<Vec<RawRow>, LoadError> {
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| file_error(path, format!("cannot read the header row: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let positions = column_positions(table, &headers, path)?;
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let row = i as u64 + 1;
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line());
            LoadError { row: Some(row), line, ..file_error(path, format!("malformed CSV: {e}")) }
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(row + 1);
        let fields = positions.iter().map(|p| rec.get(*p).filter(|v| !v.is_empty()).map(str::to_string)).collect();
        rows.push(RawRow { row, line, fields });
    }
    Ok(rows)
}

fn load_jsonl(conn: &Connection, table: &Table, path: &Path) -> Result<(), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let rows = jsonl_rows(table, &text, path)?;
    insert_rows(conn, table, path, rows)
}

fn jsonl_rows(table: &Table, text: &str, path: &Path) -> Result<Vec<RawRow>, LoadError> {
    let mut rows = Vec::new();
    let mut row = 0;
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        row += 1;
        let at = |message: String, column: Option<String>| LoadError {
            row: Some(row),
            line: Some(line_no),
            column,
            ..file_error(path, message)
        };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("not a JSON object: {e}"), None))?;
        let obj = value.as_object().ok_or_else(|| at("not a JSON object".into(), None))?;
        let mut fields = Vec::new();
        for c in table.columns {
            let field = match obj.get(c.name) {
                None => return Err(at(format!("missing column `{}`", c.name), Some(c.name.to_string()))),
                Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) if s.is_empty() => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                Some(other) => return Err(at(format!("expected a plain value, found {other}"), Some(c.name.to_string()))),
            };
            fields.push(field);
        }
        rows.push(RawRow { row, line: line_no, fields });
    }
    Ok(rows)
}

fn column_positions(table: &Table, headers: &[String], path: &Path) -> Result<Vec<usize>, LoadError> {
    table
        .columns
        .iter()
        .map(|c| {
            headers.iter().position(|h| h == c.name).ok_or_else(|| LoadError {
                line: Some(1),
                column: Some(c.name.to_string()),
                ..file_error(
                    path,
                    format!("missing column `{}` in the header (table `{}` needs {})", c.name, table.name, column_list(table)),
                )
            })
        })
        .collect()
}

fn insert_rows(conn: &Connection, table: &Table, path: &Path, rows: Vec<RawRow>) -> Result<(), LoadError> {
    // Type every field first, so a bad row leaves nothing behind.
    let typed = type_rows(table, path, rows)?;
    create_table(conn, table).map_err(|e| file_error(path, e.to_string()))?;
    append_rows(conn, RAW_SCHEMA, table.name, typed).map_err(|e| file_error(path, e.to_string()))
}

fn type_rows(table: &Table, path: &Path, rows: Vec<RawRow>) -> Result<Vec<Vec<DbValue>>, LoadError> {
    let mut typed: Vec<Vec<DbValue>> = Vec::with_capacity(rows.len());
    for r in rows {
        let mut values = Vec::with_capacity(table.columns.len());
        for (c, field) in table.columns.iter().zip(r.fields) {
            let at = |message: String| LoadError {
                row: Some(r.row),
                line: Some(r.line),
                column: Some(c.name.to_string()),
                ..file_error(path, message)
            };
            let v = match field {
                None if !c.nullable => return Err(at(format!("`{}` must not be empty", c.name))),
                None => DbValue::Null,
                Some(text) => parse_value(c.storage, c.name, &text).map_err(at)?,
            };
            values.push(v);
        }
        typed.push(values);
    }
    Ok(typed)
}

/// Parses one text field into its contract type.
fn parse_value(storage: Storage, column: &str, text: &str) -> Result<DbValue, String> {
    let text = text.trim();
    match storage {
        Storage::Text => {
            if column == "timezone" && text.parse::<chrono_tz::Tz>().is_err() {
                return Err(format!("`{text}` is not an IANA time zone such as Europe/London"));
            }
            Ok(DbValue::Text(text.to_string()))
        }
        Storage::Time => parse_timestamp(text).map(|t| DbValue::Timestamp(TimeUnit::Microsecond, t)),
        Storage::Float => {
            text.parse::<f64>().ok().filter(|f| f.is_finite()).map(DbValue::Double).ok_or_else(|| format!("`{text}` is not a number"))
        }
        Storage::Int => text.parse::<i64>().map(DbValue::BigInt).map_err(|_| format!("`{text}` is not a whole number")),
        Storage::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Ok(DbValue::Boolean(true)),
            "false" | "f" | "0" | "no" => Ok(DbValue::Boolean(false)),
            _ => Err(format!("`{text}` is not a boolean (true or false)")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_need_a_zone() {
        assert_eq!(parse_timestamp("1970-01-01T00:01:00Z"), Ok(60_000_000));
        assert_eq!(parse_timestamp("1970-01-01T01:01:00+01:00"), Ok(60_000_000));
        assert!(parse_timestamp("2025-10-04T12:00:00").unwrap_err().contains("no zone"));
        assert!(parse_timestamp("yesterday").is_err());
    }
}
