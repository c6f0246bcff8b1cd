//! The outbox of runbook actions in the state database: every action is written
//! here before anything is sent, keyed by its idempotency key; the delivery worker
//! (`vigil serve`) moves it through its states; every step is appended to the
//! action log, and the steps operators care about go on the finding's timeline.
//!
//! Invariants:
//! - Enqueueing an action whose key exists changes nothing and returns the existing
//!   record, so planning the same finding twice (a restart, a sweep) is harmless.
//! - A state change names the states it may start from and happens only from one of
//!   them (compare and set), in one transaction with its log entry and timeline
//!   entry: two workers, or a worker and an operator approving, never both win.
//! - The action log is append-only: rows are inserted, never updated or deleted.
//! - Times: `due_us`, `deadline_us` and `done_us` are on the run's clock (the virtual
//!   clock of a replay, else the wall clock); `next_wall_us` (retry backoff) and the
//!   log's `wall_us` are wall-clock, because receivers and Retry-After live there.

use std::path::Path;

use duckdb::types::Value;
use duckdb::{params, params_from_iter, Connection};

use crate::actions::{Kind, Mode, Planned};
use crate::migrations::StateError;
use crate::sql::{Func, Op, OrderKey, Select, SqlExpr, Statement, TableName};
use crate::store::{q, with_store, STORE_DB};

/// Where an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// waiting to be due, or for its next attempt
    Pending,
    /// waiting for an operator's approval
    AwaitingApproval,
    /// paused by the storm breaker
    Held,
    /// delivered (2xx)
    Sent,
    /// dry-run: rendered and recorded, nothing sent
    WouldSend,
    /// not needed any more (acknowledged, resolved, stopped holding)
    Dropped,
    /// over a rate limit
    Limited,
    /// an approver said no, or nobody approved in time
    Rejected,
    /// a kill switch was on
    Suppressed,
    /// attempts exhausted or refused for good: the dead-letter list (replayable)
    Dead,
}

/// Every status, in its order of appearance.
pub const STATUSES: [Status; 10] = [
    Status::Pending,
    Status::AwaitingApproval,
    Status::Held,
    Status::Sent,
    Status::WouldSend,
    Status::Dropped,
    Status::Limited,
    Status::Rejected,
    Status::Suppressed,
    Status::Dead,
];

/// The statuses the delivery worker still looks at.
pub const ACTIVE: [Status; 3] = [Status::Pending, Status::AwaitingApproval, Status::Held];

impl Status {
    /// Its spelling in the store and the API.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Held => "held",
            Status::Sent => "sent",
            Status::WouldSend => "would_send",
            Status::Dropped => "dropped",
            Status::Limited => "limited",
            Status::Rejected => "rejected",
            Status::Suppressed => "suppressed",
            Status::Dead => "dead",
        }
    }

    /// The status a text names.
    pub fn parse(text: &str) -> Option<Status> {
        STATUSES.into_iter().find(|s| s.name() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One action in the outbox: what was planned, and where it is now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActionRow {
    /// Its id.
    pub id: i64,
    /// What was planned: finding, runbook step, action, target, mode, due time, payload.
    /// Its key is also the `webhook-id` receivers get.
    #[serde(flatten)]
    pub plan: Planned,
    /// Where it is.
    pub status: Status,
    /// Next attempt not before (wall clock, µs).
    pub next_wall_us: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// When it was enqueued (run's clock).
    pub created_at: String,
    /// Approval deadline (run's clock, µs).
    pub deadline_us: Option<i64>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was sent or recorded as would-send (run's clock, µs).
    pub done_us: Option<i64>,
}

const COLUMNS: [&str; 26] = [
    "id",
    "key",
    "finding_id",
    "epoch",
    "tenant_id",
    "site_id",
    "runbook",
    "step",
    "action",
    "kind",
    "via",
    "target",
    "mode",
    "critical",
    "approval",
    "status",
    "due_us",
    "next_wall_us",
    "attempts",
    "payload",
    "payload_hash",
    "created_at",
    "deadline_us",
    "decided_by",
    "last_error",
    "done_us",
];

fn row(r: &duckdb::Row) -> Result<ActionRow, duckdb::Error> {
    let word = |i: usize| r.get::<_, String>(i);
    let bad = |i: usize, text: &str, what: &str| {
        duckdb::Error::FromSqlConversionFailure(i, duckdb::types::Type::Text, format!("`{text}` is not {what}").into())
    };
    let status = word(15)?;
    let status = Status::parse(&status).ok_or_else(|| bad(15, &status, "an action status"))?;
    let kind = word(9)?;
    let kind = Kind::parse(&kind).ok_or_else(|| bad(9, &kind, "a kind of action"))?;
    let mode = word(12)?;
    let mode = Mode::parse(&mode).ok_or_else(|| bad(12, &mode, "a mode"))?;
    Ok(ActionRow {
        id: r.get(0)?,
        plan: Planned {
            key: r.get(1)?,
            finding_id: r.get(2)?,
            epoch: r.get(3)?,
            tenant_id: r.get(4)?,
            site_id: r.get(5)?,
            runbook: r.get(6)?,
            step: r.get(7)?,
            action: r.get(8)?,
            kind,
            via: r.get(10)?,
            target: r.get(11)?,
            mode,
            critical: r.get(13)?,
            approval: r.get(14)?,
            due_us: r.get(16)?,
            payload: r.get(19)?,
            payload_hash: r.get(20)?,
        },
        status,
        next_wall_us: r.get(17)?,
        attempts: r.get(18)?,
        created_at: r.get(21)?,
        deadline_us: r.get(22)?,
        decided_by: r.get(23)?,
        last_error: r.get(24)?,
        done_us: r.get(25)?,
    })
}

/// One entry of the action log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    /// The action.
    pub action_id: i64,
    /// When, on the run's clock.
    pub at: String,
    /// When, wall clock (µs).
    pub wall_us: i64,
    /// What happened: enqueued, attempt, sent, failed, would_send, approved, ...
    pub event: String,
    /// Details (a reason, the response's first bytes).
    pub detail: Option<String>,
    /// Who, when a person did it.
    pub who: Option<String>,
    /// HTTP status of an attempt.
    pub code: Option<i64>,
    /// How long an attempt took.
    pub took_ms: Option<i64>,
}

fn log_insert(conn: &Connection, e: &LogEntry) -> Result<(), duckdb::Error> {
    conn.execute(&q::insert_params("action_log", 8), params![e.action_id, e.at, e.wall_us, e.event, e.detail, e.who, e.code, e.took_ms])?;
    Ok(())
}

fn timeline(conn: &Connection, finding: i64, at: &str, detail: &str) -> Result<(), duckdb::Error> {
    conn.execute(&q::insert_params("finding_history", 5), params![finding, at, "action", detail, None::<String>])?;
    Ok(())
}

fn by_key(conn: &Connection, key: &str) -> Result<Option<ActionRow>, duckdb::Error> {
    let mut stmt = conn.prepare(&q::select("actions", &COLUMNS, vec![q::is_param("key")], &[]))?;
    let mut rows = stmt.query_map(params![key], row)?;
    rows.next().transpose()
}

/// Enqueues planned actions at `at` (run's clock): each new key is inserted with an
/// `enqueued` log entry and a timeline entry; an existing key returns its record
/// unchanged. Returns (record, created) per item, in order.
pub fn enqueue(path: &Path, items: &[Planned], at: &str, wall_us: i64) -> Result<Vec<(ActionRow, bool)>, StateError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        let mut out = Vec::new();
        for p in items {
            if let Some(existing) = by_key(conn, &p.key)? {
                out.push((existing, false));
                continue;
            }
            let next = SqlExpr::func(Func::NextVal, vec![SqlExpr::Str(format!("{STORE_DB}.action_ids"))]);
            let id: i64 =
                conn.query_row(&q::text(Statement::select(Select::new(crate::sql::From::Nothing, vec![(next, None)]))), [], |r| r.get(0))?;
            let values: Vec<Value> = vec![
                Value::BigInt(id),
                Value::Text(p.key.clone()),
                Value::BigInt(p.finding_id),
                Value::BigInt(p.epoch),
                Value::Text(p.tenant_id.clone()),
                Value::Text(p.site_id.clone()),
                Value::Text(p.runbook.clone()),
                Value::BigInt(p.step),
                Value::Text(p.action.clone()),
                Value::Text(p.kind.name().into()),
                Value::Text(p.via.clone()),
                Value::Text(p.target.clone()),
                Value::Text(p.mode.name().into()),
                Value::Boolean(p.critical),
                p.approval.clone().map_or(Value::Null, Value::Text),
                Value::Text(Status::Pending.name().into()),
                Value::BigInt(p.due_us),
                Value::BigInt(0),
                Value::BigInt(0),
                Value::Text(p.payload.clone()),
                Value::Text(p.payload_hash.clone()),
                Value::Text(at.to_string()),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ];
            conn.execute(&q::insert_params("actions", COLUMNS.len()), params_from_iter(values.iter()))?;
            let due = crate::exec::iso(p.due_us);
            let detail = format!(
                "{} ({}) for {}, due {due}; payload sha256 {}",
                p.action,
                p.mode.name(),
                p.target,
                &p.payload_hash[..16.min(p.payload_hash.len())]
            );
            log_insert(
                conn,
                &LogEntry {
                    action_id: id,
                    at: at.into(),
                    wall_us,
                    event: "enqueued".into(),
                    detail: Some(detail),
                    who: None,
                    code: None,
                    took_ms: None,
                },
            )?;
            // Report deliveries (finding 0) belong to no finding's timeline.
            if p.finding_id != 0 {
                timeline(conn, p.finding_id, at, &format!("{} -> {}: queued ({}), due {due}", p.action, p.target, p.mode.name()))?;
            }
            let stored = by_key(conn, &p.key)?.ok_or(duckdb::Error::QueryReturnedNoRows)?;
            out.push((stored, true));
        }
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(out)
    })
}

/// Which actions to list.
#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    /// Only these ids.
    pub ids: Option<Vec<i64>>,
    /// Only these findings.
    pub findings: Option<Vec<i64>>,
    /// Only these tenants (a caller's scope).
    pub tenants: Option<Vec<String>>,
    /// Only these statuses.
    pub statuses: Option<Vec<Status>>,
    /// Only this action name.
    pub action: Option<String>,
}

/// Actions matching a query, oldest first.
pub fn list(path: &Path, query: &ActionQuery) -> Result<Vec<ActionRow>, StateError> {
    let mut filter = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let lists: [(&str, Option<Vec<Value>>); 4] = [
        ("id", query.ids.as_ref().map(|v| v.iter().map(|i| Value::BigInt(*i)).collect())),
        ("finding_id", query.findings.as_ref().map(|v| v.iter().map(|i| Value::BigInt(*i)).collect())),
        ("tenant_id", query.tenants.as_ref().map(|v| v.iter().map(|t| Value::Text(t.clone())).collect())),
        ("status", query.statuses.as_ref().map(|v| v.iter().map(|s| Value::Text(s.name().into())).collect())),
    ];
    for (column, list) in lists {
        if let Some(list) = list {
            if list.is_empty() {
                return Ok(Vec::new());
            }
            filter.push(SqlExpr::InList(Box::new(q::col(column)), vec![SqlExpr::Param; list.len()]));
            values.extend(list);
        }
    }
    if let Some(a) = &query.action {
        filter.push(q::is_param("action"));
        values.push(Value::Text(a.clone()));
    }
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::select("actions", &COLUMNS, filter, &["id"]))?;
        let rows = stmt.query_map(params_from_iter(values.iter()), row)?;
        rows.collect()
    })
}

/// The log of one action, oldest first.
pub fn log(path: &Path, id: i64) -> Result<Vec<LogEntry>, StateError> {
    let columns = ["action_id", "at", "wall_us", "event", "detail", "who", "code", "took_ms"];
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::select("action_log", &columns, vec![q::is_param("action_id")], &["rowid"]))?;
        let rows = stmt.query_map(params![id], |r| {
            Ok(LogEntry {
                action_id: r.get(0)?,
                at: r.get(1)?,
                wall_us: r.get(2)?,
                event: r.get(3)?,
                detail: r.get(4)?,
                who: r.get(5)?,
                code: r.get(6)?,
                took_ms: r.get(7)?,
            })
        })?;
        rows.collect()
    })
}

/// A state change of one action.
#[derive(Debug, Clone)]
pub struct Change {
    /// The new status.
    pub status: Status,
    /// Other columns to set (from [`COLUMNS`]).
    pub set: Vec<(&'static str, Value)>,
    /// Its log entry (the action id and times are filled in).
    pub event: String,
    /// Details.
    pub detail: Option<String>,
    /// Who, when a person did it.
    pub who: Option<String>,
    /// HTTP status of an attempt.
    pub code: Option<i64>,
    /// How long an attempt took.
    pub took_ms: Option<i64>,
    /// A line for the finding's timeline.
    pub timeline: Option<String>,
}

impl Change {
    /// A change to `status`, logged as `event`.
    pub fn to(status: Status, event: &str) -> Change {
        Change { status, set: Vec::new(), event: event.into(), detail: None, who: None, code: None, took_ms: None, timeline: None }
    }
    /// With details.
    pub fn detail(mut self, d: impl Into<String>) -> Change {
        self.detail = Some(d.into());
        self
    }
    /// Also setting a column.
    pub fn set(mut self, column: &'static str, v: Value) -> Change {
        self.set.push((column, v));
        self
    }
    /// With a timeline line.
    pub fn timeline(mut self, line: impl Into<String>) -> Change {
        self.timeline = Some(line.into());
        self
    }
    /// Done by a person.
    pub fn by(mut self, who: &str) -> Change {
        self.who = Some(who.into());
        self
    }
}

/// Moves action `id` to `change.status` if it is in one of `from`; returns whether it
/// did (false: someone else moved it first, or no such action).
pub fn transition(path: &Path, id: i64, from: &[Status], change: &Change, at: &str, wall_us: i64) -> Result<bool, StateError> {
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        let mut set = vec![("status".to_string(), SqlExpr::Param)];
        let mut values = vec![Value::Text(change.status.name().into())];
        for (c, v) in &change.set {
            set.push((c.to_string(), SqlExpr::Param));
            values.push(v.clone());
        }
        values.push(Value::BigInt(id));
        values.extend(from.iter().map(|s| Value::Text(s.name().into())));
        let update = Statement::Update {
            table: TableName::in_schema(STORE_DB, "actions"),
            set,
            filter: SqlExpr::and_all(vec![
                q::is_param("id"),
                SqlExpr::InList(Box::new(q::col("status")), vec![SqlExpr::Param; from.len()]),
            ]),
        };
        let changed = conn.execute(&q::text(update), params_from_iter(values.iter()))?;
        if changed == 0 {
            conn.execute_batch(&q::text(Statement::Rollback))?;
            return Ok(false);
        }
        let entry = LogEntry {
            action_id: id,
            at: at.into(),
            wall_us,
            event: change.event.clone(),
            detail: change.detail.clone(),
            who: change.who.clone(),
            code: change.code,
            took_ms: change.took_ms,
        };
        log_insert(conn, &entry)?;
        if let Some(line) = &change.timeline {
            let finding: i64 =
                conn.query_row(&q::select("actions", &["finding_id"], vec![q::is_param("id")], &[]), params![id], |r| r.get(0))?;
            timeline(conn, finding, at, line)?;
        }
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(true)
    })
}

/// What a person decides about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An action awaiting approval may go.
    Approve,
    /// An action awaiting approval may not.
    Reject,
    /// A dead (or suppressed) action is tried again from its first attempt.
    Replay,
}

impl Decision {
    /// The statuses it starts from.
    pub fn from(self) -> &'static [Status] {
        match self {
            Decision::Approve | Decision::Reject => &[Status::AwaitingApproval],
            Decision::Replay => &[Status::Dead, Status::Suppressed],
        }
    }

    /// Its spelling in the log.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
            Decision::Replay => "replayed",
        }
    }
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum DecideError {
    /// No such action.
    NotFound(i64),
    /// The action is not in a state the decision applies to.
    Refused { id: i64, status: Status, decision: &'static str },
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for DecideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecideError::NotFound(id) => write!(f, "no action {id}"),
            DecideError::Refused { id, status, decision } => write!(f, "action {id} is {status}; it cannot be {decision}"),
            DecideError::Db(e) => f.write_str(e),
        }
    }
}

/// A person's decision about action `id` (who and their note go in the log and on the
/// finding's timeline); the action as it is afterwards.
pub fn decide(path: &Path, id: i64, d: Decision, who: &str, note: &str, at: &str, wall_us: i64) -> Result<ActionRow, DecideError> {
    let one = |path: &Path| -> Result<Option<ActionRow>, DecideError> {
        let q = ActionQuery { ids: Some(vec![id]), ..ActionQuery::default() };
        list(path, &q).map(|v| v.into_iter().next()).map_err(|e| DecideError::Db(e.to_string()))
    };
    let before = one(path)?.ok_or(DecideError::NotFound(id))?;
    let line = format!("{} -> {}: {} by {who}: {note}", before.plan.action, before.plan.target, d.name());
    let change = match d {
        Decision::Approve => Change::to(Status::Pending, "approved").set("decided_by", Value::Text(who.into())),
        Decision::Reject => Change::to(Status::Rejected, "rejected").set("decided_by", Value::Text(who.into())),
        Decision::Replay => Change::to(Status::Pending, "replayed").set("attempts", Value::BigInt(0)).set("next_wall_us", Value::BigInt(0)),
    }
    .by(who)
    .detail(note)
    .timeline(line);
    let moved = transition(path, id, d.from(), &change, at, wall_us).map_err(|e| DecideError::Db(e.to_string()))?;
    let after = one(path)?.ok_or(DecideError::NotFound(id))?;
    if !moved {
        return Err(DecideError::Refused { id, status: after.status, decision: d.name() });
    }
    Ok(after)
}

/// Appends a log entry without changing the action (an attempt starting).
pub fn note(path: &Path, entry: &LogEntry) -> Result<(), StateError> {
    with_store(path, |conn| log_insert(conn, entry))
}

/// How many deliveries (sent or would-send) through channel or endpoint `via` to
/// `target` were done at or after `since_us` on the run's clock: what rate limits
/// count ("at most 1 SMS per guard per 10 minutes", whichever action sent it), across restarts.
pub fn delivered_since(path: &Path, via: &str, target: &str, since_us: i64) -> Result<i64, StateError> {
    let count = Select::new(q::rows("actions"), vec![(SqlExpr::CountStar, None)]).filtered(vec![
        q::is_param("via"),
        q::is_param("target"),
        SqlExpr::bin(Op::Ge, q::col("done_us"), SqlExpr::Param),
        SqlExpr::InList(Box::new(q::col("status")), vec![SqlExpr::Param; 2]),
    ]);
    with_store(path, |conn| {
        conn.query_row(
            &q::text(Statement::select(count)),
            params![via, target, since_us, Status::Sent.name(), Status::WouldSend.name()],
            |r| r.get(0),
        )
    })
}

/// Findings raised (first seen) at or after `since` (ISO text), per (tenant, site):
/// what the storm breaker counts.
pub fn raised_since(path: &Path, since: &str) -> Result<Vec<(String, String, i64)>, StateError> {
    let mut s = Select::new(q::rows("findings"), vec![(q::col("tenant_id"), None), (q::col("site_id"), None), (SqlExpr::CountStar, None)])
        .filtered(vec![SqlExpr::bin(Op::Ge, q::col("first_seen"), SqlExpr::Param)]);
    s.group_by = vec![q::col("tenant_id"), q::col("site_id")];
    s.order_by = vec![OrderKey::asc(q::col("tenant_id")), OrderKey::asc(q::col("site_id"))];
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::text(Statement::select(s)))?;
        let rows = stmt.query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    })
}

/// A kill switch: `*` (global) or a tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KillSwitch {
    /// `*` or a tenant id.
    pub scope: String,
    /// On: nothing of that scope is sent.
    pub killed: bool,
    /// Who threw it last.
    pub by: String,
    /// When.
    pub at: String,
}

/// Every kill switch ever thrown, with its latest state.
pub fn switches(path: &Path) -> Result<Vec<KillSwitch>, StateError> {
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::select("action_switches", &["scope", "killed", "by", "at"], vec![], &["scope"]))?;
        let rows = stmt.query_map([], |r| Ok(KillSwitch { scope: r.get(0)?, killed: r.get(1)?, by: r.get(2)?, at: r.get(3)? }))?;
        rows.collect()
    })
}

/// Throws (or releases) a kill switch.
pub fn set_switch(path: &Path, s: &KillSwitch) -> Result<(), StateError> {
    let insert = Statement::Insert {
        table: TableName::in_schema(STORE_DB, "action_switches"),
        source: crate::sql::InsertSource::Values(vec![vec![SqlExpr::Param; 4]]),
        replace: true,
    };
    with_store(path, |conn| {
        conn.execute(&q::text(insert), params![s.scope, s.killed, s.by, s.at])?;
        Ok(())
    })
}

/// The lifecycle epochs of findings (see [`epoch`]) in one read: finding -> (times it
/// held again, when it last did). Findings that never held again are absent.
pub fn held_again(path: &Path, ids: &[i64]) -> Result<std::collections::HashMap<i64, (i64, String)>, StateError> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let mut s = Select::new(
        q::rows("finding_history"),
        vec![(q::col("finding_id"), None), (SqlExpr::CountStar, None), (SqlExpr::func(Func::Max, vec![q::col("happened_at")]), None)],
    )
    .filtered(vec![
        SqlExpr::eq(q::col("event"), SqlExpr::Str("holds again".into())),
        SqlExpr::InList(Box::new(q::col("finding_id")), vec![SqlExpr::Param; ids.len()]),
    ]);
    s.group_by = vec![q::col("finding_id")];
    with_store(path, |conn| {
        let mut stmt = conn.prepare(&q::text(Statement::select(s)))?;
        let rows = stmt.query_map(params_from_iter(ids.iter()), |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        rows.collect()
    })
}

/// A finding's lifecycle epoch and the time it began: 1 from `first_seen`, and one
/// more from each time it held again after it had cleared.
pub fn epoch(first_seen: &str, history: &[crate::store::HistoryEntry]) -> (i64, String) {
    let again: Vec<&crate::store::HistoryEntry> = history.iter().filter(|h| h.1 == "holds again").collect();
    match again.last() {
        Some(h) => (1 + again.len() as i64, h.0.clone()),
        None => (1, first_seen.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(key: &str) -> Planned {
        Planned {
            key: key.into(),
            finding_id: 7,
            epoch: 1,
            tenant_id: "T1".into(),
            site_id: "S1".into(),
            runbook: "RB".into(),
            step: 1,
            action: "sms_guard".into(),
            kind: Kind::Notify,
            via: "sms".into(),
            target: "guard:G1".into(),
            mode: Mode::DryRun,
            due_us: 1_000,
            critical: false,
            approval: None,
            payload: "{}".into(),
            payload_hash: crate::actions::sha256_hex("{}"),
        }
    }

    fn temp(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-outbox-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("state.duckdb")
    }

    #[test]
    fn a_key_is_enqueued_once_and_changes_are_compare_and_set() {
        let path = temp("once");
        let first = enqueue(&path, &[planned("k1")], "2025-01-01T00:00:00Z", 1).expect("enqueue");
        assert!(first[0].1);
        let again = enqueue(&path, &[planned("k1"), planned("k2")], "2025-01-01T00:05:00Z", 2).expect("enqueue");
        assert_eq!((again[0].1, again[0].0.id, again[0].0.created_at.as_str()), (false, first[0].0.id, "2025-01-01T00:00:00Z"));
        assert_eq!(again[0].0.plan, planned("k1"), "the stored plan reads back as planned");
        assert!(again[1].1);
        assert_eq!(list(&path, &ActionQuery::default()).expect("list").len(), 2);

        let id = first[0].0.id;
        let send = Change::to(Status::WouldSend, "would_send").set("done_us", Value::BigInt(5)).timeline("would send");
        assert!(transition(&path, id, &[Status::Pending], &send, "2025-01-01T00:06:00Z", 3).expect("moves"));
        // The same change again finds it no longer pending.
        assert!(!transition(&path, id, &[Status::Pending], &send, "2025-01-01T00:06:00Z", 3).expect("refused"));
        let events: Vec<String> = log(&path, id).expect("log").into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["enqueued", "would_send"]);
        // A decision applies only from its states.
        let refused = decide(&path, id, Decision::Approve, "ana", "ok", "2025-01-01T00:07:00Z", 4);
        assert_eq!(refused.err(), Some(DecideError::Refused { id, status: Status::WouldSend, decision: "approved" }));
        assert_eq!(decide(&path, 999, Decision::Replay, "ana", "x", "t", 4).err(), Some(DecideError::NotFound(999)));
        assert_eq!(delivered_since(&path, "sms", "guard:G1", 5).expect("count"), 1);
        assert_eq!(delivered_since(&path, "sms", "guard:G1", 6).expect("count"), 0);
        let only = ActionQuery { statuses: Some(vec![Status::Pending]), ..ActionQuery::default() };
        assert_eq!(list(&path, &only).expect("list").iter().map(|a| a.plan.key.as_str()).collect::<Vec<_>>(), ["k2"]);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn kill_switches_keep_their_latest_state() {
        let path = temp("switch");
        let s = |killed| KillSwitch { scope: "T1".into(), killed, by: "ana".into(), at: "2025-01-01T00:00:00Z".into() };
        set_switch(&path, &s(true)).expect("set");
        set_switch(&path, &s(false)).expect("set");
        assert_eq!(switches(&path).expect("read"), vec![s(false)]);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn epochs_count_holding_again() {
        let h = |at: &str, e: &str| (at.to_string(), e.to_string(), None, None);
        assert_eq!(epoch("t0", &[h("t0", "raised")]), (1, "t0".into()));
        let hist = [h("t0", "raised"), h("t1", "cleared"), h("t2", "holds again"), h("t3", "cleared"), h("t4", "holds again")];
        assert_eq!(epoch("t0", &hist), (3, "t4".into()));
    }
}
