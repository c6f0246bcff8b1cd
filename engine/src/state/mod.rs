//! Stage 5, state: what Vigil keeps between runs in the state database (a DuckDB
//! file): the findings store with its lifecycle and provenance, the incremental
//! baselines, and the schema versions both live under.
//!
//! Invariant: every module here attaches the state file through
//! [`migrations::upgrade`], so it only ever reads and writes the schema this
//! binary knows.

pub mod baseline;
pub mod ingest;
pub mod migrations;
pub mod outbox;
pub mod silences;
pub mod store;
