//! Ingested signals: rows a platform pushes (`POST /api/v1/signals/{table}`),
//! kept in a signals database beside the state database until retention
//! removes them, and read by ticks as any other signal source.
//!
//! Invariants:
//! - A batch is stored in one transaction together with its idempotency key:
//!   all of its rows or none, and a key seen before for the same table stores
//!   nothing and answers as the first time did.
//! - Every row carries the wall time it arrived (`_received_us`), so feed
//!   freshness and event-time lag are known per tenant and table.
//! - Retention deletes by event time; tables without one (sites, maintenance
//!   windows) are kept whole.
//! - A tick copies only the rows its rules' windows read: event time in
//!   (T - lookback, T], or every retained row up to T for tables read without a window.

use std::collections::BTreeMap;
use std::path::Path;

use duckdb::types::Value;
use duckdb::{params, Connection};

use crate::load::{self, Signals};
use crate::migrations::StateError;
use crate::schema::{self, Table};
use crate::sql::{
    render_statement, ColumnDef, Dialect, From, Func, InsertSource, Op, Query, Select, SqlExpr, SqlType, Statement, TableName, RAW_SCHEMA,
};

const DB: &str = "vigil_signals";
/// The arrival column every stored row carries.
pub const RECEIVED: &str = "_received_us";
const BATCHES: &str = "ingest_batches";

fn text(s: Statement) -> String {
    render_statement(&s, Dialect::DuckDb)
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Rows in the batch (as first stored, for a repeated key).
    pub rows: i64,
    /// The key was seen before: nothing was stored now.
    pub duplicate: bool,
}

fn received_col() -> ColumnDef {
    ColumnDef { name: RECEIVED.into(), ty: SqlType::BigInt, not_null: true }
}

/// Serializes this process's use of the signals database (as [`crate::store::state_lock`]
/// does for the state database: one lock per file, so a batch is stored while a
/// tick writes its findings).
pub fn signals_lock() -> super::FairGuard<'static> {
    static LOCK: super::FairLock = super::FairLock::new();
    LOCK.lock()
}

/// Runs `f` with the signals database attached (created when missing).
fn with_signals<T>(path: &Path, f: impl FnOnce(&Connection) -> Result<T, duckdb::Error>) -> Result<T, StateError> {
    let _guard = signals_lock();
    let conn = load::open_database()?;
    crate::store::attach_file(&conn, path, DB)?;
    let prepared = (|| {
        let batches = Statement::CreateTable {
            table: TableName::in_schema(DB, BATCHES),
            columns: vec![
                ColumnDef { name: "idempotency_key".into(), ty: SqlType::Varchar, not_null: true },
                ColumnDef { name: "table_name".into(), ty: SqlType::Varchar, not_null: true },
                ColumnDef { name: "rows".into(), ty: SqlType::BigInt, not_null: true },
                ColumnDef { name: RECEIVED.into(), ty: SqlType::BigInt, not_null: true },
            ],
            primary_key: vec!["idempotency_key".into(), "table_name".into()],
            temporary: false,
        };
        conn.execute_batch(&text(batches))?;
        for table in schema::contract_tables() {
            load::create_contract_table(&conn, DB, table.name, table, &[received_col()])?;
        }
        f(&conn)
    })();
    if prepared.is_err() {
        let _ = conn.execute_batch(&text(Statement::Rollback));
    }
    let _ = conn.execute_batch(&text(Statement::Detach(DB.into())));
    prepared.map_err(StateError::Db)
}

/// Stores a parsed batch of `table` once per `key`, stamped as received at `received`
/// (µs), or by default at the wall time it is stored (taken under the lock, so a tick
/// that read before it never misses it: see [`copy_window`]).
pub fn store_batch(
    path: &Path,
    table: &Table,
    rows: Vec<Vec<Value>>,
    key: Option<&str>,
    received: Option<i64>,
) -> Result<Outcome, StateError> {
    let n = rows.len() as i64;
    with_signals(path, |conn| {
        let received = received.unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
        // Stage the rows in memory first: the appender is fast and the copy below is one statement.
        load::create_contract_table(conn, "main", "batch", table, &[])?;
        load::append_rows(conn, "main", "batch", rows)?;
        conn.execute_batch(&text(Statement::Begin))?;
        if let Some(key) = key {
            let seen = Select::new(
                From::InSchema { schema: DB.into(), name: BATCHES.into(), alias: "b".into() },
                vec![(SqlExpr::col("b", "rows"), None)],
            )
            .filtered(vec![
                SqlExpr::eq(SqlExpr::col("b", "idempotency_key"), SqlExpr::Param),
                SqlExpr::eq(SqlExpr::col("b", "table_name"), SqlExpr::Param),
            ]);
            let first: Option<i64> = match conn.query_row(&text(Statement::select(seen)), params![key, table.name], |r| r.get(0)) {
                Ok(v) => Some(v),
                Err(duckdb::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(e),
            };
            if let Some(rows) = first {
                conn.execute_batch(&text(Statement::Rollback))?;
                return Ok(Outcome { rows, duplicate: true });
            }
            let record = Statement::Insert {
                table: TableName::in_schema(DB, BATCHES),
                source: InsertSource::Values(vec![vec![SqlExpr::Param; 4]]),
                replace: false,
            };
            conn.execute(&text(record), params![key, table.name, n, received])?;
        }
        let mut items: Vec<(SqlExpr, Option<String>)> = table.columns.iter().map(|c| (SqlExpr::col("s", c.name), None)).collect();
        items.push((SqlExpr::Int(received), None));
        let copy = Statement::Insert {
            table: TableName::in_schema(DB, table.name),
            source: InsertSource::Query(Box::new(Query { ctes: vec![], body: Select::new(From::table("batch", "s"), items) })),
            replace: false,
        };
        conn.execute_batch(&text(copy))?;
        conn.execute_batch(&text(Statement::Commit))?;
        Ok(Outcome { rows: n, duplicate: false })
    })
}

/// Deletes rows whose event time is before `now - keep` (µs) of each table given;
/// returns how many per table.
pub fn prune(path: &Path, now: i64, keep: &BTreeMap<&'static str, i64>) -> Result<BTreeMap<&'static str, usize>, StateError> {
    with_signals(path, |conn| {
        let mut out = BTreeMap::new();
        for table in schema::contract_tables() {
            let (Some(ev), Some(keep)) = (table.event_time, keep.get(table.name)) else { continue };
            let old = SqlExpr::bin(Op::Lt, SqlExpr::bare(ev), SqlExpr::Timestamp(now - keep));
            let n = conn.execute(&text(Statement::Delete { table: TableName::in_schema(DB, table.name), filter: Some(old) }), [])?;
            out.insert(table.name, n);
        }
        Ok(out)
    })
}

/// Copies into `signals` (its `raw` tables, which must exist and be tables) the
/// stored rows the rules read at `now`: for a table with an event time and a
/// lookback in `ranges`, event time in (now - lookback, now]; with `None`, every
/// row up to now; tables without an event time, every row. Returns the wall time (µs)
/// of the read, taken under the lock: every batch stamped later arrived after it.
pub fn copy_window(path: &Path, signals: &Signals, now: i64, ranges: &BTreeMap<&'static str, Option<i64>>) -> Result<i64, StateError> {
    let conn = &signals.conn;
    let _guard = signals_lock();
    let read = chrono::Utc::now().timestamp_micros();
    if !path.exists() {
        return Ok(read);
    }
    crate::store::attach_file(conn, path, DB)?;
    let copied = (|| {
        for table in schema::contract_tables() {
            let Some(range) = ranges.get(table.name) else { continue };
            let mut filter = Vec::new();
            if let Some(ev) = table.event_time {
                filter.push(SqlExpr::bin(Op::Le, SqlExpr::col("s", ev), SqlExpr::Timestamp(now)));
                if let Some(lookback) = range {
                    filter.push(SqlExpr::bin(Op::Gt, SqlExpr::col("s", ev), SqlExpr::Timestamp(now - lookback)));
                }
            }
            let items = table.columns.iter().map(|c| (SqlExpr::col("s", c.name), None)).collect();
            let select =
                Select::new(From::InSchema { schema: DB.into(), name: table.name.into(), alias: "s".into() }, items).filtered(filter);
            let copy = Statement::Insert {
                table: TableName::in_schema(RAW_SCHEMA, table.name),
                source: InsertSource::Query(Box::new(Query { ctes: vec![], body: select })),
                replace: false,
            };
            conn.execute_batch(&text(copy))?;
        }
        Ok(())
    })();
    let _ = conn.execute_batch(&text(Statement::Detach(DB.into())));
    copied.map_err(StateError::Db).map(|()| read)
}

/// Per tenant, the earliest event time among rows that arrived in (`received_after`,
/// `received_until`] (µs, wall clock) with an event time at or before `event_until`:
/// rows late for ticks already run.
pub fn late_since(path: &Path, received_after: i64, received_until: i64, event_until: i64) -> Result<BTreeMap<String, i64>, StateError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    with_signals(path, |conn| {
        let mut earliest: BTreeMap<String, i64> = BTreeMap::new();
        for table in schema::contract_tables() {
            let Some(ev) = table.event_time else { continue };
            let s = "s";
            let first = SqlExpr::func(Func::EpochMicros, vec![SqlExpr::func(Func::Min, vec![SqlExpr::col(s, ev)])]);
            let from = From::InSchema { schema: DB.into(), name: table.name.into(), alias: s.into() };
            let mut select = Select::new(from, vec![(SqlExpr::col(s, "tenant_id"), None), (first, None)]).filtered(vec![
                SqlExpr::bin(Op::Gt, SqlExpr::col(s, RECEIVED), SqlExpr::Int(received_after)),
                SqlExpr::bin(Op::Le, SqlExpr::col(s, RECEIVED), SqlExpr::Int(received_until)),
                SqlExpr::bin(Op::Le, SqlExpr::col(s, ev), SqlExpr::Timestamp(event_until)),
            ]);
            select.group_by = vec![SqlExpr::col(s, "tenant_id")];
            let mut stmt = conn.prepare(&text(Statement::select(select)))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (tenant, t) = row?;
                let slot = earliest.entry(tenant).or_insert(t);
                *slot = (*slot).min(t);
            }
        }
        Ok(earliest)
    })
}

/// When rows of one tenant's table last arrived, and how far behind event time was.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Tenant.
    pub tenant: String,
    /// Table.
    pub table: &'static str,
    /// Wall time (µs) the last row arrived.
    pub last_received: i64,
    /// The latest event time among that tenant's rows of the table (µs), if it has one.
    pub last_event: Option<i64>,
    /// Rows stored.
    pub rows: i64,
}

/// Per tenant and table: last arrival, latest event time, rows (tables with rows only).
pub fn arrivals(path: &Path) -> Result<Vec<Arrival>, StateError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    with_signals(path, |conn| {
        let mut out = Vec::new();
        for table in schema::contract_tables() {
            let s = "s";
            let last_event = match table.event_time {
                Some(ev) => SqlExpr::func(Func::EpochMicros, vec![SqlExpr::func(Func::Max, vec![SqlExpr::col(s, ev)])]),
                None => SqlExpr::cast(SqlExpr::Null, SqlType::BigInt),
            };
            let mut select = Select::new(
                From::InSchema { schema: DB.into(), name: table.name.into(), alias: s.into() },
                vec![
                    (SqlExpr::col(s, "tenant_id"), None),
                    (SqlExpr::func(Func::Max, vec![SqlExpr::col(s, RECEIVED)]), None),
                    (last_event, None),
                    (SqlExpr::CountStar, None),
                ],
            );
            select.group_by = vec![SqlExpr::col(s, "tenant_id")];
            let mut stmt = conn.prepare(&text(Statement::select(select)))?;
            let rows = stmt.query_map([], |r| {
                Ok(Arrival { tenant: r.get(0)?, table: table.name, last_received: r.get(1)?, last_event: r.get(2)?, rows: r.get(3)? })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        out.sort_by(|a, b| (&a.tenant, a.table).cmp(&(&b.tenant, b.table)));
        Ok(out)
    })
}
