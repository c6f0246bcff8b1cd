//! The plan of an anomaly rule: its samples, baselines and firing rows as one
//! typed query over a relation of ticks (rendered by [`crate::sql`] like every
//! pattern rule's plan).
//!
//! Invariants:
//! - The samples are the same for `audit`, `replay` and the stored baselines of
//!   [`crate::baseline`]: [`samples_ctes`] is their one definition.
//! - Buckets are aligned to the site's clock through the time zone table of
//!   [`crate::anomaly::install_time_zones`] (UTC offset periods from chrono-tz).
//! - Only complete buckets count (bucket end <= T).

use crate::anomaly::{AnomalyRule, Direction, Level, Metric, Statistic, TZ_TABLE};
use crate::plan::ScopedValue;
use crate::schema::Word;
use crate::sql::{Cte, Frame, From, Func, JoinKind, Op, OrderKey, Query, Select, SqlExpr, SqlType, Window, TICK, TICKS};
use crate::syntax::ast::MetricAgg;

/// Microseconds per minute.
const MINUTE: i64 = 60_000_000;
/// Microseconds per day.
const DAY: i64 = 1440 * MINUTE;
/// Microseconds per week.
const WEEK: i64 = 7 * DAY;
/// The largest difference of UTC offsets across a DST change we allow for (2 hours).
const DST_SLACK: i64 = 120 * MINUTE;

fn bin(op: Op, a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::bin(op, a, b)
}
fn add(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    bin(Op::Add, a, b)
}
fn sub(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    bin(Op::Sub, a, b)
}
fn rem(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    bin(Op::Mod, a, b)
}
fn int(i: i64) -> SqlExpr {
    SqlExpr::Int(i)
}
fn col(rel: &str, c: &str) -> SqlExpr {
    SqlExpr::col(rel, c)
}
fn us(e: SqlExpr) -> SqlExpr {
    SqlExpr::func(Func::EpochMicros, vec![e])
}
fn not_null(e: SqlExpr) -> SqlExpr {
    SqlExpr::IsNull(Box::new(e), true)
}
fn coalesce(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::func(Func::Coalesce, vec![a, b])
}
fn named(e: SqlExpr, name: &str) -> (SqlExpr, Option<String>) {
    (e, Some(name.to_string()))
}
/// `x mod m` in [0, m) for any sign of x.
fn floor_mod(x: SqlExpr, m: i64) -> SqlExpr {
    rem(add(rem(x, int(m)), int(m)), int(m))
}
/// Equal `tenant_id`, `site_id` (and more key columns) of two relations.
fn same_keys(a: &str, b: &str, keys: &[&str]) -> SqlExpr {
    SqlExpr::and_all(keys.iter().map(|k| SqlExpr::eq(col(a, k), col(b, k))).collect()).unwrap_or(SqlExpr::Bool(true))
}
/// `JOIN vigil_tz z`: the UTC offset period of `zone` holding the instant `time` (µs).
fn offset_period(left: From, zone: SqlExpr, time: SqlExpr) -> From {
    let on = SqlExpr::and_all(vec![
        SqlExpr::eq(col("z", "timezone"), zone),
        bin(Op::Ge, time.clone(), col("z", "from_us")),
        bin(Op::Lt, time, col("z", "until_us")),
    ]);
    left.join(JoinKind::Inner, From::table(TZ_TABLE, "z"), on.unwrap_or(SqlExpr::Bool(true)))
}
/// `LEFT JOIN site_zone sz` on the row's tenant and site.
fn site_zone_of(rows: From, r: &str) -> From {
    rows.join(JoinKind::Left, From::table("site_zone", "sz"), same_keys("sz", r, &["tenant_id", "site_id"]))
}

/// The start of the bucket (site clock, via `z.offset_us`) holding the instant `time`.
fn align(time: SqlExpr, bucket: i64) -> SqlExpr {
    sub(time.clone(), floor_mod(add(time, col("z", "offset_us")), bucket))
}

/// The samples of a metric as of `now`, as CTEs ending in `sl`: one row per
/// (tenant_id, site_id, series, b) for every complete bucket (b + bucket <= now)
/// with `x` its value and `lt` its site-local start (microseconds, wall clock).
/// Buckets are aligned to the site's clock. A bucket is a sample when rows fall
/// in it, or (count metrics) when a guard of the site was on duty at some moment
/// of it (within the shift's starts_at..ends_at, checked in and not yet checked
/// out, as of T): then an empty bucket counts as 0, not as missing. `after`: only
/// buckets ending after it (incremental baseline updates).
pub fn samples_ctes(m: &Metric, now: i64, after: Option<i64>) -> Vec<Cte> {
    samples_ctes_with(m, now, after, None)
}

/// [`samples_ctes`]; with `week_slot_only: Some(span)`, rows are first narrowed to
/// those that can fall in the hour-of-week slot of a bucket observed at a tick in
/// (now - span, now] (same time of the week, give or take a DST shift): exact for
/// those slots, and only their samples may then be used.
fn samples_ctes_with(m: &Metric, now: i64, after: Option<i64>, week_slot_only: Option<i64>) -> Vec<Cte> {
    let s = m.bucket;
    let t = now;
    let r = "r0";
    let time = col(r, m.time_column);
    let series = match m.per {
        Some(p) => coalesce(col(r, p), SqlExpr::Str(String::new())),
        None => SqlExpr::Str(String::new()),
    };
    let value = match m.value_column {
        Some(v) => SqlExpr::cast(col(r, v), SqlType::Double),
        None => SqlExpr::Num(1.0),
    };
    let mut filter = vec![not_null(time.clone())];
    // A row without a value adds nothing to a sum and makes no sample.
    filter.extend(m.value_column.map(|v| not_null(col(r, v))));
    filter.push(bin(Op::Lt, time.clone(), SqlExpr::Timestamp(t)));
    filter.push(not_null(col(r, "tenant_id")));
    filter.push(not_null(col(r, "site_id")));
    if let Some(ev) = m.table.event_time {
        filter.push(bin(Op::Le, col(r, ev), SqlExpr::Timestamp(t)));
    }
    if let Some(w) = after {
        filter.push(bin(Op::Ge, time.clone(), SqlExpr::Timestamp(w - s)));
    }
    if let Some(f) = &m.filter {
        filter.push(coalesce(crate::plan::row_condition_sql(f, m.table, now), SqlExpr::Bool(false)));
    }
    // An event of the slot observed at tick T, k weeks back, lies (T - t) = kW + d
    // before T with d in (-DST, 2S + DST): the observed bucket starts between T - 2S
    // and T - S. For ticks up to `span` before the last one, d grows by up to span.
    let in_week_slot = |instant: SqlExpr, reach: i64, span: i64| {
        let d = rem(sub(int(t), instant), int(WEEK));
        bin(Op::Or, bin(Op::Lt, d.clone(), int(reach + DST_SLACK + span)), bin(Op::Gt, d, int(WEEK - DST_SLACK)))
    };
    if let Some(span) = week_slot_only {
        filter.push(in_week_slot(us(time.clone()), 2 * s, span));
    }
    let mut ctes = Vec::new();
    let sites = Select {
        items: vec![
            named(col("s", "tenant_id"), "tenant_id"),
            named(col("s", "site_id"), "site_id"),
            named(SqlExpr::func(Func::Min, vec![col("s", "timezone")]), "timezone"),
        ],
        from: From::Raw { name: "sites".into(), alias: "s".into() },
        group_by: vec![col("s", "tenant_id"), col("s", "site_id")],
        ..Select::default()
    };
    ctes.push(Cte::new("site_zone", sites));
    let zone = coalesce(col("sz", "timezone"), SqlExpr::Str("UTC".into()));
    let ev = Select {
        items: vec![
            named(col(r, "tenant_id"), "tenant_id"),
            named(col(r, "site_id"), "site_id"),
            named(series, "series"),
            named(zone.clone(), "zone"),
            named(us(time), "t"),
            named(value, "v"),
        ],
        from: site_zone_of(From::Raw { name: m.table.name.into(), alias: r.into() }, r),
        filter: SqlExpr::and_all(filter),
        ..Select::default()
    };
    ctes.push(Cte::new("ev", ev));
    let ev_v = col("e", "v");
    let x = match m.aggregate {
        MetricAgg::Sum => SqlExpr::func(Func::Sum, vec![ev_v]),
        MetricAgg::Avg => SqlExpr::func(Func::Avg, vec![ev_v]),
        MetricAgg::Min => SqlExpr::func(Func::Min, vec![ev_v]),
        MetricAgg::Max => SqlExpr::func(Func::Max, vec![ev_v]),
        // The latest row's value; equal times break by value, so the result is deterministic.
        MetricAgg::Last => SqlExpr::LastBy(Box::new(ev_v.clone()), vec![col("e", "t"), ev_v]),
    };
    let keys = ["tenant_id", "site_id", "series", "zone"];
    let b = align(col("e", "t"), s);
    let mut items: Vec<_> = keys.iter().map(|k| named(col("e", k), k)).collect();
    items.push(named(b.clone(), "b"));
    items.push(named(x, "x"));
    let mut group_by: Vec<SqlExpr> = keys.iter().map(|k| col("e", k)).collect();
    group_by.push(b);
    let agg = Select { items, from: offset_period(From::table("ev", "e"), col("e", "zone"), col("e", "t")), group_by, ..Select::default() };
    ctes.push(Cte::new("agg", agg));
    let ends_after = |rel: &str| after.map(|w| bin(Op::Gt, add(col(rel, "b"), int(s)), int(w)));
    let sample_keys = ["tenant_id", "site_id", "series", "zone", "b"];
    if m.zero_while_on_duty {
        let h = "h";
        // The on-duty interval [i, o) of each checked-in shift as of T.
        let checked_out_by_t =
            SqlExpr::case(vec![(bin(Op::Le, col(r, "checked_out_at"), SqlExpr::Timestamp(t)), col(r, "checked_out_at"))], SqlExpr::Null);
        let mut shift_filter = vec![
            not_null(col(r, "checked_in_at")),
            bin(Op::Le, col(r, "checked_in_at"), SqlExpr::Timestamp(t)),
            not_null(col(r, "starts_at")),
            not_null(col(r, "ends_at")),
        ];
        if let Some(w) = after {
            let left = SqlExpr::func(Func::Least, vec![coalesce(us(col(r, "checked_out_at")), int(t)), us(col(r, "ends_at"))]);
            shift_filter.push(bin(Op::Gt, left, int(w - s)));
        }
        let shifts = Select {
            items: vec![
                named(col(r, "tenant_id"), "tenant_id"),
                named(col(r, "site_id"), "site_id"),
                named(zone, "zone"),
                named(us(SqlExpr::func(Func::Greatest, vec![col(r, "starts_at"), col(r, "checked_in_at")])), "i"),
                named(SqlExpr::func(Func::Least, vec![coalesce(us(checked_out_by_t), int(t)), us(col(r, "ends_at")), int(t)]), "o"),
            ],
            from: site_zone_of(From::Raw { name: "shifts".into(), alias: r.into() }, r),
            filter: SqlExpr::and_all(shift_filter),
            ..Select::default()
        };
        let duty = Select {
            distinct: true,
            items: vec![
                named(col(h, "tenant_id"), "tenant_id"),
                named(col(h, "site_id"), "site_id"),
                named(SqlExpr::Str(String::new()), "series"),
                named(col(h, "zone"), "zone"),
                named(SqlExpr::func(Func::UnnestRange, vec![align(col(h, "i"), s), col(h, "o"), int(s)]), "b"),
            ],
            from: offset_period(From::Derived { select: Box::new(shifts), alias: h.into() }, col(h, "zone"), col(h, "i")),
            ..Select::default()
        };
        ctes.push(Cte::new("duty", duty));
        let pick =
            |rel: &str| -> Select { Select::new(From::table(rel, rel), sample_keys.iter().map(|k| named(col(rel, k), k)).collect()) };
        // Narrowed like the rows: a bucket starts up to one bucket before its rows.
        let duty_keys = pick("duty").filtered(week_slot_only.map(|span| in_week_slot(col("duty", "b"), 3 * s, span)).into_iter().collect());
        ctes.push(Cte { name: "keys".into(), parts: vec![pick("agg"), duty_keys], distinct: true });
        let mut items: Vec<_> = sample_keys.iter().map(|c| named(col("k", c), c)).collect();
        items.push(named(coalesce(col("a", "x"), SqlExpr::Num(0.0)), "x"));
        let from = From::table("keys", "k").join(
            JoinKind::Left,
            From::table("agg", "a"),
            same_keys("a", "k", &["tenant_id", "site_id", "series", "b"]),
        );
        let mut filter = vec![bin(Op::Le, add(col("k", "b"), int(s)), int(t))];
        filter.extend(ends_after("k"));
        ctes.push(Cte::new("samples", Select::new(from, items).filtered(filter)));
    } else {
        let mut items: Vec<_> = sample_keys.iter().map(|c| named(col("a", c), c)).collect();
        items.push(named(col("a", "x"), "x"));
        let mut filter = vec![bin(Op::Le, add(col("a", "b"), int(s)), int(t))];
        filter.extend(ends_after("a"));
        ctes.push(Cte::new("samples", Select::new(From::table("agg", "a"), items).filtered(filter)));
    }
    let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b", "x"].iter().map(|c| named(col("s", c), c)).collect();
    items.push(named(add(col("s", "b"), col("z", "offset_us")), "lt"));
    ctes.push(Cte::new("sl", Select::new(offset_period(From::table("samples", "s"), col("s", "zone"), col("s", "b")), items)));
    ctes
}

/// The slot of a level over a relation with `lt` (site-local bucket start); the
/// SQL twin of [`Level::slot`], shared by anomaly rules and stored baselines.
pub fn slot_expr(level: Level, rel: &str, bucket: i64) -> SqlExpr {
    let per_day = DAY / bucket;
    let lt = col(rel, "lt");
    let of_day = bin(Op::IntDiv, floor_mod(lt.clone(), DAY), int(bucket));
    match level {
        // Floor division by a day (integer division truncates towards zero before 1970).
        Level::HourOfWeek => {
            let day = bin(Op::IntDiv, sub(lt.clone(), floor_mod(lt, DAY)), int(DAY));
            add(bin(Op::Mul, floor_mod(add(day, int(3)), 7), int(per_day)), of_day)
        }
        Level::HourOfDay => of_day,
        Level::AllHours => int(0),
    }
}

/// Do two anomaly rules compute the same samples and baselines (they may differ in
/// direction, threshold, severities and finding type)? Then one statement serves both.
pub fn same_baselines(a: &AnomalyRule, b: &AnomalyRule) -> bool {
    a.metric.name == b.metric.name
        && a.levels == b.levels
        && a.statistic == b.statistic
        && a.window == b.window
        && a.min_spread.to_bits() == b.min_spread.to_bits()
        && a.half_life.to_bits() == b.half_life.to_bits()
        && a.exclude_outliers.map(f64::to_bits) == b.exclude_outliers.map(f64::to_bits)
}

/// Does the rule judge earlier buckets too (confirmation over several buckets, or
/// hysteresis on clearing)?
fn needs_history(rule: &AnomalyRule) -> bool {
    rule.confirm > 1 || rule.clear_below.is_some()
}

/// The expected value of the rule's statistic in a relation of baselines.
fn center_of(rule: &AnomalyRule, rel: &str) -> SqlExpr {
    match rule.statistic {
        Statistic::MeanStd => col(rel, "mean"),
        Statistic::MedianMad => col(rel, "med"),
        Statistic::Ewma => col(rel, "ewm"),
    }
}

/// The spread of the rule's statistic in a relation of baselines; never 0.
fn spread_of(rule: &AnomalyRule, rel: &str) -> SqlExpr {
    let min_spread = SqlExpr::Num(rule.min_spread);
    let positive = |c: &str| bin(Op::Gt, coalesce(col(rel, c), int(0)), int(0));
    match rule.statistic {
        Statistic::MeanStd => SqlExpr::case(vec![(positive("sd"), col(rel, "sd"))], min_spread),
        Statistic::Ewma => SqlExpr::case(vec![(positive("ews"), col(rel, "ews"))], min_spread),
        Statistic::MedianMad => {
            let mean_dev = SqlExpr::func(Func::MeanAbsDeviation, vec![col(rel, "xs"), col(rel, "med")]);
            SqlExpr::case(
                vec![
                    (bin(Op::Gt, col(rel, "mad"), int(0)), bin(Op::Mul, SqlExpr::Num(1.4826), col(rel, "mad"))),
                    (bin(Op::Gt, mean_dev.clone(), int(0)), bin(Op::Mul, SqlExpr::Num(1.2533), mean_dev)),
                ],
                min_spread,
            )
        }
    }
}

/// [`crate::anomaly::young_factor`] in SQL, for a threshold `t` and `n` samples.
fn young_factor_sql(t: SqlExpr, n: SqlExpr) -> SqlExpr {
    let nu = sub(n.clone(), SqlExpr::Num(1.0));
    let p = |k: i64| SqlExpr::func(Func::Pow, vec![t.clone(), int(k)]);
    let mul = |a: SqlExpr, b: SqlExpr| bin(Op::Mul, a, b);
    let div = |a: SqlExpr, b: SqlExpr| bin(Op::Div, a, b);
    let terms = [
        div(add(p(3), t.clone()), mul(SqlExpr::Num(4.0), nu.clone())),
        div(
            add(add(mul(SqlExpr::Num(5.0), p(5)), mul(SqlExpr::Num(16.0), p(3))), mul(SqlExpr::Num(3.0), t.clone())),
            mul(SqlExpr::Num(96.0), mul(nu.clone(), nu.clone())),
        ),
        div(
            sub(
                add(add(mul(SqlExpr::Num(3.0), p(7)), mul(SqlExpr::Num(19.0), p(5))), mul(SqlExpr::Num(17.0), p(3))),
                mul(SqlExpr::Num(15.0), t.clone()),
            ),
            mul(SqlExpr::Num(384.0), SqlExpr::func(Func::Pow, vec![nu, int(3)])),
        ),
    ];
    let q = terms.into_iter().fold(t.clone(), add);
    let widened = div(mul(q, SqlExpr::func(Func::Sqrt, vec![add(SqlExpr::Num(1.0), div(SqlExpr::Num(1.0), n.clone()))])), t);
    SqlExpr::case(vec![(bin(Op::Ge, n, SqlExpr::Num(2.0)), widened)], SqlExpr::Num(1.0))
}

/// The baselines of level `i` for the samples of the partitions `filter` keeps, as
/// `{prefix}{i}`: with `exclude_outliers`, a first pass judges every sample against
/// all earlier ones, and one at or beyond the bound is kept out (NULL) of the second.
fn level_ctes(ctes: &mut Vec<Cte>, rule: &AnomalyRule, i: usize, filter: SqlExpr, prefix: &str) {
    let out = format!("{prefix}{i}");
    let Some(beyond) = rule.exclude_outliers else {
        baseline_ctes(ctes, rule, i, "slotted", Some(filter), &out);
        return;
    };
    let p = format!("{prefix}_pass{i}");
    baseline_ctes(ctes, rule, i, "slotted", Some(filter), &p);
    let judged = bin(Op::Ge, coalesce(col(&p, "n"), int(0)), int(i64::from(rule.levels[i].1.max(2))));
    let z = bin(Op::Div, sub(col(&p, "x"), center_of(rule, &p)), spread_of(rule, &p));
    let outlier = SqlExpr::and_all(vec![judged, bin(Op::Ge, SqlExpr::func(Func::Abs, vec![z]), SqlExpr::Num(beyond))])
        .unwrap_or(SqlExpr::Bool(false));
    let slot_name = format!("slot{i}");
    let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b", &slot_name].iter().map(|c| named(col(&p, c), c)).collect();
    items.push(named(SqlExpr::case(vec![(coalesce(outlier, SqlExpr::Bool(false)), SqlExpr::Null)], col(&p, "x")), "x"));
    let kept = format!("{prefix}_kept{i}");
    ctes.push(Cte::new(&kept, Select::new(From::table(&p, &p), items)));
    baseline_ctes(ctes, rule, i, &kept, None, &out);
}

/// CTEs ending in `out`: for every sample of `input` (keys, b, slot{i}, x; NULL x is
/// kept out), the baseline of level `i` from the earlier samples of its slot: n, mean,
/// sd, and the rule's own statistic (med, mad, xs; or ewm, ews). `filter` narrows the
/// samples whose partitions are computed.
fn baseline_ctes(ctes: &mut Vec<Cte>, rule: &AnomalyRule, i: usize, input: &str, filter: Option<SqlExpr>, out: &str) {
    let slot_name = format!("slot{i}");
    let mut partition: Vec<SqlExpr> = ["tenant_id", "site_id", "series"].iter().map(|k| col("sl", k)).collect();
    partition.push(col("sl", &slot_name));
    let window = |name: &str, start: Option<u32>| Window {
        name: name.into(),
        partition_by: partition.clone(),
        order_by: vec![OrderKey::asc(col("sl", "b"))],
        frame: Some(Frame { start, end: 1 }),
    };
    let over = |e: SqlExpr, f: Func, w: &str| SqlExpr::Over(Box::new(SqlExpr::func(f, vec![e])), w.into());
    let x = col("sl", "x");
    let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b", &slot_name, "x"].iter().map(|c| named(col("sl", c), c)).collect();
    items.push(named(over(x.clone(), Func::Count, "earlier"), "n"));
    items.push(named(over(x.clone(), Func::Avg, "earlier"), "mean"));
    items.push(named(over(x.clone(), Func::StddevSamp, "earlier"), "sd"));
    let mut windows = vec![window("earlier", None)];
    match rule.statistic {
        Statistic::MeanStd => {}
        Statistic::MedianMad => {
            items.push(named(over(x.clone(), Func::Median, "recent"), "med"));
            items.push(named(over(x.clone(), Func::Mad, "recent"), "mad"));
            items.push(named(over(x, Func::List, "recent"), "xs"));
            windows.push(window("recent", Some(rule.window)));
        }
        Statistic::Ewma => {
            ewma_ctes(ctes, rule, input, filter, items, windows, &partition, out);
            return;
        }
    }
    ctes.push(Cte::new(out, Select { items, from: From::table(input, "sl"), filter, windows, ..Select::default() }));
}

/// The EWMA baseline as window sums (no per-row lists). A sample `j` positions back
/// (1 for the latest earlier sample) weighs 0.5^(j / half_life); weights are written
/// 2^(e / h) with e a sample's position within its block of B = 500 half-lives, so no
/// power leaves the double range, and a window of at most B samples spans at most two
/// blocks (one even, one odd): sums are kept per block parity and brought to the row's
/// anchor when read. The samples kept out (NULL x) keep their positions and weigh 0.
#[allow(clippy::too_many_arguments)]
fn ewma_ctes(
    ctes: &mut Vec<Cte>,
    rule: &AnomalyRule,
    input: &str,
    filter: Option<SqlExpr>,
    mut items: Vec<(SqlExpr, Option<String>)>,
    mut windows: Vec<Window>,
    partition: &[SqlExpr],
    out: &str,
) {
    let h = rule.half_life;
    let block = (500.0 * h).ceil().max(1.0) as i64;
    let recent = i64::from(rule.window).min(block) as u32;
    let num = SqlExpr::Num;
    let pow2 = |e: SqlExpr| SqlExpr::func(Func::Pow, vec![num(2.0), e]);
    // The row's position in its slot (0-based), its block, and its exponent in the block.
    let idx = format!("{out}_idx");
    let position = sub(SqlExpr::Over(Box::new(SqlExpr::func(Func::RowNumber, vec![])), "all".into()), int(1));
    let all = Window { name: "all".into(), partition_by: partition.to_vec(), order_by: vec![OrderKey::asc(col("sl", "b"))], frame: None };
    ctes.push(Cte::new(
        &idx,
        Select {
            items: vec![(SqlExpr::Star("sl".into()), None), named(position, "j")],
            from: From::table(input, "sl"),
            filter,
            windows: vec![all],
            ..Select::default()
        },
    ));
    let blk = bin(Op::IntDiv, col("sl", "j"), int(block));
    let e = bin(Op::Div, SqlExpr::cast(sub(col("sl", "j"), bin(Op::Mul, blk.clone(), int(block))), SqlType::Double), num(h));
    let parity = |p: i64| {
        SqlExpr::and_all(vec![bin(Op::Eq, floor_mod(blk.clone(), 2), int(p)), not_null(col("sl", "x"))]).unwrap_or(SqlExpr::Bool(false))
    };
    let x = col("sl", "x");
    let terms = |p: i64| {
        let w = SqlExpr::case(vec![(parity(p), pow2(e.clone()))], num(0.0));
        let ww = SqlExpr::case(vec![(parity(p), pow2(bin(Op::Mul, num(2.0), e.clone())))], num(0.0));
        let wx = SqlExpr::case(vec![(parity(p), bin(Op::Mul, pow2(e.clone()), x.clone()))], num(0.0));
        let wxx = SqlExpr::case(vec![(parity(p), bin(Op::Mul, pow2(e.clone()), bin(Op::Mul, x.clone(), x.clone())))], num(0.0));
        [(w, format!("w{p}")), (ww, format!("ww{p}")), (wx, format!("wx{p}")), (wxx, format!("wxx{p}"))]
    };
    let sums: Vec<(SqlExpr, String)> = terms(0).into_iter().chain(terms(1)).collect();
    windows.push(Window {
        name: "recent".into(),
        partition_by: partition.to_vec(),
        order_by: vec![OrderKey::asc(col("sl", "b"))],
        frame: Some(Frame { start: Some(recent), end: 1 }),
    });
    items.push(named(col("sl", "j"), "j"));
    items.push(named(SqlExpr::Over(Box::new(SqlExpr::func(Func::Count, vec![col("sl", "x")])), "recent".into()), "kn"));
    for (term, name) in sums {
        items.push(named(SqlExpr::Over(Box::new(SqlExpr::func(Func::Sum, vec![term])), "recent".into()), &format!("s_{name}")));
    }
    let raw = format!("{out}_raw");
    ctes.push(Cte::new(&raw, Select { items, from: From::table(&idx, "sl"), windows, ..Select::default() }));
    // Read at the row's anchor a = its block's start: the same block's sums times
    // 2^((a - j) / h), the previous block's times 2^((a - B - j) / h).
    let w = "w";
    let rblk = bin(Op::IntDiv, col(w, "j"), int(block));
    let anchor = bin(Op::Mul, rblk.clone(), int(block));
    let even = bin(Op::Eq, floor_mod(rblk, 2), int(0));
    let f_same = pow2(bin(Op::Div, SqlExpr::cast(sub(anchor.clone(), col(w, "j")), SqlType::Double), num(h)));
    let f_prev = pow2(bin(Op::Div, SqlExpr::cast(sub(sub(anchor, int(block)), col(w, "j")), SqlType::Double), num(h)));
    let read = |name: &str, squared: bool| {
        let (fs, fp) = if squared {
            (bin(Op::Mul, f_same.clone(), f_same.clone()), bin(Op::Mul, f_prev.clone(), f_prev.clone()))
        } else {
            (f_same.clone(), f_prev.clone())
        };
        let s = |p: i64| coalesce(col(w, &format!("s_{name}{p}")), num(0.0));
        SqlExpr::case(
            vec![(even.clone(), add(bin(Op::Mul, s(0), fs.clone()), bin(Op::Mul, s(1), fp.clone())))],
            add(bin(Op::Mul, s(1), fs), bin(Op::Mul, s(0), fp)),
        )
    };
    let anchored = format!("{out}_w");
    ctes.push(Cte::new(
        &anchored,
        Select::new(
            From::table(&raw, w),
            vec![
                (SqlExpr::Star(w.into()), None),
                named(read("w", false), "sw"),
                named(read("ww", true), "sww"),
                named(read("wx", false), "swx"),
                named(read("wxx", false), "swxx"),
            ],
        ),
    ));
    // mean = sum w x / W; sd = sqrt((sum w x^2 - mean^2 W) / (W - sum w^2 / W)), NULL under 2 values.
    let sw = col(w, "sw");
    let nz = |e: SqlExpr| SqlExpr::func(Func::NullIf, vec![e, num(0.0)]);
    let mean = bin(Op::Div, col(w, "swx"), nz(sw.clone()));
    let dev = sub(col(w, "swxx"), bin(Op::Mul, bin(Op::Mul, mean.clone(), mean.clone()), sw.clone()));
    let var = bin(Op::Div, SqlExpr::func(Func::Greatest, vec![dev, num(0.0)]), nz(sub(sw.clone(), bin(Op::Div, col(w, "sww"), nz(sw)))));
    let sd = SqlExpr::case(vec![(bin(Op::Ge, col(w, "kn"), int(2)), SqlExpr::func(Func::Sqrt, vec![var]))], SqlExpr::Null);
    ctes.push(Cte::new(
        out,
        Select::new(From::table(&anchored, w), vec![(SqlExpr::Star(w.into()), None), named(mean, "ewm"), named(sd, "ews")]),
    ));
}

/// The query of an anomaly rule over the ticks it is rendered for (ascending;
/// `first`/`last` are the first and last of them): one row per firing series and
/// tick with rule_index, tenant_id, site_id, series, b (bucket start), observed,
/// expected, z, n, level, spread, severity, suppressed, tick, threshold.
pub fn evaluation(rule: &AnomalyRule, first: i64, last: i64) -> Query {
    statement(&[(rule, &[])], first, last, false)
}

/// The `explain` form at one time: every observed series, stable or not, with the
/// samples of each level and whether it fires.
pub fn explain(rule: &AnomalyRule, now: i64) -> Query {
    statement(&[(rule, &[])], now, now, true)
}

/// The statement for a set of ticks. Samples are read as of the last tick: a
/// bucket that is complete at an earlier tick T holds only rows at or before T
/// (its rows' times are before its end), so its value is the same as of T. Each
/// sample's baseline is computed once, by window functions over the earlier
/// samples of its slot; a tick then only picks the bucket it observes.
///
/// `rules` share their baselines ([`same_baselines`]); the first one's metric,
/// levels and statistic are used, and each rule adds its own firing rows with its
/// index in `rules` as the first column. Each rule comes with its overrides
/// (`threshold` per tenant or site).
pub fn statement(rules: &[(&AnomalyRule, &[ScopedValue])], first: i64, last: i64, explain: bool) -> Query {
    let Some((rule, _)) = rules.first().copied() else {
        return Query { ctes: vec![], body: Select::default() };
    };
    let m = &rule.metric;
    let s = m.bucket;
    let mut ctes = vec![Cte::new("ticks", Select::new(From::table(TICKS, "k"), vec![named(us(col("k", TICK)), "tick")]))];
    // With hour-of-week alone, only the observed slots' rows matter (while the ticks
    // span less than a week).
    let span = last - first;
    let narrow = rule.levels.iter().all(|(l, _)| *l == Level::HourOfWeek) && span + 2 * s + 2 * DST_SLACK < WEEK;
    ctes.extend(samples_ctes_with(m, last, None, narrow.then_some(span)));
    let slot = |i: usize| format!("slot{i}");
    // Each sample's slot at every level, computed once.
    let mut items = vec![(SqlExpr::Star("sl".into()), None)];
    items.extend(rule.levels.iter().enumerate().map(|(i, (level, _))| (slot_expr(*level, "sl", s), Some(slot(i)))));
    ctes.push(Cte::new("slotted", Select::new(From::table("sl", "sl"), items)));
    // At each tick, the last complete bucket: complete, and the next one is not.
    let on = SqlExpr::and_all(vec![
        bin(Op::Le, add(col("sl", "b"), int(s)), col("t", "tick")),
        bin(Op::Gt, add(col("sl", "b"), int(2 * s)), col("t", "tick")),
    ]);
    let obs_from = From::table("ticks", "t").join(JoinKind::Inner, From::table("slotted", "sl"), on.unwrap_or(SqlExpr::Bool(true)));
    ctes.push(Cte::new("obs", Select::new(obs_from, vec![named(col("t", "tick"), "tick"), (SqlExpr::Star("sl".into()), None)])));
    let series_keys = ["tenant_id", "site_id", "series"];
    // Rules that confirm over several buckets or clear with hysteresis need z at every
    // earlier bucket of the series, not only at the observed ones.
    let history = rules.iter().any(|(r, _)| needs_history(r));
    // At one tick only the observed buckets need a baseline: with mean and standard
    // deviation, each is an aggregate over the earlier samples of its slot (a join),
    // much less work than a window over every sample. Over many ticks, for the
    // median or EWMA of the last samples, with outliers kept out, or with history,
    // windows compute every sample's baseline once.
    let per_observed = first == last && rule.statistic == Statistic::MeanStd && rule.exclude_outliers.is_none();
    for i in 0..rule.levels.len() {
        if per_observed {
            let slot_name = slot(i);
            let mut keys: Vec<&str> = series_keys.to_vec();
            keys.push(&slot_name);
            let on = SqlExpr::and_all(vec![same_keys("o", "sl", &keys), bin(Op::Lt, col("sl", "b"), col("o", "b"))]);
            let from = From::table("obs", "o").join(JoinKind::Inner, From::table("slotted", "sl"), on.unwrap_or(SqlExpr::Bool(true)));
            let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b"].iter().map(|c| named(col("o", c), c)).collect();
            items.push(named(SqlExpr::func(Func::Count, vec![col("sl", "x")]), "n"));
            items.push(named(SqlExpr::func(Func::Avg, vec![col("sl", "x")]), "mean"));
            items.push(named(SqlExpr::func(Func::StddevSamp, vec![col("sl", "x")]), "sd"));
            let group_by = ["tenant_id", "site_id", "series", "b"].iter().map(|c| col("o", c)).collect();
            ctes.push(Cte::new(&format!("st{i}"), Select { group_by, ..Select::new(from, items) }));
            continue;
        }
        // Only the slots some tick observes need their baselines (whole partitions,
        // so the windows stay exact).
        let mut keys: Vec<&str> = series_keys.to_vec();
        let slot_name = slot(i);
        keys.push(&slot_name);
        let observed = Select::new(From::table("obs", "o"), vec![(int(1), None)]).filtered(vec![same_keys("o", "sl", &keys)]);
        level_ctes(&mut ctes, rule, i, SqlExpr::Exists(Box::new(observed)), "st");
    }
    // Baselines `{prefix}{i}` of each level.
    let st = |prefix: &str, i: usize, c: &str| col(&format!("{prefix}{i}"), c);
    // The first level with enough samples.
    let pick = |prefix: &str, f: &dyn Fn(usize) -> SqlExpr| {
        let whens = rule
            .levels
            .iter()
            .enumerate()
            .map(|(i, (_, after))| (bin(Op::Ge, coalesce(st(prefix, i, "n"), int(0)), int(i64::from(*after))), f(i)))
            .collect();
        SqlExpr::case(whens, SqlExpr::Null)
    };
    // Candidates: the observed buckets (baselines `st`), or every sample of the series
    // that need history (baselines `sh`).
    let cand_from = |rel: &str, prefix: &str| {
        let mut from = From::table(rel, "o");
        for i in 0..rule.levels.len() {
            let name = format!("{prefix}{i}");
            from = from.join(JoinKind::Left, From::table(&name, &name), same_keys(&name, "o", &["tenant_id", "site_id", "series", "b"]));
        }
        from
    };
    let cand_items = |with_tick: bool, prefix: &str| {
        let keys: &[&str] =
            if with_tick { &["tick", "tenant_id", "site_id", "series", "b"] } else { &["tenant_id", "site_id", "series", "b"] };
        let mut items: Vec<_> = keys.iter().map(|c| named(col("o", c), c)).collect();
        items.push(named(col("o", "x"), "observed"));
        items.push(named(pick(prefix, &|i| SqlExpr::Str(rule.levels[i].0.name().into())), "level"));
        items.push(named(pick(prefix, &|i| st(prefix, i, "n")), "n"));
        items.push(named(pick(prefix, &|i| center_of(rule, &format!("{prefix}{i}"))), "expected"));
        items.push(named(pick(prefix, &|i| spread_of(rule, &format!("{prefix}{i}"))), "spread"));
        items.extend((0..rule.levels.len()).map(|i| named(coalesce(st(prefix, i, "n"), int(0)), &format!("n{i}"))));
        items
    };
    let z = bin(Op::Div, sub(col("c", "observed"), col("c", "expected")), col("c", "spread"));
    ctes.push(Cte::new("cand", Select::new(cand_from("obs", "st"), cand_items(true, "st"))));
    ctes.push(Cte::new("scored", Select::new(From::table("cand", "c"), vec![(SqlExpr::Star("c".into()), None), named(z.clone(), "z")])));
    let r0 = "r0";
    // The threshold for the row's tenant and site (in relation `rel`).
    let threshold_in = |rule: &AnomalyRule, scoped: &[ScopedValue], rel: &str| {
        let scoped = scoped.iter().filter(|s| s.param == "threshold").collect();
        crate::plan::scoped_sql(SqlExpr::Num(rule.threshold), scoped, rel)
    };
    // Widened while the level is young (`young widen`).
    let effective = |rule: &AnomalyRule, thr: SqlExpr, rel: &str| match rule.young_widen {
        true => bin(Op::Mul, thr.clone(), young_factor_sql(thr, SqlExpr::cast(col(rel, "n"), SqlType::Double))),
        false => thr,
    };
    let threshold_of = |rule: &AnomalyRule, scoped: &[ScopedValue]| effective(rule, threshold_in(rule, scoped, r0), r0);
    // z on the rule's side: positive when it points the way the rule fires.
    let signed = |rule: &AnomalyRule, rel: &str| {
        let z = col(rel, "z");
        match rule.direction {
            Direction::Above => z,
            Direction::Below => SqlExpr::Neg(Box::new(z)),
            Direction::Both => SqlExpr::func(Func::Abs, vec![z]),
        }
    };
    let fires_of = |rule: &AnomalyRule, scoped: &[ScopedValue]| bin(Op::Ge, signed(rule, r0), threshold_of(rule, scoped));
    // A rule with history holds at an observed bucket only when that bucket is at or
    // beyond its clearing level: only those series ("hot") get every sample judged,
    // with baselines `sh` over all their slots.
    let clearing = |rule: &AnomalyRule, scoped: &[ScopedValue], rel: &str| {
        let thr = threshold_in(rule, scoped, rel);
        match rule.clear_below {
            Some(c) => effective(rule, SqlExpr::func(Func::Least, vec![SqlExpr::Num(c), thr]), rel),
            None => effective(rule, thr, rel),
        }
    };
    if history {
        let hot_if = rules
            .iter()
            .filter(|(r, _)| needs_history(r))
            .map(|(r, scoped)| coalesce(bin(Op::Ge, signed(r, "c"), clearing(r, scoped, "c")), SqlExpr::Bool(false)))
            .reduce(|a, b| bin(Op::Or, a, b));
        let hot = Select {
            distinct: true,
            ..Select::new(From::table("scored", "c"), series_keys.iter().map(|k| named(col("c", k), k)).collect())
                .filtered(vec![not_null(col("c", "level")), hot_if.unwrap_or(SqlExpr::Bool(false))])
        };
        ctes.push(Cte::new("hot", hot));
        for i in 0..rule.levels.len() {
            let is_hot = Select::new(From::table("hot", "hs"), vec![(int(1), None)]).filtered(vec![same_keys("hs", "sl", &series_keys)]);
            level_ctes(&mut ctes, rule, i, SqlExpr::Exists(Box::new(is_hot)), "sh");
        }
        let hot_rows = Select::new(From::table("hot", "hs"), vec![(int(1), None)]).filtered(vec![same_keys("hs", "o", &series_keys)]);
        let cand_all = Select::new(cand_from("slotted", "sh"), cand_items(false, "sh")).filtered(vec![SqlExpr::Exists(Box::new(hot_rows))]);
        ctes.push(Cte::new("cand_all", cand_all));
        ctes.push(Cte::new(
            "scored_all",
            Select::new(From::table("cand_all", "c"), vec![(SqlExpr::Star("c".into()), None), named(z, "z")]),
        ));
    }
    // Confirmation and hysteresis, per rule k: among the buckets at or beyond the
    // clearing level (`lo`), islands of consecutive buckets; a bucket holds when its
    // island has, at or before it, `confirm` consecutive buckets beyond the threshold.
    for (k, (rule, scoped)) in rules.iter().enumerate() {
        if !needs_history(rule) {
            continue;
        }
        let a = "a";
        let thr = effective(rule, threshold_in(rule, scoped, a), a);
        let clear = clearing(rule, scoped, a);
        let judged = |t: SqlExpr| coalesce(bin(Op::And, not_null(col(a, "level")), bin(Op::Ge, signed(rule, a), t)), SqlExpr::Bool(false));
        let by_series = |extra: Option<&str>, frame: Option<Frame>| Window {
            name: "w".into(),
            partition_by: series_keys.iter().map(|c| col("a", c)).chain(extra.map(|e| col("a", e))).collect(),
            order_by: vec![OrderKey::asc(col("a", "b"))],
            frame,
        };
        let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b"].iter().map(|c| named(col(a, c), c)).collect();
        items.push(named(judged(thr), "hi"));
        let row_number = SqlExpr::Over(Box::new(SqlExpr::func(Func::RowNumber, vec![])), "w".into());
        items.push(named(sub(bin(Op::IntDiv, col(a, "b"), int(s)), row_number), "isl"));
        let lo = Select {
            items,
            from: From::table("scored_all", a),
            filter: Some(judged(clear)),
            windows: vec![by_series(None, None)],
            ..Select::default()
        };
        ctes.push(Cte::new(&format!("lo{k}"), lo));
        let upto = Some(Frame { start: None, end: 0 });
        let off_b = SqlExpr::case(vec![(SqlExpr::Not(Box::new(col(a, "hi"))), col(a, "b"))], SqlExpr::Null);
        let last_off = coalesce(
            SqlExpr::Over(Box::new(SqlExpr::func(Func::Max, vec![off_b])), "w".into()),
            sub(SqlExpr::Over(Box::new(SqlExpr::func(Func::Min, vec![col(a, "b")])), "w".into()), int(s)),
        );
        let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b", "isl"].iter().map(|c| named(col(a, c), c)).collect();
        let confirmed = bin(Op::And, col(a, "hi"), bin(Op::Ge, sub(col(a, "b"), last_off), int(i64::from(rule.confirm) * s)));
        items.push(named(SqlExpr::case(vec![(confirmed, int(1))], int(0)), "conf"));
        let runs =
            Select { items, from: From::table(&format!("lo{k}"), a), windows: vec![by_series(Some("isl"), upto)], ..Select::default() };
        ctes.push(Cte::new(&format!("run{k}"), runs));
        let mut items: Vec<_> = ["tenant_id", "site_id", "series", "b"].iter().map(|c| named(col(a, c), c)).collect();
        items.push(named(SqlExpr::Over(Box::new(SqlExpr::func(Func::Max, vec![col(a, "conf")])), "w".into()), "held"));
        let held =
            Select { items, from: From::table(&format!("run{k}"), a), windows: vec![by_series(Some("isl"), upto)], ..Select::default() };
        ctes.push(Cte::new(&format!("held{k}"), held));
    }
    // Does rule k fire at the row of `scored` (r0)?
    let fires_at = |k: usize, rule: &AnomalyRule, scoped: &[ScopedValue]| {
        if !needs_history(rule) {
            return fires_of(rule, scoped);
        }
        let h = format!("held{k}");
        let found = Select::new(From::table(&h, "h"), vec![(int(1), None)])
            .filtered(vec![same_keys("h", r0, &["tenant_id", "site_id", "series", "b"]), bin(Op::Eq, col("h", "held"), int(1))]);
        SqlExpr::Exists(Box::new(found))
    };
    let stable = not_null(col(r0, "level"));
    if explain {
        let counts = (0..rule.levels.len()).map(|i| SqlExpr::cast(col(r0, &format!("n{i}")), SqlType::Varchar));
        let mut concat = vec![SqlExpr::Str("/".into())];
        concat.extend(counts);
        let round = |c: &str| SqlExpr::func(Func::Round, vec![col(r0, c), int(6)]);
        let items = vec![
            named(col(r0, "tenant_id"), "tenant_id"),
            named(col(r0, "site_id"), "site_id"),
            named(col(r0, "series"), "series"),
            named(SqlExpr::func(Func::IsoUtc, vec![SqlExpr::func(Func::FromEpochMicros, vec![col(r0, "b")])]), "bucket_start"),
            named(col(r0, "observed"), "observed"),
            named(coalesce(col(r0, "level"), SqlExpr::Str("not stable".into())), "level"),
            named(SqlExpr::func(Func::ConcatWs, concat), "samples_per_level"),
            named(round("expected"), "expected"),
            named(round("z"), "z"),
            named(SqlExpr::func(Func::Round, vec![threshold_of(rule, &[]), int(6)]), "threshold"),
            named(coalesce(bin(Op::And, stable, fires_at(0, rule, &[])), SqlExpr::Bool(false)), "fires"),
        ];
        let mut body = Select::new(From::table("scored", r0), items);
        body.order_by = ["tenant_id", "site_id", "series"].iter().map(|c| OrderKey::asc(col(r0, c))).collect();
        return Query { ctes, body };
    }
    let parts = rules
        .iter()
        .enumerate()
        .map(|(i, (rule, scoped))| {
            let base = SqlExpr::Str(rule.header.base_severity.name().into());
            let severity = if rule.escalations.is_empty() {
                base
            } else {
                let abs_z = SqlExpr::func(Func::Abs, vec![col(r0, "z")]);
                let whens = rule
                    .escalations
                    .iter()
                    .map(|(level, beyond)| (bin(Op::Ge, abs_z.clone(), SqlExpr::Num(*beyond)), SqlExpr::Str(level.name().into())))
                    .collect();
                SqlExpr::case(whens, base)
            };
            let tick = SqlExpr::func(Func::FromEpochMicros, vec![col(r0, "tick")]);
            let mut items = vec![named(int(i as i64), "rule_index")];
            items.extend(
                ["tenant_id", "site_id", "series", "b", "observed", "expected", "z", "n", "level", "spread"]
                    .iter()
                    .map(|c| named(col(r0, c), c)),
            );
            items.push(named(severity, "severity"));
            items.push(named(crate::plan::suppressed_sql(&rule.header.finding_type, tick, r0), "suppressed"));
            items.push(named(col(r0, "tick"), "tick"));
            items.push(named(SqlExpr::cast(threshold_of(rule, scoped), SqlType::Double), "threshold"));
            Select::new(From::table("scored", r0), items).filtered(vec![stable.clone(), fires_at(i, rule, scoped)])
        })
        .collect();
    ctes.push(Cte::union_all("found", parts));
    let f = "found";
    let mut body = Select::new(From::table(f, f), vec![(SqlExpr::AllColumns, None)]);
    body.order_by = vec![
        OrderKey::asc(col(f, "rule_index")),
        OrderKey::asc(col(f, "tick")),
        OrderKey::asc(col(f, "tenant_id")),
        OrderKey::asc(col(f, "site_id")),
        OrderKey::desc(SqlExpr::func(Func::Abs, vec![col(f, "z")])),
        OrderKey::asc(col(f, "series")),
    ];
    Query { ctes, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{render_expression, Dialect};

    fn t(s: &str) -> i64 {
        crate::load::parse_timestamp(s).expect("timestamp")
    }

    #[test]
    fn slot_expr_agrees_with_level_slot() {
        // Monday 2025-09-01 09:00 local -> hour-of-week 9; Sunday 23:30 with 30m buckets -> 335;
        // and instants before 1970, where SQL's % and // differ from Euclid's.
        let conn = crate::load::open_database().expect("db");
        for (local, bucket) in [
            ("2025-09-01T09:00:00Z", 60 * MINUTE),
            ("2025-09-07T23:30:00Z", 30 * MINUTE),
            ("1969-12-29T05:00:00Z", 60 * MINUTE),
            ("1965-03-14T17:30:00Z", 30 * MINUTE),
        ] {
            let lt = t(local);
            for level in Level::ALL {
                let slot = render_expression(&slot_expr(level, "x", bucket), Dialect::DuckDb);
                let sql = format!("SELECT {slot} FROM (SELECT CAST({lt} AS BIGINT) AS lt) AS x");
                let from_sql: i64 = conn.query_row(&sql, [], |r| r.get(0)).expect("slot");
                assert_eq!(from_sql, level.slot(lt, bucket), "{local} {level:?}");
            }
        }
        assert_eq!(Level::HourOfWeek.slot(t("2025-09-01T09:00:00Z"), 60 * MINUTE), 9);
        assert_eq!(Level::HourOfWeek.slot(t("2025-09-07T23:30:00Z"), 30 * MINUTE), 335);
    }
}
