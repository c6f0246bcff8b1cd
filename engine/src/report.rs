//! Client reports: what a guard company shows its client about a period at its sites,
//! computed from the signal tables and the findings store, in each site's local time.
//!
//! Definitions (the literal readings, also in the README):
//! - The period is the local calendar days `from..=to` of each site: from `from` 00:00
//!   to the day after `to` 00:00 in the site's time zone (a DST day has 23 or 25 hours).
//! - Coverage: a shift belongs to the period when it starts in it. It was *worked* when
//!   its guard checked in before it ended, else it is a *no-show*; a check-in more than
//!   15 minutes after the start (ATTENDANCE_NO_SHOW's grace) is *late*. *Hours on duty*
//!   are the hours of the period during which a guard was on duty (CONTRACT.md: from the
//!   later of start and check-in to the earlier of end and check-out), over every shift
//!   that overlaps the period.
//! - Patrols: a tour belongs to the period when it is scheduled to start in it. It is
//!   *completed* when completed_at is set; *late* when it started more than 15 minutes
//!   after its scheduled start (TOUR_LATE_START's threshold); *abandoned* when it started
//!   and was never completed; *missed* when it never started. Checkpoint coverage of a
//!   tour is its distinct checkpoints scanned over checkpoints_expected (tours expecting
//!   none are left out); a site's is the sum of scanned over the sum of expected. A
//!   checkpoint's coverage is the share of the site's started tours that scanned it.
//! - Findings: those first seen in the period at the report's sites. Time to acknowledge
//!   is from first seen to the acknowledgement (or to the resolution, when it was resolved
//!   without one); it *met* the runbook's escalation SLA when it took at most that long,
//!   *missed* it otherwise or when nobody responded within the SLA by the end of the
//!   period, and is *pending* when the SLA had not run out by then.
//! - Incidents: findings of severity HIGH or CRITICAL, each as a short timeline.
//! - The previous period has the same number of days and ends the day before `from`.
//!
//! Invariant: a report is a function of its inputs. Its id and content hash are computed
//! over the request, the rule-set revision, the findings and the signal rows it read, and
//! nothing in it comes from the wall clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use duckdb::types::Value;

use crate::actions::sha256_hex;
use crate::load::Signals;
use crate::sql::{render_statement, Dialect, From, Func, Select, SqlExpr, Statement};
use crate::store::Stored;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
/// ATTENDANCE_NO_SHOW's and TOUR_LATE_START's grace.
const GRACE: i64 = 15 * MINUTE;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client (tenant).
    pub tenant: String,
    /// One site only.
    pub site: Option<String>,
    /// First local day.
    pub from: NaiveDate,
    /// Last local day (inclusive).
    pub to: NaiveDate,
    /// Keep operator names and notes (left out for clients).
    pub internal: bool,
}

impl Request {
    /// Days in the period.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The period before, of the same length.
    pub fn previous(&self) -> Request {
        let days = self.days();
        Request { from: self.from - chrono::Duration::days(days), to: self.from - chrono::Duration::days(1), ..self.clone() }
    }
}

/// A site as the report reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Site {
    /// Id.
    pub site_id: String,
    /// Name.
    pub name: String,
    /// IANA time zone.
    pub timezone: String,
}

#[derive(Debug, Clone)]
struct Shift {
    site: String,
    start: i64,
    end: i64,
    checked_in: Option<i64>,
    checked_out: Option<i64>,
}

#[derive(Debug, Clone)]
struct Tour {
    site: String,
    tour: String,
    guard: Option<String>,
    scheduled_start: i64,
    started: Option<i64>,
    completed: Option<i64>,
    expected: i64,
}

#[derive(Debug, Clone)]
struct Scan {
    site: String,
    tour: String,
    checkpoint: String,
}

/// Attendance at a site in the period.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Coverage {
    /// Shifts that start in the period.
    pub scheduled: u32,
    /// Of those, checked in before they ended.
    pub worked: u32,
    /// Never checked in (before the end).
    pub no_shows: u32,
    /// Checked in more than 15 minutes late.
    pub late_checkins: u32,
    /// Hours a guard was on duty during the period.
    pub hours_on_duty: f64,
}

/// Patrols at a site in the period.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Patrols {
    /// Tours scheduled to start in the period.
    pub scheduled: u32,
    /// Completed.
    pub completed: u32,
    /// Started more than 15 minutes late.
    pub late: u32,
    /// Started, never completed.
    pub abandoned: u32,
    /// Never started.
    pub missed: u32,
    /// Checkpoints expected over the tours expecting some.
    pub checkpoints_expected: u32,
    /// Distinct checkpoints scanned on those tours.
    pub checkpoints_scanned: u32,
}

impl Patrols {
    /// Scanned / expected, when something was expected.
    pub fn coverage(&self) -> Option<f64> {
        (self.checkpoints_expected > 0).then(|| f64::from(self.checkpoints_scanned) / f64::from(self.checkpoints_expected))
    }
}

/// One tour's checkpoint coverage.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TourRow {
    /// Site.
    pub site_id: String,
    /// Tour.
    pub tour_id: String,
    /// Guard.
    pub guard_id: Option<String>,
    /// Scheduled start, local time (`2025-10-04 22:00`).
    pub scheduled: String,
    /// completed, abandoned or missed.
    pub outcome: &'static str,
    /// Distinct checkpoints scanned.
    pub scanned: u32,
    /// Expected.
    pub expected: u32,
}

/// One checkpoint's coverage across the site's started tours.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckpointRow {
    /// Site.
    pub site_id: String,
    /// Checkpoint.
    pub checkpoint_id: String,
    /// Started tours that scanned it.
    pub tours_scanned: u32,
    /// Started tours at the site.
    pub tours: u32,
}

/// A site's section.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SiteSection {
    /// The site.
    #[serde(flatten)]
    pub site: Site,
    /// Hours in the period at this site (DST days have 23 or 25).
    pub hours_in_period: i64,
    /// Attendance.
    pub coverage: Coverage,
    /// Patrols.
    pub patrols: Patrols,
    /// Tours with the lowest checkpoint coverage (at most 10).
    pub worst_tours: Vec<TourRow>,
    /// Checkpoints with the lowest coverage (at most 10).
    pub worst_checkpoints: Vec<CheckpointRow>,
    /// Findings first seen in the period.
    pub findings: u32,
}

/// Time to respond against the escalation SLA, per runbook.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SlaRow {
    /// Runbook.
    pub runbook: String,
    /// Its escalation SLA (minutes).
    pub sla_minutes: i64,
    /// Findings.
    pub findings: u32,
    /// Acknowledged (or resolved) within the SLA.
    pub met: u32,
    /// Not within the SLA.
    pub missed: u32,
    /// Not acknowledged yet, SLA not run out by the end of the period.
    pub pending: u32,
    /// Median minutes to acknowledge, over those acknowledged.
    pub median_ack_minutes: Option<f64>,
    /// Median minutes to resolve, over those resolved.
    pub median_resolve_minutes: Option<f64>,
}

/// One step of an incident's timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    /// Local time at the site.
    pub at: String,
    /// What happened.
    pub what: String,
}

/// A serious finding as a short story.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Incident {
    /// Finding id.
    pub id: i64,
    /// Site.
    pub site_id: String,
    /// Type.
    pub finding_type: String,
    /// Severity.
    pub severity: String,
    /// Title.
    pub title: String,
    /// Guard (an id the client already knows).
    pub guard_id: Option<String>,
    /// Raised, acknowledged, resolved (and with `internal`, who and the notes).
    pub steps: Vec<Step>,
}

/// Headline figures of a period (for trends).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Shifts scheduled.
    pub shifts: u32,
    /// Shifts worked.
    pub worked: u32,
    /// No-shows.
    pub no_shows: u32,
    /// Hours on duty.
    pub hours_on_duty: f64,
    /// Tours scheduled.
    pub tours: u32,
    /// Tours completed.
    pub completed: u32,
    /// Checkpoints expected.
    pub checkpoints_expected: u32,
    /// Checkpoints scanned.
    pub checkpoints_scanned: u32,
    /// Findings.
    pub findings: u32,
    /// SLA met.
    pub sla_met: u32,
    /// SLA missed.
    pub sla_missed: u32,
}

/// One local day.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Day {
    /// The date.
    pub date: String,
    /// Findings first seen that day by category.
    pub findings: BTreeMap<String, u32>,
    /// Checkpoints expected on that day's tours.
    pub expected: u32,
    /// Scanned.
    pub scanned: u32,
}

/// What the report was built from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuiltFrom {
    /// The rule-set revision.
    pub revision: String,
    /// Findings read.
    pub findings: usize,
    /// Signal rows read.
    pub signal_rows: usize,
    /// SHA-256 over everything above and the request.
    pub input_hash: String,
}

/// A report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// `RPT-<tenant>-<from>-<to>-<hash prefix>`
    pub id: String,
    /// The client.
    pub tenant: String,
    /// One site only.
    pub site: Option<String>,
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Days.
    pub days: i64,
    /// Internal (names and notes kept).
    pub internal: bool,
    /// Per site.
    pub sites: Vec<SiteSection>,
    /// This period.
    pub totals: Totals,
    /// The period before.
    pub previous: Totals,
    /// Findings by (category, severity).
    pub by_category: BTreeMap<String, BTreeMap<String, u32>>,
    /// Response against SLA, per runbook.
    pub sla: Vec<SlaRow>,
    /// Incidents.
    pub incidents: Vec<Incident>,
    /// Daily series (local days).
    pub daily: Vec<Day>,
    /// Findings by local hour of week (Monday 00:00 = 0).
    pub heat: Vec<Vec<u32>>,
    /// Nothing went wrong: no finding, no no-show, no missed or abandoned tour.
    pub no_exceptions: bool,
    /// Its inputs.
    pub built_from: BuiltFrom,
}

/// Why a report could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportError {
    /// The tenant or site has no site row.
    NoSites(String),
    /// A site's time zone is not an IANA name.
    BadZone { site: String, zone: String },
    /// The database failed.
    Db(String),
    /// The period is empty or reversed.
    Period(String),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::NoSites(what) => write!(f, "no sites for {what} in the signals' `sites` table"),
            ReportError::BadZone { site, zone } => write!(f, "site {site}: `{zone}` is not an IANA time zone"),
            ReportError::Db(e) => f.write_str(e),
            ReportError::Period(e) => f.write_str(e),
        }
    }
}

impl std::convert::From<duckdb::Error> for ReportError {
    fn from(e: duckdb::Error) -> Self {
        ReportError::Db(e.to_string())
    }
}

/// Rows of a raw table for the tenant (and site), timestamps as µs.
fn rows(signals: &Signals, table: &str, columns: &[(&str, bool)], req: &Request) -> Result<Vec<Vec<Value>>, ReportError> {
    let r = "r";
    let items = columns
        .iter()
        .map(|(c, time)| (if *time { SqlExpr::func(Func::EpochMicros, vec![SqlExpr::col(r, c)]) } else { SqlExpr::col(r, c) }, None))
        .collect();
    let mut filter = vec![SqlExpr::eq(SqlExpr::col(r, "tenant_id"), SqlExpr::Param)];
    let mut params = vec![Value::Text(req.tenant.clone())];
    if let Some(site) = &req.site {
        filter.push(SqlExpr::eq(SqlExpr::col(r, "site_id"), SqlExpr::Param));
        params.push(Value::Text(site.clone()));
    }
    let select = Select::new(From::Raw { name: table.into(), alias: r.into() }, items).filtered(filter);
    let text = render_statement(&Statement::select(select), Dialect::DuckDb);
    let mut stmt = signals.conn.prepare(&text)?;
    let n = columns.len();
    let out = stmt
        .query_map(duckdb::params_from_iter(params.iter()), |row| (0..n).map(|i| row.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>())?;
    Ok(out.collect::<Result<Vec<_>, _>>()?)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(format!("{other:?}")),
    }
}

fn micros(v: &Value) -> Option<i64> {
    match v {
        Value::BigInt(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::HugeInt(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::BigInt(n) => *n,
        Value::Int(n) => i64::from(*n),
        Value::SmallInt(n) => i64::from(*n),
        Value::TinyInt(n) => i64::from(*n),
        Value::UBigInt(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        Value::UInt(n) => i64::from(*n),
        Value::Double(d) => *d as i64,
        _ => 0,
    }
}

/// A site's period as UTC µs: [start, end).
fn window(tz: Tz, from: NaiveDate, to: NaiveDate) -> (i64, i64) {
    let at = |d: NaiveDate| -> i64 {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        // Midnight exists in every zone the tz database knows but a handful that skip it;
        // those take the first instant after the gap.
        match tz.from_local_datetime(&midnight) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.timestamp_micros(),
            chrono::LocalResult::None => tz.from_utc_datetime(&midnight).timestamp_micros(),
        }
    };
    (at(from), at(to + chrono::Duration::days(1)))
}

fn local(tz: Tz, us: i64) -> chrono::DateTime<Tz> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().with_timezone(&tz)
}

/// `2025-10-04 22:00` in the site's zone.
fn local_text(tz: Tz, us: i64) -> String {
    local(tz, us).format("%Y-%m-%d %H:%M").to_string()
}

/// Everything a report reads, for one period.
struct Inputs {
    sites: Vec<(Site, Tz)>,
    shifts: Vec<Shift>,
    tours: Vec<Tour>,
    scans: Vec<Scan>,
    rows_read: usize,
    digest: String,
}

fn read(signals: &Signals, req: &Request) -> Result<Inputs, ReportError> {
    let mut digest = String::new();
    let mut rows_read = 0;
    let mut note = |table: &str, rows: &[Vec<Value>]| {
        rows_read += rows.len();
        let mut lines: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
        lines.sort();
        digest.push_str(&format!("{table}\n{}\n", lines.join("\n")));
    };
    let site_rows = rows(signals, "sites", &[("site_id", false), ("name", false), ("timezone", false)], req)?;
    note("sites", &site_rows);
    let mut sites = Vec::new();
    for r in &site_rows {
        let (id, name, zone) = (text(&r[0]).unwrap_or_default(), text(&r[1]).unwrap_or_default(), text(&r[2]).unwrap_or_default());
        let tz: Tz = zone.parse().map_err(|_| ReportError::BadZone { site: id.clone(), zone: zone.clone() })?;
        sites.push((Site { site_id: id, name, timezone: zone }, tz));
    }
    sites.sort_by(|a, b| a.0.site_id.cmp(&b.0.site_id));
    if sites.is_empty() {
        let what = match &req.site {
            Some(s) => format!("tenant {} site {s}", req.tenant),
            None => format!("tenant {}", req.tenant),
        };
        return Err(ReportError::NoSites(what));
    }
    let shift_rows = rows(
        signals,
        "shifts",
        &[
            ("site_id", false),
            ("guard_id", false),
            ("starts_at", true),
            ("ends_at", true),
            ("checked_in_at", true),
            ("checked_out_at", true),
        ],
        req,
    )?;
    note("shifts", &shift_rows);
    let shifts = shift_rows
        .iter()
        .filter_map(|r| {
            Some(Shift {
                site: text(&r[0])?,
                start: micros(&r[2])?,
                end: micros(&r[3])?,
                checked_in: micros(&r[4]),
                checked_out: micros(&r[5]),
            })
        })
        .collect();
    let tour_rows = rows(
        signals,
        "tours",
        &[
            ("site_id", false),
            ("tour_id", false),
            ("guard_id", false),
            ("scheduled_start", true),
            ("started_at", true),
            ("completed_at", true),
            ("checkpoints_expected", false),
        ],
        req,
    )?;
    note("tours", &tour_rows);
    let tours = tour_rows
        .iter()
        .filter_map(|r| {
            Some(Tour {
                site: text(&r[0])?,
                tour: text(&r[1])?,
                guard: text(&r[2]),
                scheduled_start: micros(&r[3])?,
                started: micros(&r[4]),
                completed: micros(&r[5]),
                expected: int(&r[6]),
            })
        })
        .collect();
    let scan_rows = rows(signals, "checkpoint_scans", &[("site_id", false), ("tour_id", false), ("checkpoint_id", false)], req)?;
    note("checkpoint_scans", &scan_rows);
    let scans = scan_rows.iter().filter_map(|r| Some(Scan { site: text(&r[0])?, tour: text(&r[1])?, checkpoint: text(&r[2])? })).collect();
    Ok(Inputs { sites, shifts, tours, scans, rows_read, digest })
}

/// Every tenant of the signals' `sites` table and the time zone of its first site (by
/// site id): the zone a tenant's report schedule follows.
pub fn tenant_zones(signals: &Signals) -> Result<BTreeMap<String, Tz>, ReportError> {
    let r = "r";
    let items = ["tenant_id", "site_id", "timezone"].iter().map(|c| (SqlExpr::col(r, c), None)).collect();
    let mut select = Select::new(From::Raw { name: "sites".into(), alias: r.into() }, items);
    select.order_by = vec![crate::sql::OrderKey::asc(SqlExpr::col(r, "tenant_id")), crate::sql::OrderKey::asc(SqlExpr::col(r, "site_id"))];
    let text = render_statement(&Statement::select(select), Dialect::DuckDb);
    let mut stmt = signals.conn.prepare(&text)?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(2)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (tenant, zone) = row?;
        if let Ok(tz) = zone.parse::<Tz>() {
            out.entry(tenant).or_insert(tz);
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// The sections and totals of one period (no findings yet).
fn sections(inputs: &Inputs, req: &Request) -> (Vec<SiteSection>, Vec<Day>, Totals) {
    let mut out = Vec::new();
    let mut totals = Totals::default();
    let mut daily: BTreeMap<String, Day> = BTreeMap::new();
    let mut d = req.from;
    while d <= req.to {
        let key = d.format("%Y-%m-%d").to_string();
        daily.insert(key.clone(), Day { date: key, ..Day::default() });
        d += chrono::Duration::days(1);
    }
    for (site, tz) in &inputs.sites {
        let (start, end) = window(*tz, req.from, req.to);
        let mut c = Coverage::default();
        for s in inputs.shifts.iter().filter(|s| s.site == site.site_id) {
            if s.start >= start && s.start < end {
                c.scheduled += 1;
                match s.checked_in {
                    Some(t) if t < s.end => {
                        c.worked += 1;
                        if t > s.start + GRACE {
                            c.late_checkins += 1;
                        }
                    }
                    _ => c.no_shows += 1,
                }
            }
            if let Some(t) = s.checked_in {
                let on = s.start.max(t).max(start);
                let off = s.end.min(s.checked_out.unwrap_or(i64::MAX)).min(end);
                if off > on {
                    c.hours_on_duty += (off - on) as f64 / HOUR as f64;
                }
            }
        }
        let mut p = Patrols::default();
        let mut tour_rows = Vec::new();
        let mut started_tours: BTreeSet<&str> = BTreeSet::new();
        let mut scanned: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for sc in inputs.scans.iter().filter(|sc| sc.site == site.site_id) {
            scanned.entry(sc.tour.as_str()).or_default().insert(sc.checkpoint.as_str());
        }
        for t in inputs.tours.iter().filter(|t| t.site == site.site_id && t.scheduled_start >= start && t.scheduled_start < end) {
            p.scheduled += 1;
            let outcome = match (t.started, t.completed) {
                (_, Some(_)) => "completed",
                (Some(_), None) => "abandoned",
                (None, None) => "missed",
            };
            match outcome {
                "completed" => p.completed += 1,
                "abandoned" => p.abandoned += 1,
                _ => p.missed += 1,
            }
            if t.started.is_some_and(|s| s > t.scheduled_start + GRACE) {
                p.late += 1;
            }
            if t.started.is_some() {
                started_tours.insert(t.tour.as_str());
            }
            let n = scanned.get(t.tour.as_str()).map_or(0, |s| s.len() as u32);
            if t.expected > 0 {
                let expected = t.expected.min(u32::MAX as i64) as u32;
                let hit = n.min(expected);
                p.checkpoints_expected += expected;
                p.checkpoints_scanned += hit;
                let day = local(*tz, t.scheduled_start).format("%Y-%m-%d").to_string();
                if let Some(dd) = daily.get_mut(&day) {
                    dd.expected += expected;
                    dd.scanned += hit;
                }
                tour_rows.push(TourRow {
                    site_id: site.site_id.clone(),
                    tour_id: t.tour.clone(),
                    guard_id: t.guard.clone(),
                    scheduled: local_text(*tz, t.scheduled_start),
                    outcome,
                    scanned: hit,
                    expected,
                });
            }
        }
        // Worst tours: lowest coverage first, then earliest.
        tour_rows.sort_by(|a, b| {
            let ra = f64::from(a.scanned) / f64::from(a.expected);
            let rb = f64::from(b.scanned) / f64::from(b.expected);
            ra.total_cmp(&rb).then_with(|| a.scheduled.cmp(&b.scheduled)).then_with(|| a.tour_id.cmp(&b.tour_id))
        });
        tour_rows.retain(|t| t.scanned < t.expected);
        tour_rows.truncate(10);
        let mut checkpoints: BTreeMap<&str, u32> = BTreeMap::new();
        for tour in &started_tours {
            for cp in scanned.get(tour).into_iter().flatten() {
                *checkpoints.entry(cp).or_insert(0) += 1;
            }
        }
        let tours_started = started_tours.len() as u32;
        let mut worst_checkpoints: Vec<CheckpointRow> = checkpoints
            .into_iter()
            .map(|(cp, n)| CheckpointRow {
                site_id: site.site_id.clone(),
                checkpoint_id: cp.to_string(),
                tours_scanned: n,
                tours: tours_started,
            })
            .filter(|r| r.tours_scanned < r.tours)
            .collect();
        worst_checkpoints.sort_by(|a, b| a.tours_scanned.cmp(&b.tours_scanned).then_with(|| a.checkpoint_id.cmp(&b.checkpoint_id)));
        worst_checkpoints.truncate(10);
        totals.shifts += c.scheduled;
        totals.worked += c.worked;
        totals.no_shows += c.no_shows;
        totals.hours_on_duty += c.hours_on_duty;
        totals.tours += p.scheduled;
        totals.completed += p.completed;
        totals.checkpoints_expected += p.checkpoints_expected;
        totals.checkpoints_scanned += p.checkpoints_scanned;
        out.push(SiteSection {
            site: site.clone(),
            hours_in_period: (end - start) / HOUR,
            coverage: c,
            patrols: p,
            worst_tours: tour_rows,
            worst_checkpoints,
            findings: 0,
        });
    }
    (out, daily.into_values().collect(), totals)
}

/// Builds a report from loaded signals, the tenant's stored findings (with their
/// histories: id -> (when, event, detail, who)), the runbooks' escalation SLAs (runbook
/// id -> minutes) and the rule-set revision.
pub fn build(
    signals: &Signals,
    findings: &[Stored],
    histories: &BTreeMap<i64, Vec<crate::store::HistoryEntry>>,
    slas: &BTreeMap<String, i64>,
    revision: &str,
    req: &Request,
) -> Result<Report, ReportError> {
    if req.to < req.from {
        return Err(ReportError::Period(format!("--to {} is before --from {}", req.to, req.from)));
    }
    if req.days() > 366 {
        return Err(ReportError::Period("a report covers at most 366 days".into()));
    }
    let inputs = read(signals, req)?;
    let (mut sites, mut daily, totals) = sections(&inputs, req);
    let prev_req = req.previous();
    let (_, _, mut previous) = sections(&inputs, &prev_req);
    let zones: BTreeMap<&str, Tz> = inputs.sites.iter().map(|(s, tz)| (s.site_id.as_str(), *tz)).collect();
    let windows: BTreeMap<&str, (i64, i64)> =
        inputs.sites.iter().map(|(s, tz)| (s.site_id.as_str(), window(*tz, req.from, req.to))).collect();
    let prev_windows: BTreeMap<&str, (i64, i64)> =
        inputs.sites.iter().map(|(s, tz)| (s.site_id.as_str(), window(*tz, prev_req.from, prev_req.to))).collect();
    let seen = |f: &Stored| crate::load::parse_timestamp(&f.first_seen).ok();
    let in_window = |f: &Stored, w: &BTreeMap<&str, (i64, i64)>| {
        f.tenant_id == req.tenant && w.get(f.site_id.as_str()).is_some_and(|(a, b)| seen(f).is_some_and(|t| t >= *a && t < *b))
    };
    let mut mine: Vec<&Stored> = findings.iter().filter(|f| in_window(f, &windows)).collect();
    mine.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then(a.id.cmp(&b.id)));
    let prev_count = findings.iter().filter(|f| in_window(f, &prev_windows)).count() as u32;

    let mut report_totals = totals;
    let mut by_category: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    let mut sla: BTreeMap<String, (SlaRow, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut heat = vec![vec![0u32; 24]; 7];
    let mut incidents = Vec::new();
    let mut digest = inputs.digest.clone();
    for f in &mine {
        let Some(first) = seen(f) else { continue };
        let tz = zones.get(f.site_id.as_str()).copied().unwrap_or(Tz::UTC);
        let end = windows.get(f.site_id.as_str()).map_or(first, |w| w.1);
        digest.push_str(&format!(
            "finding {} {} {} {} {} {} {:?} {:?} {}\n",
            f.id, f.finding_type, f.severity, f.category, f.site_id, f.first_seen, f.acknowledged_at, f.resolved_at, f.runbook
        ));
        report_totals.findings += 1;
        *by_category.entry(f.category.clone()).or_default().entry(f.severity.clone()).or_insert(0) += 1;
        if let Some(s) = sites.iter_mut().find(|s| s.site.site_id == f.site_id) {
            s.findings += 1;
        }
        let lt = local(tz, first);
        let day = lt.format("%Y-%m-%d").to_string();
        if let Some(d) = daily.iter_mut().find(|d| d.date == day) {
            *d.findings.entry(f.category.clone()).or_insert(0) += 1;
        }
        heat[lt.weekday().num_days_from_monday() as usize][lt.hour() as usize] += 1;
        let minutes = slas.get(&f.runbook).copied().unwrap_or(0);
        let entry = sla
            .entry(f.runbook.clone())
            .or_insert_with(|| (SlaRow { runbook: f.runbook.clone(), sla_minutes: minutes, ..SlaRow::default() }, Vec::new(), Vec::new()));
        entry.0.findings += 1;
        let ack = f.acknowledged_at.as_deref().or(f.resolved_at.as_deref()).and_then(|t| crate::load::parse_timestamp(t).ok());
        let resolved = f.resolved_at.as_deref().and_then(|t| crate::load::parse_timestamp(t).ok());
        let due = first + minutes * MINUTE;
        match ack {
            Some(a) if a <= due => entry.0.met += 1,
            Some(_) => entry.0.missed += 1,
            None if due <= end => entry.0.missed += 1,
            None => entry.0.pending += 1,
        }
        if let Some(a) = ack {
            entry.1.push((a - first) as f64 / MINUTE as f64);
        }
        if let Some(r) = resolved {
            entry.2.push((r - first) as f64 / MINUTE as f64);
        }
        if f.severity == "HIGH" || f.severity == "CRITICAL" {
            let mut steps = vec![Step { at: local_text(tz, first), what: format!("raised: {}", f.title) }];
            for (at, event, detail, who) in histories.get(&f.id).into_iter().flatten() {
                let Ok(t) = crate::load::parse_timestamp(at) else { continue };
                let what = match event.as_str() {
                    "acknowledged" | "resolved" => {
                        let mut w = event.clone();
                        if req.internal {
                            if let Some(who) = who {
                                w.push_str(&format!(" by {who}"));
                            }
                            if let Some(d) = detail {
                                w.push_str(&format!(": {d}"));
                            }
                        }
                        w
                    }
                    "cleared" => "the condition cleared".to_string(),
                    "severity" => format!("severity {}", detail.clone().unwrap_or_default()),
                    "action" if req.internal => format!("action: {}", detail.clone().unwrap_or_default()),
                    _ => continue,
                };
                steps.push(Step { at: local_text(tz, t), what });
            }
            incidents.push(Incident {
                id: f.id,
                site_id: f.site_id.clone(),
                finding_type: f.finding_type.clone(),
                severity: f.severity.clone(),
                title: f.title.clone(),
                guard_id: f.guard_id.clone(),
                steps,
            });
        }
    }
    let sla: Vec<SlaRow> = sla
        .into_values()
        .map(|(mut row, acks, resolves)| {
            row.median_ack_minutes = median(acks);
            row.median_resolve_minutes = median(resolves);
            row
        })
        .collect();
    report_totals.sla_met = sla.iter().map(|r| r.met).sum();
    report_totals.sla_missed = sla.iter().map(|r| r.missed).sum();
    previous.findings = prev_count;
    let no_exceptions = report_totals.findings == 0
        && report_totals.no_shows == 0
        && sites.iter().all(|s| s.patrols.missed == 0 && s.patrols.abandoned == 0);
    digest.insert_str(0, &format!("{:?}\nrevision {revision}\n", req));
    let input_hash = sha256_hex(&digest);
    let site_part = req.site.as_ref().map(|s| format!("-{s}")).unwrap_or_default();
    let id = format!("RPT-{}{site_part}-{}-{}-{}", req.tenant, req.from.format("%Y%m%d"), req.to.format("%Y%m%d"), &input_hash[..10]);
    for s in &mut sites {
        s.coverage.hours_on_duty = (s.coverage.hours_on_duty * 100.0).round() / 100.0;
    }
    report_totals.hours_on_duty = (report_totals.hours_on_duty * 100.0).round() / 100.0;
    previous.hours_on_duty = (previous.hours_on_duty * 100.0).round() / 100.0;
    daily.sort_by(|a, b| a.date.cmp(&b.date));
    Ok(Report {
        id,
        tenant: req.tenant.clone(),
        site: req.site.clone(),
        from: req.from.format("%Y-%m-%d").to_string(),
        to: req.to.format("%Y-%m-%d").to_string(),
        days: req.days(),
        internal: req.internal,
        sites,
        totals: report_totals,
        previous,
        by_category,
        sla,
        incidents,
        daily,
        heat,
        no_exceptions,
        built_from: BuiltFrom { revision: revision.to_string(), findings: mine.len(), signal_rows: inputs.rows_read, input_hash },
    })
}

#[cfg(test)]
mod tests {
    //! One Saturday at a London site (2025-10-04, BST = UTC+1; the period is
    //! 2025-10-03T23:00Z to 2025-10-04T23:00Z), figures worked out by hand in the comments.
    use super::*;

    const SITES: &str = "tenant_id,site_id,name,timezone,lat,lon,geofence_m,active\nT1,S1,Warehouse,Europe/London,51.5,-0.1,200,true\nT2,S9,Other,Europe/London,51.5,-0.1,200,true\n";
    // SH1 06-14 local, in at 06:05 (5 min: not late), out 14:00: 7h55m on duty.
    // SH2 14-22 local, in at 14:30 (30 min late), never out: 7h30m.
    // SH3 22-06 local, never in: a no-show.
    // SH4 started the day before (22:00 local on the 3rd), in at start, out 06:00: it is not
    //     this period's shift, but 00:00-06:00 local = 6h of its duty fall in the period.
    // Coverage: 3 scheduled, 2 worked, 1 no-show, 1 late; 7.9167 + 7.5 + 6 = 21.42 hours.
    // The previous day has SH4 only: 1 scheduled, worked; 22:00-24:00 local = 2 hours.
    const SHIFTS: &str = "tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at
T1,S1,SH1,G1,2025-10-04T05:00:00Z,2025-10-04T13:00:00Z,2025-10-04T05:05:00Z,2025-10-04T13:00:00Z
T1,S1,SH2,G2,2025-10-04T13:00:00Z,2025-10-04T21:00:00Z,2025-10-04T13:30:00Z,
T1,S1,SH3,G3,2025-10-04T21:00:00Z,2025-10-05T05:00:00Z,,
T1,S1,SH4,G4,2025-10-03T21:00:00Z,2025-10-04T05:00:00Z,2025-10-03T21:00:00Z,2025-10-04T05:00:00Z
T2,S9,SHX,GX,2025-10-04T05:00:00Z,2025-10-04T13:00:00Z,,
";
    // TR1 08:00 local, on time, complete, 4/4 checkpoints.
    // TR2 12:00 local, started 30 min late, complete, 2 distinct of 4 (CP2 twice).
    // TR3 16:00 local, started, never completed (abandoned), 1 of 4.
    // TR4 20:00 local, never started (missed), 0 of 4.
    // TR5 23:30 local (22:30Z, still the 4th locally), expects none: completed, no coverage.
    // Patrols: 5 scheduled, 3 completed (TR1, TR2, TR5), 1 late, 1 abandoned, 1 missed;
    // checkpoints 4 + 2 + 1 + 0 = 7 of 16 = 43.75%.
    const TOURS: &str = "tenant_id,site_id,tour_id,guard_id,scheduled_start,scheduled_end,started_at,completed_at,checkpoints_expected
T1,S1,TR1,G1,2025-10-04T07:00:00Z,2025-10-04T08:00:00Z,2025-10-04T07:05:00Z,2025-10-04T07:40:00Z,4
T1,S1,TR2,G1,2025-10-04T11:00:00Z,2025-10-04T12:00:00Z,2025-10-04T11:30:00Z,2025-10-04T12:00:00Z,4
T1,S1,TR3,G2,2025-10-04T15:00:00Z,2025-10-04T16:00:00Z,2025-10-04T15:00:00Z,,4
T1,S1,TR4,G2,2025-10-04T19:00:00Z,2025-10-04T20:00:00Z,,,4
T1,S1,TR5,G3,2025-10-04T22:30:00Z,2025-10-04T23:00:00Z,2025-10-04T22:30:00Z,2025-10-04T22:50:00Z,0
";
    const SCANS: &str = "tenant_id,site_id,tour_id,checkpoint_id,guard_id,ts
T1,S1,TR1,CP1,G1,2025-10-04T07:10:00Z
T1,S1,TR1,CP2,G1,2025-10-04T07:15:00Z
T1,S1,TR1,CP3,G1,2025-10-04T07:20:00Z
T1,S1,TR1,CP4,G1,2025-10-04T07:25:00Z
T1,S1,TR2,CP1,G1,2025-10-04T11:35:00Z
T1,S1,TR2,CP2,G1,2025-10-04T11:40:00Z
T1,S1,TR2,CP2,G1,2025-10-04T11:41:00Z
T1,S1,TR3,CP1,G2,2025-10-04T15:10:00Z
";

    fn signals(label: &str, files: &[(&str, &str)]) -> Signals {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vigil-report-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
        let s = crate::load::load(&dir).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        s
    }

    fn finding(id: i64, kind: &str, category: &str, severity: &str, first_seen: &str, ack: Option<&str>, resolved: Option<&str>) -> Stored {
        Stored {
            id,
            status: crate::store::Status::New,
            finding_type: kind.into(),
            rule: kind.into(),
            tenant_id: "T1".into(),
            site_id: "S1".into(),
            guard_id: Some("G2".into()),
            entity_id: None,
            category: category.into(),
            severity: severity.into(),
            title: format!("{kind} title"),
            evidence: serde_json::json!({}),
            runbook: kind.into(),
            suppressed: false,
            first_seen: first_seen.into(),
            last_seen: first_seen.into(),
            occurrences: 1,
            holding: true,
            acknowledged_by: ack.map(|_| "ana".into()),
            acknowledged_at: ack.map(str::to_string),
            resolved_by: resolved.map(|_| "ana".into()),
            resolved_at: resolved.map(str::to_string),
            rule_hash: String::new(),
            sql_hash: String::new(),
            ruleset_revision: String::new(),
            inhibited_by: None,
            late: false,
        }
    }

    /// F1 no-show 14:15 local, acknowledged after 10 min (SLA 15: met), resolved after 25.
    /// F2 overdue tour 17:00 local, acknowledged after 45 min (SLA 30: missed).
    /// F3 late tour 20:15 local, never acknowledged, SLA 30 ran out at 20:45: missed.
    /// F4 panic 23:58 local, SLA 5 runs out at 00:03 on the 5th, after the period: pending.
    /// F5 missing report 11:00 local, resolved after 20 min without an acknowledgement (SLA 60): met.
    /// F6 on the 5th and F7 on the 3rd are outside the period (F7 is the previous period's one).
    fn findings() -> Vec<Stored> {
        vec![
            finding(
                1,
                "ATTENDANCE_NO_SHOW",
                "COMPLIANCE",
                "HIGH",
                "2025-10-04T13:15:00Z",
                Some("2025-10-04T13:25:00Z"),
                Some("2025-10-04T13:40:00Z"),
            ),
            finding(2, "TOUR_OVERDUE", "SECURITY", "MEDIUM", "2025-10-04T16:00:00Z", Some("2025-10-04T16:45:00Z"), None),
            finding(3, "TOUR_LATE_START", "SECURITY", "MEDIUM", "2025-10-04T19:15:00Z", None, None),
            finding(4, "PANIC_RAISED", "SAFETY", "CRITICAL", "2025-10-04T22:58:00Z", None, None),
            finding(5, "DAILY_REPORT_MISSING", "COMPLIANCE", "MEDIUM", "2025-10-04T10:00:00Z", None, Some("2025-10-04T10:20:00Z")),
            finding(6, "TOUR_OVERDUE", "SECURITY", "MEDIUM", "2025-10-04T23:10:00Z", None, None),
            finding(7, "TOUR_OVERDUE", "SECURITY", "MEDIUM", "2025-10-03T12:00:00Z", None, None),
        ]
    }

    fn slas() -> BTreeMap<String, i64> {
        [("ATTENDANCE_NO_SHOW", 15), ("TOUR_OVERDUE", 30), ("TOUR_LATE_START", 30), ("PANIC_RAISED", 5), ("DAILY_REPORT_MISSING", 60)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn histories() -> BTreeMap<i64, Vec<crate::store::HistoryEntry>> {
        let h = |at: &str, e: &str, d: Option<&str>, w: Option<&str>| {
            (at.to_string(), e.to_string(), d.map(str::to_string), w.map(str::to_string))
        };
        BTreeMap::from([(
            1,
            vec![
                h("2025-10-04T13:15:00Z", "raised", Some("HIGH"), None),
                h("2025-10-04T13:25:00Z", "acknowledged", Some("guard on the way"), Some("ana")),
                h("2025-10-04T13:40:00Z", "resolved", Some("arrived"), Some("ana")),
            ],
        )])
    }

    fn request(from: &str, to: &str) -> Request {
        let d = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").expect("date");
        Request { tenant: "T1".into(), site: None, from: d(from), to: d(to), internal: false }
    }

    fn day() -> Report {
        let s = signals("day", &[("sites.csv", SITES), ("shifts.csv", SHIFTS), ("tours.csv", TOURS), ("checkpoint_scans.csv", SCANS)]);
        build(&s, &findings(), &histories(), &slas(), "rev1", &request("2025-10-04", "2025-10-04")).expect("builds")
    }

    #[test]
    fn coverage_patrols_and_checkpoints_by_hand() {
        let r = day();
        assert_eq!(r.sites.len(), 1, "only the tenant's sites");
        let s = &r.sites[0];
        assert_eq!(s.hours_in_period, 24);
        assert_eq!(s.coverage, Coverage { scheduled: 3, worked: 2, no_shows: 1, late_checkins: 1, hours_on_duty: 21.42 });
        assert_eq!(
            s.patrols,
            Patrols { scheduled: 5, completed: 3, late: 1, abandoned: 1, missed: 1, checkpoints_expected: 16, checkpoints_scanned: 7 }
        );
        assert_eq!(s.patrols.coverage(), Some(0.4375));
        let worst: Vec<(&str, &str, u32)> = s.worst_tours.iter().map(|t| (t.tour_id.as_str(), t.outcome, t.scanned)).collect();
        assert_eq!(worst, [("TR4", "missed", 0), ("TR3", "abandoned", 1), ("TR2", "completed", 2)]);
        assert_eq!(s.worst_tours[0].scheduled, "2025-10-04 20:00", "local time");
        // Started tours: TR1, TR2, TR3, TR5. CP3 and CP4 on 1 of them, CP2 on 2, CP1 on 3.
        let cps: Vec<(&str, u32, u32)> = s.worst_checkpoints.iter().map(|c| (c.checkpoint_id.as_str(), c.tours_scanned, c.tours)).collect();
        assert_eq!(cps, [("CP3", 1, 4), ("CP4", 1, 4), ("CP2", 2, 4), ("CP1", 3, 4)]);
        assert_eq!((r.previous.shifts, r.previous.worked, r.previous.hours_on_duty), (1, 1, 2.0));
        assert_eq!(r.daily.len(), 1);
        assert_eq!((r.daily[0].expected, r.daily[0].scanned), (16, 7));
        assert!(!r.no_exceptions);
    }

    #[test]
    fn findings_sla_incidents_and_the_heat_map_by_hand() {
        let r = day();
        assert_eq!(r.totals.findings, 5, "F1..F5; F6 is the next day, F7 the day before");
        assert_eq!(r.previous.findings, 1);
        let by: Vec<(String, String, u32)> =
            r.by_category.iter().flat_map(|(c, s)| s.iter().map(move |(k, n)| (c.clone(), k.clone(), *n))).collect();
        let expect = [("COMPLIANCE", "HIGH", 1), ("COMPLIANCE", "MEDIUM", 1), ("SAFETY", "CRITICAL", 1), ("SECURITY", "MEDIUM", 2)];
        assert_eq!(by, expect.map(|(a, b, n)| (a.to_string(), b.to_string(), n)));
        let sla: Vec<(&str, u32, u32, u32, Option<f64>, Option<f64>)> = r
            .sla
            .iter()
            .map(|s| (s.runbook.as_str(), s.met, s.missed, s.pending, s.median_ack_minutes, s.median_resolve_minutes))
            .collect();
        assert_eq!(
            sla,
            [
                ("ATTENDANCE_NO_SHOW", 1, 0, 0, Some(10.0), Some(25.0)),
                ("DAILY_REPORT_MISSING", 1, 0, 0, Some(20.0), Some(20.0)),
                ("PANIC_RAISED", 0, 0, 1, None, None),
                ("TOUR_LATE_START", 0, 1, 0, None, None),
                ("TOUR_OVERDUE", 0, 1, 0, Some(45.0), None),
            ]
        );
        assert_eq!((r.totals.sla_met, r.totals.sla_missed), (2, 2));
        // Saturday (row 5), local hours 11, 14, 17, 20 and 23.
        let hours: Vec<usize> = (0..24).filter(|h| r.heat[5][*h] == 1).collect();
        assert_eq!(hours, [11, 14, 17, 20, 23]);
        assert_eq!(r.heat.iter().flatten().sum::<u32>(), 5);
        // Incidents: F1 (HIGH) and F4 (CRITICAL), in local time, without names or notes.
        let ids: Vec<i64> = r.incidents.iter().map(|i| i.id).collect();
        assert_eq!(ids, [1, 4]);
        let steps: Vec<(&str, &str)> = r.incidents[0].steps.iter().map(|s| (s.at.as_str(), s.what.as_str())).collect();
        assert_eq!(
            steps,
            [
                ("2025-10-04 14:15", "raised: ATTENDANCE_NO_SHOW title"),
                ("2025-10-04 14:25", "acknowledged"),
                ("2025-10-04 14:40", "resolved")
            ]
        );
        let d = &r.daily[0].findings;
        assert_eq!((d.get("COMPLIANCE"), d.get("SECURITY"), d.get("SAFETY")), (Some(&2), Some(&2), Some(&1)));
    }

    #[test]
    fn internal_reports_keep_names_and_notes() {
        let s = signals("internal", &[("sites.csv", SITES), ("shifts.csv", SHIFTS)]);
        let req = Request { internal: true, ..request("2025-10-04", "2025-10-04") };
        let r = build(&s, &findings(), &histories(), &slas(), "rev1", &req).expect("builds");
        let whats: Vec<&str> = r.incidents[0].steps.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(whats[1..], ["acknowledged by ana: guard on the way", "resolved by ana: arrived"]);
        assert_ne!(r.built_from.input_hash, day().built_from.input_hash, "the request is part of the inputs");
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        // Spring: 2025-03-30, clocks go from 01:00 to 02:00. A shift 00:00-06:00 local is
        // 00:00Z-05:00Z: 5 hours on duty. Autumn: 2025-10-26, clocks go from 02:00 back to
        // 01:00. A shift 00:00-06:00 local is 23:00Z (the 25th)-06:00Z: 7 hours.
        let shifts = "tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at
T1,S1,SP,G1,2025-03-30T00:00:00Z,2025-03-30T05:00:00Z,2025-03-30T00:00:00Z,2025-03-30T05:00:00Z
T1,S1,AU,G1,2025-10-25T23:00:00Z,2025-10-26T06:00:00Z,2025-10-25T23:00:00Z,2025-10-26T06:00:00Z
";
        let s = signals("dst", &[("sites.csv", SITES), ("shifts.csv", shifts)]);
        let spring = build(&s, &[], &BTreeMap::new(), &slas(), "rev1", &request("2025-03-30", "2025-03-30")).expect("builds");
        assert_eq!(
            (spring.sites[0].hours_in_period, spring.sites[0].coverage.hours_on_duty, spring.sites[0].coverage.scheduled),
            (23, 5.0, 1)
        );
        let autumn = build(&s, &[], &BTreeMap::new(), &slas(), "rev1", &request("2025-10-26", "2025-10-26")).expect("builds");
        assert_eq!(
            (autumn.sites[0].hours_in_period, autumn.sites[0].coverage.hours_on_duty, autumn.sites[0].coverage.scheduled),
            (25, 7.0, 1)
        );
        // The week around the autumn change: 7 days, 24 * 7 + 1 hours.
        let week = build(&s, &[], &BTreeMap::new(), &slas(), "rev1", &request("2025-10-20", "2025-10-26")).expect("builds");
        assert_eq!(week.sites[0].hours_in_period, 169);
        // A panic at 00:30 local on the autumn day (23:30Z on the 25th) belongs to the 26th.
        let f = finding(9, "PANIC_RAISED", "SAFETY", "CRITICAL", "2025-10-25T23:30:00Z", None, None);
        let r = build(&s, &[f], &BTreeMap::new(), &slas(), "rev1", &request("2025-10-26", "2025-10-26")).expect("builds");
        assert_eq!(r.totals.findings, 1);
        assert_eq!(r.heat[6][0], 1, "Sunday 00:00-01:00 local");
    }

    #[test]
    fn an_empty_period_says_no_exceptions() {
        let s = signals("empty", &[("sites.csv", SITES), ("shifts.csv", SHIFTS), ("tours.csv", TOURS), ("checkpoint_scans.csv", SCANS)]);
        let r = build(&s, &findings(), &histories(), &slas(), "rev1", &request("2025-10-10", "2025-10-12")).expect("builds");
        assert!(r.no_exceptions);
        assert_eq!((r.totals.findings, r.totals.shifts, r.totals.tours, r.daily.len()), (0, 0, 0, 3));
        assert_eq!(r.id, format!("RPT-T1-20251010-20251012-{}", &r.built_from.input_hash[..10]));
    }

    #[test]
    fn the_same_inputs_give_the_same_report_and_bad_requests_are_refused() {
        assert_eq!(day(), day());
        let s = signals("bad", &[("sites.csv", SITES)]);
        let none = Request { tenant: "T7".into(), ..request("2025-10-04", "2025-10-04") };
        assert_eq!(build(&s, &[], &BTreeMap::new(), &slas(), "r", &none).err(), Some(ReportError::NoSites("tenant T7".into())));
        let backwards = request("2025-10-05", "2025-10-04");
        assert!(matches!(build(&s, &[], &BTreeMap::new(), &slas(), "r", &backwards), Err(ReportError::Period(_))));
    }
}
