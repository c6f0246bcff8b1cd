//! Synthetic fleets in the CONTRACT format, with injected incidents.
//!
//! Everything is generated inside DuckDB with ranges and hashes (statements built
//! from the SQL tree like every other), so 10,000
//! sites x 24 h (about 20 million rows) take seconds, and the same seed always
//! gives the same rows. `incident_percent` of the sites carry one incident each,
//! the kind chosen by hash:
//!
//! | incident | what is injected near the end of the span (T) |
//! |---|---|
//! | 0 silent | no phone, GPS, scans or completed tasks in the last 90 minutes |
//! | 1 gps | no location updates in the last 90 minutes |
//! | 2 phone | no phone events in the last 90 minutes |
//! | 3 abandonment | the last tour is started but not completed; the guard's last fixes are 1 km away |
//! | 4 sla storm | the last 7 due tasks are open, the last 4 tours never started, 3 alerts in the last hour |
//! | 5 chain break | a HIGH alert raised 30 minutes before T, never acknowledged |
//! | 6 distress | a panic event earlier in the span; the guard stands still and the phone is silent for 40 minutes |
//! | 7 shortage | 3 open tickets and 7 overdue tasks |
//! | 8 coverage | the last shift's guard never checks in; tasks are due soon |
//! | 9 phantom | the guard keeps moving but scans nothing and completes nothing for 150 minutes |

use std::path::Path;

use duckdb::Connection;

use crate::schema;
use crate::sql::{
    render_batch, render_statement, CopyFormat, Cte, Dialect, From, Func, Op, OrderKey, Query, Select, SqlExpr, SqlType, Statement,
    TableName, RAW_SCHEMA,
};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct FleetSpec {
    /// Number of sites.
    pub sites: u32,
    /// Hours of history.
    pub hours: u32,
    /// Random seed.
    pub seed: u64,
    /// Start of the span, microseconds since the epoch (UTC).
    pub start: i64,
    /// Percentage of sites (0-100) that carry an incident.
    pub incident_percent: u32,
}

impl FleetSpec {
    /// The end of the span: the natural time to audit at.
    pub fn end(&self) -> i64 {
        self.start + i64::from(self.hours) * 3_600_000_000
    }
}

/// Output file format for [`write_fleet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// one Parquet file per table
    Parquet,
    /// one CSV file per table (timestamps ISO-8601 with Z)
    Csv,
}

/// Replaces `sites` and `metrics` in the `raw` schema of `conn` with a synthetic
/// metrics fleet: `sites` sites over 50 tenants in four time zones, one `visitors`
/// value per site and half hour for `days` days from `start` (the baseline benchmark).
pub fn fill_metrics(conn: &Connection, sites: u32, start: i64, days: u32) -> Result<(), duckdb::Error> {
    let i = || col("r", "i");
    let tenant = concat(vec![text("T"), lpad(rem(i(), 50), 3)]);
    let site = concat(vec![text("S"), lpad(i(), 5)]);
    let site_rows = Select::new(
        series(n(0), n(i64::from(sites)), "r", "i"),
        vec![
            named(tenant.clone(), "tenant_id"),
            named(site.clone(), "site_id"),
            named(concat(vec![text("Site "), varchar(i())]), "name"),
            named(zone_of(i()), "timezone"),
            named(SqlExpr::Decimal { digits: 510, scale: 1 }, "lat"),
            named(SqlExpr::Decimal { digits: 0, scale: 1 }, "lon"),
            named(SqlExpr::Decimal { digits: 2000, scale: 1 }, "geofence_m"),
            named(SqlExpr::Bool(true), "active"),
        ],
    );
    let h = col("q", "h");
    let value = SqlExpr::cast(add(n(100), rem(add(mul(i(), n(7)), mul(h.clone(), n(13))), 50)), SqlType::Double);
    let metric_rows = Select::new(
        From::Cross(vec![series(n(0), n(i64::from(sites)), "r", "i"), series(n(0), n(i64::from(days) * 48), "q", "h")]),
        vec![
            named(tenant, "tenant_id"),
            named(site, "site_id"),
            named(text("visitors"), "metric"),
            named(SqlExpr::func(Func::FromEpochMicros, vec![add(n(start), mul(h, n(1_800_000_000)))]), "ts"),
            named(value, "value"),
        ],
    );
    let statements = [
        Statement::CreateTableAs { table: TableName::in_schema(RAW_SCHEMA, "sites"), query: Box::new(query(site_rows)) },
        Statement::CreateTableAs { table: TableName::in_schema(RAW_SCHEMA, "metrics"), query: Box::new(query(metric_rows)) },
    ];
    conn.execute_batch(&render_batch(&statements, Dialect::DuckDb))
}

/// Fills the `raw` schema of `conn` with a synthetic fleet.
pub fn fill(conn: &Connection, spec: &FleetSpec) -> Result<(), duckdb::Error> {
    conn.execute_batch(&render_batch(&fleet(spec), Dialect::DuckDb))
}

/// Writes a synthetic fleet to `dir`, one file per contract table.
pub fn write_fleet(spec: &FleetSpec, dir: &Path, format: FileFormat) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let conn = crate::load::open_database()?;
    fill(&conn, spec)?;
    for table in schema::contract_tables() {
        let items = table
            .columns
            .iter()
            .map(|c| match (format, c.storage) {
                (FileFormat::Csv, schema::Storage::Time) => named(SqlExpr::func(Func::IsoUtc, vec![SqlExpr::bare(c.name)]), c.name),
                _ => (SqlExpr::bare(c.name), None),
            })
            .collect();
        let mut rows = Select::new(From::Raw { name: table.name.into(), alias: table.name.into() }, items);
        rows.order_by = table.event_time.map(|t| OrderKey::asc_nulls_last(SqlExpr::bare(t))).into_iter().collect();
        let (ext, copy) = match format {
            FileFormat::Parquet => ("parquet", CopyFormat::Parquet),
            FileFormat::Csv => ("csv", CopyFormat::Csv),
        };
        let path = dir.join(format!("{}.{ext}", table.name));
        let statement = Statement::CopyTo { query: Box::new(query(rows)), path: path.to_string_lossy().into_owned(), format: copy };
        conn.execute_batch(&render_statement(&statement, Dialect::DuckDb))?;
    }
    Ok(())
}

// Small builders over the SQL tree.
fn n(i: i64) -> SqlExpr {
    SqlExpr::Int(i)
}
fn text(s: &str) -> SqlExpr {
    SqlExpr::Str(s.to_string())
}
fn col(rel: &str, c: &str) -> SqlExpr {
    SqlExpr::col(rel, c)
}
fn named(e: SqlExpr, name: &str) -> (SqlExpr, Option<String>) {
    (e, Some(name.to_string()))
}
fn add(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::bin(Op::Add, a, b)
}
fn sub(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::bin(Op::Sub, a, b)
}
fn mul(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::bin(Op::Mul, a, b)
}
fn rem(a: SqlExpr, m: i64) -> SqlExpr {
    SqlExpr::bin(Op::Mod, a, n(m))
}
fn gt(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::bin(Op::Gt, a, b)
}
fn eq(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    SqlExpr::eq(a, b)
}
fn and(parts: Vec<SqlExpr>) -> SqlExpr {
    SqlExpr::and_all(parts).unwrap_or(SqlExpr::Bool(true))
}
fn not(e: SqlExpr) -> SqlExpr {
    SqlExpr::Not(Box::new(e))
}
fn one_of(e: SqlExpr, values: &[i64]) -> SqlExpr {
    SqlExpr::InList(Box::new(e), values.iter().map(|v| n(*v)).collect())
}
fn varchar(e: SqlExpr) -> SqlExpr {
    SqlExpr::cast(e, SqlType::Varchar)
}
fn concat(parts: Vec<SqlExpr>) -> SqlExpr {
    parts.into_iter().reduce(|a, b| SqlExpr::bin(Op::Concat, a, b)).unwrap_or(SqlExpr::Null)
}
fn lpad(e: SqlExpr, width: i64) -> SqlExpr {
    SqlExpr::func(Func::Lpad, vec![varchar(e), n(width), text("0")])
}
/// `start..stop` as rows of one column.
fn series(start: SqlExpr, stop: SqlExpr, alias: &str, column: &str) -> From {
    From::Series { start: Box::new(start), stop: Box::new(stop), alias: alias.into(), column: column.into() }
}
/// A timestamp from microseconds since the epoch.
fn ts(micros: SqlExpr) -> SqlExpr {
    SqlExpr::func(Func::FromEpochMicros, vec![SqlExpr::cast(micros, SqlType::BigInt)])
}
/// `t + minutes`.
fn plus_minutes(t: SqlExpr, minutes: i64) -> SqlExpr {
    add(t, SqlExpr::func(Func::MicrosInterval, vec![n(minutes * 60_000_000)]))
}
/// `t - minutes`.
fn minus_minutes(t: SqlExpr, minutes: i64) -> SqlExpr {
    sub(t, SqlExpr::func(Func::MicrosInterval, vec![n(minutes * 60_000_000)]))
}
/// The `index`-th (from 0) of some words.
fn pick(words: &[&str], index: SqlExpr) -> SqlExpr {
    SqlExpr::ListItem(words.iter().map(|w| text(w)).collect(), Box::new(index))
}
fn zone_of(i: SqlExpr) -> SqlExpr {
    pick(&["Europe/London", "America/New_York", "Europe/Berlin", "Asia/Singapore"], rem(i, 4))
}
fn query(body: Select) -> Query {
    Query { ctes: vec![], body }
}
/// `SELECT * FROM (a UNION ALL b ...)`
fn union_all(parts: Vec<Select>) -> Query {
    Query { ctes: vec![Cte::union_all("u", parts)], body: Select::new(From::table("u", "u"), vec![(SqlExpr::AllColumns, None)]) }
}

/// The statements that build the fleet. Only numbers from `spec` go in, as literals.
fn fleet(spec: &FleetSpec) -> Vec<Statement> {
    let tenants = i64::from((spec.sites / 10).max(1));
    let FleetSpec { sites, hours, seed, start, incident_percent } = *spec;
    let hours = i64::from(hours);
    let incident_percent = i64::from(incident_percent.min(100));
    let end = spec.end();
    let span = end - start;
    // A pseudo-random number in [0, modulo) from keys and the seed.
    let rand = |mut keys: Vec<SqlExpr>, modulo: i64| {
        keys.push(SqlExpr::UInt(seed));
        SqlExpr::cast(rem(SqlExpr::func(Func::Hash, keys), modulo), SqlType::BigInt)
    };
    let p = |c: &str| col("p", c);
    let pi = || p("i");
    // Shifts of 8 h start 6 h before the span (so T never falls on a shift change);
    // shift k covers offsets [k * 8h - 6h, k * 8h + 2h).
    let guard_at = |offset: SqlExpr| {
        let shift = rem(SqlExpr::bin(Op::IntDiv, add(offset, n(21_600_000_000)), n(28_800_000_000)), 3);
        concat(vec![p("site_id"), text("-G"), varchar(shift)])
    };
    let id = |suffix: &str, k: SqlExpr| concat(vec![p("site_id"), text(suffix), varchar(k)]);
    let table = |name: &str, q: Query| Statement::CreateTableAs { table: TableName::in_schema(RAW_SCHEMA, name), query: Box::new(q) };
    let from_plan = |more: Vec<From>| {
        let mut all = vec![From::table("plan", "p")];
        all.extend(more);
        if all.len() == 1 {
            From::table("plan", "p")
        } else {
            From::Cross(all)
        }
    };
    let incident = || p("incident");
    let start_ts = || ts(n(start));
    let end_ts = || ts(n(end));

    // The sites, their tenants, places and incidents.
    let i = || col("r", "i");
    let plan = Select::new(
        series(n(0), n(i64::from(sites)), "r", "i"),
        vec![
            named(i(), "i"),
            named(concat(vec![text("T"), lpad(rem(i(), tenants), 3)]), "tenant_id"),
            named(concat(vec![text("S"), lpad(i(), 5)]), "site_id"),
            named(
                add(
                    SqlExpr::Decimal { digits: 510, scale: 1 },
                    SqlExpr::bin(Op::Div, rand(vec![i(), text("lat")], 100_000), SqlExpr::Decimal { digits: 1_000_000, scale: 1 }),
                ),
                "lat",
            ),
            named(
                add(
                    SqlExpr::Decimal { digits: -10, scale: 1 },
                    SqlExpr::bin(Op::Div, rand(vec![i(), text("lon")], 100_000), SqlExpr::Decimal { digits: 1_000_000, scale: 1 }),
                ),
                "lon",
            ),
            named(
                SqlExpr::case(
                    vec![(
                        SqlExpr::bin(Op::Lt, rand(vec![i(), text("incident")], 100), n(incident_percent)),
                        rand(vec![i(), text("kind")], 10),
                    )],
                    n(-1),
                ),
                "incident",
            ),
        ],
    );
    let sites_rows = Select::new(
        from_plan(vec![]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(concat(vec![text("Site "), varchar(pi())]), "name"),
            named(zone_of(pi()), "timezone"),
            named(p("lat"), "lat"),
            named(p("lon"), "lon"),
            named(SqlExpr::cast(n(200), SqlType::Double), "geofence_m"),
            named(SqlExpr::bin(Op::Ne, rand(vec![pi(), text("active")], 50), n(0)), "active"),
        ],
    );

    // Shifts: k-th shift from 6 h before the start, 8 h each.
    let k = || col("s", "k");
    let shift_from = || add(n(start), sub(mul(k(), n(28_800_000_000)), n(21_600_000_000)));
    let shift_to = || add(n(start), add(mul(k(), n(28_800_000_000)), n(7_200_000_000)));
    let shift_at_end =
        and(vec![eq(incident(), n(8)), SqlExpr::bin(Op::Le, shift_from(), n(end)), SqlExpr::bin(Op::Lt, n(end), shift_to())]);
    let checkin = ts(add(shift_from(), mul(rand(vec![pi(), k(), text("checkin")], 600), n(1_000_000))));
    let shifts = Select::new(
        from_plan(vec![series(n(0), n((hours + 6) / 8 + 1), "s", "k")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(id("-SH", k()), "shift_id"),
            named(concat(vec![p("site_id"), text("-G"), varchar(rem(k(), 3))]), "guard_id"),
            named(ts(shift_from()), "starts_at"),
            named(ts(shift_to()), "ends_at"),
            named(SqlExpr::case(vec![(shift_at_end, SqlExpr::Null)], checkin), "checked_in_at"),
            named(ts(shift_to()), "checked_out_at"),
        ],
    );

    // Phone events every 150 s, location updates every 90 s.
    let j = || col("e", "j");
    let guard_phone = || guard_at(mul(j(), n(150_000_000)));
    let phone_ts = ts(add(add(n(start), mul(j(), n(150_000_000))), mul(rand(vec![pi(), j(), text("phone")], 60), n(1_000_000))));
    let phone = Select::new(
        from_plan(vec![series(n(0), n(hours * 24), "e", "j")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(guard_phone(), "guard_id"),
            named(concat(vec![guard_phone(), text("-D")]), "device_id"),
            named(phone_ts, "ts"),
            named(SqlExpr::case(vec![(eq(rem(j(), 10), n(0)), text("checkin"))], text("heartbeat")), "kind"),
        ],
    )
    .filtered(vec![
        not(and(vec![one_of(incident(), &[0, 2]), gt(mul(j(), n(150_000_000)), n(span - 5_400_000_000))])),
        not(and(vec![eq(incident(), n(6)), gt(mul(j(), n(150_000_000)), n(span - 2_400_000_000))])),
    ]);
    let guard_loc = || guard_at(mul(j(), n(90_000_000)));
    let moved = |lead: i64| and(vec![eq(incident(), n(6)), gt(mul(j(), n(90_000_000)), n(span - lead))]);
    let jitter = |key: &str| {
        SqlExpr::bin(Op::Div, sub(rand(vec![pi(), j(), text(key)], 800), n(400)), SqlExpr::Decimal { digits: 10_000_000, scale: 1 })
    };
    let lat = SqlExpr::case(
        vec![
            (and(vec![eq(incident(), n(3)), gt(mul(j(), n(90_000_000)), n(span - 900_000_000))]), SqlExpr::Decimal { digits: 1, scale: 2 }),
            (moved(2_400_000_000), SqlExpr::Decimal { digits: 0, scale: 1 }),
        ],
        jitter("jlat"),
    );
    let lon = SqlExpr::case(vec![(moved(2_400_000_000), SqlExpr::Decimal { digits: 0, scale: 1 })], jitter("jlon"));
    let locations = Select::new(
        from_plan(vec![series(n(0), n(hours * 40), "e", "j")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(guard_loc(), "guard_id"),
            named(concat(vec![guard_loc(), text("-D")]), "device_id"),
            named(ts(add(add(n(start), mul(j(), n(90_000_000))), mul(rand(vec![pi(), j(), text("loc")], 30), n(1_000_000)))), "ts"),
            named(add(p("lat"), lat), "lat"),
            named(add(p("lon"), lon), "lon"),
            named(SqlExpr::cast(add(n(5), rand(vec![pi(), j(), text("acc")], 20)), SqlType::Double), "accuracy_m"),
        ],
    )
    .filtered(vec![not(and(vec![one_of(incident(), &[0, 1]), gt(mul(j(), n(90_000_000)), n(span - 5_400_000_000))]))]);

    // Hourly tours of 10 checkpoints.
    let t = || col("r", "t");
    let tour_start = || ts(add(n(start), mul(t(), n(3_600_000_000))));
    let never_started = || and(vec![eq(incident(), n(4)), SqlExpr::bin(Op::Ge, t(), n(hours - 4))]);
    let abandoned = || and(vec![eq(incident(), n(3)), eq(t(), n(hours - 1))]);
    let tours = Select::new(
        from_plan(vec![series(n(0), n(hours), "r", "t")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(id("-TR", t()), "tour_id"),
            named(guard_at(mul(t(), n(3_600_000_000))), "guard_id"),
            named(tour_start(), "scheduled_start"),
            named(plus_minutes(tour_start(), 45), "scheduled_end"),
            named(SqlExpr::case(vec![(never_started(), SqlExpr::Null)], plus_minutes(tour_start(), 2)), "started_at"),
            named(
                SqlExpr::case(vec![(never_started(), SqlExpr::Null), (abandoned(), SqlExpr::Null)], plus_minutes(tour_start(), 40)),
                "completed_at",
            ),
            named(SqlExpr::cast(n(10), SqlType::BigInt), "checkpoints_expected"),
        ],
    );
    let c = || col("k", "c");
    let scanned_at = || add(add(mul(t(), n(3_600_000_000)), n(120_000_000)), mul(c(), n(240_000_000)));
    let scans = Select::new(
        from_plan(vec![series(n(0), n(hours), "r", "t"), series(n(0), n(10), "k", "c")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(id("-TR", t()), "tour_id"),
            named(id("-CP", c()), "checkpoint_id"),
            named(guard_at(mul(t(), n(3_600_000_000))), "guard_id"),
            named(add(plus_minutes(tour_start(), 2), SqlExpr::func(Func::MicrosInterval, vec![mul(c(), n(240_000_000))])), "ts"),
        ],
    )
    .filtered(vec![
        not(never_started()),
        not(and(vec![abandoned(), SqlExpr::bin(Op::Ge, c(), n(3))])),
        not(and(vec![one_of(incident(), &[0, 9]), gt(scanned_at(), n(span - 9_000_000_000))])),
        SqlExpr::bin(Op::Le, scanned_at(), n(span)),
    ]);

    // Tasks every 30 minutes, due an hour later.
    let j = || col("r", "j");
    let task_created = || ts(add(n(start), mul(j(), n(1_800_000_000))));
    let tasks = Select::new(
        from_plan(vec![series(n(0), n(2 * hours), "r", "j")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(id("-TK", j()), "task_id"),
            named(guard_at(mul(j(), n(1_800_000_000))), "assignee_id"),
            named(pick(&["LOW", "MEDIUM", "HIGH", "CRITICAL"], rand(vec![pi(), j(), text("prio")], 4)), "priority"),
            named(task_created(), "created_at"),
            named(plus_minutes(task_created(), 60), "due_at"),
            named(
                SqlExpr::case(
                    vec![
                        (and(vec![one_of(incident(), &[4, 7, 8]), SqlExpr::bin(Op::Ge, j(), n(2 * hours - 8))]), SqlExpr::Null),
                        (
                            and(vec![
                                one_of(incident(), &[0, 9]),
                                gt(add(mul(j(), n(1_800_000_000)), n(3_000_000_000)), n(span - 9_000_000_000)),
                            ]),
                            SqlExpr::Null,
                        ),
                    ],
                    plus_minutes(task_created(), 50),
                ),
                "completed_at",
            ),
        ],
    );

    // Alerts every 4 hours; the chain break and the storm's sensor alerts.
    let alert_ts = || ts(add(add(n(start), mul(j(), n(14_400_000_000))), mul(rand(vec![pi(), j(), text("ats")], 3600), n(1_000_000))));
    let null_ts = || SqlExpr::cast(SqlExpr::Null, SqlType::Timestamp);
    let alerts = union_all(vec![
        Select::new(
            from_plan(vec![series(n(0), n((hours + 3) / 4), "r", "j")]),
            vec![
                named(p("tenant_id"), "tenant_id"),
                named(p("site_id"), "site_id"),
                named(id("-AL", j()), "alert_id"),
                named(text("intrusion"), "kind"),
                named(pick(&["LOW", "MEDIUM", "HIGH"], rand(vec![pi(), j(), text("asev")], 3)), "severity"),
                named(alert_ts(), "raised_at"),
                named(plus_minutes(alert_ts(), 3), "acknowledged_at"),
                named(null_ts(), "escalated_at"),
                named(plus_minutes(alert_ts(), 30), "resolved_at"),
            ],
        ),
        Select::new(
            from_plan(vec![]),
            vec![
                (p("tenant_id"), None),
                (p("site_id"), None),
                (concat(vec![p("site_id"), text("-ALX")]), None),
                (text("intrusion"), None),
                (text("HIGH"), None),
                (minus_minutes(end_ts(), 30), None),
                (SqlExpr::Null, None),
                (SqlExpr::Null, None),
                (SqlExpr::Null, None),
            ],
        )
        .filtered(vec![eq(incident(), n(5))]),
        Select::new(
            from_plan(vec![series(n(0), n(3), "r", "j")]),
            vec![
                (p("tenant_id"), None),
                (p("site_id"), None),
                (id("-ALS", j()), None),
                (text("sensor"), None),
                (text("LOW"), None),
                (sub(end_ts(), SqlExpr::func(Func::MicrosInterval, vec![mul(add(j(), n(1)), n(600_000_000))])), None),
                (sub(end_ts(), SqlExpr::func(Func::MicrosInterval, vec![mul(j(), n(600_000_000))])), None),
                (SqlExpr::Null, None),
                (SqlExpr::Null, None),
            ],
        )
        .filtered(vec![eq(incident(), n(4))]),
    ]);

    // Tickets every 6 hours; the shortage's open ones.
    let ticket_ts = || ts(add(add(n(start), mul(j(), n(21_600_000_000))), mul(rand(vec![pi(), j(), text("tts")], 3600), n(1_000_000))));
    let tickets = union_all(vec![
        Select::new(
            from_plan(vec![series(n(0), n((hours + 5) / 6), "r", "j")]),
            vec![
                named(p("tenant_id"), "tenant_id"),
                named(p("site_id"), "site_id"),
                named(id("-TI", j()), "ticket_id"),
                named(pick(&["general", "maintenance", "field_support"], rand(vec![pi(), j(), text("tcat")], 3)), "category"),
                named(text("MEDIUM"), "priority"),
                named(ticket_ts(), "created_at"),
                named(plus_minutes(ticket_ts(), 10), "assigned_at"),
                named(plus_minutes(ticket_ts(), 120), "resolved_at"),
            ],
        ),
        Select::new(
            from_plan(vec![series(n(0), n(3), "r", "j")]),
            vec![
                (p("tenant_id"), None),
                (p("site_id"), None),
                (id("-TIX", j()), None),
                (text("maintenance"), None),
                (text("MEDIUM"), None),
                (minus_minutes(end_ts(), 180), None),
                (minus_minutes(end_ts(), 120), None),
                (SqlExpr::Null, None),
            ],
        )
        .filtered(vec![eq(incident(), n(7))]),
    ]);

    let panic = Select::new(
        from_plan(vec![]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(guard_at(n(end - start - 1)), "guard_id"),
            named(plus_minutes(start_ts(), 1), "ts"),
            named(text("panic"), "kind"),
        ],
    )
    .filtered(vec![eq(incident(), n(6))]);

    // Daily reports, generated an hour before they are due.
    let d = || col("r", "d");
    let period = || add(start_ts(), SqlExpr::func(Func::MicrosInterval, vec![mul(d(), n(86_400_000_000))]));
    let reports = Select::new(
        from_plan(vec![series(n(0), n((hours + 23) / 24), "r", "d")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(id("-RP", d()), "report_id"),
            named(text("daily"), "report_type"),
            named(period(), "period_start"),
            named(plus_minutes(period(), 25 * 60), "due_at"),
            named(plus_minutes(period(), 24 * 60), "generated_at"),
        ],
    );
    let metrics = Select::new(
        from_plan(vec![series(n(0), n(2 * hours), "r", "j")]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(text("visitors"), "metric"),
            named(add(start_ts(), SqlExpr::func(Func::MicrosInterval, vec![mul(j(), n(1_800_000_000))])), "ts"),
            named(SqlExpr::cast(add(n(20), rand(vec![pi(), j(), text("visitors")], 30)), SqlType::Double), "value"),
        ],
    );
    let maintenance = Select::new(
        from_plan(vec![]),
        vec![
            named(p("tenant_id"), "tenant_id"),
            named(p("site_id"), "site_id"),
            named(minus_minutes(end_ts(), 120), "starts_at"),
            named(plus_minutes(end_ts(), 120), "ends_at"),
            named(text("planned works"), "reason"),
            named(SqlExpr::cast(SqlExpr::Null, SqlType::Varchar), "finding_types"),
        ],
    )
    .filtered(vec![eq(rand(vec![pi(), text("mw")], 100), n(0))]);

    vec![
        Statement::CreateTempTableAs { name: "plan".into(), query: Box::new(query(plan)) },
        table("sites", query(sites_rows)),
        table("shifts", query(shifts)),
        table("phone_events", query(phone)),
        table("location_updates", query(locations)),
        table("tours", query(tours)),
        table("checkpoint_scans", query(scans)),
        table("tasks", query(tasks)),
        table("alerts", alerts),
        table("tickets", tickets),
        table("panic_events", query(panic)),
        table("reports", query(reports)),
        table("metrics", query(metrics)),
        table("maintenance_windows", query(maintenance)),
    ]
}
