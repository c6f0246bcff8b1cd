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
    /// How the cluster names --spark-stage when not by the same path: `s3a://bucket/vigil`
    /// for a bucket mounted on this machine at --spark-stage, `file:///shared/vigil`.
    #[arg(long, requires = "spark_stage")]
    pub spark_stage_uri: Option<String>,
}

impl EngineArgs {
    /// Loads `path` and, with `--engine spark`, stages the rows to Spark and runs the
    /// statements there from then on (a staging directory made for the run is removed
    /// with the signals).
    pub(super) fn load(&self, path: &Path) -> Result<load::Signals, CliError> {
        if self.engine == Engine::Spark && !cfg!(feature = "spark") {
            return Err(input_err(WITHOUT_SPARK));
        }
        let mut signals = load_signals(path)?;
        match self.engine {
            Engine::Duckdb => Ok(signals),
            Engine::Spark => {
                let (dir, owned) = self.stage_root();
                let read_as = self.spark_stage_uri.clone();
                attach(&mut signals, &self.spark_remote, dir, read_as, owned).map_err(|e| CliError::Eval(format!("error: {e}")))?;
                Ok(signals)
            }
        }
    }

    /// `--spark-stage`, or a new directory in the system's temp directory (which then
    /// belongs to the run).
    fn stage_root(&self) -> (PathBuf, bool) {
        match &self.spark_stage {
            Some(dir) => (dir.clone(), false),
            None => (std::env::temp_dir().join(format!("vigil-spark-stage-{}", std::process::id())), true),
        }
    }
}

/// `--engine spark` in `watch` and `serve`: every tick's rows (the files and the pushed
/// rows the rules' windows read) are staged in a directory of their own under `root` and
/// evaluated in a Spark session of their own, released with the tick.
pub(crate) struct SparkLoop {
    remote: String,
    root: PathBuf,
    /// How the cluster names `root` (`--spark-stage-uri`).
    root_uri: Option<String>,
    /// The root was made for this run and is removed at its end.
    made: bool,
    staged: std::sync::atomic::AtomicU64,
}

impl Drop for SparkLoop {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl std::fmt::Display for SparkLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the rules' statements run on Spark at {}, each tick's rows staged under {}", self.remote, self.root.display())
    }
}

impl SparkLoop {
    /// Stages `signals` for one evaluation and runs its statements on Spark from then on.
    /// A failure is retried once with a new session (a restarted server, a dropped
    /// connection); a second one fails the tick, which the loop reports.
    pub(crate) fn attach(&self, signals: &mut load::Signals) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
            let n = self.staged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let name = format!("{}-{n}", std::process::id());
            let read_as = self.root_uri.as_ref().map(|uri| format!("{}/{name}", uri.trim_end_matches('/')));
            match attach(signals, &self.remote, self.root.join(name), read_as, true) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Stages `signals` in `dir` (read by the cluster as `read_as`) and runs their statements
/// on Spark; `owned`: the directory is removed with the signals.
#[cfg(feature = "spark")]
fn attach(signals: &mut load::Signals, remote: &str, dir: PathBuf, read_as: Option<String>, owned: bool) -> Result<(), String> {
    let stage = vigil_engine::exec::spark::Stage { dir, read_as, owned };
    vigil_engine::exec::spark::attach(signals, remote, &stage).map_err(|e| format!("--engine spark: {e}"))
}

#[cfg(not(feature = "spark"))]
fn attach(_: &mut load::Signals, _: &str, _: PathBuf, _: Option<String>, _: bool) -> Result<(), String> {
    Err(WITHOUT_SPARK.to_string())
}

/// What a build without the `spark` feature says to `--engine spark`.
const WITHOUT_SPARK: &str = "--engine spark: this vigil was built without Spark; build it with `cargo build --release --features spark`";

impl EngineArgs {
    /// The loop's backend: `None` for the embedded DuckDB. With `--engine spark`, checks
    /// that the server answers before the first tick, so a wrong `--spark-remote` stops
    /// the start instead of failing every tick.
    pub(super) fn for_loop(&self) -> Result<Option<std::sync::Arc<SparkLoop>>, CliError> {
        match self.engine {
            Engine::Duckdb => Ok(None),
            Engine::Spark if cfg!(feature = "spark") => {
                let (root, made) = self.stage_root();
                let spark =
                    SparkLoop { remote: self.spark_remote.clone(), root, root_uri: self.spark_stage_uri.clone(), made, staged: 0.into() };
                let mut probe = vigil_engine::load::empty().map_err(|e| CliError::Eval(format!("error: {e}")))?;
                spark.attach(&mut probe).map_err(|e| CliError::Eval(format!("error: {e}")))?;
                Ok(Some(std::sync::Arc::new(spark)))
            }
            Engine::Spark => Err(input_err(WITHOUT_SPARK)),
        }
    }
}
