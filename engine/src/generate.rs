//! Synthetic fleets in the CONTRACT format, with injected incidents.
//!
//! Everything is generated inside DuckDB with `range()` and `hash()`, so 10,000
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
use crate::sql::{ident, string_literal, RAW_SCHEMA};

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
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TABLE raw.sites AS
           SELECT 'T' || lpad(CAST(i % 50 AS VARCHAR), 3, '0') AS tenant_id, 'S' || lpad(CAST(i AS VARCHAR), 5, '0') AS site_id,
                  'Site ' || i AS name, ['Europe/London', 'America/New_York', 'Europe/Berlin', 'Asia/Singapore'][1 + i % 4] AS timezone,
                  51.0 AS lat, 0.0 AS lon, 200.0 AS geofence_m, true AS active
           FROM range({sites}) r(i);
         CREATE OR REPLACE TABLE raw.metrics AS
           SELECT 'T' || lpad(CAST(i % 50 AS VARCHAR), 3, '0') AS tenant_id, 'S' || lpad(CAST(i AS VARCHAR), 5, '0') AS site_id,
                  'visitors' AS metric, make_timestamp({start} + h * 1800000000) AS ts, CAST(100 + (i * 7 + h * 13) % 50 AS DOUBLE) AS value
           FROM range({sites}) r(i), range({halves}) q(h);",
        halves = i64::from(days) * 48,
    ))
}

/// Fills the `raw` schema of `conn` with a synthetic fleet.
pub fn fill(conn: &Connection, spec: &FleetSpec) -> Result<(), duckdb::Error> {
    conn.execute_batch(&fleet_sql(spec))
}

/// Writes a synthetic fleet to `dir`, one file per contract table.
pub fn write_fleet(spec: &FleetSpec, dir: &Path, format: FileFormat) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let conn = crate::load::open_database()?;
    fill(&conn, spec)?;
    for table in schema::contract_tables() {
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| match (format, c.storage) {
                (FileFormat::Csv, schema::Storage::Time) => format!("strftime({0}, '%Y-%m-%dT%H:%M:%SZ') AS {0}", ident(c.name)),
                _ => ident(c.name),
            })
            .collect();
        let order = table.event_time.map(|t| format!(" ORDER BY {}", ident(t))).unwrap_or_default();
        let (ext, options) = match format {
            FileFormat::Parquet => ("parquet", "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"),
            FileFormat::Csv => ("csv", "FORMAT csv, HEADER true"),
        };
        let path = dir.join(format!("{}.{ext}", table.name));
        let sql = format!(
            "COPY (SELECT {} FROM {}.{}{order}) TO {} ({options})",
            cols.join(", "),
            ident(RAW_SCHEMA),
            ident(table.name),
            string_literal(&path.to_string_lossy())
        );
        conn.execute_batch(&sql)?;
    }
    Ok(())
}

/// The SQL that builds the fleet. Only numbers from `spec` are formatted in.
fn fleet_sql(spec: &FleetSpec) -> String {
    let tenants = (spec.sites / 10).max(1);
    let FleetSpec { sites, hours, seed, start, incident_percent } = *spec;
    let incident_percent = incident_percent.min(100);
    let end = spec.end();
    // Small helpers expressed as SQL snippets over integer columns.
    let ts = |micros: &str| format!("make_timestamp(CAST({micros} AS BIGINT))");
    let rand = |key: &str, modulo: u32| format!("CAST(hash({key}, {seed}) % {modulo} AS BIGINT)");
    // Shifts of 8 h start 6 h before the span (so T never falls on a shift change);
    // shift k covers offsets [k * 8h - 6h, k * 8h + 2h).
    let guard_at = |offset: &str| format!("p.site_id || '-G' || CAST(((({offset}) + 21600000000) // 28800000000) % 3 AS VARCHAR)");
    format!(
        r#"
CREATE TEMP TABLE plan AS
SELECT i,
       'T' || lpad(CAST(i % {tenants} AS VARCHAR), 3, '0') AS tenant_id,
       'S' || lpad(CAST(i AS VARCHAR), 5, '0') AS site_id,
       51.0 + {lat} / 100000.0 AS lat,
       -1.0 + {lon} / 100000.0 AS lon,
       CASE WHEN {pick} < {incident_percent} THEN {kind} ELSE -1 END AS incident
FROM range({sites}) r(i);

CREATE TABLE raw.sites AS
SELECT tenant_id, site_id, 'Site ' || CAST(i AS VARCHAR) AS name,
       ['Europe/London', 'America/New_York', 'Europe/Berlin', 'Asia/Singapore'][1 + i % 4] AS timezone,
       lat, lon, CAST(200 AS DOUBLE) AS geofence_m, {active} <> 0 AS active
FROM plan;

CREATE TABLE raw.shifts AS
SELECT p.tenant_id, p.site_id, p.site_id || '-SH' || CAST(k AS VARCHAR) AS shift_id,
       p.site_id || '-G' || CAST(k % 3 AS VARCHAR) AS guard_id,
       {shift_start} AS starts_at, {shift_end} AS ends_at,
       CASE WHEN p.incident = 8 AND {start} + k * 28800000000 - 21600000000 <= {end}
                                 AND {end} < {start} + k * 28800000000 + 7200000000 THEN NULL
            ELSE {checkin} END AS checked_in_at,
       {shift_end} AS checked_out_at
FROM plan p, range(0, ({hours} + 6) // 8 + 1) s(k);

CREATE TABLE raw.phone_events AS
SELECT p.tenant_id, p.site_id, {guard_phone} AS guard_id, {guard_phone} || '-D' AS device_id,
       {phone_ts} AS ts,
       CASE WHEN j % 10 = 0 THEN 'checkin' ELSE 'heartbeat' END AS kind
FROM plan p, range(0, {hours} * 24) e(j)
WHERE NOT (p.incident IN (0, 2) AND j * 150000000 > {span} - 5400000000)
  AND NOT (p.incident = 6 AND j * 150000000 > {span} - 2400000000);

CREATE TABLE raw.location_updates AS
SELECT p.tenant_id, p.site_id, {guard_loc} AS guard_id, {guard_loc} || '-D' AS device_id,
       {loc_ts} AS ts,
       p.lat + CASE WHEN p.incident = 3 AND j * 90000000 > {span} - 900000000 THEN 0.01
                    WHEN p.incident = 6 AND j * 90000000 > {span} - 2400000000 THEN 0.0
                    ELSE ({jlat} - 400) / 1000000.0 END AS lat,
       p.lon + CASE WHEN p.incident = 6 AND j * 90000000 > {span} - 2400000000 THEN 0.0
                    ELSE ({jlon} - 400) / 1000000.0 END AS lon,
       CAST(5 + {acc} AS DOUBLE) AS accuracy_m
FROM plan p, range(0, {hours} * 40) e(j)
WHERE NOT (p.incident IN (0, 1) AND j * 90000000 > {span} - 5400000000);

CREATE TABLE raw.tours AS
SELECT p.tenant_id, p.site_id, p.site_id || '-TR' || CAST(t AS VARCHAR) AS tour_id,
       {guard_tour} AS guard_id,
       {tour_start} AS scheduled_start,
       {tour_start} + INTERVAL 45 MINUTE AS scheduled_end,
       CASE WHEN p.incident = 4 AND t >= {hours} - 4 THEN NULL ELSE {tour_start} + INTERVAL 2 MINUTE END AS started_at,
       CASE WHEN p.incident = 4 AND t >= {hours} - 4 THEN NULL
            WHEN p.incident = 3 AND t = {hours} - 1 THEN NULL
            ELSE {tour_start} + INTERVAL 40 MINUTE END AS completed_at,
       CAST(10 AS BIGINT) AS checkpoints_expected
FROM plan p, range(0, {hours}) r(t);

CREATE TABLE raw.checkpoint_scans AS
SELECT p.tenant_id, p.site_id, p.site_id || '-TR' || CAST(t AS VARCHAR) AS tour_id,
       p.site_id || '-CP' || CAST(c AS VARCHAR) AS checkpoint_id,
       {guard_tour} AS guard_id,
       {tour_start} + INTERVAL 2 MINUTE + to_microseconds(c * 240000000) AS ts
FROM plan p, range(0, {hours}) r(t), range(0, 10) k(c)
WHERE NOT (p.incident = 4 AND t >= {hours} - 4)
  AND NOT (p.incident = 3 AND t = {hours} - 1 AND c >= 3)
  AND NOT (p.incident IN (0, 9) AND t * 3600000000 + 120000000 + c * 240000000 > {span} - 9000000000)
  AND t * 3600000000 + 120000000 + c * 240000000 <= {span};

CREATE TABLE raw.tasks AS
SELECT p.tenant_id, p.site_id, p.site_id || '-TK' || CAST(j AS VARCHAR) AS task_id,
       {guard_task} AS assignee_id,
       ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'][1 + {prio}] AS priority,
       {task_created} AS created_at,
       {task_created} + INTERVAL 1 HOUR AS due_at,
       CASE WHEN p.incident IN (4, 7, 8) AND j >= 2 * {hours} - 8 THEN NULL
            WHEN p.incident IN (0, 9) AND j * 1800000000 + 3000000000 > {span} - 9000000000 THEN NULL
            ELSE {task_created} + INTERVAL 50 MINUTE END AS completed_at
FROM plan p, range(0, 2 * {hours}) r(j);

CREATE TABLE raw.alerts AS
SELECT p.tenant_id, p.site_id, p.site_id || '-AL' || CAST(j AS VARCHAR) AS alert_id,
       'intrusion' AS kind, ['LOW', 'MEDIUM', 'HIGH'][1 + {alert_sev}] AS severity,
       {alert_ts} AS raised_at, {alert_ts} + INTERVAL 3 MINUTE AS acknowledged_at,
       CAST(NULL AS TIMESTAMP) AS escalated_at, {alert_ts} + INTERVAL 30 MINUTE AS resolved_at
FROM plan p, range(0, ({hours} + 3) // 4) r(j)
UNION ALL
SELECT p.tenant_id, p.site_id, p.site_id || '-ALX' AS alert_id, 'intrusion', 'HIGH',
       {end_ts} - INTERVAL 30 MINUTE, NULL, NULL, NULL
FROM plan p WHERE p.incident = 5
UNION ALL
SELECT p.tenant_id, p.site_id, p.site_id || '-ALS' || CAST(j AS VARCHAR), 'sensor', 'LOW',
       {end_ts} - to_microseconds((j + 1) * 600000000), {end_ts} - to_microseconds(j * 600000000), NULL, NULL
FROM plan p, range(0, 3) r(j) WHERE p.incident = 4;

CREATE TABLE raw.tickets AS
SELECT p.tenant_id, p.site_id, p.site_id || '-TI' || CAST(j AS VARCHAR) AS ticket_id,
       ['general', 'maintenance', 'field_support'][1 + {ticket_cat}] AS category, 'MEDIUM' AS priority,
       {ticket_ts} AS created_at, {ticket_ts} + INTERVAL 10 MINUTE AS assigned_at,
       {ticket_ts} + INTERVAL 2 HOUR AS resolved_at
FROM plan p, range(0, ({hours} + 5) // 6) r(j)
UNION ALL
SELECT p.tenant_id, p.site_id, p.site_id || '-TIX' || CAST(j AS VARCHAR), 'maintenance', 'MEDIUM',
       {end_ts} - INTERVAL 3 HOUR, {end_ts} - INTERVAL 2 HOUR, NULL
FROM plan p, range(0, 3) r(j) WHERE p.incident = 7;

CREATE TABLE raw.panic_events AS
SELECT p.tenant_id, p.site_id, {guard_end} AS guard_id,
       {start_ts} + INTERVAL 1 MINUTE AS ts, 'panic' AS kind
FROM plan p WHERE p.incident = 6;

CREATE TABLE raw.reports AS
SELECT p.tenant_id, p.site_id, p.site_id || '-RP' || CAST(d AS VARCHAR) AS report_id,
       'daily' AS report_type, {start_ts} + to_microseconds(d * 86400000000) AS period_start,
       {start_ts} + to_microseconds(d * 86400000000) + INTERVAL 25 HOUR AS due_at,
       {start_ts} + to_microseconds(d * 86400000000) + INTERVAL 24 HOUR AS generated_at
FROM plan p, range(0, ({hours} + 23) // 24) r(d);

CREATE TABLE raw.metrics AS
SELECT p.tenant_id, p.site_id, 'visitors' AS metric,
       {start_ts} + to_microseconds(j * 1800000000) AS ts,
       CAST(20 + {visitors} AS DOUBLE) AS value
FROM plan p, range(0, 2 * {hours}) r(j);

CREATE TABLE raw.maintenance_windows AS
SELECT p.tenant_id, p.site_id, {end_ts} - INTERVAL 2 HOUR AS starts_at, {end_ts} + INTERVAL 2 HOUR AS ends_at,
       'planned works' AS reason, CAST(NULL AS VARCHAR) AS finding_types
FROM plan p WHERE {mw} = 0;
"#,
        lat = rand("i, 'lat'", 100_000),
        lon = rand("i, 'lon'", 100_000),
        pick = rand("i, 'incident'", 100),
        kind = rand("i, 'kind'", 10),
        active = rand("i, 'active'", 50),
        shift_start = ts(&format!("{start} + k * 28800000000 - 21600000000")),
        shift_end = ts(&format!("{start} + k * 28800000000 + 7200000000")),
        checkin = ts(&format!("{start} + k * 28800000000 - 21600000000 + {}", rand("p.i, k, 'checkin'", 600) + " * 1000000")),
        guard_end = guard_at(&(end - start - 1).to_string()),
        guard_phone = guard_at("j * 150000000"),
        phone_ts = ts(&format!("{start} + j * 150000000 + {} * 1000000", rand("p.i, j, 'phone'", 60))),
        span = end - start,
        guard_loc = guard_at("j * 90000000"),
        loc_ts = ts(&format!("{start} + j * 90000000 + {} * 1000000", rand("p.i, j, 'loc'", 30))),
        jlat = rand("p.i, j, 'jlat'", 800),
        jlon = rand("p.i, j, 'jlon'", 800),
        acc = rand("p.i, j, 'acc'", 20),
        guard_tour = guard_at("t * 3600000000"),
        tour_start = ts(&format!("{start} + t * 3600000000")),
        guard_task = guard_at("j * 1800000000"),
        prio = rand("p.i, j, 'prio'", 4),
        task_created = ts(&format!("{start} + j * 1800000000")),
        alert_sev = rand("p.i, j, 'asev'", 3),
        alert_ts = ts(&format!("{start} + j * 14400000000 + {} * 1000000", rand("p.i, j, 'ats'", 3600))),
        end_ts = ts(&end.to_string()),
        start_ts = ts(&start.to_string()),
        ticket_cat = rand("p.i, j, 'tcat'", 3),
        ticket_ts = ts(&format!("{start} + j * 21600000000 + {} * 1000000", rand("p.i, j, 'tts'", 3600))),
        visitors = rand("p.i, j, 'visitors'", 30),
        mw = rand("p.i, 'mw'", 100),
    )
}
