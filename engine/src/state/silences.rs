//! Silences: an operator mutes the findings that match a tenant and optionally a
//! finding type, a site and a guard, with an owner, a reason and an expiry.
//!
//! Invariants:
//! - A silence never drops anything: matching findings are still evaluated,
//!   stored and shown (as silenced); a silence only says who chose not to be
//!   alerted, why and until when.
//! - Every start, change and end of a silence (lifted by someone, or expired) is on
//!   the timeline of each open finding it matches at that moment, in the same
//!   transaction as the change itself.
//! - Times are ISO-8601 UTC text (`YYYY-MM-DDTHH:MM:SSZ`), which orders as the
//!   instants it names.

use std::path::Path;

use duckdb::{params, Connection};

use crate::migrations::StateError;
use crate::sql::{Func, Select, SqlExpr, Statement};
use crate::store::{q, with_store, Stored};

/// What a silence matches: a tenant, and any of type, site and guard given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// The tenant (always).
    pub tenant_id: String,
    /// Only this finding type.
    #[serde(default)]
    pub finding_type: Option<String>,
    /// Only this site.
    #[serde(default)]
    pub site_id: Option<String>,
    /// Only this guard.
    #[serde(default)]
    pub guard_id: Option<String>,
}

impl Matcher {
    /// Does it match a finding?
    pub fn matches(&self, f: &Stored) -> bool {
        self.tenant_id == f.tenant_id && self.hits(&f.finding_type, &f.site_id, f.guard_id.as_deref())
    }

    /// Does it match a finding of its tenant with this type, site and guard?
    fn hits(&self, finding_type: &str, site: &str, guard: Option<&str>) -> bool {
        self.finding_type.as_deref().is_none_or(|t| t == finding_type)
            && self.site_id.as_deref().is_none_or(|s| s == site)
            && self.guard_id.as_deref().is_none_or(|g| guard == Some(g))
    }

    /// Matches every finding of the tenant (no type, site or guard given).
    pub fn whole_tenant(&self) -> bool {
        self.finding_type.is_none() && self.site_id.is_none() && self.guard_id.is_none()
    }

    /// `tenant T000, type X, site S, guard G` (what it names).
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("tenant {}", self.tenant_id)];
        parts.extend(self.finding_type.as_ref().map(|t| format!("type {t}")));
        parts.extend(self.site_id.as_ref().map(|s| format!("site {s}")));
        parts.extend(self.guard_id.as_ref().map(|g| format!("guard {g}")));
        parts.join(", ")
    }
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Silence {
    /// Its id.
    pub id: i64,
    /// What it matches.
    #[serde(flatten)]
    pub matcher: Matcher,
    /// Who owns it.
    pub owner: String,
    /// Why.
    pub reason: String,
    /// When it was made.
    pub created_at: String,
    /// When it ends by itself.
    pub expires_at: String,
    /// When it ended (lifted or expired).
    pub ended_at: Option<String>,
    /// Who lifted it.
    pub ended_by: Option<String>,
    /// `lifted` or `expired`.
    pub ended_how: Option<String>,
}

impl Silence {
    /// In force at `at` (ISO)?
    pub fn active(&self, at: &str) -> bool {
        self.ended_at.is_none() && self.created_at.as_str() <= at && at < self.expires_at.as_str()
    }
}

const COLUMNS: [&str; 12] = [
    "id",
    "tenant_id",
    "finding_type",
    "site_id",
    "guard_id",
    "owner",
    "reason",
    "created_at",
    "expires_at",
    "ended_at",
    "ended_by",
    "ended_how",
];

fn read_all(conn: &Connection) -> Result<Vec<Silence>, duckdb::Error> {
    let mut stmt = conn.prepare(&q::select("silences", &COLUMNS, vec![], &["id"]))?;
    let rows = stmt.query_map([], |r| {
        Ok(Silence {
            id: r.get(0)?,
            matcher: Matcher { tenant_id: r.get(1)?, finding_type: r.get(2)?, site_id: r.get(3)?, guard_id: r.get(4)? },
            owner: r.get(5)?,
            reason: r.get(6)?,
            created_at: r.get(7)?,
            expires_at: r.get(8)?,
            ended_at: r.get(9)?,
            ended_by: r.get(10)?,
            ended_how: r.get(11)?,
        })
    })?;
    rows.collect()
}

/// Every silence, by id.
pub fn list(path: &Path) -> Result<Vec<Silence>, StateError> {
    with_store(path, read_all)
}

/// Writes `event` (with `detail`, by `who`, at `at`) on the timeline of every open
/// finding `m` matches; returns their ids.
fn on_timelines(conn: &Connection, m: &Matcher, at: &str, event: &str, detail: &str, who: Option<&str>) -> Result<Vec<i64>, duckdb::Error> {
    let mut stmt = conn.prepare(&q::select(
        "findings",
        &["id", "finding_type", "site_id", "guard_id"],
        vec![q::open(), q::is_param("tenant_id")],
        &["id"],
    ))?;
    let rows = stmt.query_map(params![m.tenant_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?))
    })?;
    let mut ids = Vec::new();
    for row in rows {
        let (id, ty, site, guard) = row?;
        if m.hits(&ty, &site, guard.as_deref()) {
            ids.push(id);
        }
    }
    let history = q::insert_params("finding_history", 5);
    for id in &ids {
        conn.execute(&history, params![id, at, event, detail, who])?;
    }
    Ok(ids)
}

/// What a change did: the silence as it is now and the open findings whose timelines say so.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The silence.
    pub silence: Silence,
    /// Findings it matched at that moment.
    pub findings: Vec<i64>,
}

fn one(conn: &Connection, id: i64) -> Result<Option<Silence>, duckdb::Error> {
    Ok(read_all(conn)?.into_iter().find(|s| s.id == id))
}

/// Makes a silence at `at` until `expires_at`.
pub fn create(path: &Path, m: &Matcher, owner: &str, reason: &str, at: &str, expires_at: &str) -> Result<Changed, StateError> {
    with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        let next = SqlExpr::func(Func::NextVal, vec![SqlExpr::Str(format!("{}.silence_ids", crate::store::STORE_DB))]);
        let id: i64 =
            conn.query_row(&q::text(Statement::select(Select::new(crate::sql::From::Nothing, vec![(next, None)]))), [], |r| r.get(0))?;
        let mut values = vec![SqlExpr::Param; 9];
        values.extend([SqlExpr::Null, SqlExpr::Null, SqlExpr::Null]);
        conn.execute(
            &q::insert("silences", values),
            params![id, m.tenant_id, m.finding_type, m.site_id, m.guard_id, owner, reason, at, expires_at],
        )?;
        let detail = format!("silence #{id} ({}) by {owner} until {expires_at}: {reason}", m.describe());
        let findings = on_timelines(conn, m, at, "silenced", &detail, Some(owner))?;
        let silence = one(conn, id)?.ok_or(duckdb::Error::QueryReturnedNoRows)?;
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(Changed { silence, findings })
    })
}

/// Why a change to a silence was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum SilenceError {
    /// No such silence.
    NotFound(i64),
    /// It has ended already.
    Ended(i64),
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for SilenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SilenceError::NotFound(id) => write!(f, "no silence {id}"),
            SilenceError::Ended(id) => write!(f, "silence {id} has ended; make a new one"),
            SilenceError::Db(e) => f.write_str(e),
        }
    }
}

fn db(e: StateError) -> SilenceError {
    SilenceError::Db(e.to_string())
}

/// One change of a silence in force: `apply` writes it and says what to put on the
/// timelines (event, detail); all in one transaction.
fn change(
    path: &Path,
    id: i64,
    who: Option<&str>,
    at: &str,
    apply: impl FnOnce(&Connection, &Silence) -> Result<(&'static str, String), duckdb::Error>,
) -> Result<Changed, SilenceError> {
    let out = with_store(path, |conn| {
        conn.execute_batch(&q::text(Statement::Begin))?;
        let refused = match one(conn, id)? {
            None => Err(SilenceError::NotFound(id)),
            Some(s) if s.ended_at.is_some() => Err(SilenceError::Ended(id)),
            Some(s) => Ok(s),
        };
        let s = match refused {
            Ok(s) => s,
            Err(e) => {
                conn.execute_batch(&q::text(Statement::Rollback))?;
                return Ok(Err(e));
            }
        };
        let (event, detail) = apply(conn, &s)?;
        let findings = on_timelines(conn, &s.matcher, at, event, &detail, who)?;
        let silence = one(conn, id)?.ok_or(duckdb::Error::QueryReturnedNoRows)?;
        conn.execute_batch(&q::text(Statement::Commit))?;
        Ok(Ok(Changed { silence, findings }))
    });
    out.map_err(db)?
}

/// `UPDATE silences SET columns = ? WHERE id = ?`
fn update(columns: &[&str]) -> String {
    q::text(Statement::Update {
        table: crate::sql::TableName::in_schema(crate::store::STORE_DB, "silences"),
        set: columns.iter().map(|c| (c.to_string(), SqlExpr::Param)).collect(),
        filter: Some(q::is_param("id")),
    })
}

/// Changes the reason or the expiry of a silence in force.
pub fn edit(path: &Path, id: i64, reason: Option<&str>, expires_at: Option<&str>, who: &str, at: &str) -> Result<Changed, SilenceError> {
    change(path, id, Some(who), at, |conn, s| {
        let (reason, expires) = (reason.unwrap_or(&s.reason), expires_at.unwrap_or(&s.expires_at));
        conn.execute(&update(&["reason", "expires_at"]), params![reason, expires, id])?;
        Ok(("silence changed", format!("silence #{id} changed by {who}: until {expires}: {reason}")))
    })
}

/// Ends a silence: `lifted` by `who`, or `expired` (who: None).
pub fn end(path: &Path, id: i64, who: Option<&str>, at: &str) -> Result<Changed, SilenceError> {
    let how = if who.is_some() { "lifted" } else { "expired" };
    change(path, id, who, at, |conn, _| {
        conn.execute(&update(&["ended_at", "ended_by", "ended_how"]), params![at, who, how, id])?;
        Ok(match who {
            Some(w) => ("silence lifted", format!("silence #{id} lifted by {w}")),
            None => ("silence expired", format!("silence #{id} expired")),
        })
    })
}

/// Ends every silence in force whose expiry is at or before `at`.
pub fn expire_due(path: &Path, at: &str) -> Result<Vec<Changed>, SilenceError> {
    let due: Vec<i64> =
        list(path).map_err(db)?.into_iter().filter(|s| s.ended_at.is_none() && s.expires_at.as_str() <= at).map(|s| s.id).collect();
    let mut out = Vec::new();
    for id in due {
        out.push(end(path, id, None, at)?);
    }
    Ok(out)
}
