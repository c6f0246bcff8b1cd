//! No build step. This script exists only so that `[build-dependencies]` can name
//! `syn` with the features the test-only dependencies turn on for the host side of
//! the build. With them, `cargo build` and `cargo test` resolve serde_derive (and so
//! DuckDB's build script) the same way, and DuckDB's C++ is compiled once, not twice.
fn main() {}
