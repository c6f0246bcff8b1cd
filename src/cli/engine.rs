//! `--engine duckdb|spark`: where the rules' statements run.

use super::*;

/// The backends a rule's statements can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Engine {
    /// The embedded DuckDB (the default).
    Duckdb,
    /// A Spark cluster through Spark Connect (a build with `--features spark`).
    Spark,
}

/// Where the rules' statements run.
#[derive(clap::Args, Clone, Debug)]
pub(super) struct EngineArgs {
    /// Where the rules' statements run: the embedded DuckDB, or a Spark cluster through Spark
    /// Connect (the same rules and findings; needs a build with `--features spark`).
    #[arg(long, value_enum, default_value_t = Engine::Duckdb)]
    pub engine: Engine,
    /// The Spark Connect server (with --engine spark).
    #[arg(long, default_value = "sc://127.0.0.1:15002")]
    pub spark_remote: String,
    /// Where the signals are staged as Parquet for Spark: a directory every executor reads
    /// at the same path (default: a new directory in the system's temp directory, removed
    /// at the end).
    #[arg(long)]
    pub spark_stage: Option<PathBuf>,
}

/// The signals' staging directory, removed on drop when it was made for this run.
pub(super) struct Staged(Option<PathBuf>);

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl EngineArgs {
    /// Loads `path` and, with `--engine spark`, stages the rows to Spark and runs the
    /// statements there from then on. Keep the returned guard while evaluating.
    pub(super) fn load(&self, path: &Path) -> Result<(load::Signals, Staged), CliError> {
        #[cfg_attr(not(feature = "spark"), allow(unused_mut))]
        let mut signals = load_signals(path)?;
        match self.engine {
            Engine::Duckdb => Ok((signals, Staged(None))),
            #[cfg(feature = "spark")]
            Engine::Spark => {
                let (dir, made) = match &self.spark_stage {
                    Some(dir) => (dir.clone(), false),
                    None => (std::env::temp_dir().join(format!("vigil-spark-stage-{}", std::process::id())), true),
                };
                let staged = Staged(made.then(|| dir.clone()));
                vigil_engine::exec::spark::attach(&mut signals, &self.spark_remote, &dir)
                    .map_err(|e| CliError::Eval(format!("error: --engine spark: {e}")))?;
                Ok((signals, staged))
            }
            #[cfg(not(feature = "spark"))]
            Engine::Spark => {
                Err(input_err("--engine spark: this vigil was built without Spark; build it with `cargo build --release --features spark`"))
            }
        }
    }
}
