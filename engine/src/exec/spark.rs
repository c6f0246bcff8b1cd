//! The Spark backend (`--engine spark`): the rules' statements run on a Spark cluster
//! through Spark Connect, over the same signal rows the embedded DuckDB loaded.
//!
//! Invariants:
//! - Signals are loaded and checked by [`crate::load`] exactly as for DuckDB, then staged:
//!   each signal table (and the time zone table) is written as one Parquet file into a
//!   directory the cluster reads, and registered as a temporary view of the session
//!   (`vigil_raw_<table>`, `vigil_tz`) with the contract's column types. Both backends
//!   therefore see the same rows.
//! - Statements come from the one renderer in [`Dialect::Spark`]; nothing else makes SQL.
//! - Every Arrow column comes back as the value DuckDB would give (BIGINT, DOUBLE,
//!   BOOLEAN, text); any other type is an error, never a guess.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array_spark::cast::AsArray;
use arrow_array_spark::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType};
use arrow_array_spark::{Array, RecordBatch};
use arrow_schema_spark::DataType;
use duckdb::types::{TimeUnit, Value as DbValue};
use spark_connect::{SparkSession, SparkSessionBuilder};

use super::load::{Remote, Signals};
use crate::schema;
use crate::sql::{render_statement, CopyFormat, Dialect, From, Query, Select, SqlExpr, Statement, TableName, RAW_SCHEMA};

/// A Spark Connect session with the signals staged as its temporary views.
pub struct Spark {
    session: SparkSession,
    remote: String,
    /// How long the server streams one result before it ends the stream and expects the
    /// client to reattach (`spark.connect.execute.reattachable.senderMaxStreamDuration`,
    /// 2 minutes unless set; `None`: unlimited). The Rust client takes such an ended
    /// stream for the whole result, so a statement that runs this long may have lost rows.
    stream_limit: Option<std::time::Duration>,
    /// The staging directory, removed with the session when it belongs to it.
    owned_stage: Option<PathBuf>,
}

impl Spark {
    /// Connects to `remote` (`sc://host:15002`) and checks that it answers.
    pub fn connect(remote: &str) -> Result<Spark, String> {
        let session =
            SparkSessionBuilder::new().remote(remote).get_or_create().map_err(|e| format!("cannot connect to Spark at {remote}: {e}"))?;
        let mut spark = Spark { session, remote: remote.to_string(), stream_limit: None, owned_stage: None };
        spark.query("SELECT 1", 1).map_err(|e| format!("Spark at {remote} does not answer: {e}"))?;
        // The statements are written for these, whatever the cluster's defaults: instants
        // shown and read in UTC, and ANSI arithmetic (zero divisors are made NULL first).
        for setting in ["SET spark.sql.session.timeZone = UTC", "SET spark.sql.ansi.enabled = true"] {
            spark.query(setting, 0).map_err(|e| format!("Spark at {remote}: `{setting}`: {e}"))?;
        }
        let setting = spark.query(&format!("SET {STREAM_LIMIT}"), 2)?;
        let value = match setting.first().and_then(|row| row.get(1)) {
            Some(DbValue::Text(v)) => v.clone(),
            _ => String::new(),
        };
        spark.stream_limit = stream_limit(&value);
        Ok(spark)
    }

    /// Stages `signals` for this session: writes every signal table and the time zone
    /// table as Parquet into `stage.dir` and registers them as the session's temporary
    /// views over the same files as the cluster names them (`stage.read_as`).
    pub fn stage(&self, signals: &Signals, stage: &Stage) -> Result<(), String> {
        let dir = &stage.dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the staging directory {}: {e}", dir.display()))?;
        let dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
        let read_as = match &stage.read_as {
            Some(uri) => uri.trim_end_matches('/').to_string(),
            None => dir.to_string_lossy().into_owned(),
        };
        let places = Places { dir: &dir, read_as: &read_as };
        crate::anomaly::install_time_zones(&signals.conn).map_err(|e| e.to_string())?;
        for table in schema::contract_tables().filter(|t| !t.derived) {
            let columns: Vec<(String, crate::sql::SqlType)> =
                table.columns.iter().map(|c| (c.name.to_string(), c.storage.sql_type())).collect();
            let from = From::Raw { name: table.name.into(), alias: "r".into() };
            self.stage_one(
                signals,
                from,
                &format!("{RAW_SCHEMA}_{}", table.name),
                &columns,
                &places,
                TableName::in_schema(RAW_SCHEMA, table.name),
            )?;
        }
        let tz = crate::anomaly::TZ_TABLE;
        let columns = [
            ("timezone", crate::sql::SqlType::Varchar),
            ("from_us", crate::sql::SqlType::BigInt),
            ("until_us", crate::sql::SqlType::BigInt),
            ("offset_us", crate::sql::SqlType::BigInt),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .collect::<Vec<_>>();
        self.stage_one(signals, From::table(tz, "r"), tz, &columns, &places, TableName::local(tz))
    }

    /// Writes one relation of the local database to `dir/<file>.parquet` and makes `view`
    /// a temporary view of it in the session, each column cast to its type.
    fn stage_one(
        &self,
        signals: &Signals,
        from: From,
        file: &str,
        columns: &[(String, crate::sql::SqlType)],
        places: &Places,
        view: TableName,
    ) -> Result<(), String> {
        let path: PathBuf = places.dir.join(format!("{file}.parquet"));
        let all = Select::new(from, columns.iter().map(|(c, _)| (SqlExpr::col("r", c), Some(c.clone()))).collect());
        let copy = Statement::CopyTo {
            query: Box::new(Query { ctes: vec![], body: all }),
            path: path.to_string_lossy().into_owned(),
            format: CopyFormat::Parquet,
        };
        let path_text = format!("{}/{file}.parquet", places.read_as);
        signals.conn.execute_batch(&render_statement(&copy, Dialect::DuckDb)).map_err(|e| format!("staging {file}: {e}"))?;
        let items = columns.iter().map(|(c, ty)| (SqlExpr::cast(SqlExpr::col("p", c), *ty), Some(c.clone()))).collect();
        let select = Select::new(From::Parquet { path: path_text, alias: "p".into() }, items);
        let create = Statement::CreateView { view, select: Box::new(select) };
        self.query(&render_statement(&create, Dialect::Spark), 0).map(|_| ()).map_err(|e| format!("registering {file} in Spark: {e}"))
    }
}

impl Drop for Spark {
    /// Releases the server's session (and its temporary views) instead of leaving it to
    /// the server's idle timeout.
    fn drop(&mut self) {
        let _ = self.session.stop();
        if let Some(dir) = &self.owned_stage {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Remote for Spark {
    fn dialect(&self) -> Dialect {
        Dialect::Spark
    }

    fn query(&self, sql: &str, width: usize) -> Result<Vec<Vec<DbValue>>, String> {
        let started = std::time::Instant::now();
        let batches = self.session.sql(sql).and_then(|df| df.collect_record_batches()).map_err(|e| e.to_string())?;
        if let Some(limit) = self.stream_limit.filter(|limit| started.elapsed() >= *limit) {
            return Err(format!(
                "the statement ran {:.0} s on Spark at {}, past the server's result stream limit of {} s, so its result may be cut short \
                 (the Rust client does not reattach); set {STREAM_LIMIT}=0 on the Spark Connect server",
                started.elapsed().as_secs_f64(),
                self.remote,
                limit.as_secs()
            ));
        }
        let mut out = Vec::new();
        for batch in &batches {
            rows_of(batch, width, &mut out)?;
        }
        Ok(out)
    }

    fn interrupt(&self) {
        // Best effort: a statement that ends meanwhile has nothing to stop.
        let _ = self.session.interrupt_all();
    }
}

/// The server setting that ends a result stream after a time.
const STREAM_LIMIT: &str = "spark.connect.execute.reattachable.senderMaxStreamDuration";

/// The stream limit a server reports (`120000ms`, `2m`, `0`): `None` when unlimited
/// (0), 2 minutes (Spark's default) when it cannot be read.
fn stream_limit(value: &str) -> Option<std::time::Duration> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let ms_per = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Some(std::time::Duration::from_secs(120)),
    };
    match number.parse::<u64>() {
        Ok(0) => None,
        Ok(n) => Some(std::time::Duration::from_millis(n.saturating_mul(ms_per))),
        Err(_) => Some(std::time::Duration::from_secs(120)),
    }
}

/// A staging directory as this machine writes it and as the cluster reads it.
struct Places<'a> {
    dir: &'a Path,
    read_as: &'a str,
}

/// Where the signals are staged for a session.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The directory on this machine the Parquet files are written to.
    pub dir: PathBuf,
    /// How the cluster names that directory (`s3a://bucket/vigil` for a bucket mounted
    /// here at `dir`, `file:///shared/vigil` for a shared disk); `None`: `dir` itself.
    pub read_as: Option<String>,
    /// The directory belongs to the session (it must be new): it is removed when the
    /// session is dropped, also when staging fails.
    pub owned: bool,
}

impl Stage {
    /// A directory the cluster reads at the same path, kept after the run.
    pub fn at(dir: &Path) -> Stage {
        Stage { dir: dir.to_path_buf(), read_as: None, owned: false }
    }
}

/// Connects to Spark, stages the signals and attaches the session to them: from then on
/// the rules' statements run on Spark. `watch` and `serve` stage every tick's rows in a
/// directory and session of their own, so the rows of two ticks evaluated at once (a tick
/// and its late rows) never mix.
pub fn attach(signals: &mut Signals, remote: &str, stage: &Stage) -> Result<(), String> {
    let mut spark = Spark::connect(remote)?;
    if stage.owned {
        spark.owned_stage = Some(stage.dir.clone());
    }
    spark.stage(signals, stage)?;
    signals.remote = Some(Arc::new(spark));
    Ok(())
}

/// Appends the rows of a batch, each with `width` values.
fn rows_of(batch: &RecordBatch, width: usize, out: &mut Vec<Vec<DbValue>>) -> Result<(), String> {
    if batch.num_columns() < width {
        return Err(format!("Spark returned {} columns, {width} expected", batch.num_columns()));
    }
    let first = out.len();
    out.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(width)));
    for c in 0..width {
        let column = batch.column(c);
        for (i, row) in out[first..].iter_mut().enumerate() {
            row.push(value_at(column.as_ref(), i).map_err(|e| format!("column {}: {e}", batch.schema().field(c).name()))?);
        }
    }
    Ok(())
}

/// One Arrow value as the DuckDB value the engine reads.
fn value_at(a: &dyn Array, i: usize) -> Result<DbValue, String> {
    if a.is_null(i) {
        return Ok(DbValue::Null);
    }
    Ok(match a.data_type() {
        DataType::Null => DbValue::Null,
        DataType::Boolean => DbValue::Boolean(a.as_boolean().value(i)),
        DataType::Int8 => DbValue::BigInt(i64::from(a.as_primitive::<Int8Type>().value(i))),
        DataType::Int16 => DbValue::BigInt(i64::from(a.as_primitive::<Int16Type>().value(i))),
        DataType::Int32 => DbValue::BigInt(i64::from(a.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => DbValue::BigInt(a.as_primitive::<Int64Type>().value(i)),
        DataType::Float32 => DbValue::Double(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => DbValue::Double(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => DbValue::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => DbValue::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => DbValue::Text(a.as_string_view().value(i).to_string()),
        DataType::Timestamp(arrow_schema_spark::TimeUnit::Microsecond, _) => {
            DbValue::Timestamp(TimeUnit::Microsecond, a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        other => return Err(format!("Spark returned a value of type {other}, which the engine does not read")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_limit_is_read_as_the_server_reports_it() {
        assert_eq!(stream_limit("120000ms"), Some(std::time::Duration::from_secs(120)));
        assert_eq!(stream_limit("2m"), Some(std::time::Duration::from_secs(120)));
        assert_eq!(stream_limit("0"), None);
        assert_eq!(stream_limit("0ms"), None);
        assert_eq!(stream_limit("<undefined>"), Some(std::time::Duration::from_secs(120)));
    }
}
