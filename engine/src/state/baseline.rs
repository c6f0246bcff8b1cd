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
//! - The samples are those anomaly rules use ([`anomaly::samples_ctes`]), so the
//!   state equals the batch statistics `audit` computes from the signals.
//! - A late row for a bucket already folded in is not folded in (said in README).

use std::path::Path;

use crate::anomaly::{self, Level, Metric};
use crate::load::Signals;
use crate::migrations::StateError;
use crate::sql::{
    render_batch, render_statement, Cte, Dialect, From, Func, InsertSource, JoinKind, Op, OrderKey, Query, Select, SqlExpr, Statement,
    TableName, Window,
};

/// The schema name the state database is attached as.
const STATE: &str = "vigil_state";

/// The temporary table of the samples a fold adds.
const NEW: &str = "vigil_new";

fn watermark_table(alias: &str) -> From {
    From::InSchema { schema: STATE.into(), name: "baseline_watermark".into(), alias: alias.into() }
}

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
    let _ = signals.conn.execute_batch(&render_statement(&Statement::Detach(STATE.into()), Dialect::DuckDb));
}

/// Folds every complete bucket ending after each metric's watermark and at or
/// before `until` into the state at `state`. `window`: samples kept per slot.
pub fn update(signals: &Signals, metrics: &[Metric], state: &Path, until: i64, window: u32) -> Result<Vec<Folded>, StateError> {
    let _guard = crate::store::state_lock();
    attach(signals, state)?;
    let result = update_attached(signals, metrics, until, window);
    if result.is_err() {
        let _ = signals.conn.execute_batch(&render_statement(&Statement::Rollback, Dialect::DuckDb));
    }
    detach(signals);
    result
}

fn update_attached(signals: &Signals, metrics: &[Metric], until: i64, window: u32) -> Result<Vec<Folded>, StateError> {
    anomaly::install_time_zones(&signals.conn)?;
    let mut out = Vec::new();
    for m in metrics {
        let mark: Option<(i64, i64)> = {
            let w = "w";
            let select =
                Select::new(watermark_table(w), vec![(SqlExpr::col(w, "folded_until"), None), (SqlExpr::col(w, "bucket_us"), None)])
                    .filtered(vec![SqlExpr::eq(SqlExpr::col(w, "metric"), SqlExpr::Param)]);
            let mut stmt = signals.conn.prepare(&render_statement(&Statement::select(select), Dialect::DuckDb))?;
            let mut rows = stmt.query_map([&m.name], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.next().transpose()?
        };
        if let Some((_, bucket)) = mark.filter(|(_, b)| *b != m.bucket) {
            return Err(StateError::BucketChanged { metric: m.name.clone(), folded: bucket, declared: m.bucket });
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
    let name = || SqlExpr::Str(m.name.clone());
    let col = SqlExpr::col;
    let named = |e: SqlExpr, n: &str| (e, Some(n.to_string()));
    // The new samples at every level.
    let mut ctes = anomaly::samples_ctes(m, until, from);
    let levels = Level::ALL
        .iter()
        .map(|l| {
            let mut items: Vec<_> = ["tenant_id", "site_id", "series"].iter().map(|c| named(col("sl", c), c)).collect();
            items.push(named(SqlExpr::Str(l.name().into()), "level"));
            items.push(named(anomaly::slot_expr(*l, "sl", m.bucket), "slot"));
            items.push(named(col("sl", "b"), "b"));
            items.push(named(col("sl", "x"), "x"));
            Select::new(From::table("sl", "sl"), items)
        })
        .collect();
    ctes.push(Cte::union_all("levels", levels));
    let new_samples = Query { ctes, body: Select::new(From::table("levels", "l"), vec![(SqlExpr::AllColumns, None)]) };
    let slot_keys = ["tenant_id", "site_id", "series", "level", "slot"];
    let same_slot = |a: &str, b: &str| SqlExpr::and_all(slot_keys.iter().map(|k| SqlExpr::eq(col(a, k), col(b, k))).collect());
    // Chan et al.: merge (n_a, mean_a, M2_a) with the batch (n_b, mean_b, M2_b).
    let (a, b) = ("a", "b");
    let x = || col("v", "x");
    let mut batch_items: Vec<_> = slot_keys.iter().map(|c| named(col("v", c), c)).collect();
    batch_items.push(named(SqlExpr::CountStar, "n"));
    batch_items.push(named(SqlExpr::func(Func::Avg, vec![x()]), "mean"));
    let var = SqlExpr::func(Func::Coalesce, vec![SqlExpr::func(Func::VarPop, vec![x()]), SqlExpr::Int(0)]);
    batch_items.push(named(SqlExpr::bin(Op::Mul, var, SqlExpr::CountStar), "m2"));
    let batch = Select {
        items: batch_items,
        from: From::table(NEW, "v"),
        group_by: slot_keys.iter().map(|c| col("v", c)).collect(),
        ..Select::default()
    };
    let stats = |alias: &str| From::InSchema { schema: STATE.into(), name: "baseline_stats".into(), alias: alias.into() };
    let on = SqlExpr::and_all(vec![same_slot(a, b).unwrap_or(SqlExpr::Bool(true)), SqlExpr::eq(col(a, "metric"), name())]);
    let merged_from =
        From::Derived { select: Box::new(batch), alias: b.into() }.join(JoinKind::Left, stats(a), on.unwrap_or(SqlExpr::Bool(true)));
    let (na, nb, ma, mb) = (col(a, "n"), col(b, "n"), col(a, "mean"), col(b, "mean"));
    let total = SqlExpr::bin(Op::Add, na.clone(), nb.clone());
    let first_batch = SqlExpr::IsNull(Box::new(na.clone()), false);
    let delta = SqlExpr::bin(Op::Sub, mb.clone(), ma.clone());
    let mean = SqlExpr::bin(Op::Add, ma.clone(), SqlExpr::bin(Op::Div, SqlExpr::bin(Op::Mul, delta.clone(), nb.clone()), total.clone()));
    let m2 = SqlExpr::bin(
        Op::Add,
        SqlExpr::bin(Op::Add, col(a, "m2"), col(b, "m2")),
        SqlExpr::bin(
            Op::Div,
            SqlExpr::bin(Op::Mul, SqlExpr::bin(Op::Mul, SqlExpr::bin(Op::Mul, delta.clone(), delta), na.clone()), nb.clone()),
            total,
        ),
    );
    let merged_items = vec![
        (col(b, "tenant_id"), None),
        (col(b, "site_id"), None),
        (name(), None),
        (col(b, "series"), None),
        (col(b, "level"), None),
        (col(b, "slot"), None),
        (SqlExpr::bin(Op::Add, SqlExpr::func(Func::Coalesce, vec![na, SqlExpr::Int(0)]), nb), None),
        (SqlExpr::case(vec![(first_batch.clone(), mb)], mean), None),
        (SqlExpr::case(vec![(first_batch, col(b, "m2"))], m2), None),
    ];
    let merged = Query { ctes: vec![], body: Select::new(merged_from, merged_items) };
    let keep_items = vec![
        (col("v", "tenant_id"), None),
        (col("v", "site_id"), None),
        (name(), None),
        (col("v", "series"), None),
        (col("v", "level"), None),
        (col("v", "slot"), None),
        (col("v", "b"), None),
        (col("v", "x"), None),
    ];
    let kept = Query { ctes: vec![], body: Select::new(From::table(NEW, "v"), keep_items) };
    // The samples beyond the window of each slot, newest first. After the first fold
    // only the slots this batch touched can hold too many.
    let samples = |alias: &str| From::InSchema { schema: STATE.into(), name: "baseline_samples".into(), alias: alias.into() };
    let rank = SqlExpr::OverInline(
        Box::new(SqlExpr::func(Func::RowNumber, vec![])),
        Box::new(Window {
            name: String::new(),
            partition_by: ["tenant_id", "site_id", "series", "level", "slot"].iter().map(|c| col("s", c)).collect(),
            order_by: vec![OrderKey::desc(col("s", "bucket_start"))],
            frame: None,
        }),
    );
    let mut ranked_from = samples("s");
    if from.is_some() {
        let mut touched = Select::new(From::table(NEW, "v"), slot_keys.iter().map(|c| named(col("v", c), c)).collect());
        touched.distinct = true;
        ranked_from = ranked_from.join(
            JoinKind::Inner,
            From::Derived { select: Box::new(touched), alias: "k".into() },
            same_slot("k", "s").unwrap_or(SqlExpr::Bool(true)),
        );
    }
    let ranked = Select::new(ranked_from, vec![named(col("s", "rowid"), "id"), named(rank, "rn")])
        .filtered(vec![SqlExpr::eq(col("s", "metric"), name())]);
    let beyond = Select::new(From::Derived { select: Box::new(ranked), alias: "r".into() }, vec![(col("r", "id"), None)])
        .filtered(vec![SqlExpr::bin(Op::Gt, col("r", "rn"), SqlExpr::Int(i64::from(window)))]);
    let statements = [
        Statement::Begin,
        Statement::CreateTempTableAs { name: NEW.into(), query: Box::new(new_samples) },
        Statement::Insert {
            table: TableName::in_schema(STATE, "baseline_stats"),
            source: InsertSource::Query(Box::new(merged)),
            replace: true,
        },
        Statement::Insert {
            table: TableName::in_schema(STATE, "baseline_samples"),
            source: InsertSource::Query(Box::new(kept)),
            replace: false,
        },
        Statement::Delete {
            table: TableName::in_schema(STATE, "baseline_samples"),
            filter: Some(SqlExpr::InSelect(Box::new(SqlExpr::bare("rowid")), Box::new(beyond))),
        },
        Statement::Insert {
            table: TableName::in_schema(STATE, "baseline_watermark"),
            source: InsertSource::Values(vec![vec![name(), SqlExpr::Int(m.bucket), SqlExpr::Int(until)]]),
            replace: true,
        },
        Statement::Commit,
    ];
    signals.conn.execute_batch(&render_batch(&statements, Dialect::DuckDb))?;
    let count = Select::new(From::table(NEW, "v"), vec![(SqlExpr::CountStar, None)])
        .filtered(vec![SqlExpr::eq(col("v", "level"), SqlExpr::Str(Level::AllHours.name().into()))]);
    signals.conn.query_row(&render_statement(&Statement::select(count), Dialect::DuckDb), [], |r| r.get(0))
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
        let col = SqlExpr::col;
        let named = |e: SqlExpr, n: &str| (e, Some(n.to_string()));
        let text = |v: &str| SqlExpr::Str(v.to_string());
        let cond = |r: &str| {
            let mut c = vec![
                SqlExpr::eq(col(r, "site_id"), text(site)),
                SqlExpr::eq(col(r, "metric"), text(metric)),
                SqlExpr::eq(col(r, "level"), text(level.name())),
            ];
            c.extend(tenant.map(|t| SqlExpr::eq(col(r, "tenant_id"), text(t))));
            c
        };
        let key = |x: &str, y: &str| {
            SqlExpr::and_all(["tenant_id", "series", "slot"].iter().map(|k| SqlExpr::eq(col(x, k), col(y, k))).collect())
                .unwrap_or(SqlExpr::Bool(true))
        };
        let samples = |alias: &str| From::InSchema { schema: STATE.into(), name: "baseline_samples".into(), alias: alias.into() };
        let by_slot = |r: &str| ["tenant_id", "series", "slot"].iter().map(|c| col(r, c)).collect::<Vec<_>>();
        let mut k_items: Vec<_> = ["tenant_id", "series", "slot"].iter().map(|c| named(col("q", c), c)).collect();
        k_items.push(named(SqlExpr::func(Func::Median, vec![col("q", "x")]), "med"));
        k_items.push(named(SqlExpr::CountStar, "kept"));
        let k = Select { group_by: by_slot("q"), ..Select::new(samples("q"), k_items).filtered(cond("q")) };
        let mut d_items: Vec<_> = ["tenant_id", "series", "slot"].iter().map(|c| named(col("y", c), c)).collect();
        let deviation = SqlExpr::func(Func::Abs, vec![SqlExpr::bin(Op::Sub, col("y", "x"), col("x", "med"))]);
        d_items.push(named(SqlExpr::func(Func::Median, vec![deviation]), "mad"));
        let d_from = samples("y").join(JoinKind::Inner, From::table("k", "x"), key("x", "y"));
        let d = Select { group_by: by_slot("y"), ..Select::new(d_from, d_items).filtered(cond("y")) };
        let n = col("y", "n");
        let std = SqlExpr::func(Func::Sqrt, vec![SqlExpr::bin(Op::Div, col("y", "m2"), SqlExpr::bin(Op::Sub, n.clone(), SqlExpr::Int(1)))]);
        let items = vec![
            (col("y", "tenant_id"), None),
            (col("y", "series"), None),
            (col("y", "slot"), None),
            (n.clone(), None),
            (col("y", "mean"), None),
            (SqlExpr::case(vec![(SqlExpr::bin(Op::Gt, n, SqlExpr::Int(1)), std)], SqlExpr::Null), None),
            (col("x", "med"), None),
            (col("d", "mad"), None),
            (SqlExpr::func(Func::Coalesce, vec![col("x", "kept"), SqlExpr::Int(0)]), None),
        ];
        let from = From::InSchema { schema: STATE.into(), name: "baseline_stats".into(), alias: "y".into() }
            .join(JoinKind::Left, From::table("k", "x"), key("x", "y"))
            .join(JoinKind::Left, From::table("d", "d"), key("d", "y"));
        let mut body = Select::new(from, items).filtered(cond("y"));
        body.order_by = by_slot("y").into_iter().map(OrderKey::asc).collect();
        let query = Query { ctes: vec![Cte::new("k", k), Cte::new("d", d)], body };
        let sql = render_statement(&Statement::query(query), Dialect::DuckDb);
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
        let w = "w";
        let minutes = SqlExpr::bin(Op::IntDiv, SqlExpr::col(w, "bucket_us"), SqlExpr::Int(60_000_000));
        let mut select = Select::new(
            watermark_table(w),
            vec![(SqlExpr::col(w, "metric"), None), (minutes, None), (SqlExpr::col(w, "folded_until"), None)],
        );
        select.order_by = vec![OrderKey::asc(SqlExpr::col(w, "metric"))];
        let mut stmt = signals.conn.prepare(&render_statement(&Statement::select(select), Dialect::DuckDb))?;
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
