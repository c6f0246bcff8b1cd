//! Vigil's engine: rule files in, findings out.
//!
//! ```text
//!  text --parse--> ast::RuleFile --check(schema)--> CheckedRule --plan(T)--> SqlPlan --execute(DuckDB)--> Finding
//!        syntax::parse        check::check_rule             plan::plan         exec::evaluate
//!        (spans)              (all errors at once)          (SQL, as of T)     (sorted, deterministic)
//! ```
//!
//! - [`syntax`]: the pest grammar (`grammar/vigil.pest`) and the AST; every node has a span.
//! - [`check`]: names and types against [`schema`] (CONTRACT.md); macros expanded.
//! - [`plan`]: one set-based SQL statement per rule, through as-of views (no look-ahead);
//!   rendered by [`sql`], the only place SQL text is made.
//! - [`exec`]: runs plans on the signals of [`load`] and builds [`exec::Finding`]s;
//!   also `replay`.
//! - [`ruleset`]: loads a directory of rules, runbooks, categories, severity
//!   adjustments, overrides and the cascade as one checked unit.
//! - [`anomaly`]: metrics, baselines as of T and anomaly rules (site-local buckets via chrono-tz).
//! - [`baseline`]: incremental baselines in the state database (`vigil baseline`).
//! - [`runbook`]: runbooks and the matching cascade.
//! - [`categorize`], [`categorize_eval`]: keyword categories; severity from outside.
//! - [`script`]: the sandboxed Rhai escape hatch.
//! - [`store`]: the findings store (lifecycle, history, provenance) in the state database.
//! - [`diag`]: diagnostics with codes, rendered like rustc.
//! - [`fmt`]: `vigil fmt`, the canonical layout of rule, runbook and case files.
//! - [`case`]: case files (rows, a time, expected findings) for `vigil test`.
//! - [`generate`]: synthetic fleets for demos and benchmarks.
#![deny(clippy::unwrap_used)]
// Diagnostics are the error type of the parse and check stages; they are built once per
// error, so their size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub use duckdb;

pub mod anomaly;
pub mod baseline;
pub mod case;
pub mod categorize;
pub mod categorize_eval;
pub mod check;
pub mod diag;
pub mod exec;
pub mod fmt;
pub mod generate;
pub mod load;
pub mod plan;
pub mod ruleset;
pub mod runbook;
pub mod schema;
pub mod script;
pub mod sql;
pub mod store;
pub mod syntax;

pub use exec::{evaluate, replay, Finding};
pub use load::load;
pub use ruleset::{load_dirs, RuleSet};
