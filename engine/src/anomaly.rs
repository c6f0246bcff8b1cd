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
//!   the same sample set ([`samples_ctes`]).
//! - Site-local time comes from chrono-tz (DuckDB's bundled build has no ICU):
//!   [`install_time_zones`] writes each zone's UTC offset periods into a temp
//!   table the SQL joins, so a DST change moves no bucket to another slot.
//! - Identifiers in the SQL come from [`crate::schema`]; values are literals
//!   escaped by [`crate::sql`]; nothing from a rule is pasted in as text.
//! - Only complete buckets count (bucket end <= T); a bucket straddling T is never used.

use std::collections::HashMap;

use chrono::{Offset, TimeZone};

use crate::check::{self, Macros, TExpr};
use crate::diag::{codes, Diagnostic};
use crate::schema::{self, Storage, Table, Word};
use crate::sql::{
    render, render_batch, render_statement, ColumnDef, Dialect, From, InsertSource, Op, OrderKey, Select, SqlExpr, SqlType, Statement,
    TableName,
};

pub use crate::plan::anomaly::{same_baselines, samples_ctes, slot_expr};
use crate::syntax::ast::{AnomalyDef, AnomalyItem, MetricAgg, MetricDef, MetricSource, RuleItem, SettingValue, Span};

/// Microseconds per minute.
const MINUTE: i64 = 60_000_000;
/// Microseconds per day.
const DAY: i64 = 1440 * MINUTE;

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
    /// exponentially weighted mean and standard deviation of the last `window` samples
    /// of the slot, weights halving every `half_life` samples back
    Ewma,
}

impl Statistic {
    /// Its name in the language.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::MeanStd => "mean_std",
            Statistic::MedianMad => "median_mad",
            Statistic::Ewma => "ewma",
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
    /// `ewma`: samples after which a sample's weight has halved.
    pub half_life: f64,
    /// Consecutive buckets beyond the threshold before a finding is raised.
    pub confirm: u32,
    /// Once raised, the finding holds while |z| stays at or beyond this (hysteresis);
    /// `None`: the threshold itself.
    pub clear_below: Option<f64>,
    /// A sample whose |z| against the baseline of all earlier samples of its level is
    /// at or beyond this is kept out of the baselines of later samples.
    pub exclude_outliers: Option<f64>,
    /// `young widen`: thresholds widened while a level has few samples (a Student-t
    /// prediction interval; [`young_factor`]).
    pub young_widen: bool,
}

/// How much wider a threshold `t` is when the baseline has `n` samples (`young widen`):
/// the Student-t quantile with n - 1 degrees of freedom at the normal quantile `t`
/// (Cornish-Fisher expansion, four terms), times sqrt(1 + 1/n) for the prediction
/// interval of a new sample, over `t`. Tends to 1 as n grows; 1.0 for n < 2.
pub fn young_factor(t: f64, n: f64) -> f64 {
    if n < 2.0 {
        return 1.0;
    }
    let nu = n - 1.0;
    let q = t
        + (t.powi(3) + t) / (4.0 * nu)
        + (5.0 * t.powi(5) + 16.0 * t.powi(3) + 3.0 * t) / (96.0 * nu * nu)
        + (3.0 * t.powi(7) + 19.0 * t.powi(5) + 17.0 * t.powi(3) - 15.0 * t) / (384.0 * nu.powi(3));
    q * (1.0 + 1.0 / n).sqrt() / t
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
        half_life: 16.0,
        confirm: 1,
        clear_below: None,
        exclude_outliers: None,
        young_widen: false,
    };
    let mut window = None;
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
                        Some("ewma") => out.statistic = Statistic::Ewma,
                        _ => errors.push(bad("`mean_std`, `median_mad` or `ewma`")),
                    },
                    "stable_after" => match first {
                        Some(SettingValue::Number(n, _)) if count(*n).is_some() => stable_after = count(*n).unwrap_or(30),
                        _ => errors.push(bad("a whole number of samples such as 30")),
                    },
                    "window" => match first {
                        Some(SettingValue::Number(n, _)) if count(*n).is_some() => window = count(*n),
                        _ => errors.push(bad("a whole number of samples such as 52")),
                    },
                    "half_life" => match first {
                        Some(SettingValue::Number(n, _)) if *n > 0.0 && *n <= 1_000_000.0 => out.half_life = *n,
                        _ => errors.push(bad("a positive number of samples such as 16")),
                    },
                    "confirm" => match first {
                        Some(SettingValue::Number(n, _)) if count(*n).is_some_and(|c| c <= 1000) => out.confirm = count(*n).unwrap_or(1),
                        _ => errors.push(bad("a whole number of buckets such as 3")),
                    },
                    "clear_below" => match first {
                        Some(SettingValue::Number(z, _)) if *z > 0.0 => out.clear_below = Some(*z),
                        _ => errors.push(bad("a positive |z| such as 1.5")),
                    },
                    "exclude_outliers" => match first {
                        Some(SettingValue::Number(z, _)) if *z > 0.0 => out.exclude_outliers = Some(*z),
                        _ => errors.push(bad("a positive |z| such as 4")),
                    },
                    "young" => match word(first).as_ref().map(|w| w.name.as_str()) {
                        Some("widen") => out.young_widen = true,
                        Some("fixed") => out.young_widen = false,
                        _ => errors.push(bad("`widen` or `fixed`")),
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
    // The EWMA reads the last 8 half-lives of samples (older weights are below 1/256).
    out.window = window.unwrap_or(match out.statistic {
        Statistic::Ewma => (8.0 * out.half_life).ceil().min(1_000_000.0) as u32,
        _ => 52,
    });
    if let (Some(clear), Some(span)) = (out.clear_below, seen.get("clear_below")) {
        if clear > out.threshold {
            errors.push(
                Diagnostic::error(
                    codes::UNKNOWN_VALUE,
                    format!("`clear_below {clear}` is above the threshold {}", out.threshold),
                    *span,
                    "a finding would clear before it could be raised",
                )
                .hint("clear_below is the |z| under which a raised finding clears: at most the threshold"),
            );
        }
    }
    if let (Some(span), false) = (seen.get("half_life"), out.statistic == Statistic::Ewma) {
        errors.push(
            Diagnostic::error(codes::UNKNOWN_VALUE, "`half_life` is for `statistic ewma`", *span, "not used by this statistic")
                .hint("statistic ewma"),
        );
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
    let present = Statement::select(Select::new(From::Nothing, vec![(SqlExpr::TempTableExists(TZ_TABLE.into()), None)]));
    if conn.query_row(&render_statement(&present, Dialect::DuckDb), [], |r| r.get::<_, bool>(0))? {
        return Ok(());
    }
    let mut zones: Vec<String> = {
        let tz = SqlExpr::col("s", "timezone");
        let mut select = Select::new(From::Raw { name: "sites".into(), alias: "s".into() }, vec![(tz.clone(), None)])
            .filtered(vec![SqlExpr::IsNull(Box::new(tz.clone()), true)]);
        select.distinct = true;
        select.order_by = vec![OrderKey::asc(tz)];
        let mut stmt = conn.prepare(&render_statement(&Statement::select(select), Dialect::DuckDb))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    zones.push("UTC".into());
    zones.sort();
    zones.dedup();
    let column = |name: &str, ty: SqlType| ColumnDef { name: name.into(), ty, not_null: true };
    let mut values = Vec::new();
    for zone in &zones {
        // Loading refused unknown zones; one that still does not parse reads as UTC.
        let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        for (from, until, off) in cached_periods(tz) {
            values.push(vec![SqlExpr::Str(zone.clone()), SqlExpr::Int(from), SqlExpr::Int(until), SqlExpr::Int(off)]);
        }
    }
    let table = TableName::local(TZ_TABLE);
    let statements = [
        Statement::CreateTable {
            table: table.clone(),
            columns: vec![
                column("timezone", SqlType::Varchar),
                column("from_us", SqlType::BigInt),
                column("until_us", SqlType::BigInt),
                column("offset_us", SqlType::BigInt),
            ],
            primary_key: vec![],
            temporary: true,
        },
        Statement::Insert { table, source: InsertSource::Values(values), replace: false },
    ];
    conn.execute_batch(&render_batch(&statements, Dialect::DuckDb))
}

/// The statement of an anomaly rule at each of `ticks` (ascending), as text.
pub fn evaluation_sql(rule: &AnomalyRule, ticks: &[i64]) -> String {
    evaluation_sql_in(rule, ticks, Dialect::DuckDb)
}

/// [`evaluation_sql`] in a dialect.
pub fn evaluation_sql_in(rule: &AnomalyRule, ticks: &[i64], dialect: Dialect) -> String {
    let (first, last) = (ticks.first().copied().unwrap_or(0), ticks.last().copied().unwrap_or(0));
    render(&crate::plan::anomaly::evaluation(rule, first, last), ticks, dialect)
}

/// The `explain` statement of an anomaly rule at `now`, as text.
pub fn explain_sql(rule: &AnomalyRule, now: i64) -> String {
    render(&crate::plan::anomaly::explain(rule, now), &[now], Dialect::DuckDb)
}

/// Runs [`explain_sql`]: column names and every row as text.
pub fn explain(conn: &duckdb::Connection, rule: &AnomalyRule, now: i64) -> Result<(Vec<String>, Vec<Vec<String>>), duckdb::Error> {
    install_time_zones(conn)?;
    let columns: Vec<String> =
        ["tenant_id", "site_id", "series", "bucket_start", "observed", "level", "samples_per_level", "expected", "z", "threshold", "fires"]
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
pub fn run_ticks(signals: &crate::load::Signals, rule: &AnomalyRule, ticks: &[i64]) -> Result<Vec<AnomalyRow>, String> {
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
) -> Result<Vec<(usize, AnomalyRow)>, String> {
    install_time_zones(&signals.conn).map_err(|e| e.to_string())?;
    let (Some(last), Some((rule, _))) = (ticks.last(), rules.first()) else { return Ok(Vec::new()) };
    // Samples are shared by the ticks of a statement because a complete bucket's rows
    // are visible at every tick that uses it. That holds unless a row's event time is
    // after its bucket time (`count tasks at due_at` with a task created after it was
    // due, or a completion before creation): then each tick gets its own statement.
    // (Asked of the local copy: a remote backend holds the same rows.)
    let late = rows_arrive_late(&signals.conn, &rule.metric, *last).map_err(|e| e.to_string())?;
    let chunk = if late { 1 } else { crate::exec::TICKS_PER_STATEMENT };
    let mut out = Vec::new();
    for chunk in ticks.chunks(chunk) {
        let (first, last) = (chunk.first().copied().unwrap_or(0), chunk.last().copied().unwrap_or(0));
        let query = crate::plan::anomaly::statement(rules, first, last, false);
        if let Some(remote) = &signals.remote {
            for row in remote.query(&render(&query, chunk, remote.dialect()), 15)? {
                out.push(remote_row(&row)?);
            }
            continue;
        }
        let duck = || -> Result<Vec<(usize, AnomalyRow)>, duckdb::Error> {
            let mut stmt = signals.conn.prepare(&render(&query, chunk, Dialect::DuckDb))?;
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
            rows.collect()
        };
        out.extend(duck().map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// A row of the anomaly statement from a remote backend (the columns of [`run_group`]).
fn remote_row(row: &[duckdb::types::Value]) -> Result<(usize, AnomalyRow), String> {
    use duckdb::types::Value as V;
    let bad = |i: usize| format!("column {i} of the anomaly statement is {:?}", row.get(i));
    let int = |i: usize| match row.get(i) {
        Some(V::BigInt(v)) => Ok(*v),
        _ => Err(bad(i)),
    };
    let float = |i: usize| match row.get(i) {
        Some(V::Double(v)) => Ok(*v),
        Some(V::BigInt(v)) => Ok(*v as f64),
        _ => Err(bad(i)),
    };
    let text = |i: usize| match row.get(i) {
        Some(V::Text(v)) => Ok(v.clone()),
        _ => Err(bad(i)),
    };
    let severity = text(11)?;
    Ok((
        usize::try_from(int(0)?).unwrap_or(usize::MAX),
        AnomalyRow {
            tenant_id: text(1)?,
            site_id: text(2)?,
            series: text(3)?,
            bucket_start: int(4)?,
            observed: float(5)?,
            expected: float(6)?,
            z: float(7)?,
            samples: int(8)?,
            level: text(9)?,
            spread: float(10)?,
            severity: schema::Severity::parse(&severity).ok_or_else(|| format!("`{severity}` is not a severity"))?,
            suppressed: matches!(row.get(12), Some(V::Boolean(true))),
            tick: int(13)?,
            threshold: float(14)?,
        },
    ))
}

/// Does a row of the metric have an event time after its bucket time (up to `now`)?
fn rows_arrive_late(conn: &duckdb::Connection, m: &Metric, now: i64) -> Result<bool, duckdb::Error> {
    let Some(event) = m.table.event_time.filter(|e| *e != m.time_column) else { return Ok(false) };
    let (ev, time) = (SqlExpr::col("r", event), SqlExpr::col("r", m.time_column));
    let late = Select::new(From::Raw { name: m.table.name.into(), alias: "r".into() }, vec![(SqlExpr::Int(1), None)])
        .filtered(vec![SqlExpr::bin(Op::Gt, ev, time.clone()), SqlExpr::bin(Op::Lt, time, SqlExpr::Timestamp(now))]);
    let query = Statement::select(Select::new(From::Nothing, vec![(SqlExpr::Exists(Box::new(late)), None)]));
    conn.query_row(&render_statement(&query, Dialect::DuckDb), [], |r| r.get(0))
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
}
