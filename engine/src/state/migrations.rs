//! The state database's schema, as numbered migrations.
//!
//! Invariant: a state file attached through [`upgrade`] has exactly the tables of
//! [`MIGRATIONS`] up to [`CURRENT`]: an older file is upgraded in one transaction,
//! a file written by a newer Vigil is refused with a clear message (never read
//! with a schema this binary does not know). The version lives in `schema_version`.

use duckdb::Connection;

/// One step of the schema: its version and the statements that reach it from the
/// version before. `{db}` stands for the attached state database's alias.
struct Migration {
    version: i64,
    what: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Add new ones at the end; never edit a shipped one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    what: "findings store and baselines",
    sql: "CREATE SEQUENCE IF NOT EXISTS {db}.finding_ids;
         CREATE TABLE IF NOT EXISTS {db}.findings (
             id BIGINT PRIMARY KEY, finding_type VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL,
             guard_id VARCHAR, entity_id VARCHAR, rule VARCHAR NOT NULL, category VARCHAR NOT NULL, severity VARCHAR NOT NULL,
             title VARCHAR NOT NULL, evidence VARCHAR NOT NULL, runbook VARCHAR NOT NULL, suppressed BOOLEAN NOT NULL,
             status VARCHAR NOT NULL, first_seen VARCHAR NOT NULL, last_seen VARCHAR NOT NULL, occurrences BIGINT NOT NULL,
             holding BOOLEAN NOT NULL, acknowledged_by VARCHAR, acknowledged_at VARCHAR, resolved_by VARCHAR, resolved_at VARCHAR,
             rule_hash VARCHAR NOT NULL, sql_hash VARCHAR NOT NULL, ruleset_revision VARCHAR NOT NULL);
         CREATE TABLE IF NOT EXISTS {db}.finding_history (
             finding_id BIGINT NOT NULL, happened_at VARCHAR NOT NULL, event VARCHAR NOT NULL, detail VARCHAR, who VARCHAR);
         CREATE TABLE IF NOT EXISTS {db}.ticks (
             evaluated_us BIGINT PRIMARY KEY, evaluated_at VARCHAR NOT NULL, findings BIGINT NOT NULL, revision VARCHAR NOT NULL);
         CREATE TABLE IF NOT EXISTS {db}.reloads (
             attempted_at VARCHAR NOT NULL, ok BOOLEAN NOT NULL, revision VARCHAR, added VARCHAR, changed VARCHAR, removed VARCHAR,
             error VARCHAR);
         CREATE TABLE IF NOT EXISTS {db}.baseline_watermark (
             metric VARCHAR PRIMARY KEY, bucket_us BIGINT NOT NULL, folded_until BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS {db}.baseline_stats (
             tenant_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, series VARCHAR NOT NULL,
             level VARCHAR NOT NULL, slot BIGINT NOT NULL, n BIGINT NOT NULL, mean DOUBLE NOT NULL, m2 DOUBLE NOT NULL,
             PRIMARY KEY (tenant_id, site_id, metric, series, level, slot));
         CREATE TABLE IF NOT EXISTS {db}.baseline_samples (
             tenant_id VARCHAR NOT NULL, site_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, series VARCHAR NOT NULL,
             level VARCHAR NOT NULL, slot BIGINT NOT NULL, bucket_start BIGINT NOT NULL, x DOUBLE NOT NULL);",
}];

/// The schema version this binary writes.
pub const CURRENT: i64 = 1;

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
            StateError::Db(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StateError {}

impl From<duckdb::Error> for StateError {
    fn from(e: duckdb::Error) -> Self {
        StateError::Db(e)
    }
}

/// Brings the state database attached as `db` to [`CURRENT`]; returns the version it had.
/// A file from before versioning (tables but no `schema_version`) counts as version 1.
pub fn upgrade(conn: &Connection, db: &str) -> Result<i64, StateError> {
    let count = |sql: String| -> Result<i64, duckdb::Error> { conn.query_row(&sql, [], |r| r.get(0)) };
    let has_version = count(format!(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = {} AND table_name = 'schema_version'",
        crate::sql::string_literal(db)
    ))? > 0;
    let found = if has_version {
        count(format!("SELECT coalesce(max(version), 0) FROM {db}.schema_version"))?
    } else {
        let legacy = count(format!(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = {} AND table_name IN ('findings', 'baseline_stats')",
            crate::sql::string_literal(db)
        ))? > 0;
        i64::from(legacy)
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
    conn.execute_batch("BEGIN TRANSACTION")?;
    let applied = (|| -> Result<(), duckdb::Error> {
        conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {db}.schema_version (version BIGINT PRIMARY KEY, what VARCHAR NOT NULL)"))?;
        for m in MIGRATIONS {
            // A legacy file already has version 1's tables: its statements are idempotent.
            if m.version > found || (m.version == found && !has_version) {
                conn.execute_batch(&m.sql.replace("{db}", db))?;
                conn.execute(&format!("INSERT OR REPLACE INTO {db}.schema_version VALUES (?, ?)"), duckdb::params![m.version, m.what])?;
            }
        }
        Ok(())
    })();
    match applied {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(found)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(StateError::Db(e))
        }
    }
}

/// For a file from before versioning: the first table it shares with version 1 whose
/// columns differ (compared with version 1 built in memory).
fn legacy_difference(conn: &Connection, db: &str) -> Result<Option<String>, duckdb::Error> {
    const EXPECTED: &str = "vigil_expected_schema";
    conn.execute_batch(&format!("ATTACH ':memory:' AS {EXPECTED}"))?;
    let compared = (|| {
        conn.execute_batch(&MIGRATIONS[0].sql.replace("{db}", EXPECTED))?;
        let columns = |database: &str| {
            format!(
                "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_index) AS cols \
                 FROM duckdb_columns() WHERE database_name = {} GROUP BY table_name",
                crate::sql::string_literal(database)
            )
        };
        let sql = format!(
            "SELECT f.table_name FROM ({}) f JOIN ({}) e ON e.table_name = f.table_name WHERE e.cols <> f.cols ORDER BY 1 LIMIT 1",
            columns(db),
            columns(EXPECTED)
        );
        let differs: Option<String> = conn.query_row(&sql, [], |r| r.get(0)).ok();
        Ok(differs)
    })();
    let _ = conn.execute_batch(&format!("DETACH {EXPECTED}"));
    compared
}

#[cfg(test)]
mod tests {
    use super::*;

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
        conn.execute_batch(&MIGRATIONS[0].sql.replace("{db}", "st")).expect("version 1 tables, unversioned");
        conn.execute_batch("INSERT INTO st.reloads (attempted_at, ok) VALUES ('then', true)").expect("a row");
        assert_eq!(upgrade(&conn, "st").expect("upgrade"), 1);
        let kept: String = conn.query_row("SELECT attempted_at FROM st.reloads", [], |r| r.get(0)).expect("row");
        assert_eq!(kept, "then");
        let v: i64 = conn.query_row("SELECT max(version) FROM st.schema_version", [], |r| r.get(0)).expect("version");
        assert_eq!(v, 1);
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
