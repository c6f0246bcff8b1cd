//! The findings store: findings with a lifecycle in the state database.
//!
//! A finding is upserted by its identity (finding_type, tenant_id, site_id,
//! guard_id, entity_id) while it is open (NEW or ACKNOWLEDGED): a standing
//! condition is one row with first_seen, last_seen and the number of
//! evaluations that saw it; a severity change is a history row. Operators move a
//! finding NEW -> ACKNOWLEDGED -> RESOLVED (who, when, a note); once resolved, the
//! same condition holding again is a new finding. Every finding records its
//! provenance: the rule id, a hash of the rule's text, a hash of the SQL that
//! ran, and the rule-set revision (a hash of every rule and runbook file).
//!
//! Invariants:
//! - One evaluation is written in one transaction: a crash leaves the store as
//!   it was before that evaluation or after it, never in between.
//! - Writing the same evaluation time twice (a restart re-running the tick it
//!   was killed in) changes nothing: occurrences count distinct times.
//! - The database file is attached only while writing or reading, so operators'
//!   `vigil findings ack` can run while `vigil watch` is running.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

pub use crate::migrations::StateError;
use duckdb::{params, Connection};

use crate::exec::{self, Finding};
use crate::ruleset::RuleSet;
use crate::sql::{render_statement, Dialect, From, Func, InsertSource, Op, OrderKey, Select, SqlExpr, Statement, TableName};

const DB: &str = "vigil_store";
/// The alias the state database is attached as while the store uses it.
pub(crate) const STORE_DB: &str = DB;

/// The store's statements, each built from the SQL tree (values are bound as `?`).
pub(crate) mod q {
    use super::*;

    pub fn text(s: Statement) -> String {
        render_statement(&s, Dialect::DuckDb)
    }
    fn table(name: &str) -> TableName {
        TableName::in_schema(DB, name)
    }
    pub fn rows(name: &str) -> From {
        From::InSchema { schema: DB.into(), name: name.into(), alias: name.into() }
    }
    pub fn col(c: &str) -> SqlExpr {
        SqlExpr::bare(c)
    }
    /// `col = ?`
    pub fn is_param(c: &str) -> SqlExpr {
        SqlExpr::eq(col(c), SqlExpr::Param)
    }
    /// Not resolved: NEW or ACKNOWLEDGED.
    pub fn open() -> SqlExpr {
        SqlExpr::bin(Op::Ne, col("status"), SqlExpr::Str(Status::Resolved.name().into()))
    }
    /// `SELECT columns FROM table WHERE filter ORDER BY order`
    pub fn select(from: &str, columns: &[&str], filter: Vec<SqlExpr>, order: &[&str]) -> String {
        let mut s = Select::new(rows(from), columns.iter().map(|c| (col(c), None)).collect()).filtered(filter);
        s.order_by = order.iter().map(|c| OrderKey::asc(col(c))).collect();
        text(Statement::select(s))
    }
    /// `SELECT e FROM table`
    pub fn select_one(from: &str, e: SqlExpr) -> String {
        text(Statement::select(Select::new(rows(from), vec![(e, None)])))
    }
    /// `INSERT INTO table VALUES (values)`
    pub fn insert(into: &str, values: Vec<SqlExpr>) -> String {
        text(Statement::Insert { table: table(into), source: InsertSource::Values(vec![values]), replace: false })
    }
    /// `INSERT INTO table VALUES (?, ?, ...)`
    pub fn insert_params(into: &str, n: usize) -> String {
        insert(into, vec![SqlExpr::Param; n])
    }
    /// `UPDATE findings SET .. WHERE filter`
    pub fn update(set: Vec<(&str, SqlExpr)>, filter: Vec<SqlExpr>) -> String {
        let set = set.into_iter().map(|(c, e)| (c.to_string(), e)).collect();
        text(Statement::Update { table: table("findings"), set, filter: SqlExpr::and_all(filter) })
    }
    /// `SELECT nextval` of the findings' id sequence.
    pub fn next_id() -> String {
        let next = SqlExpr::func(Func::NextVal, vec![SqlExpr::Str(format!("{DB}.finding_ids"))]);
        text(Statement::select(Select::new(From::Nothing, vec![(next, None)])))
    }
}

/// FNV-1a, 64 bits, as 16 hex digits: a stable hash for provenance (not for security).
pub fn hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The revision of a rule set: a hash of every file's name (without directories) and text.
pub fn revision(set: &RuleSet) -> String {
    let mut all = String::new();
    for id in 0..set.sources.len() {
        let name = set.sources.name(id);
        let base = Path::new(name).file_name().and_then(|n| n.to_str()).unwrap_or(name);
        let _ = write!(all, "{base}\u{0}{}\u{0}", set.sources.text(id));
    }
    hash(&all)
}

/// (rule text hash, SQL hash) of a rule or anomaly rule at `now`.
pub fn provenance(set: &RuleSet, rule_id: &str, now: i64) -> (String, String) {
    let Some(rule) = set.find(rule_id) else { return (String::new(), String::new()) };
    let sql = match rule {
        crate::ruleset::Rule::Pattern(_, plan) => crate::sql::render(&plan.query, &[now], crate::sql::Dialect::DuckDb),
        crate::ruleset::Rule::Anomaly(a) => crate::anomaly::evaluation_sql(a, &[now]),
    };
    (hash(&rule.text(&set.sources)), hash(&sql))
}

/// Serializes this process's use of state databases: DuckDB lets one database
/// instance at a time hold a file, and watch's ticks, reload records and baseline
/// updates each attach it for a moment. Waiters are served in the order they came.
pub fn state_lock() -> super::FairGuard<'static> {
    static LOCK: super::FairLock = super::FairLock::new();
    LOCK.lock()
}

/// Attaches a state file as `alias`. Another process (watch, or an operator's
/// `vigil findings ack`) may hold the file for a moment: retry for up to 5 s.
pub fn attach_file(conn: &Connection, path: &Path, alias: &str) -> Result<(), duckdb::Error> {
    let mut tries = 0;
    loop {
        let attach = Statement::Attach { path: path.display().to_string(), alias: alias.to_string(), read_only: false };
        let attached = conn.execute_batch(&q::text(attach));
        match attached {
            Ok(()) => return Ok(()),
            Err(e) if tries < 50 && is_lock_conflict(&e) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Is this DuckDB's refusal to open a file another process holds? DuckDB's C API
/// reports it with the generic error type, so its message is the only sign; this is
/// the one place that reads a message, and it only decides whether to retry.
fn is_lock_conflict(e: &duckdb::Error) -> bool {
    let text = e.to_string();
    text.contains("lock") || text.contains("conflict")
}

fn attach(conn: &Connection, path: &Path) -> Result<(), StateError> {
    attach_file(conn, path, DB)?;
    crate::migrations::upgrade(conn, DB)?;
    Ok(())
}

fn detach(conn: &Connection) {
    let _ = conn.execute_batch(&q::text(Statement::Detach(DB.into())));
}

/// Runs `f` with the store attached to a private in-memory connection.
pub(crate) fn with_store<T>(path: &Path, f: impl FnOnce(&Connection) -> Result<T, duckdb::Error>) -> Result<T, StateError> {
    let _guard = state_lock();
    let conn = crate::load::open_database()?;
    if let Err(e) = attach(&conn, path) {
        detach(&conn);
        return Err(e);
    }
    let out = f(&conn).map_err(StateError::Db);
    if out.is_err() {
        let _ = conn.execute_batch(&q::text(Statement::Rollback));
    }
    detach(&conn);
    out
}

/// What one write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// Findings seen for the first time (new rows).
    pub new: Vec<i64>,
    /// Their identities.
    pub new_identities: Vec<exec::Identity>,
    /// Open findings seen again.
    pub seen_again: usize,
    /// Severity changes recorded.
    pub severity_changes: usize,
    /// Open findings of the evaluated rules that no longer hold.
    pub cleared: usize,
    /// Their ids.
    pub cleared_ids: Vec<i64>,
    /// Open findings whose severity changed or that hold again after a pause.
    pub changed_ids: Vec<i64>,
    /// The time was at or before the last one written: nothing was written.
    pub skipped: bool,
}

type Key = (String, String, String, Option<String>, Option<String>);

/// (finding type, tenant) pairs whose open findings an evaluation holds as they
/// are: not seen again and not cleared (`vigil serve` while a tenant's feed is stale).
pub type Held = std::collections::HashSet<(String, String)>;

/// Records the findings of one evaluation at `now` of the rules in `evaluated`
/// (rule ids): upsert by identity while open, history for severity changes, and
/// `holding = false` for open findings of those rules that did not come back
/// (except those `held`).
pub fn record(
    path: &Path,
    set: &RuleSet,
    evaluated: &[String],
    now: i64,
    findings: &[Finding],
    held: &Held,
) -> Result<Written, StateError> {
    let at = exec::iso(now);
    let revision = revision(set);
    let mut hashes: HashMap<String, (String, String)> = HashMap::new();
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        // Times are written in order: a time at or before the last one written (a
        // restart re-running a tick, an audit of the past) changes nothing.
        let latest: Option<i64> =
            conn.query_row(&q::select_one("ticks", SqlExpr::func(Func::Max, vec![q::col("evaluated_us")])), [], |r| r.get(0))?;
        if latest.is_some_and(|l| now <= l) {
            conn.execute_batch(&q::text(Statement::Rollback))?;
            return Ok(Written { skipped: true, ..Written::default() });
        }
        let mut open: HashMap<Key, (i64, String, String)> = HashMap::new();
        let is_held = |k: &Key| held.contains(&(k.0.clone(), k.1.clone()));
        {
            let columns = ["id", "finding_type", "tenant_id", "site_id", "guard_id", "entity_id", "severity", "rule"];
            let mut stmt = conn.prepare(&q::select("findings", &columns, vec![q::open()], &[]))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    (r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get(4)?, r.get(5)?),
                    (r.get::<_, i64>(0)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?),
                ))
            })?;
            for row in rows {
                let (k, v) = row?;
                open.insert(k, v);
            }
        }
        let history = q::insert_params("finding_history", 5);
        let mut out = Written::default();
        let mut seen: std::collections::HashSet<i64> = std::collections::HashSet::new();
        for f in findings {
            let key: Key = f.identity();
            let evidence = serde_json::Value::Object(f.evidence.clone()).to_string();
            match open.get(&key) {
                Some((id, severity, _)) => {
                    seen.insert(*id);
                    out.seen_again += 1;
                    let was_holding: bool =
                        conn.query_row(&q::select("findings", &["holding"], vec![q::is_param("id")], &[]), params![id], |r| r.get(0))?;
                    if !was_holding {
                        conn.execute(&history, params![id, at, "holds again", None::<String>, None::<String>])?;
                        out.changed_ids.push(*id);
                    }
                    let set =
                        ["last_seen", "severity", "evidence", "suppressed", "runbook", "rule", "inhibited_by"].map(|c| (c, SqlExpr::Param));
                    let mut set = set.to_vec();
                    set.push(("occurrences", SqlExpr::bin(Op::Add, q::col("occurrences"), SqlExpr::Int(1))));
                    set.push(("holding", SqlExpr::Bool(true)));
                    conn.execute(
                        &q::update(set, vec![q::is_param("id")]),
                        params![at, f.severity, evidence, f.suppressed, f.runbook, f.rule, f.inhibited_by, id],
                    )?;
                    if *severity != f.severity {
                        out.severity_changes += 1;
                        if !out.changed_ids.contains(id) {
                            out.changed_ids.push(*id);
                        }
                        conn.execute(&history, params![id, at, "severity", format!("{severity} -> {}", f.severity), None::<String>])?;
                    }
                }
                None => {
                    let provenance = hashes.entry(f.rule.clone()).or_insert_with(|| provenance(set, &f.rule, now)).clone();
                    let id = insert_new(conn, f, &at, &provenance, &revision, false)?;
                    open.insert(key.clone(), (id, f.severity.clone(), f.rule.clone()));
                    seen.insert(id);
                    out.new.push(id);
                    out.new_identities.push(key);
                }
            }
        }
        for (key, (id, _, rule)) in &open {
            if !seen.contains(id) && evaluated.contains(rule) && !is_held(key) {
                let clear = q::update(vec![("holding", SqlExpr::Bool(false))], vec![q::is_param("id"), q::col("holding")]);
                let changed = conn.execute(&clear, params![id])?;
                if changed > 0 {
                    out.cleared += 1;
                    out.cleared_ids.push(*id);
                    conn.execute(&history, params![id, at, "cleared", None::<String>, None::<String>])?;
                }
            }
        }
        out.new.sort_unstable();
        out.cleared_ids.sort_unstable();
        out.changed_ids.sort_unstable();
        conn.execute(&q::insert_params("ticks", 4), params![now, at, findings.len() as i64, revision])?;
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(out)
    })
}

/// Inserts a finding seen for the first time at `at` (NEW, once, holding), with its
/// provenance and the `raised` (or `raised late`) history entry; returns its id.
fn insert_new(
    conn: &Connection,
    f: &Finding,
    at: &str,
    provenance: &(String, String),
    revision: &str,
    late: bool,
) -> Result<i64, duckdb::Error> {
    let id: i64 = conn.query_row(&q::next_id(), [], |r| r.get(0))?;
    let evidence = serde_json::Value::Object(f.evidence.clone()).to_string();
    // id .. suppressed; NEW; first and last seen; once, holding; nobody acknowledged or
    // resolved it; provenance; version 2: the inhibiting finding; version 4: late.
    let mut values = vec![SqlExpr::Param; 13];
    values.push(SqlExpr::Str(Status::New.name().into()));
    values.extend([SqlExpr::Param, SqlExpr::Param, SqlExpr::Int(1), SqlExpr::Bool(true)]);
    values.extend([SqlExpr::Null, SqlExpr::Null, SqlExpr::Null, SqlExpr::Null]);
    values.extend([SqlExpr::Param, SqlExpr::Param, SqlExpr::Param]);
    values.extend([SqlExpr::Param, SqlExpr::Bool(late)]);
    conn.execute(
        &q::insert("findings", values),
        params![
            id,
            f.finding_type,
            f.tenant_id,
            f.site_id,
            f.guard_id,
            f.entity_id,
            f.rule,
            f.category,
            f.severity,
            f.title,
            evidence,
            f.runbook,
            f.suppressed,
            at,
            at,
            provenance.0,
            provenance.1,
            revision,
            f.inhibited_by
        ],
    )?;
    let event = if late { "raised late" } else { "raised" };
    conn.execute(&q::insert_params("finding_history", 5), params![id, at, event, f.severity, None::<String>])?;
    Ok(id)
}

/// Records findings of past ticks that rows arriving after those ticks revealed
/// (each at its `detected_at`): those whose identity is not open become new
/// findings marked late; open ones are left to the regular ticks. Returns the new ids.
pub fn record_late(path: &Path, set: &RuleSet, findings: &[Finding]) -> Result<Vec<i64>, StateError> {
    let revision = revision(set);
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        let mut open: std::collections::HashSet<Key> = std::collections::HashSet::new();
        {
            let columns = ["finding_type", "tenant_id", "site_id", "guard_id", "entity_id"];
            let mut stmt = conn.prepare(&q::select("findings", &columns, vec![q::open()], &[]))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
            for row in rows {
                open.insert(row?);
            }
        }
        let mut out = Vec::new();
        for f in findings {
            if !open.insert(f.identity()) {
                continue;
            }
            let at = load_time(&f.detected_at);
            let provenance = provenance(set, &f.rule, at);
            out.push(insert_new(conn, f, &f.detected_at, &provenance, &revision, true)?);
        }
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(out)
    })
}

/// A finding's `detected_at` as microseconds (0 when it is not a time: provenance only).
fn load_time(iso: &str) -> i64 {
    crate::load::parse_timestamp(iso).unwrap_or(0)
}

/// The latest evaluation time written (ISO-8601), if any: where `vigil watch` resumes.
pub fn last_tick(path: &Path) -> Result<Option<String>, StateError> {
    let latest = SqlExpr::func(Func::ArgMax, vec![q::col("evaluated_at"), q::col("evaluated_us")]);
    with_store(path, |conn| conn.query_row(&q::select_one("ticks", latest), [], |r| r.get(0)))
}

/// What [`prune_resolved`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Resolved findings (with their history).
    pub findings: usize,
    /// Their runbook actions (with their log).
    pub actions: usize,
    /// Silences that expired before the cut.
    pub silences: usize,
    /// Reload records before the cut.
    pub reloads: usize,
}

/// Retention of the state database (`serve --keep-resolved`): removes findings resolved
/// before `before` (ISO-8601 UTC, compared as text like every stored time) with their
/// history and their runbook actions and action log, silences that expired before it,
/// and reload records before it; open findings and ticks are kept whatever their age.
/// One transaction: all of it or nothing.
pub fn prune_resolved(path: &Path, before: &str) -> Result<Pruned, StateError> {
    let old_resolved = || {
        Select::new(q::rows("findings"), vec![(q::col("id"), None)]).filtered(vec![
            SqlExpr::eq(q::col("status"), SqlExpr::Str(Status::Resolved.name().into())),
            SqlExpr::bin(Op::Lt, q::col("resolved_at"), SqlExpr::Param),
        ])
    };
    let delete = |table: &str, filter: SqlExpr| q::text(Statement::Delete { table: TableName::in_schema(DB, table), filter: Some(filter) });
    let their_actions = Select::new(q::rows("actions"), vec![(q::col("id"), None)])
        .filtered(vec![SqlExpr::InSelect(Box::new(q::col("finding_id")), Box::new(old_resolved()))]);
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        conn.execute(&delete("action_log", SqlExpr::InSelect(Box::new(q::col("action_id")), Box::new(their_actions))), params![before])?;
        let actions =
            conn.execute(&delete("actions", SqlExpr::InSelect(Box::new(q::col("finding_id")), Box::new(old_resolved()))), params![before])?;
        conn.execute(
            &delete("finding_history", SqlExpr::InSelect(Box::new(q::col("finding_id")), Box::new(old_resolved()))),
            params![before],
        )?;
        let findings =
            conn.execute(&delete("findings", SqlExpr::InSelect(Box::new(q::col("id")), Box::new(old_resolved()))), params![before])?;
        let silences = conn.execute(&delete("silences", SqlExpr::bin(Op::Lt, q::col("expires_at"), SqlExpr::Param)), params![before])?;
        let reloads = conn.execute(&delete("reloads", SqlExpr::bin(Op::Lt, q::col("attempted_at"), SqlExpr::Param)), params![before])?;
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(Pruned { findings, actions, silences, reloads })
    })
}

/// Every tick written, in order (µs UTC).
pub fn ticks(path: &Path) -> Result<Vec<i64>, StateError> {
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::select("ticks", &["evaluated_us"], vec![], &["evaluated_us"]))?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    })
}

/// After a reload removed rules: their open findings no longer hold (history
/// `rule removed`, at wall-clock `at`). Returns how many.
pub fn rules_removed(path: &Path, rules: &[String], at: &str) -> Result<usize, StateError> {
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        let history = q::insert_params("finding_history", 5);
        let mut n = 0;
        for rule in rules {
            let ids: Vec<i64> = {
                let mut stmt =
                    conn.prepare(&q::select("findings", &["id"], vec![q::is_param("rule"), q::open(), q::col("holding")], &[]))?;
                let rows = stmt.query_map(params![rule], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for id in ids {
                conn.execute(&q::update(vec![("holding", SqlExpr::Bool(false))], vec![q::is_param("id")]), params![id])?;
                conn.execute(&history, params![id, at, "rule removed", rule, None::<String>])?;
                n += 1;
            }
        }
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(n)
    })
}

/// Where a stored finding is in its lifecycle (CATALOG.md: NEW -> ACKNOWLEDGED -> RESOLVED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// raised, nobody has looked at it yet
    New,
    /// an operator has taken it
    Acknowledged,
    /// closed; the same condition holding again is a new finding
    Resolved,
}

impl Status {
    /// Its spelling in the store and on screen.
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Acknowledged => "ACKNOWLEDGED",
            Status::Resolved => "RESOLVED",
        }
    }

    /// The status a stored text names.
    pub fn parse(text: &str) -> Option<Status> {
        [Status::New, Status::Acknowledged, Status::Resolved].into_iter().find(|s| s.name() == text)
    }

    /// Where `ack` (or `resolve`) leads from here, if the lifecycle allows it.
    pub fn step(self, resolve: bool) -> Option<Status> {
        match (self, resolve) {
            (Status::New, false) => Some(Status::Acknowledged),
            (Status::New | Status::Acknowledged, true) => Some(Status::Resolved),
            _ => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A status column read from the store.
fn status_at(r: &duckdb::Row, i: usize) -> Result<Status, duckdb::Error> {
    let text: String = r.get(i)?;
    Status::parse(&text).ok_or_else(|| {
        duckdb::Error::FromSqlConversionFailure(i, duckdb::types::Type::Text, format!("`{text}` is not a finding status").into())
    })
}

/// One stored finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stored {
    /// Store id.
    pub id: i64,
    /// Where it is in its lifecycle.
    pub status: Status,
    /// Type.
    pub finding_type: String,
    /// Rule id.
    pub rule: String,
    /// Tenant.
    pub tenant_id: String,
    /// Site.
    pub site_id: String,
    /// Guard.
    pub guard_id: Option<String>,
    /// Entity.
    pub entity_id: Option<String>,
    /// Category.
    pub category: String,
    /// Latest severity.
    pub severity: String,
    /// Title.
    pub title: String,
    /// Latest evidence.
    pub evidence: serde_json::Value,
    /// Runbook.
    pub runbook: String,
    /// Suppressed at its last evaluation.
    pub suppressed: bool,
    /// First evaluation that saw it.
    pub first_seen: String,
    /// Last evaluation that saw it.
    pub last_seen: String,
    /// Evaluations that saw it.
    pub occurrences: i64,
    /// Did the last evaluation of its rule see it?
    pub holding: bool,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When (wall clock, UTC).
    pub acknowledged_at: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<String>,
    /// Hash of the rule text.
    pub rule_hash: String,
    /// Hash of the SQL that ran when it was raised.
    pub sql_hash: String,
    /// Rule-set revision when it was raised.
    pub ruleset_revision: String,
    /// The finding that inhibits it, as of the last evaluation that saw it.
    pub inhibited_by: Option<String>,
    /// Raised at a past tick from rows that arrived after that tick ran (`vigil serve`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

/// Which stored findings to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// every finding
    All,
    /// NEW or ACKNOWLEDGED
    Open,
    /// of one status
    Only(Status),
}

impl Listing {
    /// `all`, `open`, or a status name (any case).
    pub fn parse(text: &str) -> Option<Listing> {
        match text.to_ascii_lowercase().as_str() {
            "all" => Some(Listing::All),
            "open" => Some(Listing::Open),
            _ => Status::parse(&text.to_ascii_uppercase()).map(Listing::Only),
        }
    }
}

/// Stored findings of a listing, by id.
pub fn list(path: &Path, listing: Listing) -> Result<Vec<Stored>, StateError> {
    find(path, &Query { listing, ..Query::default() })
}

/// Which stored findings to read: every condition given must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// By status.
    pub listing: Listing,
    /// Only these ids.
    pub ids: Option<Vec<i64>>,
    /// Only these tenants (`None`: every tenant).
    pub tenants: Option<Vec<String>>,
    /// Only this site.
    pub site: Option<String>,
    /// Only this finding type.
    pub finding_type: Option<String>,
    /// Only this severity.
    pub severity: Option<String>,
    /// Only findings seen at or after this time (ISO-8601; compared as an instant).
    pub since: Option<i64>,
}

impl Default for Query {
    fn default() -> Query {
        Query { listing: Listing::All, ids: None, tenants: None, site: None, finding_type: None, severity: None, since: None }
    }
}

/// Stored findings matching a query, by id. Every value is bound as a parameter.
pub fn find(path: &Path, query: &Query) -> Result<Vec<Stored>, StateError> {
    use duckdb::types::Value;
    let mut filter = match query.listing {
        Listing::All => vec![],
        Listing::Open => vec![q::open()],
        Listing::Only(s) => vec![SqlExpr::eq(q::col("status"), SqlExpr::Str(s.name().into()))],
    };
    let mut values: Vec<Value> = Vec::new();
    if let Some(ids) = &query.ids {
        filter.push(SqlExpr::InList(Box::new(q::col("id")), vec![SqlExpr::Param; ids.len()]));
        values.extend(ids.iter().map(|i| Value::BigInt(*i)));
        if ids.is_empty() {
            return Ok(Vec::new());
        }
    }
    if let Some(tenants) = &query.tenants {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        filter.push(SqlExpr::InList(Box::new(q::col("tenant_id")), vec![SqlExpr::Param; tenants.len()]));
        values.extend(tenants.iter().map(|t| Value::Text(t.clone())));
    }
    for (column, value) in [("site_id", &query.site), ("finding_type", &query.finding_type), ("severity", &query.severity)] {
        if let Some(v) = value {
            filter.push(q::is_param(column));
            values.push(Value::Text(v.clone()));
        }
    }
    if let Some(since) = query.since {
        // last_seen is ISO-8601 UTC text, so it orders as the instant it names.
        filter.push(SqlExpr::bin(Op::Ge, q::col("last_seen"), SqlExpr::Param));
        values.push(Value::Text(exec::iso(since)));
    }
    let columns = [
        "id",
        "status",
        "finding_type",
        "rule",
        "tenant_id",
        "site_id",
        "guard_id",
        "entity_id",
        "category",
        "severity",
        "title",
        "evidence",
        "runbook",
        "suppressed",
        "first_seen",
        "last_seen",
        "occurrences",
        "holding",
        "acknowledged_by",
        "acknowledged_at",
        "resolved_by",
        "resolved_at",
        "rule_hash",
        "sql_hash",
        "ruleset_revision",
        "inhibited_by",
        "late",
    ];
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::select("findings", &columns, filter, &["id"]))?;
        let rows = stmt.query_map(duckdb::params_from_iter(values.iter()), |r| {
            Ok(Stored {
                id: r.get(0)?,
                status: status_at(r, 1)?,
                finding_type: r.get(2)?,
                rule: r.get(3)?,
                tenant_id: r.get(4)?,
                site_id: r.get(5)?,
                guard_id: r.get(6)?,
                entity_id: r.get(7)?,
                category: r.get(8)?,
                severity: r.get(9)?,
                title: r.get(10)?,
                evidence: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or(serde_json::Value::Null),
                runbook: r.get(12)?,
                suppressed: r.get(13)?,
                first_seen: r.get(14)?,
                last_seen: r.get(15)?,
                occurrences: r.get(16)?,
                holding: r.get(17)?,
                acknowledged_by: r.get(18)?,
                acknowledged_at: r.get(19)?,
                resolved_by: r.get(20)?,
                resolved_at: r.get(21)?,
                rule_hash: r.get(22)?,
                sql_hash: r.get(23)?,
                ruleset_revision: r.get(24)?,
                inhibited_by: r.get(25)?,
                late: r.get::<_, Option<bool>>(26)?.unwrap_or(false),
            })
        })?;
        rows.collect()
    })
}

/// One history entry: (when, event, detail, who).
pub type HistoryEntry = (String, String, Option<String>, Option<String>);

/// The history of one finding, oldest first.
pub fn history(path: &Path, id: i64) -> Result<Vec<HistoryEntry>, StateError> {
    with_store(path, |conn| {
        let columns = ["happened_at", "event", "detail", "who"];
        let mut stmt = conn.prepare(&q::select("finding_history", &columns, vec![q::is_param("finding_id")], &["rowid"]))?;
        let rows = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect()
    })
}

/// Why a lifecycle step was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    /// No such finding.
    NotFound(i64),
    /// The step does not follow from the finding's status.
    Refused { id: i64, status: Status, step: &'static str },
    /// Someone changed the finding since the caller read it (its version moved on).
    Conflict { id: i64, expected: i64, actual: i64 },
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::NotFound(id) => write!(f, "no finding {id}"),
            StepError::Refused { id, status, step } => write!(f, "finding {id} is {status}; it cannot be {step}"),
            StepError::Conflict { id, expected, actual } => {
                write!(f, "finding {id} changed since it was read (version {actual}, not {expected}); read it again")
            }
            StepError::Db(e) => f.write_str(e),
        }
    }
}

/// A finding's version: 1 when raised, one more for every step a person took
/// (history entries with a `who`). A lifecycle step may name the version it was
/// decided on, and is refused when another step came first.
pub fn version(history: &[HistoryEntry]) -> i64 {
    1 + history.iter().filter(|h| h.3.is_some()).count() as i64
}

/// NEW -> ACKNOWLEDGED (`ack`) or NEW/ACKNOWLEDGED -> RESOLVED (`resolve`), by `who` at `at`;
/// with `expected_version`, only if nobody else took a step since that version.
pub fn step(
    path: &Path,
    id: i64,
    resolve: bool,
    who: &str,
    at: &str,
    note: Option<&str>,
    expected_version: Option<i64>,
) -> Result<(), StepError> {
    match with_store(path, |conn| step_on(conn, id, resolve, who, at, note, expected_version)) {
        Ok(inner) => inner,
        Err(e) => Err(StepError::Db(e.to_string())),
    }
}

/// [`step`] for many findings with one note, in one visit to the store (an operator's
/// round over a thousand findings does not wait for the store's lock a thousand times):
/// each id's outcome, in the order given. Each step is its own transaction.
pub fn step_many(
    path: &Path,
    ids: &[i64],
    resolve: bool,
    who: &str,
    at: &str,
    note: Option<&str>,
) -> Result<Vec<Result<(), StepError>>, StateError> {
    with_store(path, |conn| ids.iter().map(|id| step_on(conn, *id, resolve, who, at, note, None)).collect())
}

/// One lifecycle step on an attached store (the outer error: the database failed).
fn step_on(
    conn: &Connection,
    id: i64,
    resolve: bool,
    who: &str,
    at: &str,
    note: Option<&str>,
    expected_version: Option<i64>,
) -> Result<Result<(), StepError>, duckdb::Error> {
    conn.execute_batch(&q::text(Statement::Begin))?;
    let status: Option<Status> =
        conn.query_row(&q::select("findings", &["status"], vec![q::is_param("id")], &[]), params![id], |r| status_at(r, 0)).ok();
    let taken = Select::new(q::rows("finding_history"), vec![(SqlExpr::func(Func::Count, vec![q::col("who")]), None)])
        .filtered(vec![q::is_param("finding_id")]);
    let steps_taken: i64 = conn.query_row(&q::text(Statement::select(taken)), params![id], |r| r.get(0))?;
    let event = if resolve { "resolved" } else { "acknowledged" };
    let outcome = match status {
        None => Err(StepError::NotFound(id)),
        Some(s) => s.step(resolve).ok_or(StepError::Refused { id, status: s, step: event }),
    };
    let outcome = match (outcome, expected_version) {
        (Ok(_), Some(expected)) if expected != 1 + steps_taken => Err(StepError::Conflict { id, expected, actual: 1 + steps_taken }),
        (outcome, _) => outcome,
    };
    match outcome {
        Ok(to) => {
            let to = to.name();
            let (by, when) = if resolve { ("resolved_by", "resolved_at") } else { ("acknowledged_by", "acknowledged_at") };
            let set = vec![("status", SqlExpr::Param), (by, SqlExpr::Param), (when, SqlExpr::Param)];
            conn.execute(&q::update(set, vec![q::is_param("id")]), params![to, who, at, id])?;
            conn.execute(&q::insert_params("finding_history", 5), params![id, at, event, note, who])?;
            conn.execute_batch(&q::text(Statement::Commit))?;
            Ok(Ok(()))
        }
        Err(e) => {
            conn.execute_batch(&q::text(Statement::Rollback))?;
            Ok(Err(e))
        }
    }
}

/// One reload attempt of `vigil watch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// Wall-clock time, ISO-8601 UTC.
    pub at: String,
    /// Did the new rule set check clean and get swapped in?
    pub ok: bool,
    /// Revision of the new set (when it loaded).
    pub revision: Option<String>,
    /// Rule ids added, changed, removed (comma-separated).
    pub added: String,
    /// Rule ids whose text changed.
    pub changed: String,
    /// Rule ids removed.
    pub removed: String,
    /// The diagnostics, when it failed.
    pub error: Option<String>,
}

/// Records a reload attempt.
pub fn record_reload(path: &Path, r: &Reload) -> Result<(), StateError> {
    with_store(path, |conn| {
        conn.execute(&q::insert_params("reloads", 7), params![r.at, r.ok, r.revision, r.added, r.changed, r.removed, r.error])?;
        Ok(())
    })
}

/// The files of a rule set that checked, as kept by [`save_rule_files`].
#[derive(Debug, Clone, PartialEq)]
pub struct SavedRules {
    /// Its revision ([`revision`]).
    pub revision: String,
    /// When it was saved (the run's clock).
    pub saved_at: String,
    /// (file name, text), in load order; the built-in prelude is not among them.
    pub files: Vec<(String, String)>,
}

/// Keeps the files of `set` (which checked) as the last good rule set, replacing the
/// one kept before, in one transaction. Nothing is written when it is already kept.
pub fn save_rule_files(path: &Path, set: &RuleSet, at: &str) -> Result<(), StateError> {
    let revision = revision(set);
    let files: Vec<(&str, &str)> = set.sources.files().filter(|(name, _)| !name.starts_with('<')).collect();
    with_store(path, |conn| {
        let kept: Option<String> =
            conn.query_row(&q::select_one("rule_files", SqlExpr::func(Func::Max, vec![q::col("revision")])), [], |r| r.get(0))?;
        if kept.as_deref() == Some(revision.as_str()) {
            return Ok(());
        }
        conn.execute_batch(&q::text(Statement::Begin))?;
        conn.execute_batch(&q::text(Statement::Delete { table: TableName::in_schema(DB, "rule_files"), filter: None }))?;
        let mut insert = conn.prepare(&q::insert_params("rule_files", 5))?;
        for (position, (name, text)) in files.iter().enumerate() {
            insert.execute(params![position as i64, name, text, revision, at])?;
        }
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(())
    })
}

/// The last good rule set kept by [`save_rule_files`], if any.
pub fn last_good_rules(path: &Path) -> Result<Option<SavedRules>, StateError> {
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::select("rule_files", &["name", "text", "revision", "saved_at"], vec![], &["position"]))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)))?;
        let mut saved: Option<SavedRules> = None;
        for row in rows {
            let (name, text, revision, saved_at) = row?;
            saved.get_or_insert_with(|| SavedRules { revision, saved_at, files: Vec::new() }).files.push((name, text));
        }
        Ok(saved)
    })
}

/// Every recorded reload, oldest first.
pub fn reloads(path: &Path) -> Result<Vec<Reload>, StateError> {
    with_store(path, |conn| {
        let columns = ["attempted_at", "ok", "revision", "added", "changed", "removed", "error"];
        let mut stmt = conn.prepare(&q::select("reloads", &columns, vec![], &["rowid"]))?;
        let rows = stmt.query_map([], |r| {
            Ok(Reload {
                at: r.get(0)?,
                ok: r.get(1)?,
                revision: r.get(2)?,
                added: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                changed: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                removed: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                error: r.get(6)?,
            })
        })?;
        rows.collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        // Reference values of FNV-1a 64.
        assert_eq!(hash(""), "cbf29ce484222325");
        assert_eq!(hash("a"), "af63dc4c8601ec8c");
    }
}
