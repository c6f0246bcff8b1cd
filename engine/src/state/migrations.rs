//! The state database's schema, as numbered migrations.
//!
//! Invariant: a state file attached through [`upgrade`] has exactly the tables of
//! [`MIGRATIONS`] up to [`CURRENT`]: an older file is upgraded in one transaction,
//! a file written by a newer Vigil is refused with a clear message (never read
//! with a schema this binary does not know). The version lives in `schema_version`.

use duckdb::Connection;

use crate::sql::{
    render_batch, render_statement, ColumnDef, Dialect, From, Func, InsertSource, OrderKey, Select, SqlExpr, SqlType, Statement, TableName,
};

/// One step of the schema: its version and the statements that reach it from the
/// version before, for the attached state database of the given alias.
struct Migration {
    version: i64,
    what: &'static str,
    statements: fn(&str) -> Vec<Statement>,
}

/// Every migration, in order. Add new ones at the end; never edit a shipped one.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, what: "findings store and baselines", statements: version_1 },
    Migration { version: 2, what: "inhibited findings", statements: version_2 },
    Migration { version: 3, what: "silences", statements: version_3 },
    Migration { version: 4, what: "late findings", statements: version_4 },
    Migration { version: 5, what: "runbook actions: outbox, action log, kill switches", statements: version_5 },
    Migration { version: 6, what: "the last rule set that checked", statements: version_6 },
];

/// A column: name, type, NOT NULL.
type Col = (&'static str, SqlType, bool);

fn table(db: &str, name: &str, columns: &[Col], primary_key: &[&str]) -> Statement {
    Statement::CreateTable {
        table: TableName::in_schema(db, name),
        columns: columns.iter().map(|(name, ty, not_null)| ColumnDef { name: name.to_string(), ty: *ty, not_null: *not_null }).collect(),
        primary_key: primary_key.iter().map(|k| k.to_string()).collect(),
        temporary: false,
    }
}

/// Version 6: the files of the last rule set that checked (`watch` and `serve` start
/// from it when the files on disk do not check after a crash), one row per file.
fn version_6(db: &str) -> Vec<Statement> {
    use SqlType::{BigInt, Varchar};
    vec![table(
        db,
        "rule_files",
        &[
            ("position", BigInt, true),
            ("name", Varchar, true),
            ("text", Varchar, true),
            ("revision", Varchar, true),
            ("saved_at", Varchar, true),
        ],
        &["position"],
    )]
}

/// Version 5: runbook actions (`vigil serve`): the outbox (one row per action, keyed by
/// its idempotency key), the append-only action log, and the kill switches.
fn version_5(db: &str) -> Vec<Statement> {
    use SqlType::{BigInt, Boolean, Varchar};
    let text = |name| (name, Varchar, true);
    let maybe = |name| (name, Varchar, false);
    let int = |name| (name, BigInt, true);
    let maybe_int = |name| (name, BigInt, false);
    vec![
        Statement::CreateSequence(TableName::in_schema(db, "action_ids")),
        table(
            db,
            "actions",
            &[
                int("id"),
                text("key"),
                int("finding_id"),
                int("epoch"),
                text("tenant_id"),
                text("site_id"),
                text("runbook"),
                int("step"),
                text("action"),
                text("kind"),
                text("via"),
                text("target"),
                text("mode"),
                ("critical", Boolean, true),
                maybe("approval"),
                text("status"),
                int("due_us"),
                int("next_wall_us"),
                int("attempts"),
                text("payload"),
                text("payload_hash"),
                text("created_at"),
                maybe_int("deadline_us"),
                maybe("decided_by"),
                maybe("last_error"),
                maybe_int("done_us"),
            ],
            &["key"],
        ),
        table(
            db,
            "action_log",
            &[
                int("action_id"),
                text("at"),
                int("wall_us"),
                text("event"),
                maybe("detail"),
                maybe("who"),
                maybe_int("code"),
                maybe_int("took_ms"),
            ],
            &[],
        ),
        table(db, "action_switches", &[text("scope"), ("killed", Boolean, true), text("by"), text("at")], &["scope"]),
    ]
}

/// Version 4: a finding raised at a past tick, from rows that arrived after it.
fn version_4(db: &str) -> Vec<Statement> {
    vec![Statement::AddColumn {
        table: TableName::in_schema(db, "findings"),
        column: ColumnDef { name: "late".into(), ty: SqlType::Boolean, not_null: false },
    }]
}

/// Version 3: silences with an owner, a reason and an expiry (`vigil serve`).
fn version_3(db: &str) -> Vec<Statement> {
    use SqlType::{BigInt, Varchar};
    let text = |name| (name, Varchar, true);
    let maybe = |name| (name, Varchar, false);
    vec![
        Statement::CreateSequence(TableName::in_schema(db, "silence_ids")),
        table(
            db,
            "silences",
            &[
                ("id", BigInt, true),
                text("tenant_id"),
                maybe("finding_type"),
                maybe("site_id"),
                maybe("guard_id"),
                text("owner"),
                text("reason"),
                text("created_at"),
                text("expires_at"),
                maybe("ended_at"),
                maybe("ended_by"),
                maybe("ended_how"),
            ],
            &["id"],
        ),
    ]
}

/// Version 2: a finding records the finding that inhibits it (`inhibit` lines).
fn version_2(db: &str) -> Vec<Statement> {
    vec![Statement::AddColumn {
        table: TableName::in_schema(db, "findings"),
        column: ColumnDef { name: "inhibited_by".into(), ty: SqlType::Varchar, not_null: false },
    }]
}

/// Version 1: the findings store (findings, history, ticks, reloads) and the
/// incremental baselines (watermarks, statistics, kept samples). Idempotent.
fn version_1(db: &str) -> Vec<Statement> {
    use SqlType::{BigInt, Boolean, Double, Varchar};
    let text = |name| (name, Varchar, true);
    let maybe = |name| (name, Varchar, false);
    let slot_key: [Col; 6] = [text("tenant_id"), text("site_id"), text("metric"), text("series"), text("level"), ("slot", BigInt, true)];
    vec![
        Statement::CreateSequence(TableName::in_schema(db, "finding_ids")),
        table(
            db,
            "findings",
            &[
                ("id", BigInt, true),
                text("finding_type"),
                text("tenant_id"),
                text("site_id"),
                maybe("guard_id"),
                maybe("entity_id"),
                text("rule"),
                text("category"),
                text("severity"),
                text("title"),
                text("evidence"),
                text("runbook"),
                ("suppressed", Boolean, true),
                text("status"),
                text("first_seen"),
                text("last_seen"),
                ("occurrences", BigInt, true),
                ("holding", Boolean, true),
                maybe("acknowledged_by"),
                maybe("acknowledged_at"),
                maybe("resolved_by"),
                maybe("resolved_at"),
                text("rule_hash"),
                text("sql_hash"),
                text("ruleset_revision"),
            ],
            &["id"],
        ),
        table(
            db,
            "finding_history",
            &[("finding_id", BigInt, true), text("happened_at"), text("event"), maybe("detail"), maybe("who")],
            &[],
        ),
        table(
            db,
            "ticks",
            &[("evaluated_us", BigInt, true), text("evaluated_at"), ("findings", BigInt, true), text("revision")],
            &["evaluated_us"],
        ),
        table(
            db,
            "reloads",
            &[
                text("attempted_at"),
                ("ok", Boolean, true),
                maybe("revision"),
                maybe("added"),
                maybe("changed"),
                maybe("removed"),
                maybe("error"),
            ],
            &[],
        ),
        table(db, "baseline_watermark", &[text("metric"), ("bucket_us", BigInt, true), ("folded_until", BigInt, true)], &["metric"]),
        table(
            db,
            "baseline_stats",
            &[&slot_key[..], &[("n", BigInt, true), ("mean", Double, true), ("m2", Double, true)]].concat(),
            &["tenant_id", "site_id", "metric", "series", "level", "slot"],
        ),
        table(db, "baseline_samples", &[&slot_key[..], &[("bucket_start", BigInt, true), ("x", Double, true)]].concat(), &[]),
    ]
}

/// The schema version this binary writes.
pub const CURRENT: i64 = 6;

/// The state layer's error: a file this binary must not use, or DuckDB's refusal.
#[derive(Debug)]
pub enum StateError {
    /// The file was written by a newer Vigil.
    Newer {
        /// Its version.
        found: i64,
    },
    /// A file from before versioning whose tables are not those of version 1.
    Layout {
        /// The first table that differs.
        table: String,
    },
    /// A metric's stored baseline was folded with another bucket size than it now has.
    BucketChanged {
        /// The metric.
        metric: String,
        /// Bucket size folded (microseconds).
        folded: i64,
        /// Bucket size declared now.
        declared: i64,
    },
    /// DuckDB refused a statement.
    Db(duckdb::Error),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Newer { found } => write!(
                f,
                "the state file has schema version {found}, written by a newer vigil; this one knows versions up to {CURRENT} \
                 (upgrade vigil, or point --state at another file)"
            ),
            StateError::Layout { table } => write!(
                f,
                "the state file predates schema versions and its table `{table}` is not the one this vigil knows; \
                 point --state at a new file (the old one is left as it is)"
            ),
            StateError::BucketChanged { metric, folded, declared } => write!(
                f,
                "metric `{metric}` was folded with {}-minute buckets and is now declared with {}: start a new state database (or rename the metric)",
                folded / 60_000_000,
                declared / 60_000_000
            ),
            StateError::Db(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StateError {}

impl std::convert::From<duckdb::Error> for StateError {
    fn from(e: duckdb::Error) -> Self {
        StateError::Db(e)
    }
}

/// Brings the state database attached as `db` to [`CURRENT`]; returns the version it had.
/// A file from before versioning (tables but no `schema_version`) counts as version 1.
pub fn upgrade(conn: &Connection, db: &str) -> Result<i64, StateError> {
    let run = |s: &Statement| conn.execute_batch(&render_statement(s, Dialect::DuckDb));
    let exists = |table: &str| -> Result<bool, duckdb::Error> {
        let probe = SqlExpr::TableExists { database: db.to_string(), table: table.to_string() };
        conn.query_row(&render_statement(&Statement::select(Select::new(From::Nothing, vec![(probe, None)])), Dialect::DuckDb), [], |r| {
            r.get(0)
        })
    };
    let has_version = exists("schema_version")?;
    let found = if has_version {
        let v = "v";
        let latest = SqlExpr::func(Func::Coalesce, vec![SqlExpr::func(Func::Max, vec![SqlExpr::col(v, "version")]), SqlExpr::Int(0)]);
        let select =
            Select::new(From::InSchema { schema: db.into(), name: "schema_version".into(), alias: v.into() }, vec![(latest, None)]);
        conn.query_row(&render_statement(&Statement::select(select), Dialect::DuckDb), [], |r| r.get(0))?
    } else {
        i64::from(exists("findings")? || exists("baseline_stats")?)
    };
    if found > CURRENT {
        return Err(StateError::Newer { found });
    }
    if found == 1 && !has_version {
        if let Some(table) = legacy_difference(conn, db)? {
            return Err(StateError::Layout { table });
        }
    }
    if found == CURRENT && has_version {
        return Ok(found);
    }
    run(&Statement::Begin)?;
    let applied = (|| -> Result<(), duckdb::Error> {
        run(&table(db, "schema_version", &[("version", SqlType::BigInt, true), ("what", SqlType::Varchar, true)], &["version"]))?;
        for m in MIGRATIONS {
            // A legacy file already has version 1's tables: its statements are idempotent.
            if m.version > found || (m.version == found && !has_version) {
                conn.execute_batch(&render_batch(&(m.statements)(db), Dialect::DuckDb))?;
                let record = Statement::Insert {
                    table: TableName::in_schema(db, "schema_version"),
                    source: InsertSource::Values(vec![vec![SqlExpr::Param, SqlExpr::Param]]),
                    replace: true,
                };
                conn.execute(&render_statement(&record, Dialect::DuckDb), duckdb::params![m.version, m.what])?;
            }
        }
        Ok(())
    })();
    match applied {
        Ok(()) => {
            run(&Statement::Commit)?;
            Ok(found)
        }
        Err(e) => {
            let _ = run(&Statement::Rollback);
            Err(StateError::Db(e))
        }
    }
}

/// The columns of every table of an attached database: table -> [(column, type)].
fn columns_of(conn: &Connection, database: &str) -> Result<std::collections::BTreeMap<String, Vec<(String, String)>>, duckdb::Error> {
    let c = "c";
    let mut select = Select::new(
        From::CatalogColumns { alias: c.into() },
        vec![(SqlExpr::col(c, "table_name"), None), (SqlExpr::col(c, "column_name"), None), (SqlExpr::col(c, "data_type"), None)],
    )
    .filtered(vec![SqlExpr::eq(SqlExpr::col(c, "database_name"), SqlExpr::Param)]);
    select.order_by = vec![OrderKey::asc(SqlExpr::col(c, "table_name")), OrderKey::asc(SqlExpr::col(c, "column_index"))];
    let mut stmt = conn.prepare(&render_statement(&Statement::select(select), Dialect::DuckDb))?;
    let rows = stmt.query_map([database], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut out: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for row in rows {
        let (table, column, ty) = row?;
        out.entry(table).or_default().push((column, ty));
    }
    Ok(out)
}

/// For a file from before versioning: the first table it shares with version 1 whose
/// columns differ (compared with version 1 built in memory).
fn legacy_difference(conn: &Connection, db: &str) -> Result<Option<String>, duckdb::Error> {
    const EXPECTED: &str = "vigil_expected_schema";
    let run = |s: &Statement| conn.execute_batch(&render_statement(s, Dialect::DuckDb));
    run(&Statement::Attach { path: ":memory:".into(), alias: EXPECTED.into(), read_only: false })?;
    let compared = (|| {
        conn.execute_batch(&render_batch(&version_1(EXPECTED), Dialect::DuckDb))?;
        let (found, expected) = (columns_of(conn, db)?, columns_of(conn, EXPECTED)?);
        Ok(found.into_iter().find(|(table, cols)| expected.get(table).is_some_and(|e| e != cols)).map(|(table, _)| table))
    })();
    let _ = run(&Statement::Detach(EXPECTED.into()));
    compared
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1 as the unversioned files of earlier releases wrote it (the text of
    /// those releases, kept here so that the typed tables are checked against it).
    const LEGACY_V1: &str = "CREATE SEQUENCE IF NOT EXISTS st.finding_ids;
         CREATE TABLE IF NOT EXISTS st.findings (
             id BIGINT PRIMARY KEY, finding_type VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL,
             guard_id VARCHAR, entity_id VARCHAR, rule VARCHAR NOT NULL, category VARCHAR NOT NULL, severity VARCHAR NOT NULL,
             title VARCHAR NOT NULL, evidence VARCHAR NOT NULL, runbook VARCHAR NOT NULL, suppressed BOOLEAN NOT NULL,
             status VARCHAR NOT NULL, first_seen VARCHAR NOT NULL, last_seen VARCHAR NOT NULL, occurrences BIGINT NOT NULL,
             holding BOOLEAN NOT NULL, acknowledged_by VARCHAR, acknowledged_at VARCHAR, resolved_by VARCHAR, resolved_at VARCHAR,
             rule_hash VARCHAR NOT NULL, sql_hash VARCHAR NOT NULL, ruleset_revision VARCHAR NOT NULL);
         CREATE TABLE IF NOT EXISTS st.finding_history (
             finding_id BIGINT NOT NULL, happened_at VARCHAR NOT NULL, event VARCHAR NOT NULL, detail VARCHAR, who VARCHAR);
         CREATE TABLE IF NOT EXISTS st.ticks (
             evaluated_us BIGINT PRIMARY KEY, evaluated_at VARCHAR NOT NULL, findings BIGINT NOT NULL, revision VARCHAR NOT NULL);
         CREATE TABLE IF NOT EXISTS st.reloads (
             attempted_at VARCHAR NOT NULL, ok BOOLEAN NOT NULL, revision VARCHAR, added VARCHAR, changed VARCHAR, removed VARCHAR,
             error VARCHAR);
         CREATE TABLE IF NOT EXISTS st.baseline_watermark (
             metric VARCHAR PRIMARY KEY, bucket_us BIGINT NOT NULL, folded_until BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS st.baseline_stats (
             tenant_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, series VARCHAR NOT NULL,
             level VARCHAR NOT NULL, slot BIGINT NOT NULL, n BIGINT NOT NULL, mean DOUBLE NOT NULL, m2 DOUBLE NOT NULL,
             PRIMARY KEY (tenant_id, site_id, metric, series, level, slot));
         CREATE TABLE IF NOT EXISTS st.baseline_samples (
             tenant_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, series VARCHAR NOT NULL,
             level VARCHAR NOT NULL, slot BIGINT NOT NULL, bucket_start BIGINT NOT NULL, x DOUBLE NOT NULL);";

    fn attached(path: &std::path::Path) -> Connection {
        let conn = crate::load::open_database().expect("database");
        conn.execute_batch(&format!("ATTACH {} AS st", crate::sql::string_literal(&path.display().to_string()))).expect("attach");
        conn
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vigil-migrations-{}-{name}.duckdb", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_new_file_gets_every_table_and_the_current_version() {
        let path = temp("new");
        let conn = attached(&path);
        assert_eq!(upgrade(&conn, "st").expect("upgrade"), 0);
        let v: i64 = conn.query_row("SELECT max(version) FROM st.schema_version", [], |r| r.get(0)).expect("version");
        assert_eq!(v, CURRENT);
        // Twice is a no-op.
        assert_eq!(upgrade(&conn, "st").expect("again"), CURRENT);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_from_before_versioning_is_stamped_and_kept() {
        let path = temp("legacy");
        let conn = attached(&path);
        conn.execute_batch(LEGACY_V1).expect("version 1 tables, unversioned");
        conn.execute_batch("INSERT INTO st.reloads (attempted_at, ok) VALUES ('then', true)").expect("a row");
        assert_eq!(upgrade(&conn, "st").expect("upgrade"), 1);
        let kept: String = conn.query_row("SELECT attempted_at FROM st.reloads", [], |r| r.get(0)).expect("row");
        assert_eq!(kept, "then");
        let v: i64 = conn.query_row("SELECT max(version) FROM st.schema_version", [], |r| r.get(0)).expect("version");
        assert_eq!(v, CURRENT);
        // Later versions were applied on top: version 2's column is there.
        let n: i64 = conn.query_row("SELECT count(inhibited_by) FROM st.findings", [], |r| r.get(0)).expect("version 2 column");
        assert_eq!(n, 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_version_1_file_is_upgraded_to_the_current_version_and_keeps_its_rows() {
        let path = temp("v1");
        let conn = attached(&path);
        conn.execute_batch(&render_batch(&version_1("st"), Dialect::DuckDb)).expect("version 1");
        conn.execute_batch(
            "CREATE TABLE st.schema_version (version BIGINT PRIMARY KEY, what VARCHAR NOT NULL);
             INSERT INTO st.schema_version VALUES (1, 'findings store and baselines');
             INSERT INTO st.reloads (attempted_at, ok) VALUES ('then', true);",
        )
        .expect("a version 1 file");
        assert_eq!(upgrade(&conn, "st").expect("upgrade"), 1);
        let v: i64 = conn.query_row("SELECT max(version) FROM st.schema_version", [], |r| r.get(0)).expect("version");
        assert_eq!(v, CURRENT);
        let silences: i64 = conn.query_row("SELECT count(*) FROM st.silences", [], |r| r.get(0)).expect("version 3's table");
        assert_eq!(silences, 0);
        let kept: String = conn.query_row("SELECT attempted_at FROM st.reloads", [], |r| r.get(0)).expect("row");
        assert_eq!(kept, "then");
        let n: i64 = conn.query_row("SELECT count(inhibited_by) FROM st.findings", [], |r| r.get(0)).expect("new column");
        assert_eq!(n, 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_from_before_versioning_with_other_tables_is_refused() {
        let path = temp("legacy-other");
        let conn = attached(&path);
        conn.execute_batch("CREATE TABLE st.findings (id BIGINT); CREATE TABLE st.ticks (evaluated_at VARCHAR PRIMARY KEY)").expect("old");
        let e = upgrade(&conn, "st").expect_err("refused");
        assert!(e.to_string().contains("table `findings` is not the one this vigil knows"), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_from_a_newer_vigil_is_refused() {
        let path = temp("newer");
        let conn = attached(&path);
        conn.execute_batch("CREATE TABLE st.schema_version (version BIGINT PRIMARY KEY, what VARCHAR); INSERT INTO st.schema_version VALUES (99, 'future')")
            .expect("newer");
        let e = upgrade(&conn, "st").expect_err("refused");
        assert!(e.to_string().contains("schema version 99, written by a newer vigil"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
