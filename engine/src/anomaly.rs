//! Metrics, baselines and anomaly rules (CATALOG.md "Baselines and anomalies").
//!
//! A `metric` turns a signal table into one series per site (and per name with
//! `per`): a value per bucket of 30 or 60 minutes, buckets aligned to the site's
//! own clock. An `anomaly` rule compares the last complete bucket before T with
//! the baseline of earlier buckets in the same hour-of-week slot (site-local
//! time, Monday 00:00 = slot 0), falling back to hour-of-day and all hours only
//! where the rule says so.
//!
//! Invariants:
//! - Evaluation is one set-based statement per rule over every site at once; the
//!   baseline is computed from the signals as of T (batch), so `audit`, `replay`
//!   and the incremental state of [`crate::baseline`] agree by construction of
//!   the same sample set ([`samples_sql`]).
//! - Site-local time comes from chrono-tz (DuckDB's bundled build has no ICU):
//!   [`install_time_zones`] writes each zone's UTC offset periods into a temp
//!   table the SQL joins, so a DST change moves no bucket to another slot.
//! - Identifiers in the SQL come from [`crate::schema`]; values are literals
//!   escaped by [`crate::sql`]; nothing from a rule is pasted in as text.
//! - Only complete buckets count (bucket end <= T); a bucket straddling T is never used.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{Offset, TimeZone};

use crate::check::{self, Macros, TExpr};
use crate::diag::{codes, Diagnostic};
use crate::schema::{self, Storage, Table, Word};
use crate::sql::{ident, render_expression, string_literal, RAW_SCHEMA};
use crate::syntax::ast::{AnomalyDef, AnomalyItem, MetricAgg, MetricDef, MetricSource, RuleItem, SettingValue, Span};

/// Microseconds per minute.
const MINUTE: i64 = 60_000_000;
/// Microseconds per day.
const DAY: i64 = 1440 * MINUTE;

/// A piece of SQL per baseline level (indexed by level position).
type SqlPart = Box<dyn Fn(usize) -> String>;

/// A checked `metric`.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Its name.
    pub name: String,
    /// `doc "..."`
    pub doc: Option<String>,
    /// The table read.
    pub table: &'static Table,
    /// The time column that places a row in a bucket.
    pub time_column: &'static str,
    /// `sum`, `avg`, ... read this column; `count` counts rows.
    pub value_column: Option<&'static str>,
    /// How a bucket's rows become its value (`count` is a sum of ones).
    pub aggregate: MetricAgg,
    /// One series per value of this column (`per metric`).
    pub per: Option<&'static str>,
    /// Row filter.
    pub filter: Option<TExpr>,
    /// Bucket size in microseconds (30 or 60 minutes).
    pub bucket: i64,
    /// Buckets where a guard was on duty and nothing was counted count as zero
    /// (count metrics); otherwise a bucket without rows is no sample.
    pub zero_while_on_duty: bool,
    /// The block.
    pub span: Span,
}

/// Which statistic gives the expected value and the spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// mean and sample standard deviation of every earlier sample of the slot
    MeanStd,
    /// median and 1.4826 x MAD of the last `window` samples of the slot
    MedianMad,
}

impl Statistic {
    /// Its name in the language.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::MeanStd => "mean_std",
            Statistic::MedianMad => "median_mad",
        }
    }
}

/// Which side of the baseline fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// z >= threshold
    Above,
    /// z <= -threshold
    Below,
    /// |z| >= threshold
    Both,
}

/// A baseline level: which earlier buckets a bucket is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// same weekday and time of day (site-local)
    HourOfWeek,
    /// same time of day, any weekday
    HourOfDay,
    /// every earlier bucket
    AllHours,
}

impl Level {
    /// Its name in the language and in evidence.
    pub fn name(self) -> &'static str {
        match self {
            Level::HourOfWeek => "hour_of_week",
            Level::HourOfDay => "hour_of_day",
            Level::AllHours => "all_hours",
        }
    }

    /// All levels, finest first.
    pub const ALL: [Level; 3] = [Level::HourOfWeek, Level::HourOfDay, Level::AllHours];

    /// The slot of a bucket at this level, from its site-local start
    /// (microseconds since the epoch, local wall clock) and the bucket size.
    pub fn slot(self, local_start: i64, bucket: i64) -> i64 {
        let per_day = DAY / bucket;
        let of_day = local_start.rem_euclid(DAY) / bucket;
        match self {
            // 1970-01-01 was a Thursday: +3 makes Monday 0.
            Level::HourOfWeek => (local_start.div_euclid(DAY) + 3).rem_euclid(7) * per_day + of_day,
            Level::HourOfDay => of_day,
            Level::AllHours => 0,
        }
    }
}

/// A checked `anomaly` rule.
#[derive(Debug, Clone)]
pub struct AnomalyRule {
    /// Id, finding type, title, category, base severity, cadence, actions.
    pub header: crate::check::RuleHeader,
    /// The metric compared.
    pub metric: Metric,
    /// Which side fires.
    pub direction: Direction,
    /// |z| needed to fire.
    pub threshold: f64,
    /// Mean/std or median/MAD.
    pub statistic: Statistic,
    /// Levels tried in order, each with the samples it needs to be stable.
    pub levels: Vec<(Level, u32)>,
    /// Samples kept for the median and MAD.
    pub window: u32,
    /// Spread used when the statistic's own spread is 0.
    pub min_spread: f64,
    /// (level, |z| from which it applies), largest first.
    pub escalations: Vec<(schema::Severity, f64)>,
}

impl AnomalyRule {
    /// The settings a tenant or site may override, with their values in the rule, as
    /// parameters: `threshold` (`override site "S" { ANOMALY_METRIC_ABOVE.threshold = 3.5 }`).
    pub fn params(&self) -> Vec<crate::check::Param> {
        vec![crate::check::Param {
            name: "threshold".into(),
            default: crate::check::Value::Number(self.threshold),
            span: self.header.id_span,
        }]
    }
}

/// Sensitivity words and their |z| thresholds (CATALOG.md).
pub const SENSITIVITIES: &[(&str, f64)] = &[("LOW", 3.0), ("MEDIUM", 2.5), ("HIGH", 2.0)];

/// Checks a `metric` block.
pub fn check_metric(def: &MetricDef, macros: &Macros) -> Result<Metric, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    if def.sources.is_empty() {
        errors.push(
            Diagnostic::error(
                codes::MISSING_ITEM,
                format!("metric `{}` measures nothing", def.name.name),
                def.name.span,
                "what is counted?",
            )
            .hint("add `count phone_events` or `sum metrics.value per metric`"),
        );
    }
    for extra in def.sources.iter().skip(1) {
        let span = match extra {
            MetricSource::Count { span, .. } | MetricSource::Sum { span, .. } => *span,
        };
        errors.push(
            Diagnostic::error(codes::REPEATED_ITEM, "a metric measures one thing", span, "a second source").hint("declare a second metric"),
        );
    }
    let bucket = match def.bucket {
        None => 60 * MINUTE,
        Some((b, _)) if b == 30 * MINUTE || b == 60 * MINUTE => b,
        Some((_, span)) => {
            errors.push(Diagnostic::error(codes::UNKNOWN_VALUE, "a bucket is 30m or 60m", span, "not a bucket size").hint("bucket 60m"));
            60 * MINUTE
        }
    };
    let Some(source) = def.sources.first() else { return Err(errors) };
    let (table_name, filter) = match source {
        MetricSource::Count { table, filter, .. } | MetricSource::Sum { table, filter, .. } => (table, filter),
    };
    let Some(table) = schema::table(&table_name.name).filter(|t| t.name != "activity") else {
        errors.push(
            Diagnostic::error(codes::UNKNOWN_TABLE, format!("unknown table `{}`", table_name.name), table_name.span, "not a signal table")
                .suggest(&table_name.name, schema::contract_tables().map(|t| t.name)),
        );
        return Err(errors);
    };
    let column = |name: &crate::syntax::ast::Ident, want: Storage, what: &str, errors: &mut Vec<Diagnostic>| -> Option<&'static str> {
        match table.column(&name.name) {
            Some(c) if c.storage == want || (want == Storage::Float && c.storage == Storage::Int) => Some(c.name),
            Some(c) => {
                errors.push(Diagnostic::error(
                    codes::TYPE_MISMATCH,
                    format!("`{}` is {}, a metric needs {what}", c.name, c.storage.ty().name()),
                    name.span,
                    "wrong type",
                ));
                None
            }
            None => {
                errors.push(
                    Diagnostic::error(
                        codes::UNKNOWN_COLUMN,
                        format!("`{}` has no column `{}`", table.name, name.name),
                        name.span,
                        "unknown column",
                    )
                    .suggest(&name.name, table.columns.iter().map(|c| c.name)),
                );
                None
            }
        }
    };
    let aggregate = match source {
        MetricSource::Sum { aggregate, .. } => *aggregate,
        MetricSource::Count { .. } => MetricAgg::Sum,
    };
    let (time_column, value_column, per) = match source {
        MetricSource::Count { time, .. } => {
            let t = match time {
                Some(t) => column(t, Storage::Time, "a time", &mut errors),
                None => table.event_time.or_else(|| {
                    errors.push(
                        Diagnostic::error(
                            codes::MISSING_ITEM,
                            format!("`{}` has no event time", table.name),
                            table_name.span,
                            "count at which time?",
                        )
                        .hint(format!("say `count {} at COLUMN`", table.name)),
                    );
                    None
                }),
            };
            (t, None, None)
        }
        MetricSource::Sum { column: c, per, .. } => {
            let t = table.event_time.or_else(|| {
                errors.push(Diagnostic::error(
                    codes::MISSING_ITEM,
                    format!("`{}` has no event time to place rows in buckets", table.name),
                    table_name.span,
                    "no time",
                ));
                None
            });
            let v = column(c, Storage::Float, "a number", &mut errors);
            let p = per.as_ref().and_then(|p| column(p, Storage::Text, "text", &mut errors));
            (t, v, p)
        }
    };
    let filter = match filter {
        Some(f) => match check::check_row_condition(table, f, macros) {
            Ok(e) => Some(e),
            Err(errs) => {
                errors.extend(errs);
                None
            }
        },
        None => None,
    };
    match (errors.is_empty(), time_column) {
        (true, Some(time_column)) => Ok(Metric {
            name: def.name.name.clone(),
            doc: def.doc.as_ref().map(|d| d.value.clone()),
            table,
            time_column,
            value_column,
            aggregate,
            per,
            filter,
            bucket,
            zero_while_on_duty: value_column.is_none(),
            span: def.span,
        }),
        _ => Err(errors),
    }
}

/// Checks an `anomaly` block against the metrics of the rule set.
pub fn check_anomaly(def: &AnomalyDef, metrics: &HashMap<String, Metric>) -> Result<AnomalyRule, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut once = |name: &str, span: Span, errors: &mut Vec<Diagnostic>| {
        if let Some(first) = seen.insert(name.to_string(), span) {
            errors.push(
                Diagnostic::error(codes::REPEATED_ITEM, format!("`{name}` is given twice"), span, "again here")
                    .with_context(first, "first here"),
            );
        }
    };
    let mut out = AnomalyRule {
        header: crate::check::RuleHeader {
            id: def.id.name.clone(),
            id_span: def.id.span,
            finding_type: def.id.name.clone(),
            title: String::new(),
            doc: None,
            category: schema::Category::Operational,
            category_stated: None,
            base_severity: schema::Severity::Medium,
            cadence: schema::Cadence::Deep,
            actions: Vec::new(),
            span: def.span,
        },
        metric: Metric {
            name: String::new(),
            doc: None,
            table: &schema::TABLES[0],
            time_column: "",
            value_column: None,
            aggregate: MetricAgg::Sum,
            per: None,
            filter: None,
            bucket: 60 * MINUTE,
            zero_while_on_duty: false,
            span: def.span,
        },
        direction: Direction::Below,
        threshold: 2.5,
        statistic: Statistic::MeanStd,
        levels: Vec::new(),
        window: 52,
        min_spread: 1.0,
        escalations: Vec::new(),
    };
    let mut metric = None;
    let mut direction = None;
    let mut stable_after = 30u32;
    let mut fallback: Vec<(Level, Option<u32>)> = Vec::new();
    let mut title = None;
    let word = |v: Option<&SettingValue>| match v {
        Some(SettingValue::Name(n, None)) => Some(n.clone()),
        _ => None,
    };
    let count = |v: f64| (v >= 1.0 && v.fract() == 0.0 && v <= 1_000_000.0).then_some(v as u32);
    for item in &def.items {
        match item {
            AnomalyItem::Common(common) => match common.as_ref() {
                RuleItem::Finding(t) => {
                    once("finding", t.span, &mut errors);
                    out.header.finding_type = t.name.clone();
                }
                RuleItem::Title(t) => {
                    once("title", t.span, &mut errors);
                    title = Some(t.value.clone());
                }
                RuleItem::Doc(d) => out.header.doc = Some(d.value.clone()),
                RuleItem::Category(c) => {
                    match crate::diag::parse_word::<schema::Category>(c) {
                        Ok(category) => out.header.category = category,
                        Err(d) => errors.push(d),
                    }
                    out.header.category_stated = Some(c.span);
                }
                RuleItem::Cadence(c) => match crate::diag::parse_word::<schema::Cadence>(c) {
                    Ok(k) => out.header.cadence = k,
                    Err(d) => errors.push(d),
                },
                RuleItem::Action(a) => out.header.actions.push(a.value.clone()),
                _ => {}
            },
            AnomalyItem::Severity { level, beyond } => {
                let severity = match crate::diag::parse_word::<schema::Severity>(level) {
                    Ok(s) => s,
                    Err(d) => {
                        errors.push(d);
                        continue;
                    }
                };
                match beyond {
                    None => {
                        once("severity", level.span, &mut errors);
                        out.header.base_severity = severity;
                    }
                    Some((z, _)) => out.escalations.push((severity, *z)),
                }
            }
            AnomalyItem::Setting { name, values, span } => {
                once(&name.name, name.span, &mut errors);
                let first = values.first();
                let bad =
                    |expected: &str| {
                        Diagnostic::error(codes::UNKNOWN_VALUE, format!("`{}` takes {expected}", name.name), *span, "this value")
                            .hint(format!("e.g. `{} {}`", name.name, expected.split(" or ").next().unwrap_or(expected).trim_matches('`')))
                    };
                if values.len() > 1 && name.name != "fallback" {
                    errors.push(bad("one value"));
                    continue;
                }
                match name.name.as_str() {
                    "metric" => match word(first) {
                        Some(m) => match metrics.get(&m.name) {
                            Some(found) => metric = Some(found.clone()),
                            None => errors.push(
                                Diagnostic::error(codes::UNKNOWN_NAME, format!("no metric `{}`", m.name), m.span, "unknown metric")
                                    .suggest(&m.name, metrics.keys().map(|k| k.as_str())),
                            ),
                        },
                        None => errors.push(bad("a metric name")),
                    },
                    "direction" => match word(first).as_ref().map(|w| w.name.as_str()) {
                        Some("above") => direction = Some(Direction::Above),
                        Some("below") => direction = Some(Direction::Below),
                        Some("both") => direction = Some(Direction::Both),
                        _ => errors.push(bad("`above`, `below` or `both`")),
                    },
                    "sensitivity" => match word(first).and_then(|w| SENSITIVITIES.iter().find(|(n, _)| *n == w.name)) {
                        Some((_, z)) => out.threshold = *z,
                        None => errors.push(bad("`LOW` (|z| >= 3), `MEDIUM` (2.5) or `HIGH` (2)")),
                    },
                    "threshold" => match first {
                        Some(SettingValue::Number(z, _)) if *z > 0.0 => out.threshold = *z,
                        _ => errors.push(bad("a positive |z| such as 2.8")),
                    },
                    "statistic" => match word(first).as_ref().map(|w| w.name.as_str()) {
                        Some("mean_std") => out.statistic = Statistic::MeanStd,
                        Some("median_mad") => out.statistic = Statistic::MedianMad,
                        _ => errors.push(bad("`mean_std` or `median_mad`")),
                    },
                    "stable_after" => match first {
                        Some(SettingValue::Number(n, _)) if count(*n).is_some() => stable_after = count(*n).unwrap_or(30),
                        _ => errors.push(bad("a whole number of samples such as 30")),
                    },
                    "window" => match first {
                        Some(SettingValue::Number(n, _)) if count(*n).is_some() => out.window = count(*n).unwrap_or(52),
                        _ => errors.push(bad("a whole number of samples such as 52")),
                    },
                    "min_spread" => match first {
                        Some(SettingValue::Number(n, _)) if *n > 0.0 => out.min_spread = *n,
                        _ => errors.push(bad("a positive number such as 1")),
                    },
                    "fallback" => {
                        for v in values {
                            match v {
                                SettingValue::Name(n, after) => {
                                    let level = match n.name.as_str() {
                                        "hour_of_day" => Level::HourOfDay,
                                        "all_hours" => Level::AllHours,
                                        _ => {
                                            errors.push(
                                                Diagnostic::error(
                                                    codes::UNKNOWN_VALUE,
                                                    format!("unknown level `{}`", n.name),
                                                    n.span,
                                                    "not a level",
                                                )
                                                .suggest(&n.name, ["hour_of_day", "all_hours"])
                                                .hint("fallback hour_of_day, all_hours"),
                                            );
                                            continue;
                                        }
                                    };
                                    let after = match after {
                                        Some((a, s)) => match count(*a) {
                                            Some(c) => Some(c),
                                            None => {
                                                errors.push(Diagnostic::error(
                                                    codes::UNKNOWN_VALUE,
                                                    "stable_after is a whole number of samples",
                                                    *s,
                                                    "this",
                                                ));
                                                None
                                            }
                                        },
                                        None => None,
                                    };
                                    fallback.push((level, after));
                                }
                                SettingValue::Number(_, s) => {
                                    errors.push(Diagnostic::error(codes::UNKNOWN_VALUE, "a fallback is a level name", *s, "not a level"))
                                }
                            }
                        }
                    }
                    _ => errors.push(bad("a known setting")),
                }
            }
        }
    }
    let missing = |what: &str, example: &str| {
        Diagnostic::error(
            codes::MISSING_ITEM,
            format!("anomaly `{}` has no `{what}`", def.id.name),
            def.id.span,
            format!("add `{example}`"),
        )
    };
    match title {
        Some(t) => out.header.title = t,
        None => errors.push(missing("title", "title \"...\"")),
    }
    match metric {
        Some(m) => out.metric = m,
        None if !seen.contains_key("metric") => errors.push(missing("metric", "metric NAME")),
        None => {}
    }
    match direction {
        Some(d) => out.direction = d,
        None if !seen.contains_key("direction") => errors.push(missing("direction", "direction below")),
        None => {}
    }
    out.levels.push((Level::HourOfWeek, stable_after));
    out.levels.extend(fallback.into_iter().map(|(l, a)| (l, a.unwrap_or(stable_after))));
    out.escalations.sort_by(|a, b| b.1.total_cmp(&a.1));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A zone's UTC offset periods: (from, until, offset), microseconds.
pub type Periods = Vec<(i64, i64, i64)>;

/// The UTC offset periods of a time zone between 1990 and 2060 (before and after:
/// the first and last offset). Transitions are found to the second.
pub fn offset_periods(tz: chrono_tz::Tz) -> Periods {
    let offset = |secs: i64| -> i64 {
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|d| i64::from(tz.offset_from_utc_datetime(&d.naive_utc()).fix().local_minus_utc()))
            .unwrap_or(0)
    };
    const FROM: i64 = 631_152_000; // 1990-01-01
    const UNTIL: i64 = 2_871_763_200; // 2061-01-01
    let mut out = Vec::new();
    let mut start = i64::MIN / 4;
    let mut current = offset(FROM);
    let mut day = FROM;
    while day < UNTIL {
        let next = day + 86_400;
        if offset(next) != current {
            let (mut lo, mut hi) = (day, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == current {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push((start, hi * 1_000_000, current * 1_000_000));
            start = hi * 1_000_000;
            current = offset(hi);
        }
        day = next;
    }
    out.push((start, i64::MAX / 4, current * 1_000_000));
    out
}

/// [`offset_periods`], computed once per zone per process (they never change).
fn cached_periods(tz: chrono_tz::Tz) -> Periods {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<HashMap<chrono_tz::Tz, Periods>>> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(tz).or_insert_with(|| offset_periods(tz)).clone()
}

/// The UTC offset of a zone at an instant, from its periods.
pub fn offset_at(periods: &Periods, t: i64) -> i64 {
    periods.iter().find(|(from, until, _)| *from <= t && t < *until).map(|p| p.2).unwrap_or(0)
}

/// Name of the temp table with every site zone's offset periods.
pub const TZ_TABLE: &str = "vigil_tz";

/// Writes `vigil_tz(timezone, from_us, until_us, offset_us)` for every time zone
/// the `sites` table names, plus UTC (sites without one). Connection-local.
/// The signals of a connection do not change once loaded, so the table is
/// written once per connection: later calls find it and return.
pub fn install_time_zones(conn: &duckdb::Connection) -> Result<(), duckdb::Error> {
    let present: i64 = conn.query_row(
        &format!("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = {}", string_literal(TZ_TABLE)),
        [],
        |r| r.get(0),
    )?;
    if present > 0 {
        return Ok(());
    }
    let mut zones: Vec<String> = {
        let mut stmt = conn.prepare(&format!(
            "SELECT DISTINCT timezone FROM {}.{} WHERE timezone IS NOT NULL ORDER BY 1",
            ident(RAW_SCHEMA),
            ident("sites")
        ))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    zones.push("UTC".into());
    zones.sort();
    zones.dedup();
    let mut sql = format!(
        "CREATE OR REPLACE TEMP TABLE {} (timezone VARCHAR, from_us BIGINT, until_us BIGINT, offset_us BIGINT);\n",
        ident(TZ_TABLE)
    );
    let mut values = Vec::new();
    for zone in &zones {
        // Loading refused unknown zones; one that still does not parse reads as UTC.
        let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        for (from, until, off) in cached_periods(tz) {
            values.push(format!("({}, {from}, {until}, {off})", string_literal(zone)));
        }
    }
    let _ = write!(sql, "INSERT INTO {} VALUES {};", ident(TZ_TABLE), values.join(", "));
    conn.execute_batch(&sql)
}

/// The samples of a metric as of `now`: one row per (tenant_id, site_id,
/// series, b) for every complete bucket (b + bucket <= now) with `x` its value
/// and `lt` its site-local start (microseconds, wall clock). Buckets are aligned
/// to the site's clock. A bucket is a sample when rows fall in it, or (count
/// metrics) when a guard of the site was on duty at some moment of it (within
/// the shift's starts_at..ends_at, checked in and not yet checked out, as of T):
/// then an empty bucket counts as 0, not as missing. `after`: only buckets ending
/// after it (incremental baseline updates).
pub fn samples_sql(m: &Metric, now: i64, after: Option<i64>) -> String {
    samples_sql_with(m, now, after, None)
}

/// Microseconds per week.
const WEEK: i64 = 7 * DAY;
/// The largest difference of UTC offsets across a DST change we allow for (2 hours).
const DST_SLACK: i64 = 120 * MINUTE;

/// [`samples_sql`]; with `week_slot_only: Some(span)`, rows are first narrowed to
/// those that can fall in the hour-of-week slot of a bucket observed at a tick in
/// (now - span, now] (same time of the week, give or take a DST shift): exact for
/// those slots, and only their samples may then be used.
fn samples_sql_with(m: &Metric, now: i64, after: Option<i64>, week_slot_only: Option<i64>) -> String {
    let s = m.bucket;
    let t = now;
    let raw = |table: &str| format!("{}.{}", ident(RAW_SCHEMA), ident(table));
    let c = |col: &str| format!("r0.{}", ident(col));
    let series = match m.per {
        Some(p) => format!("coalesce({}, '')", c(p)),
        None => "''".to_string(),
    };
    let value = match m.value_column {
        Some(v) => format!("CAST({} AS DOUBLE)", c(v)),
        None => "1.0".to_string(),
    };
    let mut filter = vec![
        format!("{} IS NOT NULL", c(m.time_column)),
        // A row without a value adds nothing to a sum and makes no sample.
        m.value_column.map(|v| format!("{} IS NOT NULL", c(v))).unwrap_or_else(|| "true".into()),
        format!("epoch_us({}) < {t}", c(m.time_column)),
        "r0.\"tenant_id\" IS NOT NULL AND r0.\"site_id\" IS NOT NULL".to_string(),
    ];
    if let Some(ev) = m.table.event_time {
        filter.push(format!("epoch_us({}) <= {t}", c(ev)));
    }
    if let Some(w) = after {
        filter.push(format!("epoch_us({}) >= {}", c(m.time_column), w - s));
    }
    if let Some(f) = &m.filter {
        filter.push(format!("coalesce({}, false)", render_expression(&crate::plan::row_condition_sql(f, m.table, now))));
    }
    if let Some(span) = week_slot_only {
        // An event of the slot observed at tick T, k weeks back, lies (T - t) = kW + d
        // before T with d in (-DST, 2S + DST): the observed bucket starts between T - 2S
        // and T - S. For ticks up to `span` before the last one, d grows by up to span.
        let d = format!("(({t} - epoch_us({})) % {WEEK})", c(m.time_column));
        filter.push(format!("({d} < {} OR {d} > {})", 2 * s + DST_SLACK + span, WEEK - DST_SLACK));
    }
    let zone_of = |r: &str| format!("LEFT JOIN site_zone sz ON sz.tenant_id = {r}.\"tenant_id\" AND sz.site_id = {r}.\"site_id\"");
    let offset_at = |zone: &str, time: &str| {
        format!("JOIN {} z ON z.timezone = {zone} AND {time} >= z.from_us AND {time} < z.until_us", ident(TZ_TABLE))
    };
    let align = |time: &str| format!("({time} - ((({time} + z.offset_us) % {s}) + {s}) % {s})");
    let mut out = String::new();
    let _ = write!(
        out,
        "site_zone AS (\n  SELECT tenant_id, site_id, min(timezone) AS timezone FROM {sites} GROUP BY ALL\n),\n\
         ev AS (\n  SELECT r0.\"tenant_id\" AS tenant_id, r0.\"site_id\" AS site_id, {series} AS series,\n         \
         coalesce(sz.timezone, 'UTC') AS zone, epoch_us({tc}) AS t, {value} AS v\n  FROM {table} AS r0 {zone}\n  WHERE {filter}\n),\n",
        sites = raw("sites"),
        tc = c(m.time_column),
        table = raw(m.table.name),
        zone = zone_of("r0"),
        filter = filter.join("\n    AND "),
    );
    let _ = write!(
        out,
        "agg AS (\n  SELECT e.tenant_id, e.site_id, e.series, e.zone, {b} AS b, {x} AS x\n  FROM ev e {z}\n  GROUP BY ALL\n),\n",
        x = match m.aggregate {
            MetricAgg::Sum => "sum(e.v)",
            MetricAgg::Avg => "avg(e.v)",
            MetricAgg::Min => "min(e.v)",
            MetricAgg::Max => "max(e.v)",
            // The latest row's value; equal times break by value, so the result is deterministic.
            MetricAgg::Last => "last(e.v ORDER BY e.t, e.v)",
        },
        b = align("e.t"),
        z = offset_at("e.zone", "e.t"),
    );
    let after_b = |rel: &str| after.map(|w| format!(" AND {rel}b + {s} > {w}")).unwrap_or_default();
    if m.zero_while_on_duty {
        let _ = write!(
            out,
            "duty AS (\n  SELECT DISTINCT h.tenant_id, h.site_id, '' AS series, h.zone, unnest(range({first}, h.o, {s})) AS b\n  \
             FROM (SELECT r0.\"tenant_id\" AS tenant_id, r0.\"site_id\" AS site_id, coalesce(sz.timezone, 'UTC') AS zone,\n          \
             epoch_us(greatest(r0.\"starts_at\", r0.\"checked_in_at\")) AS i,\n          \
             least(coalesce(epoch_us(CASE WHEN r0.\"checked_out_at\" <= {ts} THEN r0.\"checked_out_at\" END), {t}), \
             epoch_us(r0.\"ends_at\"), {t}) AS o\n        \
             FROM {shifts} AS r0 {zone}\n        \
             WHERE r0.\"checked_in_at\" IS NOT NULL AND epoch_us(r0.\"checked_in_at\") <= {t}\n          \
             AND r0.\"starts_at\" IS NOT NULL AND r0.\"ends_at\" IS NOT NULL{duty_after}) h\n  {z}\n),\n\
             keys AS (\n  SELECT tenant_id, site_id, series, zone, b FROM agg UNION SELECT tenant_id, site_id, series, zone, b FROM duty WHERE {duty_slot}\n),\n\
             samples AS (\n  SELECT k.tenant_id, k.site_id, k.series, k.zone, k.b, coalesce(a.x, 0.0) AS x\n  \
             FROM keys k LEFT JOIN agg a ON a.tenant_id = k.tenant_id AND a.site_id = k.site_id AND a.series = k.series AND a.b = k.b\n  \
             WHERE k.b + {s} <= {t}{after_k}\n),\n",
            first = align("h.i"),
            // Narrowed like the rows: a bucket starts up to one bucket before its rows.
            duty_slot = match week_slot_only {
                Some(span) => format!(
                    "(({t} - b) % {WEEK} < {} OR ({t} - b) % {WEEK} > {})",
                    3 * s + DST_SLACK + span,
                    WEEK - DST_SLACK
                ),
                None => "true".to_string(),
            },
            after_k = after_b("k."),
            ts = crate::sql::timestamp_literal(t),
            shifts = raw("shifts"),
            zone = zone_of("r0"),
            z = offset_at("h.zone", "h.i"),
            duty_after = after
                .map(|w| format!(" AND least(coalesce(epoch_us(r0.\"checked_out_at\"), {t}), epoch_us(r0.\"ends_at\")) > {}", w - s))
                .unwrap_or_default(),
        );
    } else {
        let _ =
            write!(out, "samples AS (\n  SELECT tenant_id, site_id, series, zone, b, x FROM agg WHERE b + {s} <= {t}{}\n),\n", after_b(""));
    }
    let _ = write!(
        out,
        "sl AS (\n  SELECT s.tenant_id, s.site_id, s.series, s.b, s.x, s.b + z.offset_us AS lt\n  FROM samples s {z}\n)",
        z = offset_at("s.zone", "s.b")
    );
    out
}

/// The slot expression of a level over a relation with `lt` (site-local bucket start);
/// the SQL twin of [`Level::slot`], shared by anomaly rules and stored baselines.
pub fn slot_sql(level: Level, rel: &str, bucket: i64) -> String {
    let per_day = DAY / bucket;
    let of_day = format!("((({rel}.lt % {DAY}) + {DAY}) % {DAY}) // {bucket}");
    match level {
        // Floor division by a day (`//` truncates towards zero before 1970).
        Level::HourOfWeek => {
            format!("((((({rel}.lt - ((({rel}.lt % {DAY}) + {DAY}) % {DAY})) // {DAY} + 3) % 7) + 7) % 7) * {per_day} + {of_day}")
        }
        Level::HourOfDay => of_day,
        Level::AllHours => "0".to_string(),
    }
}

/// One statement that evaluates an anomaly rule at each of `ticks` (ascending)
/// for every site: one row per firing series and tick with tenant_id, site_id,
/// series, b (bucket start), observed, expected, z, n, level, spread, severity,
/// suppressed, tick.
pub fn evaluation_sql(rule: &AnomalyRule, ticks: &[i64]) -> String {
    statement(&[(rule, &[])], ticks, false)
}

/// Do two anomaly rules compute the same samples and baselines (they may differ in
/// direction, threshold, severities and finding type)? Then one statement serves both.
pub fn same_baselines(a: &AnomalyRule, b: &AnomalyRule) -> bool {
    a.metric.name == b.metric.name
        && a.levels == b.levels
        && a.statistic == b.statistic
        && a.window == b.window
        && a.min_spread.to_bits() == b.min_spread.to_bits()
}

/// The `explain` form of [`evaluation_sql`] at one time: every observed series,
/// stable or not, with the samples of each level and whether it fires.
pub fn explain_sql(rule: &AnomalyRule, now: i64) -> String {
    statement(&[(rule, &[])], &[now], true)
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
fn statement(rules: &[(&AnomalyRule, &[crate::plan::ScopedValue])], ticks: &[i64], explain: bool) -> String {
    let Some((rule, _)) = rules.first().copied() else { return String::new() };
    let m = &rule.metric;
    let s = m.bucket;
    let k = rule.window;
    let (first, last) = (ticks.first().copied().unwrap_or(0), ticks.last().copied().unwrap_or(0));
    let tick_list: Vec<String> = ticks.iter().map(|t| crate::sql::timestamp_literal(*t)).collect();
    let mut out = format!("WITH\nticks AS (\n  SELECT epoch_us(unnest([{}]::TIMESTAMP[])) AS tick\n),\n", tick_list.join(", "));
    // With hour-of-week alone, only the observed slots' rows matter (while the ticks
    // span less than a week).
    let span = last - first;
    let narrow = rule.levels.iter().all(|(l, _)| *l == Level::HourOfWeek) && span + 2 * s + 2 * DST_SLACK < WEEK;
    out.push_str(&samples_sql_with(m, last, None, narrow.then_some(span)));
    // Each sample's slot at every level, computed once.
    let slots: Vec<String> =
        rule.levels.iter().enumerate().map(|(i, (level, _))| format!("{} AS slot{i}", slot_sql(*level, "sl", s))).collect();
    let _ = write!(out, ",\nslotted AS (\n  SELECT sl.*, {} FROM sl\n)", slots.join(", "));
    // At each tick, the last complete bucket: complete, and the next one is not.
    let _ = write!(
        out,
        ",\nobs AS (\n  SELECT t.tick, sl.* FROM ticks t JOIN slotted sl ON sl.b + {s} <= t.tick AND sl.b + 2 * {s} > t.tick\n)"
    );
    let robust = rule.statistic == Statistic::MedianMad;
    for i in 0..rule.levels.len() {
        let earlier = format!("PARTITION BY tenant_id, site_id, series, slot{i} ORDER BY b");
        let recent =
            if robust { ",\n         median(x) OVER recent AS med, mad(x) OVER recent AS mad, list(x) OVER recent AS xs" } else { "" };
        // Only the slots some tick observes need their baselines (whole partitions,
        // so the windows stay exact).
        let observed = format!(
            "EXISTS (SELECT 1 FROM obs o WHERE o.tenant_id = sl.tenant_id AND o.site_id = sl.site_id AND o.series = sl.series AND o.slot{i} = sl.slot{i})"
        );
        let _ = write!(
            out,
            ",\nst{i} AS (\n  SELECT tenant_id, site_id, series, b, count(*) OVER earlier AS n, avg(x) OVER earlier AS mean,\n         \
             stddev_samp(x) OVER earlier AS sd{recent}\n  FROM slotted sl\n  WHERE {observed}\n  \
             WINDOW earlier AS ({earlier} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),\n         \
             recent AS ({earlier} ROWS BETWEEN {k} PRECEDING AND 1 PRECEDING)\n)",
        );
    }
    let min_spread = crate::sql::render_expression(&crate::sql::SqlExpr::Num(rule.min_spread));
    let (center, spread): (SqlPart, SqlPart) = match rule.statistic {
        Statistic::MeanStd => (
            Box::new(|i| format!("st{i}.mean")),
            Box::new(move |i| format!("CASE WHEN coalesce(st{i}.sd, 0) > 0 THEN st{i}.sd ELSE {min_spread} END")),
        ),
        Statistic::MedianMad => (
            Box::new(|i| format!("st{i}.med")),
            Box::new(move |i| {
                format!(
                    "CASE WHEN st{i}.mad > 0 THEN 1.4826 * st{i}.mad \
                     WHEN list_avg(list_transform(st{i}.xs, lambda v: abs(v - st{i}.med))) > 0 \
                     THEN 1.2533 * list_avg(list_transform(st{i}.xs, lambda v: abs(v - st{i}.med))) ELSE {min_spread} END"
                )
            }),
        ),
    };
    let pick = |f: &dyn Fn(usize) -> String| {
        let mut e = String::from("CASE");
        for (i, (_, after)) in rule.levels.iter().enumerate() {
            let _ = write!(e, " WHEN coalesce(st{i}.n, 0) >= {after} THEN {}", f(i));
        }
        e.push_str(" END");
        e
    };
    let level_name = |i: usize| string_literal(rule.levels[i].0.name());
    let joins: String = (0..rule.levels.len())
        .map(|i| format!("\n  LEFT JOIN st{i} ON st{i}.tenant_id = o.tenant_id AND st{i}.site_id = o.site_id AND st{i}.series = o.series AND st{i}.b = o.b"))
        .collect();
    let counts: Vec<String> = (0..rule.levels.len()).map(|i| format!("coalesce(st{i}.n, 0) AS n{i}")).collect();
    let _ = write!(
        out,
        ",\ncand AS (\n  SELECT o.tick, o.tenant_id, o.site_id, o.series, o.b, o.x AS observed,\n         {level} AS level, {n} AS n, {center} AS expected, {spread} AS spread,\n         {counts}\n  FROM obs o{joins}\n),\n\
         scored AS (\n  SELECT *, (observed - expected) / spread AS z FROM cand\n)\n",
        level = pick(&level_name),
        n = pick(&|i| format!("st{i}.n")),
        center = pick(&*center),
        spread = pick(&*spread),
        counts = counts.join(", "),
    );
    // The threshold for the row's tenant and site.
    let threshold_of = |rule: &AnomalyRule, scoped: &[crate::plan::ScopedValue]| {
        let scoped = scoped.iter().filter(|s| s.param == "threshold").collect();
        render_expression(&crate::plan::scoped_sql(crate::sql::SqlExpr::Num(rule.threshold), scoped, "r0"))
    };
    let fires_of = |rule: &AnomalyRule, scoped: &[crate::plan::ScopedValue]| {
        let thr = threshold_of(rule, scoped);
        match rule.direction {
            Direction::Above => format!("z >= {thr}"),
            Direction::Below => format!("z <= -({thr})"),
            Direction::Both => format!("abs(z) >= {thr}"),
        }
    };
    if explain {
        let counts: Vec<String> = (0..rule.levels.len()).map(|i| format!("CAST(r0.n{i} AS VARCHAR)")).collect();
        let _ = write!(
            out,
            "SELECT r0.tenant_id, r0.site_id, r0.series, strftime(make_timestamp(r0.b), '%Y-%m-%dT%H:%M:%SZ') AS bucket_start,\n       \
             r0.observed, coalesce(r0.level, 'not stable') AS level, concat_ws('/', {counts}) AS samples_per_level,\n       \
             round(r0.expected, 6) AS expected, round(r0.z, 6) AS z, coalesce(r0.level IS NOT NULL AND ({fires}), false) AS fires\n\
             FROM scored AS r0\nORDER BY r0.tenant_id, r0.site_id, r0.series",
            counts = counts.join(", "),
            fires = fires_of(rule, &[]),
        );
        return out;
    }
    let parts: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, (rule, scoped))| {
            let mut severity = String::from("CASE");
            for (level, beyond) in &rule.escalations {
                let _ = write!(severity, " WHEN abs(z) >= {beyond:?} THEN {}", string_literal(level.name()));
            }
            let _ = write!(severity, " ELSE {} END", string_literal(rule.header.base_severity.name()));
            if rule.escalations.is_empty() {
                severity = string_literal(rule.header.base_severity.name());
            }
            let tick = crate::sql::SqlExpr::Func("make_timestamp", vec![crate::sql::SqlExpr::col("r0", "tick")]);
            let suppressed = render_expression(&crate::plan::suppressed_sql(&rule.header.finding_type, tick, "r0"));
            format!(
                "  SELECT {i} AS rule_index, r0.tenant_id, r0.site_id, r0.series, r0.b, r0.observed, r0.expected, r0.z, r0.n, r0.level,\n         \
                 r0.spread, {severity} AS severity, {suppressed} AS suppressed, r0.tick, CAST({threshold} AS DOUBLE) AS threshold\n  \
                 FROM scored AS r0\n  WHERE r0.level IS NOT NULL AND {fires}",
                fires = fires_of(rule, scoped),
                threshold = threshold_of(rule, scoped),
            )
        })
        .collect();
    let _ = write!(
        out,
        "SELECT * FROM (\n{}\n) AS found\nORDER BY rule_index, tick, tenant_id, site_id, abs(z) DESC, series",
        parts.join("\n  UNION ALL\n")
    );
    out
}

/// Runs [`explain_sql`]: column names and every row as text.
pub fn explain(conn: &duckdb::Connection, rule: &AnomalyRule, now: i64) -> Result<(Vec<String>, Vec<Vec<String>>), duckdb::Error> {
    install_time_zones(conn)?;
    let columns: Vec<String> =
        ["tenant_id", "site_id", "series", "bucket_start", "observed", "level", "samples_per_level", "expected", "z", "fires"]
            .iter()
            .map(|c| c.to_string())
            .collect();
    let mut stmt = conn.prepare(&explain_sql(rule, now))?;
    let width = columns.len();
    let rows = stmt.query_map([], |r| {
        (0..width)
            .map(|i| {
                r.get::<_, duckdb::types::Value>(i).map(|v| match v {
                    duckdb::types::Value::Null => "null".to_string(),
                    duckdb::types::Value::Text(s) => s,
                    duckdb::types::Value::Double(f) => format!("{f}"),
                    duckdb::types::Value::Boolean(b) => b.to_string(),
                    other => format!("{other:?}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok((columns, rows.collect::<Result<_, _>>()?))
}

/// What an anomaly statement returned for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRow {
    /// tenant
    pub tenant_id: String,
    /// site
    pub site_id: String,
    /// the `per` value ('' without `per`)
    pub series: String,
    /// bucket start, microseconds UTC
    pub bucket_start: i64,
    /// the bucket's value
    pub observed: f64,
    /// the baseline's center
    pub expected: f64,
    /// (observed - expected) / spread
    pub z: f64,
    /// samples at the level used
    pub samples: i64,
    /// which level
    pub level: String,
    /// the spread used
    pub spread: f64,
    /// severity from |z|
    pub severity: schema::Severity,
    /// covered by a maintenance window
    pub suppressed: bool,
    /// the evaluation time, microseconds UTC
    pub tick: i64,
    /// the |z| threshold at this tenant and site (overrides applied)
    pub threshold: f64,
}

/// Runs an anomaly rule at each of `ticks` (ascending).
pub fn run_ticks(signals: &crate::load::Signals, rule: &AnomalyRule, ticks: &[i64]) -> Result<Vec<AnomalyRow>, duckdb::Error> {
    Ok(run_group(signals, &[(rule, &[])], ticks)?.into_iter().map(|(_, row)| row).collect())
}

/// Runs anomaly rules that share their baselines ([`same_baselines`]) at each of
/// `ticks` (ascending), in one statement per chunk of
/// [`crate::exec::TICKS_PER_STATEMENT`] ticks: each firing row with the index of its
/// rule in `rules`. The time zone table is installed first.
pub fn run_group(
    signals: &crate::load::Signals,
    rules: &[(&AnomalyRule, &[crate::plan::ScopedValue])],
    ticks: &[i64],
) -> Result<Vec<(usize, AnomalyRow)>, duckdb::Error> {
    install_time_zones(&signals.conn)?;
    let (Some(last), Some((rule, _))) = (ticks.last(), rules.first()) else { return Ok(Vec::new()) };
    // Samples are shared by the ticks of a statement because a complete bucket's rows
    // are visible at every tick that uses it. That holds unless a row's event time is
    // after its bucket time (`count tasks at due_at` with a task created after it was
    // due, or a completion before creation): then each tick gets its own statement.
    let chunk = if rows_arrive_late(&signals.conn, &rule.metric, *last)? { 1 } else { crate::exec::TICKS_PER_STATEMENT };
    let mut out = Vec::new();
    for chunk in ticks.chunks(chunk) {
        let mut stmt = signals.conn.prepare(&statement(rules, chunk, false))?;
        let rows = stmt.query_map([], |r| {
            let index: i64 = r.get(0)?;
            Ok((
                usize::try_from(index).unwrap_or(usize::MAX),
                AnomalyRow {
                    tenant_id: r.get(1)?,
                    site_id: r.get(2)?,
                    series: r.get(3)?,
                    bucket_start: r.get(4)?,
                    observed: r.get(5)?,
                    expected: r.get(6)?,
                    z: r.get(7)?,
                    samples: r.get(8)?,
                    level: r.get(9)?,
                    spread: r.get(10)?,
                    severity: {
                        let text: String = r.get(11)?;
                        schema::Severity::parse(&text).ok_or_else(|| {
                            duckdb::Error::FromSqlConversionFailure(
                                11,
                                duckdb::types::Type::Text,
                                format!("`{text}` is not a severity").into(),
                            )
                        })?
                    },
                    suppressed: r.get(12)?,
                    tick: r.get(13)?,
                    threshold: r.get(14)?,
                },
            ))
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// Does a row of the metric have an event time after its bucket time (up to `now`)?
fn rows_arrive_late(conn: &duckdb::Connection, m: &Metric, now: i64) -> Result<bool, duckdb::Error> {
    let Some(event) = m.table.event_time.filter(|e| *e != m.time_column) else { return Ok(false) };
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {}.{} AS r WHERE r.{ev} > r.{time} AND epoch_us(r.{time}) < {now})",
        ident(RAW_SCHEMA),
        ident(m.table.name),
        ev = ident(event),
        time = ident(m.time_column),
    );
    conn.query_row(&sql, [], |r| r.get(0))
}

/// Rounds a figure for evidence (6 decimals; whole numbers stay whole).
pub fn figure(f: f64) -> serde_json::Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        serde_json::Value::from(f as i64)
    } else {
        serde_json::Number::from_f64((f * 1e6).round() / 1e6).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        crate::load::parse_timestamp(s).expect("timestamp")
    }

    #[test]
    fn london_offsets_change_at_the_2025_transitions() {
        let p = offset_periods(chrono_tz::Europe::London);
        assert_eq!(offset_at(&p, t("2025-03-30T00:59:59Z")), 0);
        assert_eq!(offset_at(&p, t("2025-03-30T01:00:00Z")), 3_600_000_000);
        assert_eq!(offset_at(&p, t("2025-10-26T00:59:59Z")), 3_600_000_000);
        assert_eq!(offset_at(&p, t("2025-10-26T01:00:00Z")), 0);
        let kolkata = offset_periods(chrono_tz::Asia::Kolkata);
        assert_eq!(offset_at(&kolkata, t("2025-06-01T00:00:00Z")), 330 * MINUTE);
    }

    #[test]
    fn slot_sql_agrees_with_level_slot() {
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
                let sql = format!("SELECT {} FROM (SELECT CAST({lt} AS BIGINT) AS lt) AS x", slot_sql(level, "x", bucket));
                let from_sql: i64 = conn.query_row(&sql, [], |r| r.get(0)).expect("slot");
                assert_eq!(from_sql, level.slot(lt, bucket), "{local} {level:?}");
            }
        }
        assert_eq!(Level::HourOfWeek.slot(t("2025-09-01T09:00:00Z"), 60 * MINUTE), 9);
        assert_eq!(Level::HourOfWeek.slot(t("2025-09-07T23:30:00Z"), 30 * MINUTE), 335);
    }
}
