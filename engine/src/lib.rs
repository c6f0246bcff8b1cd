//! Vigil's engine: rule files in, findings out.
//!
//! ```text
//!  text --parse--> ast::RuleFile --check(schema)--> CheckedRule --plan--> SqlPlan --render(ticks), execute(DuckDB)--> Finding
//!        syntax::parse        check::check_rule             plan::plan       exec::evaluate_ticks
//!        (spans)              (all errors at once)          (once per load)  (one statement per rule over all ticks;
//!                                                                             sorted, deterministic)
//! ```
//!
//! - [`syntax`]: the pest grammar (`grammar/vigil.pest`) and the AST; every node has a span.
//! - [`check`]: names and types against [`schema`] (CONTRACT.md); macros expanded.
//! - [`plan`]: one set-based SQL statement per rule over a relation of ticks, through
//!   as-of views that pair each row with the ticks that may see it (no look-ahead);
//!   rendered by [`sql`], the only place SQL text is made (in a dialect), for the ticks at hand.
//! - [`exec`]: runs plans on the signals of [`load`] and builds [`exec::Finding`]s;
//!   audit (one tick), replay and backtests (many ticks) go through the same plans.
//! - [`ruleset`]: loads a directory of rules, runbooks, categories, severity
//!   adjustments, overrides and the cascade as one checked unit.
//! - [`anomaly`]: metrics, baselines as of T and anomaly rules (site-local buckets via chrono-tz).
//! - [`baseline`]: incremental baselines in the state database (`vigil baseline`).
//! - [`runbook`]: runbooks and the matching cascade.
//! - [`categorize`]: keyword categories; severity from outside (through the planner).
//! - [`script`]: the sandboxed Rhai escape hatch.
//! - [`store`]: the findings store (lifecycle, history, provenance) in the state database,
//!   whose schema is versioned by [`migrations`] (older files upgraded, newer refused).
//! - [`backtest`]: the impact of a rule change over history (two rule sets, same ticks).
//! - [`diag`]: diagnostics with codes, rendered like rustc.
//! - [`fmt`]: `vigil fmt`, the canonical layout of rule, runbook and case files.
//! - [`case`]: case files (rows, a time, expected findings) for `vigil test`.
//! - [`generate`]: synthetic fleets for demos and benchmarks.
//! - [`nab`]: scoring detections against labelled windows as the Numenta Anomaly Benchmark does.
//! - [`limits`]: memory limit, spill directory and time budget of every database and rule.
//! - [`time`]: every timestamp and duration helper (parse, format, durations).
#![deny(clippy::unwrap_used)]
// Diagnostics are the error type of the parse and check stages; they are built once per
// error, so their size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub use duckdb;

pub mod actions;
pub mod anomaly;
pub mod case;
pub mod categorize;
pub mod check;
pub mod diag;
pub mod exec;
pub mod fmt;
pub mod generate;
pub mod limits;
pub mod nab;
pub mod plan;
pub mod report;
pub mod ruleset;
pub mod runbook;
pub mod schema;
pub mod script;
pub mod state;
pub mod syntax;
pub mod time;

pub use exec::{backtest, load};
pub use plan::sql;
pub use state::{baseline, ingest, migrations, outbox, silences, store};

pub use exec::{evaluate, replay, Finding};
pub use load::load;
pub use ruleset::{load_dirs, RuleSet};
