//! Incremental baselines in the state database (`vigil baseline update|show`).
//!
//! Per (tenant, site, metric, series, level, slot) the state keeps a sample
//! count, mean and sum of squared deviations (Welford's M2), merged one batch
//! of new buckets at a time with Chan's formula, so history is never rescanned;
//! and the last `window` samples of each slot for the median and MAD.
//!
//! Invariants:
//! - Exactly once: a metric's watermark says every complete bucket ending at or
//!   before it is folded in; an update folds the buckets ending in
//!   (watermark, until] and moves the watermark, in one transaction. Running it
//!   twice changes nothing; hourly runs equal one run over the whole span.
//! - The samples are those anomaly rules use ([`anomaly::samples_sql`]), so the
//!   state equals the batch statistics `audit` computes from the signals.
//! - A late row for a bucket already folded in is not folded in (said in README).

use std::fmt::Write as _;
use std::path::Path;

use crate::anomaly::{self, Level, Metric};
use crate::load::Signals;
use crate::migrations::StateError;
use crate::sql::string_literal;

/// The schema name the state database is attached as.
const STATE: &str = "vigil_state";

/// What one update did, per metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The metric.
    pub metric: String,
    /// Watermark before (microseconds; None: nothing folded yet).
    pub from: Option<i64>,
    /// Watermark after.
    pub until: i64,
    /// Bucket samples folded in.
    pub samples: i64,
}

fn attach(signals: &Signals, state: &Path) -> Result<(), StateError> {
    crate::store::attach_file(&signals.conn, state, STATE)?;
    if let Err(e) = crate::migrations::upgrade(&signals.conn, STATE) {
        detach(signals);
        return Err(e);
    }
    Ok(())
}

fn detach(signals: &Signals) {
    let _ = signals.conn.execute_batch(&format!("DETACH {STATE}"));
}

/// Folds every complete bucket ending after each metric's watermark and at or
/// before `until` into the state at `state`. `window`: samples kept per slot.
pub fn update(signals: &Signals, metrics: &[Metric], state: &Path, until: i64, window: u32) -> Result<Vec<Folded>, StateError> {
    let _guard = crate::store::state_lock();
    attach(signals, state)?;
    let result = update_attached(signals, metrics, until, window).map_err(StateError::Db);
    if result.is_err() {
        let _ = signals.conn.execute_batch("ROLLBACK");
    }
    detach(signals);
    result
}

fn update_attached(signals: &Signals, metrics: &[Metric], until: i64, window: u32) -> Result<Vec<Folded>, duckdb::Error> {
    anomaly::install_time_zones(&signals.conn)?;
    let mut out = Vec::new();
    for m in metrics {
        let mark: Option<(i64, i64)> = {
            let mut stmt = signals.conn.prepare(&format!(
                "SELECT folded_until, bucket_us FROM {STATE}.baseline_watermark WHERE metric = {}",
                string_literal(&m.name)
            ))?;
            let mut rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.next().transpose()?
        };
        if let Some((_, bucket)) = mark.filter(|(_, b)| *b != m.bucket) {
            return Err(duckdb::Error::InvalidParameterName(format!(
                "metric `{}` was folded with {}-minute buckets and is now declared with {}: start a new state database (or rename the metric)",
                m.name,
                bucket / 60_000_000,
                m.bucket / 60_000_000
            )));
        }
        let from = mark.map(|(w, _)| w);
        if from.is_some_and(|w| w >= until) {
            out.push(Folded { metric: m.name.clone(), from, until: from.unwrap_or(until), samples: 0 });
            continue;
        }
        let samples = fold(signals, m, from, until, window)?;
        out.push(Folded { metric: m.name.clone(), from, until, samples });
    }
    Ok(out)
}

/// Folds the buckets of `m` ending in (from, until] in one transaction; returns how many.
fn fold(signals: &Signals, m: &Metric, from: Option<i64>, until: i64, window: u32) -> Result<i64, duckdb::Error> {
    let name = string_literal(&m.name);
    let mut sql = String::from("BEGIN TRANSACTION;\nCREATE OR REPLACE TEMP TABLE vigil_new AS\nWITH\n");
    sql.push_str(&anomaly::samples_sql(m, until, from));
    let levels: Vec<String> = Level::ALL
        .iter()
        .map(|l| {
            format!(
                "SELECT tenant_id, site_id, series, {} AS level, {} AS slot, b, x FROM sl",
                string_literal(l.name()),
                anomaly::slot_sql(*l, "sl", m.bucket)
            )
        })
        .collect();
    let _ = write!(sql, "\n{};\n", levels.join("\nUNION ALL "));
    // Chan et al.: merge (n_a, mean_a, M2_a) with the batch (n_b, mean_b, M2_b).
    let _ = write!(
        sql,
        "INSERT OR REPLACE INTO {STATE}.baseline_stats
         SELECT b.tenant_id, b.site_id, {name}, b.series, b.level, b.slot,
                coalesce(a.n, 0) + b.n,
                CASE WHEN a.n IS NULL THEN b.mean ELSE a.mean + (b.mean - a.mean) * b.n / (a.n + b.n) END,
                CASE WHEN a.n IS NULL THEN b.m2 ELSE a.m2 + b.m2 + (b.mean - a.mean) * (b.mean - a.mean) * a.n * b.n / (a.n + b.n) END
         FROM (SELECT tenant_id, site_id, series, level, slot, count(*) AS n, avg(x) AS mean, coalesce(var_pop(x), 0) * count(*) AS m2
               FROM vigil_new GROUP BY ALL) b
         LEFT JOIN {STATE}.baseline_stats a
           ON a.tenant_id = b.tenant_id AND a.site_id = b.site_id AND a.metric = {name} AND a.series = b.series
          AND a.level = b.level AND a.slot = b.slot;
         INSERT INTO {STATE}.baseline_samples SELECT tenant_id, site_id, {name}, series, level, slot, b, x FROM vigil_new;
         DELETE FROM {STATE}.baseline_samples WHERE rowid IN (
             SELECT rowid FROM (
                 SELECT s.rowid, row_number() OVER (PARTITION BY s.tenant_id, s.site_id, s.series, s.level, s.slot ORDER BY s.bucket_start DESC) AS rn
                 FROM {STATE}.baseline_samples s{touched}
                 WHERE s.metric = {name}) WHERE rn > {window});
         INSERT OR REPLACE INTO {STATE}.baseline_watermark VALUES ({name}, {bucket}, {until});
         COMMIT;",
        bucket = m.bucket,
        // After the first fold only the slots this batch touched can hold too many samples.
        touched = if from.is_some() {
            "\n                 JOIN (SELECT DISTINCT tenant_id, site_id, series, level, slot FROM vigil_new) k
                   ON k.tenant_id = s.tenant_id AND k.site_id = s.site_id AND k.series = s.series AND k.level = s.level AND k.slot = s.slot"
        } else {
            ""
        },
    );
    signals.conn.execute_batch(&sql)?;
    let samples: i64 = signals.conn.query_row(
        &format!("SELECT count(*) FROM vigil_new WHERE level = {}", string_literal(Level::AllHours.name())),
        [],
        |r| r.get(0),
    )?;
    Ok(samples)
}

/// One slot of a stored baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStats {
    /// The slot number (hour-of-week: Monday 00:00 = 0).
    pub slot: i64,
    /// Samples folded in.
    pub n: i64,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1), None below 2 samples.
    pub std: Option<f64>,
    /// Median of the kept samples.
    pub median: Option<f64>,
    /// Median absolute deviation of the kept samples.
    pub mad: Option<f64>,
    /// Samples kept for the median.
    pub kept: i64,
}

/// A metric's stored baseline for one site (of one tenant, or of each tenant that has
/// that site id): (tenant, series, slot statistics), by tenant, series, slot.
pub fn show(
    signals: &Signals,
    state: &Path,
    tenant: Option<&str>,
    site: &str,
    metric: &str,
    level: Level,
) -> Result<Vec<(String, String, SlotStats)>, StateError> {
    let _guard = crate::store::state_lock();
    attach(signals, state)?;
    let result = (|| {
        let mut cond = format!(
            "site_id = {} AND metric = {} AND level = {}",
            string_literal(site),
            string_literal(metric),
            string_literal(level.name())
        );
        if let Some(t) = tenant {
            cond.push_str(&format!(" AND tenant_id = {}", string_literal(t)));
        }
        let key = "x.tenant_id = y.tenant_id AND x.series = y.series AND x.slot = y.slot";
        let sql = format!(
            "WITH k AS (
                SELECT tenant_id, series, slot, median(x) AS med, count(*) AS kept FROM {STATE}.baseline_samples WHERE {cond} GROUP BY ALL),
             d AS (
                SELECT y.tenant_id, y.series, y.slot, median(abs(y.x - x.med)) AS mad
                FROM (SELECT * FROM {STATE}.baseline_samples WHERE {cond}) y JOIN k x ON {key} GROUP BY ALL)
             SELECT y.tenant_id, y.series, y.slot, y.n, y.mean, CASE WHEN y.n > 1 THEN sqrt(y.m2 / (y.n - 1)) END, x.med, d.mad, coalesce(x.kept, 0)
             FROM (SELECT * FROM {STATE}.baseline_stats WHERE {cond}) y
             LEFT JOIN k x ON {key}
             LEFT JOIN d ON d.tenant_id = y.tenant_id AND d.series = y.series AND d.slot = y.slot
             ORDER BY y.tenant_id, y.series, y.slot"
        );
        let mut stmt = signals.conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                SlotStats {
                    slot: r.get(2)?,
                    n: r.get(3)?,
                    mean: r.get(4)?,
                    std: r.get(5)?,
                    median: r.get(6)?,
                    mad: r.get(7)?,
                    kept: r.get(8)?,
                },
            ))
        })?;
        rows.collect::<Result<Vec<_>, _>>()
    })();
    detach(signals);
    result.map_err(StateError::Db)
}

/// The watermark of each metric in the state: (metric, bucket minutes, folded until).
pub fn watermarks(signals: &Signals, state: &Path) -> Result<Vec<(String, i64, i64)>, StateError> {
    let _guard = crate::store::state_lock();
    attach(signals, state)?;
    let result = (|| {
        let mut stmt = signals
            .conn
            .prepare(&format!("SELECT metric, bucket_us // 60000000, folded_until FROM {STATE}.baseline_watermark ORDER BY 1"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<Vec<_>, _>>()
    })();
    detach(signals);
    result.map_err(StateError::Db)
}

/// The label of a slot: `Mon 09:00` (hour-of-week), `09:00` (hour-of-day), `all`.
pub fn slot_label(level: Level, slot: i64, bucket: i64) -> String {
    let per_day = 86_400_000_000 / bucket;
    let minutes = |s: i64| {
        let m = s * bucket / 60_000_000;
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    match level {
        Level::HourOfWeek => {
            let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            format!("{} {}", days.get((slot / per_day) as usize).unwrap_or(&"?"), minutes(slot % per_day))
        }
        Level::HourOfDay => minutes(slot),
        Level::AllHours => "all".into(),
    }
}
