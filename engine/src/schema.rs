//! The signal schema of CONTRACT.md: tables, columns, time semantics and keys.
//!
//! Invariant: this is the only source of table and column identifiers that ever
//! reach SQL; the checker rejects every name that is not here.

/// The type of a value in the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    /// true / false
    Bool,
    /// integers and decimals alike
    Number,
    /// text
    String,
    /// a UTC instant
    Time,
    /// a length of time
    Duration,
    /// the type of `null`: fits anywhere
    Null,
}

impl Ty {
    /// The word used in diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Number => "a number",
            Ty::String => "a string",
            Ty::Time => "a time",
            Ty::Duration => "a duration",
            Ty::Null => "null",
        }
    }

    /// True when a value of `self` may stand where `other` is expected.
    pub fn fits(self, other: Ty) -> bool {
        self == other || self == Ty::Null || other == Ty::Null
    }
}

/// How a column is stored (finer than [`Ty`]: integers stay integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// VARCHAR
    Text,
    /// TIMESTAMP (UTC)
    Time,
    /// DOUBLE
    Float,
    /// BIGINT
    Int,
    /// BOOLEAN
    Bool,
}

impl Storage {
    /// The language type of the column.
    pub fn ty(self) -> Ty {
        match self {
            Storage::Text => Ty::String,
            Storage::Time => Ty::Time,
            Storage::Float | Storage::Int => Ty::Number,
            Storage::Bool => Ty::Bool,
        }
    }

    /// The SQL column type.
    pub fn sql_type(self) -> crate::sql::SqlType {
        use crate::sql::SqlType;
        match self {
            Storage::Text => SqlType::Varchar,
            Storage::Time => SqlType::Timestamp,
            Storage::Float => SqlType::Double,
            Storage::Int => SqlType::BigInt,
            Storage::Bool => SqlType::Boolean,
        }
    }
}

/// A column of a contract table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// How it is stored.
    pub storage: Storage,
    /// May it be NULL?
    pub nullable: bool,
}

/// A logical key that relates rows of two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The name used in `match` lists: tenant, site, guard, tour, ...
    pub name: &'static str,
    /// The column holding it in this table.
    pub column: &'static str,
}

/// A table of CONTRACT.md (or a derived table such as `activity`).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// Its columns, in contract order.
    pub columns: &'static [Column],
    /// Rows are visible at T only when this column is <= T (event tables).
    pub event_time: Option<&'static str>,
    /// Closing columns: they count only where <= T, else they read as NULL.
    pub closing: &'static [&'static str],
    /// Logical keys, most general first.
    pub keys: &'static [Key],
    /// The key naming one row of this table, if any (tour for tours).
    pub own_key: Option<&'static str>,
    /// Derived tables are built from others and never loaded.
    pub derived: bool,
}

impl Table {
    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A logical key by name.
    pub fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

const fn col(name: &'static str, storage: Storage) -> Column {
    Column { name, storage, nullable: true }
}

const fn req(name: &'static str, storage: Storage) -> Column {
    Column { name, storage, nullable: false }
}

const fn key(name: &'static str, column: &'static str) -> Key {
    Key { name, column }
}

use Storage::{Bool as B, Float as F, Int as I, Text as S, Time as T};

const TENANT: Key = key("tenant", "tenant_id");
const SITE: Key = key("site", "site_id");
const GUARD: Key = key("guard", "guard_id");

/// Every table of the contract, then the derived ones.
pub static TABLES: &[Table] = &[
    Table {
        name: "sites",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("name", S),
            col("timezone", S),
            col("lat", F),
            col("lon", F),
            col("geofence_m", F),
            col("active", B),
        ],
        event_time: None,
        closing: &[],
        keys: &[TENANT, SITE],
        own_key: Some("site"),
        derived: false,
    },
    Table {
        name: "shifts",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("shift_id", S),
            col("guard_id", S),
            col("starts_at", T),
            col("ends_at", T),
            col("checked_in_at", T),
            col("checked_out_at", T),
        ],
        event_time: None,
        closing: &["checked_in_at", "checked_out_at"],
        keys: &[TENANT, SITE, key("shift", "shift_id"), GUARD],
        own_key: Some("shift"),
        derived: false,
    },
    Table {
        name: "phone_events",
        columns: &[req("tenant_id", S), req("site_id", S), col("guard_id", S), col("device_id", S), req("ts", T), col("kind", S)],
        event_time: Some("ts"),
        closing: &[],
        keys: &[TENANT, SITE, GUARD, key("device", "device_id")],
        own_key: None,
        derived: false,
    },
    Table {
        name: "location_updates",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("guard_id", S),
            col("device_id", S),
            req("ts", T),
            col("lat", F),
            col("lon", F),
            col("accuracy_m", F),
        ],
        event_time: Some("ts"),
        closing: &[],
        keys: &[TENANT, SITE, GUARD, key("device", "device_id")],
        own_key: None,
        derived: false,
    },
    Table {
        name: "tasks",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("task_id", S),
            col("assignee_id", S),
            col("priority", S),
            req("created_at", T),
            col("due_at", T),
            col("completed_at", T),
        ],
        event_time: Some("created_at"),
        closing: &["completed_at"],
        keys: &[TENANT, SITE, key("task", "task_id"), key("guard", "assignee_id")],
        own_key: Some("task"),
        derived: false,
    },
    Table {
        name: "tours",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("tour_id", S),
            col("guard_id", S),
            col("scheduled_start", T),
            col("scheduled_end", T),
            col("started_at", T),
            col("completed_at", T),
            col("checkpoints_expected", I),
        ],
        event_time: None,
        closing: &["started_at", "completed_at"],
        keys: &[TENANT, SITE, key("tour", "tour_id"), GUARD],
        own_key: Some("tour"),
        derived: false,
    },
    Table {
        name: "checkpoint_scans",
        columns: &[req("tenant_id", S), req("site_id", S), col("tour_id", S), col("checkpoint_id", S), col("guard_id", S), req("ts", T)],
        event_time: Some("ts"),
        closing: &[],
        keys: &[TENANT, SITE, key("tour", "tour_id"), key("checkpoint", "checkpoint_id"), GUARD],
        own_key: None,
        derived: false,
    },
    Table {
        name: "alerts",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("alert_id", S),
            col("kind", S),
            col("severity", S),
            req("raised_at", T),
            col("acknowledged_at", T),
            col("escalated_at", T),
            col("resolved_at", T),
        ],
        event_time: Some("raised_at"),
        closing: &["acknowledged_at", "escalated_at", "resolved_at"],
        keys: &[TENANT, SITE, key("alert", "alert_id")],
        own_key: Some("alert"),
        derived: false,
    },
    Table {
        name: "tickets",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("ticket_id", S),
            col("category", S),
            col("priority", S),
            req("created_at", T),
            col("assigned_at", T),
            col("resolved_at", T),
        ],
        event_time: Some("created_at"),
        closing: &["assigned_at", "resolved_at"],
        keys: &[TENANT, SITE, key("ticket", "ticket_id")],
        own_key: Some("ticket"),
        derived: false,
    },
    Table {
        name: "panic_events",
        columns: &[req("tenant_id", S), req("site_id", S), col("guard_id", S), req("ts", T), col("kind", S)],
        event_time: Some("ts"),
        closing: &[],
        keys: &[TENANT, SITE, GUARD],
        own_key: None,
        derived: false,
    },
    Table {
        name: "reports",
        columns: &[
            req("tenant_id", S),
            req("site_id", S),
            col("report_id", S),
            col("report_type", S),
            col("period_start", T),
            col("due_at", T),
            col("generated_at", T),
        ],
        event_time: None,
        closing: &["generated_at"],
        keys: &[TENANT, SITE, key("report", "report_id")],
        own_key: Some("report"),
        derived: false,
    },
    Table {
        name: "metrics",
        columns: &[req("tenant_id", S), req("site_id", S), col("metric", S), req("ts", T), col("value", F)],
        event_time: Some("ts"),
        closing: &[],
        keys: &[TENANT, SITE],
        own_key: None,
        derived: false,
    },
    Table {
        name: "maintenance_windows",
        columns: &[
            req("tenant_id", S),
            col("site_id", S),
            col("starts_at", T),
            col("ends_at", T),
            col("reason", S),
            col("finding_types", S),
        ],
        event_time: None,
        closing: &[],
        keys: &[TENANT, SITE],
        own_key: None,
        derived: false,
    },
    Table {
        name: "activity",
        columns: &[req("tenant_id", S), req("site_id", S), col("guard_id", S), req("ts", T), col("source", S)],
        event_time: Some("ts"),
        closing: &[],
        keys: &[TENANT, SITE, GUARD],
        own_key: None,
        derived: true,
    },
];

/// A table by name.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The tables that are loaded from signals (not derived).
pub fn contract_tables() -> impl Iterator<Item = &'static Table> {
    TABLES.iter().filter(|t| !t.derived)
}

/// What a finding can be about (`for ENTITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity {
    /// `site`, `guard`, `tour`, ...
    pub name: &'static str,
    /// The table its rows come from by default (`None` for guard: any table with a guard).
    pub table: Option<&'static str>,
    /// The column that becomes the finding's `entity_id`.
    pub id_column: Option<&'static str>,
    /// The column that becomes the finding's `guard_id`.
    pub guard_column: Option<&'static str>,
}

/// Every entity a rule can be `for`.
pub static ENTITIES: &[Entity] = &[
    Entity { name: "site", table: Some("sites"), id_column: None, guard_column: None },
    Entity { name: "guard", table: None, id_column: None, guard_column: Some("guard_id") },
    Entity { name: "tour", table: Some("tours"), id_column: Some("tour_id"), guard_column: Some("guard_id") },
    Entity { name: "task", table: Some("tasks"), id_column: Some("task_id"), guard_column: Some("assignee_id") },
    Entity { name: "alert", table: Some("alerts"), id_column: Some("alert_id"), guard_column: None },
    Entity { name: "ticket", table: Some("tickets"), id_column: Some("ticket_id"), guard_column: None },
    Entity { name: "report", table: Some("reports"), id_column: Some("report_id"), guard_column: None },
    Entity { name: "shift", table: Some("shifts"), id_column: Some("shift_id"), guard_column: Some("guard_id") },
];

/// An entity by name.
pub fn entity(name: &str) -> Option<&'static Entity> {
    ENTITIES.iter().find(|e| e.name == name)
}

/// A closed vocabulary of the language (severities, categories, cadences): parsed
/// once, where it is written, with one diagnostic for an unknown word
/// ([`crate::diag::unknown_word`]).
pub trait Word: Copy + Sized + 'static {
    /// What a word of this kind is called in diagnostics ("severity").
    const WHAT: &'static str;
    /// Every word, in order.
    const ALL: &'static [Self];

    /// Its spelling in rule files and in findings.
    fn name(self) -> &'static str;

    /// The word spelled `text`, if there is one.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|w| w.name() == text)
    }
}

/// A finding's severity; ordered, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// LOW
    Low,
    /// MEDIUM
    Medium,
    /// HIGH
    High,
    /// CRITICAL
    Critical,
}

impl Word for Severity {
    const WHAT: &'static str = "severity";
    const ALL: &'static [Severity] = &[Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    fn name(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A finding's category (CONTRACT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// SAFETY
    Safety,
    /// SECURITY
    Security,
    /// OPERATIONAL
    Operational,
    /// DEVICE_HEALTH
    DeviceHealth,
    /// COMPLIANCE
    Compliance,
}

impl Word for Category {
    const WHAT: &'static str = "category";
    const ALL: &'static [Category] =
        &[Category::Safety, Category::Security, Category::Operational, Category::DeviceHealth, Category::Compliance];

    fn name(self) -> &'static str {
        match self {
            Category::Safety => "SAFETY",
            Category::Security => "SECURITY",
            Category::Operational => "OPERATIONAL",
            Category::DeviceHealth => "DEVICE_HEALTH",
            Category::Compliance => "COMPLIANCE",
        }
    }
}

impl Word for Cadence {
    const WHAT: &'static str = "cadence";
    const ALL: &'static [Cadence] = &[Cadence::Heartbeat, Cadence::Comprehensive, Cadence::Deep];

    fn name(self) -> &'static str {
        Cadence::name(self)
    }
}
/// How often `vigil watch` runs a rule: parsed once by the checker, so an unknown
/// cadence is a diagnostic, never a silent default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cadence {
    /// every 5 minutes
    Heartbeat,
    /// every 15 minutes
    Comprehensive,
    /// every hour
    Deep,
}

impl Cadence {
    /// Its name in rule files.
    pub fn name(self) -> &'static str {
        match self {
            Cadence::Heartbeat => "heartbeat",
            Cadence::Comprehensive => "comprehensive",
            Cadence::Deep => "deep",
        }
    }

    /// Its period in minutes.
    pub fn minutes(self) -> i64 {
        match self {
            Cadence::Heartbeat => 5,
            Cadence::Comprehensive => 15,
            Cadence::Deep => 60,
        }
    }
}

impl std::fmt::Display for Cadence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
