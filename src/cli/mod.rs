//! The commands of `vigil`: argument definitions, dispatch and the helpers every
//! command shares (loading rules and signals, times, exit codes). One module per
//! command or family of commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod actions;
mod backtest;
mod baseline;
mod bench;
mod bench_report;
mod bench_serve;
mod bench_soak;
mod check;
mod config;
mod engine;
mod evaluate;
mod explain;
mod findings;
mod fmt;
mod lsp;
mod output;
mod report;
mod rulebook;
mod serve;
mod test;
mod watch;

use self::baseline::baseline_command;
use self::bench::{bench, bench_baselines, bench_replay};
use self::check::check;
use self::engine::EngineArgs;
use self::explain::explain;
use self::findings::{findings_command, status};
use self::fmt::fmt_command;
use self::output::print_findings;
use self::rulebook::{categorize, runbook_command};
use self::test::{case_files, run_tests};

use vigil_engine::exec::{self, Filter, Finding};
use vigil_engine::generate::{self, FileFormat, FleetSpec};
use vigil_engine::load::{self, parse_timestamp};
use vigil_engine::ruleset::{self, RuleSet};
use vigil_engine::{plan, sql};

/// Exit code: rules have errors.
const EXIT_RULES: u8 = 1;
/// Exit code: bad input (signals, times, paths).
pub const EXIT_INPUT: u8 = 2;
/// Exit code: evaluation failed.
const EXIT_EVAL: u8 = 3;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Vigil: a declarative rules engine for security-guard operations centres.",
    long_about = "Vigil audits operational signals (shifts, phones, GPS, tours, tasks, alerts, tickets, panic \
buttons, reports) against rules written in the Vigil language, and prints findings with evidence, \
category, severity and runbook.\n\nStart with `vigil demo`. Rules live in ./rules, runbooks in ./runbooks.",
    after_help = "Examples:\n  vigil demo\n  vigil check --rules rules\n  vigil audit --signals fixtures/demo --at 2025-10-04T12:00:00Z --format jsonl\n  vigil replay --signals fixtures/demo --from 2025-10-04T10:00:00Z --to 2025-10-04T12:00:00Z --every 5m\n  vigil explain CORRELATION_SILENT_SITE"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The resource bounds of every command that evaluates rules (see README, "Bounded resources").
#[derive(clap::Args, Clone)]
struct LimitArgs {
    /// Memory limit of each DuckDB database: 512MB, 4GB, or a share of RAM such as 50%
    /// (default: half the machine's memory). What does not fit spills to --temp-dir.
    #[arg(long, global = true)]
    memory_limit: Option<String>,
    /// Where databases spill what does not fit in memory (default: the system's temp
    /// directory); `none` turns spilling off.
    #[arg(long, global = true)]
    temp_dir: Option<String>,
    /// How long one rule may run for one tick before it is stopped and reported as failed
    /// (the other rules of the tick still report).
    #[arg(long, global = true, default_value = "60s")]
    rule_budget: String,
}

impl LimitArgs {
    /// The engine's bounds, or an error naming the flag.
    fn limits(&self) -> Result<vigil_engine::limits::Limits, CliError> {
        let mut limits = vigil_engine::limits::Limits::default();
        if let Some(size) = &self.memory_limit {
            limits.memory_bytes = Some(vigil_engine::limits::parse_size(size).map_err(|e| input_err(format!("--memory-limit: {e}")))?);
        }
        match self.temp_dir.as_deref() {
            Some("none") => limits.temp_dir = None,
            Some(dir) => limits.temp_dir = Some(PathBuf::from(dir)),
            None => {}
        }
        limits.rule_budget = positive_duration(&self.rule_budget, "--rule-budget")?;
        Ok(limits)
    }
}

#[derive(clap::Args, Clone)]
struct RuleArgs {
    /// Directory of rule files (*.vigil).
    #[arg(long, global = true, default_value = "rules")]
    rules: PathBuf,
    /// Directory of runbook files (*.vigil); default: `runbooks` beside the rules directory.
    #[arg(long, global = true)]
    runbooks: Option<PathBuf>,
}

/// Signals and the ticks to evaluate them at (replay, backtest).
#[derive(clap::Args, Clone)]
struct SpanArgs {
    /// A DuckDB file, or a directory of <table>.csv|.parquet|.jsonl files.
    #[arg(long)]
    signals: PathBuf,
    /// First tick, ISO-8601 UTC.
    #[arg(long)]
    from: String,
    /// Last tick (inclusive when on the grid), ISO-8601 UTC.
    #[arg(long)]
    to: String,
    /// Tick length, e.g. 5m, 15m, 1h.
    #[arg(long, default_value = "5m")]
    every: String,
}

/// The most ticks one replay or backtest evaluates (ten years of 5-minute ticks is
/// about 1.05 M): a span beyond it is refused before anything is built.
const MAX_TICKS: i64 = 2_000_000;

impl SpanArgs {
    /// The ticks from --from to --to every --every.
    fn ticks(&self) -> Result<Vec<i64>, CliError> {
        span_ticks(&self.from, (&self.to, "--to"), &self.every)
    }
}

/// The ticks from `from` to `to` (given by the flag named) every `every`, at most
/// [`MAX_TICKS`] of them.
fn span_ticks(from_text: &str, (to_text, to_flag): (&str, &str), every_text: &str) -> Result<Vec<i64>, CliError> {
    let (from, to, every) = (parse_time(from_text, "--from")?, parse_time(to_text, to_flag)?, parse_duration(every_text)?);
    if to < from {
        return Err(input_err(format!("{to_flag} is before --from")));
    }
    let count = (to - from) / every + 1;
    if count > MAX_TICKS {
        return Err(input_err(format!(
            "--from {from_text} {to_flag} {to_text} every {every_text} is {count} ticks; at most {MAX_TICKS} per run (split the span or take a longer --every)"
        )));
    }
    Ok(exec::tick_series(from, to, every))
}

#[derive(clap::Args, Clone)]
struct OutputArgs {
    /// Output format: a table for people, JSON or JSON lines for tools.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only findings of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only findings of this site.
    #[arg(long)]
    site: Option<String>,
    /// Only these rules (by id; repeat the flag for several).
    #[arg(long = "rule")]
    only_rules: Vec<String>,
    /// Leave out findings covered by a maintenance window (they are still computed).
    #[arg(long)]
    hide_suppressed: bool,
}

/// The loop's clock and store, the same for `watch` and `serve`.
#[derive(clap::Args, Clone)]
struct LoopArgs {
    /// Tick length; each rule runs on the ticks that are multiples of its cadence.
    #[arg(long, default_value = "5m")]
    every: String,
    /// The state database (findings, baselines, reloads).
    #[arg(long, default_value = "vigil-state.duckdb")]
    state: PathBuf,
    /// Virtual clock for demos and tests: the first evaluation time (default: the wall clock).
    #[arg(long)]
    start: Option<String>,
    /// With --start: real time between ticks.
    #[arg(long, default_value = "1s")]
    tick_interval: String,
    /// Stop after the tick at this time (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

/// The flags of `vigil serve`.
#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    clock: LoopArgs,
    #[command(flatten)]
    rules: RuleArgs,
    /// Settings from a file (`key = "value"` per line, keys are these flags' names);
    /// flags given here win over it. See deploy/vigil.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A DuckDB file, or a directory of <table>.csv|.parquet|.jsonl files (read again at every
    /// tick), besides the signals pushed to POST /api/v1/signals/{table}.
    #[arg(long)]
    signals: Option<PathBuf>,
    /// The database of pushed signals (default: beside the state database, `<state>.signals.duckdb`).
    #[arg(long)]
    ingest_db: Option<PathBuf>,
    /// How long pushed rows are kept, by event time (per table: --retain shifts=60d).
    #[arg(long, default_value = "35d")]
    retention: String,
    /// Keep one table's pushed rows longer or shorter: TABLE=DURATION (repeatable).
    #[arg(long = "retain")]
    retain: Vec<String>,
    /// A tenant whose pushed rows stop arriving for this long has a stale feed: its
    /// absence-of-activity findings are held and one FEED_STALE finding stands for them.
    #[arg(long, default_value = "10m")]
    feed_stale_after: String,
    /// The longest a silence may last.
    #[arg(long, default_value = "24h")]
    silence_max: String,
    /// The finding types held while a tenant's feed is stale (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "CORRELATION_SILENT_SITE,CRITICAL_SIGNAL_PHONE_EVENTS_LOW,CRITICAL_SIGNAL_LOCATION_UPDATES_LOW,CORRELATION_DEVICE_GPS_FAILURE,CORRELATION_DEVICE_PHONE_FAILURE"
    )]
    feed_dependent: Vec<String>,
    /// The tokens file (`name role tenants sha256:<hex>` per line; `vigil token new` makes lines).
    #[arg(long, required_unless_present = "demo")]
    tokens: Option<PathBuf>,
    /// Try it: the demo signals on a virtual clock (a tick every 3 s from 2025-10-04T10:00Z),
    /// a fresh state in a temporary directory, and a one-off admin token printed at start.
    #[arg(long)]
    demo: bool,
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Time between heartbeat comments on idle live-feed streams.
    #[arg(long, default_value = "15s")]
    heartbeat: String,
    /// The runbook actions' configuration (channels, endpoints, actions, guardrails; see
    /// deploy/actions.toml). Without it no action is planned or sent.
    #[arg(long)]
    actions: Option<PathBuf>,
    /// Where client reports are stored (default: beside the state database, `<state>.reports`).
    #[arg(long)]
    reports_dir: Option<PathBuf>,
    /// Build each tenant's daily report at 06:00 in its time zone (the day before) and its
    /// monthly report on the 1st (the month before).
    #[arg(long)]
    report_schedule: bool,
    /// Tenants whose reports wait for a supervisor's (admin's) approval before clients see
    /// them (comma-separated).
    #[arg(long, value_delimiter = ',')]
    report_review: Vec<String>,
    /// Requests a second each token may make to POST /api/v1/signals/{table} (a burst of
    /// one second's worth); over it the answer is 429 with Retry-After. 0: no limit.
    #[arg(long, default_value_t = 50)]
    ingest_rate: u32,
    /// How long resolved findings are kept, with their history and runbook actions (also
    /// expired silences and reload records); open findings are kept whatever their age.
    #[arg(long, default_value = "400d")]
    keep_resolved: String,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new token: prints the token once (stdout) and its tokens-file line (stderr,
    /// or appended to --append FILE). Only the line's SHA-256 digest is ever stored.
    New {
        /// Who holds it (shown as who acknowledged or resolved).
        #[arg(long)]
        name: String,
        /// client (reports and the portal only), viewer, operator or admin.
        #[arg(long, default_value = "operator")]
        role: String,
        /// Tenants it may see, comma-separated, or `*` for every tenant.
        #[arg(long)]
        tenants: String,
        /// Append the line to this tokens file.
        #[arg(long)]
        append: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum BacktestFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Jsonl,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check every rule and runbook; print all diagnostics (exit 1 on errors).
    Check {
        #[command(flatten)]
        rules: RuleArgs,
        /// One line per diagnostic (file:line:col) instead of the full rendering.
        #[arg(long)]
        short: bool,
        /// Also: runbook step per type, rules sharing a type, shared keywords, untested rules.
        #[arg(long)]
        strict: bool,
        /// Case files or directories whose `rules` lines count as tests (with --strict).
        #[arg(long, default_value = "tests/cases")]
        tests: Vec<PathBuf>,
        /// Output: rendered diagnostics, or one JSON object per diagnostic (editors, CI annotations).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Also check a runbook actions configuration against the runbooks (as `serve --actions` does).
        #[arg(long)]
        actions: Option<PathBuf>,
        /// Also check that every rule can run on this engine (`spark`: each statement is
        /// rendered in Spark SQL and what has no translation is an error at the rule).
        #[arg(long, value_enum, default_value_t = engine::Engine::Duckdb)]
        engine: engine::Engine,
    },
    /// Evaluate every rule once, as of --at, and print the findings.
    Audit {
        #[command(flatten)]
        rules: RuleArgs,
        /// A DuckDB file, or a directory of <table>.csv|.parquet|.jsonl files.
        #[arg(long)]
        signals: PathBuf,
        /// Evaluation time T, ISO-8601 UTC (2025-10-04T12:00:00Z).
        #[arg(long)]
        at: String,
        /// Also record the findings in this state database (upsert by identity, history, provenance).
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Evaluate at every tick from --from to --to and print each finding once, at its first tick.
    Replay {
        #[command(flatten)]
        rules: RuleArgs,
        #[command(flatten)]
        span: SpanArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Compare the current rules with a baseline over history: per rule, the findings a change adds,
    /// removes or changes in severity, with examples and the first tick where they differ.
    #[command(
        after_help = "Examples:\n  vigil backtest --signals fleet --from 2025-10-04T00:00:00Z --to 2025-10-05T00:00:00Z --baseline-rev HEAD\n  vigil backtest --signals fleet --from 2025-10-04T00:00:00Z --to 2025-10-05T00:00:00Z --baseline-rules ../main/rules --format json --fail-on-change"
    )]
    Backtest {
        #[command(flatten)]
        rules: RuleArgs,
        #[command(flatten)]
        span: SpanArgs,
        /// The baseline: a rules directory (its runbooks beside it unless --baseline-runbooks).
        #[arg(long, conflicts_with = "baseline_rev", required_unless_present = "baseline_rev")]
        baseline_rules: Option<PathBuf>,
        /// The baseline's runbooks directory (with --baseline-rules).
        #[arg(long, requires = "baseline_rules")]
        baseline_runbooks: Option<PathBuf>,
        /// The baseline: the rules and runbooks at this git revision (HEAD, main, a commit).
        #[arg(long)]
        baseline_rev: Option<String>,
        /// Output: a report for people, or JSON for CI.
        #[arg(long, value_enum, default_value_t = BacktestFormat::Text)]
        format: BacktestFormat,
        /// Exit 1 when any finding differs.
        #[arg(long)]
        fail_on_change: bool,
        /// Examples kept per rule and kind of difference.
        #[arg(long, default_value_t = 3)]
        examples: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Show a rule: its source, what it checks, and the SQL it runs; with --signals, why it fired or not.
    Explain {
        /// The rule id, e.g. CORRELATION_SILENT_SITE.
        rule: String,
        #[command(flatten)]
        rules: RuleArgs,
        /// Evaluation time for the SQL (default 2025-01-01T00:00:00Z).
        #[arg(long)]
        at: Option<String>,
        /// With signals: print every candidate row with its figures and whether it fires.
        #[arg(long)]
        signals: Option<PathBuf>,
        /// Only candidates of this site (with --signals).
        #[arg(long)]
        site: Option<String>,
        /// Print the built-in macros (on_duty, overdue, ...) instead.
        #[arg(long)]
        prelude: bool,
        /// Leave out the SQL.
        #[arg(long)]
        no_sql: bool,
        /// Evaluate the rows of a case file (at its first `at` line unless --at is given).
        #[arg(long, conflicts_with = "signals")]
        case: Option<PathBuf>,
        /// Show the SQL as this engine runs it (`spark`: Spark SQL).
        #[arg(long, value_enum, default_value_t = engine::Engine::Duckdb)]
        engine: engine::Engine,
    },
    /// Run analysts' rule tests (`.case` files: signal rows, times, expected findings or snapshots).
    Test {
        /// Case files or directories of them (default: tests/cases).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        rules: RuleArgs,
        /// Output: a line per failing case and a summary, or JUnit XML for CI systems.
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
        /// Write or refresh the snapshot files (NAME.case.snap) of cases with `snapshot` lines.
        #[arg(long)]
        accept: bool,
        /// List every case, passing ones too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Category and severity of a finding type from outside, e.g.
    /// `vigil categorize TOUR_OVERDUE --context overdue_minutes=120` (SECURITY, CRITICAL).
    Categorize {
        /// The finding type.
        finding_type: String,
        /// Figures the severity steps read, as name=value (repeatable).
        #[arg(long = "context", value_name = "NAME=VALUE")]
        context: Vec<String>,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Baselines in the state database: fold in complete buckets, or show a site's.
    Baseline {
        #[command(subcommand)]
        action: BaselineCommand,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Run the rules at their cadences, record findings, update baselines hourly, and
    /// reload the rules when their files change (or on SIGHUP) if the new set checks clean.
    Watch {
        #[command(flatten)]
        rules: RuleArgs,
        /// A DuckDB file, or a directory of <table>.csv|.parquet|.jsonl files (read again at every tick).
        #[arg(long)]
        signals: PathBuf,
        #[command(flatten)]
        clock: LoopArgs,
    },
    /// Run `watch` as a service: the findings API, the live feed (SSE) and the operators'
    /// console over HTTP, with tenant-scoped tokens, health, readiness and metrics.
    Serve(Box<ServeArgs>),
    /// The service under load: a synthetic fleet streams its signals into `vigil serve`
    /// over HTTP while live-feed clients listen; ingest latency, tick durations,
    /// finding-to-client latency and peak memory.
    BenchServe {
        #[command(flatten)]
        rules: RuleArgs,
        /// Sites in the fleet.
        #[arg(long, default_value_t = 1000)]
        sites: u32,
        /// Rows pushed per second (wall clock).
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Virtual time streamed (minutes; ticks every 5).
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Live-feed clients listening.
        #[arg(long, default_value_t = 50)]
        clients: u32,
        /// Rows per pushed batch at most.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Days of simulated operation of `vigil serve` on a virtual clock: continuous ingest,
    /// hourly reloads (some broken), an operator acknowledging and resolving, live-feed
    /// clients coming and going, a SIGKILL a day; memory and database sizes sampled, and
    /// no tick, finding or acknowledgement lost or duplicated.
    BenchSoak {
        #[command(flatten)]
        rules: RuleArgs,
        /// Sites in the fleet.
        #[arg(long, default_value_t = 1000)]
        sites: u32,
        /// Simulated days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Tick length on the virtual clock.
        #[arg(long, default_value = "5m")]
        every: String,
        /// Wall time between tick starts (a tick that takes longer is followed at once).
        #[arg(long, default_value = "200ms")]
        tick_interval: String,
        /// Live-feed clients coming and going.
        #[arg(long, default_value_t = 8)]
        clients: u32,
        /// The service's retention of pushed rows.
        #[arg(long, default_value = "3d")]
        retention: String,
        /// The service's retention of resolved findings.
        #[arg(long, default_value = "1d")]
        keep_resolved: String,
        /// Where the fleet, the service's databases, the samples and the plot go.
        #[arg(long, default_value = "soak")]
        out: PathBuf,
    },
    /// A monthly client report for one tenant of a synthetic fleet: build, HTML and PDF timed.
    BenchReport {
        #[command(flatten)]
        rules: RuleArgs,
        /// Sites of the tenant.
        #[arg(long, default_value_t = 100)]
        sites: u32,
        /// Days of the month.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Runs (the best is reported).
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// API tokens for `vigil serve`.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Replay the anomaly rules over a labelled series (`timestamp,value`; labels `start,end`)
    /// and score them with the Numenta Anomaly Benchmark's scoring.
    EvaluateAnomalies {
        /// The series: CSV `timestamp,value` (ISO with a zone, or local in --timezone).
        #[arg(long)]
        series: PathBuf,
        /// The labelled windows: CSV `start,end` (same time formats).
        #[arg(long)]
        labels: PathBuf,
        /// The series' site time zone (local times are read in it).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Only these anomaly rules (default: every one over the metrics table).
        #[arg(long = "rule")]
        only_rules: Vec<String>,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// A language server over stdio for editors: vigil check's diagnostics as you type, hover,
    /// go to definition, completion of tables and columns, formatting.
    Lsp,
    /// What the state database says: last tick, open findings, baselines, reloads (failed ones with their errors).
    Status {
        /// The state database.
        #[arg(long, default_value = "vigil-state.duckdb")]
        state: PathBuf,
    },
    /// The findings store: list, show, acknowledge and resolve findings.
    Findings {
        #[command(subcommand)]
        action: FindingsCommand,
        /// The state database.
        #[arg(long, global = true, default_value = "vigil-state.duckdb")]
        state: PathBuf,
    },
    /// A client's activity report for a period (local days of each site): coverage, patrols,
    /// findings, response against SLA, incidents and trends, as HTML, CSV or JSON.
    #[command(
        after_help = "Examples:\n  vigil report --signals fixtures/demo --state vigil-state.duckdb --tenant T000 --from 2025-10-04 --to 2025-10-04 --out report.pdf\n  vigil report --signals fleet --tenant T001 --site S00011 --from 2025-10-01 --to 2025-10-31 --format csv --out october/"
    )]
    Report {
        #[command(flatten)]
        rules: RuleArgs,
        /// A DuckDB file, or a directory of <table>.csv|.parquet|.jsonl files.
        #[arg(long)]
        signals: PathBuf,
        /// The state database (the findings store).
        #[arg(long, default_value = "vigil-state.duckdb")]
        state: PathBuf,
        /// The client (tenant).
        #[arg(long)]
        tenant: String,
        /// One site only.
        #[arg(long)]
        site: Option<String>,
        /// First day, YYYY-MM-DD (each site's local day).
        #[arg(long)]
        from: String,
        /// Last day, inclusive.
        #[arg(long)]
        to: String,
        /// pdf (paginated, fonts embedded), html (one page), csv (a directory of tables) or json.
        #[arg(long, value_enum, default_value_t = report::ReportFormat::Pdf)]
        format: report::ReportFormat,
        /// Where to write it (a directory for csv).
        #[arg(long)]
        out: PathBuf,
        /// Keep operator names and notes (left out of what clients get).
        #[arg(long)]
        internal: bool,
    },
    /// Runbook actions (`vigil serve --actions`): the outbox and its log; approve, reject,
    /// replay the dead-letter list, and the kill switches.
    Actions {
        #[command(subcommand)]
        action: ActionsCommand,
        /// The state database.
        #[arg(long, global = true, default_value = "vigil-state.duckdb")]
        state: PathBuf,
    },
    /// Lay out rule, runbook and case files canonically (comments kept); --check only reports.
    Fmt {
        /// Files or directories (default: rules, runbooks, tests/cases).
        paths: Vec<PathBuf>,
        /// Change nothing; exit 1 and list the files that are not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Runbooks: which one a finding gets and why, or one runbook for an operator.
    Runbook {
        #[command(subcommand)]
        action: RunbookCommand,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Write a synthetic fleet in the CONTRACT format, with injected incidents.
    Generate {
        /// Number of sites.
        #[arg(long, default_value_t = 100)]
        sites: u32,
        /// Hours of history.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Random seed: the same seed gives the same fleet.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start of the span, ISO-8601 UTC.
        #[arg(long, default_value = "2025-10-03T12:00:00Z")]
        start: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// File format.
        #[arg(long, value_enum, default_value_t = GenFormat::Parquet)]
        format: GenFormat,
        /// Percentage of sites that carry an injected incident.
        #[arg(long, default_value_t = 10)]
        incidents: u32,
    },
    /// Benchmark: load signals and audit every rule, several times; print times, peak memory and rows.
    Bench {
        #[command(flatten)]
        rules: RuleArgs,
        /// Signals to audit (e.g. the output of `vigil generate --sites 10000 --hours 24`).
        #[arg(long)]
        signals: PathBuf,
        /// Evaluation time T, ISO-8601 UTC (with --from: the last tick of a replay).
        #[arg(long)]
        at: String,
        /// Replay mode: the first tick; ticks run from --from to --at every --every.
        #[arg(long)]
        from: Option<String>,
        /// Replay mode: the tick length.
        #[arg(long, default_value = "5m")]
        every: String,
        /// How many load + audit (or load + replay) runs.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Benchmark baselines: a 30-minute `visitors` metric for N sites over D days (in memory),
    /// folded as one backfill up to the last hour, then the last hour alone.
    BenchBaselines {
        #[command(flatten)]
        rules: RuleArgs,
        /// Number of sites.
        #[arg(long, default_value_t = 10_000)]
        sites: u32,
        /// Days of history.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Generate a small fleet in memory, audit it at the end of its span, and print the findings.
    Demo {
        #[command(flatten)]
        rules: RuleArgs,
        /// Number of sites.
        #[arg(long, default_value_t = 60)]
        sites: u32,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Percentage of sites that carry an injected incident.
        #[arg(long, default_value_t = 40)]
        incidents: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Fold every complete bucket up to --until not yet folded in (exactly once).
    Update {
        /// A DuckDB file, or a directory of <table>.csv|.parquet|.jsonl files.
        #[arg(long)]
        signals: PathBuf,
        /// Fold buckets ending at or before this time, ISO-8601 UTC.
        #[arg(long)]
        until: String,
        /// The state database.
        #[arg(long, default_value = "vigil-state.duckdb")]
        state: PathBuf,
    },
    /// Print a site's stored baseline of one metric: every slot with n, mean, std, median, MAD.
    Show {
        /// The tenant (default: every tenant with that site id, each shown apart).
        #[arg(long)]
        tenant: Option<String>,
        /// The site id.
        #[arg(long)]
        site: String,
        /// The metric name (a `metric` of the rules).
        #[arg(long)]
        metric: String,
        /// hour_of_week (168 rows for 60m buckets), hour_of_day or all_hours.
        #[arg(long, default_value = "hour_of_week")]
        level: String,
        /// The state database.
        #[arg(long, default_value = "vigil-state.duckdb")]
        state: PathBuf,
    },
}

#[derive(Subcommand)]
enum FindingsCommand {
    /// Stored findings (default: open ones), oldest first.
    List {
        /// open (NEW or ACKNOWLEDGED), new, acknowledged, resolved or all.
        #[arg(long, default_value = "open")]
        status: String,
        /// table for people, jsonl for tools.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One finding with its provenance and history.
    Show {
        /// The finding's id (from `list`).
        id: i64,
    },
    /// NEW -> ACKNOWLEDGED.
    Ack(StepArgs),
    /// NEW or ACKNOWLEDGED -> RESOLVED.
    Resolve(StepArgs),
}

#[derive(Subcommand)]
enum ActionsCommand {
    /// Actions, oldest first.
    List {
        /// Only these statuses (comma-separated): pending, awaiting_approval, held, sent,
        /// would_send, dropped, limited, rejected, suppressed, dead.
        #[arg(long)]
        status: Option<String>,
        /// Only the actions of this finding.
        #[arg(long)]
        finding: Option<i64>,
        /// Only this action (by name).
        #[arg(long)]
        action: Option<String>,
        /// table for people, jsonl for tools.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One action with its log: every attempt, response, timing and decision.
    Show {
        /// The action's id.
        id: i64,
    },
    /// Let an action awaiting approval go.
    Approve(DecideArgs),
    /// Refuse an action awaiting approval.
    Reject(DecideArgs),
    /// Try a dead (or suppressed) action again from its first attempt.
    Replay(DecideArgs),
    /// Throw the global kill switch (or a tenant's with --tenant); --off releases it.
    Kill {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Who throws it.
        #[arg(long)]
        by: String,
        /// Why.
        #[arg(long)]
        note: String,
        /// Release it.
        #[arg(long)]
        off: bool,
    },
}

/// A decision about one action.
#[derive(clap::Args)]
struct DecideArgs {
    /// The action's id.
    id: i64,
    /// Who decides.
    #[arg(long)]
    by: String,
    /// Why.
    #[arg(long)]
    note: String,
}

/// One lifecycle step of a finding: which, by whom, when.
#[derive(clap::Args)]
struct StepArgs {
    /// The finding's id.
    id: i64,
    /// Who takes the step.
    #[arg(long)]
    by: String,
    /// A note for the history.
    #[arg(long)]
    note: Option<String>,
    /// When (ISO-8601 UTC; default now): a run on a virtual clock passes its time, so
    /// the store keeps one clock.
    #[arg(long)]
    at: Option<String>,
}

#[derive(Subcommand)]
enum RunbookCommand {
    /// Walk the matching cascade for a finding and show each step's outcome.
    Match {
        /// The finding type.
        #[arg(long = "type")]
        finding_type: String,
        /// Its category (default: from the rule, else the keyword categories).
        #[arg(long)]
        category: Option<String>,
        /// Its severity (default: the base severity of the rule raising it).
        #[arg(long)]
        severity: Option<String>,
        /// The finding's tenant (tenant runbooks are tried first at each step).
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Print a runbook for an operator.
    Show {
        /// The runbook id.
        id: String,
        /// The tenant whose own runbook of that id to prefer.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum TestFormat {
    Text,
    Junit,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenFormat {
    Parquet,
    Csv,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message().is_empty() {
                eprintln!("{}", e.message());
            }
            ExitCode::from(e.code())
        }
    }
}

type CliResult = Result<(), CliError>;

/// Why a command failed: the message for stderr, and the exit code it means.
#[derive(Debug)]
enum CliError {
    /// The rule set has errors, tests failed, files are not formatted (exit 1).
    Rules(String),
    /// Bad input: signals, times, paths, flags (exit 2).
    Input(String),
    /// Evaluation or the state database failed (exit 3).
    Eval(String),
    /// `backtest --fail-on-change` found changes (exit 1).
    Changed(String),
}

impl CliError {
    /// The process exit code.
    fn code(&self) -> u8 {
        match self {
            CliError::Rules(_) | CliError::Changed(_) => EXIT_RULES,
            CliError::Input(_) => EXIT_INPUT,
            CliError::Eval(_) => EXIT_EVAL,
        }
    }

    /// What to print on stderr (may be empty when the output already said it).
    fn message(&self) -> &str {
        match self {
            CliError::Rules(m) | CliError::Input(m) | CliError::Eval(m) | CliError::Changed(m) => m,
        }
    }

    /// The same failure with a line of context after the message.
    fn context(self, line: &str) -> CliError {
        let add = |m: String| format!("{m}\n{line}");
        match self {
            CliError::Rules(m) => CliError::Rules(add(m)),
            CliError::Input(m) => CliError::Input(add(m)),
            CliError::Eval(m) => CliError::Eval(add(m)),
            CliError::Changed(m) => CliError::Changed(add(m)),
        }
    }
}

fn input_err(e: impl std::fmt::Display) -> CliError {
    CliError::Input(format!("error: {e}"))
}

fn load_rules(args: &RuleArgs) -> Result<RuleSet, CliError> {
    let runbooks = args.runbooks.clone().unwrap_or_else(|| sibling(&args.rules, "runbooks"));
    if !args.rules.is_dir() {
        return Err(input_err(format!("rules directory `{}` does not exist (use --rules DIR)", args.rules.display())));
    }
    match ruleset::load_dirs(&args.rules, &runbooks) {
        Ok(set) => Ok(set),
        Err(failure) => {
            let errors = failure.diagnostics.iter().filter(|d| d.is_error()).count();
            Err(CliError::Rules(format!(
                "{}error: the rule set has {errors} error(s); nothing was evaluated",
                failure.sources.render(&failure.diagnostics, false)
            )))
        }
    }
}

fn sibling(dir: &Path, name: &str) -> PathBuf {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(name)
}

fn parse_time(text: &str, flag: &str) -> Result<i64, CliError> {
    parse_timestamp(text).map_err(|e| input_err(format!("{flag}: {e}")))
}

fn parse_duration(text: &str) -> Result<i64, CliError> {
    positive_micros(text, "--every")
}

/// A positive duration flag (`5m`, `24h`, `35d`) in microseconds; the error names the flag.
fn positive_micros(text: &str, flag: &str) -> Result<i64, CliError> {
    vigil_engine::syntax::duration_micros(text)
        .filter(|d| *d > 0)
        .ok_or_else(|| input_err(format!("{flag}: `{text}` is not a duration such as 15s, 5m, 24h or 35d")))
}

/// [`positive_micros`] as a `Duration`.
fn positive_duration(text: &str, flag: &str) -> Result<std::time::Duration, CliError> {
    positive_micros(text, flag).map(|d| std::time::Duration::from_micros(d.unsigned_abs()))
}

/// The findings filter of the output flags; a `--rule` that names no rule of the set is
/// an error (a typo must not print "no findings").
fn filter_of(output: &OutputArgs, set: &RuleSet) -> Result<Filter, CliError> {
    for id in &output.only_rules {
        if set.find(id).is_none() {
            let hint = vigil_engine::diag::closest(id, set.headers().map(|h| h.id.as_str()))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(input_err(format!("--rule: no rule `{id}`{hint}")));
        }
    }
    Ok(Filter { tenant: output.tenant.clone(), site: output.site.clone(), rules: output.only_rules.iter().cloned().collect() })
}

fn run(cli: Cli) -> CliResult {
    vigil_engine::limits::set(cli.limits.limits()?).map_err(|e| input_err(format!("--temp-dir: {e}")))?;
    match cli.command {
        Command::Check { rules, short, strict, tests, format, actions, engine } => {
            check(&rules, short, strict.then_some(tests.as_slice()), format, actions.as_deref(), engine)
        }
        Command::Audit { rules, signals, at, state, output, engine } => {
            let set = load_rules(&rules)?;
            let now = parse_time(&at, "--at")?;
            let sig = engine.load(&signals)?;
            let filter = filter_of(&output, &set)?;
            let (findings, failures) = exec::evaluate_all(&sig, &set, now, &filter);
            let written = state.as_ref().map(|st| {
                (st, vigil_engine::store::record(st, &set, &set.completed_rules(&filter, &failures), now, &findings, &Default::default()))
            });
            print_findings(findings, &output);
            if let Some((st, written)) = written {
                let w = written.map_err(|e| CliError::Eval(format!("error: {}: {e}", st.display())))?;
                if w.skipped {
                    eprintln!("state {}: {} is not after the last time written; nothing recorded", st.display(), exec::iso(now));
                } else {
                    eprintln!(
                        "state {}: {} new, {} seen again, {} severity change(s), {} no longer holding",
                        st.display(),
                        w.new.len(),
                        w.seen_again,
                        w.severity_changes,
                        w.cleared
                    );
                }
            }
            report_failures(&failures)
        }
        Command::Replay { rules, span, output, engine } => {
            let set = load_rules(&rules)?;
            let ticks = span.ticks()?;
            let sig = engine.load(&span.signals)?;
            let (findings, failures) = exec::replay_ticks(&sig, &set, &ticks, &filter_of(&output, &set)?);
            print_findings(findings, &output);
            report_failures(&failures)
        }
        Command::Backtest { rules, span, baseline_rules, baseline_runbooks, baseline_rev, format, fail_on_change, examples, engine } => {
            let baseline = match (baseline_rules, baseline_rev) {
                (Some(dir), _) => backtest::Baseline::Dirs(dir, baseline_runbooks),
                (None, Some(rev)) => backtest::Baseline::Revision(rev),
                (None, None) => return Err(input_err("give --baseline-rules DIR or --baseline-rev REV")),
            };
            let json = format == BacktestFormat::Json;
            backtest::run(backtest::Args { rules, span, baseline, json, fail_on_change, examples, engine })
        }
        Command::Explain { rule, rules, at, signals, site, prelude, no_sql, case, engine } => {
            if prelude {
                out!("{}", ruleset::PRELUDE);
                return Ok(());
            }
            let set = load_rules(&rules)?;
            // A case file's rows become the signals, in a directory of their own.
            let from_case = match &case {
                Some(file) => {
                    let text = std::fs::read_to_string(file).map_err(|e| input_err(format!("--case {}: {e}", file.display())))?;
                    let parsed = vigil_engine::case::parse_case(&text)
                        .map_err(|e| input_err(format!("{}:{}: {}", file.display(), e.line, e.message)))?;
                    let dir = std::env::temp_dir().join(format!("vigil-explain-case-{}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let base = file.parent().unwrap_or(Path::new("."));
                    vigil_engine::case::write_tables(&parsed, base, &dir).map_err(|e| input_err(format!("--case: {e}")))?;
                    Some((dir, parsed.checks.first().map(|c| c.at)))
                }
                None => None,
            };
            let now = match (at, from_case.as_ref().and_then(|(_, at)| *at)) {
                (Some(t), _) => parse_time(&t, "--at")?,
                (None, Some(case_at)) => case_at,
                (None, None) => parse_time("2025-01-01T00:00:00Z", "--at")?,
            };
            let signals = from_case.as_ref().map(|(dir, _)| dir.clone()).or(signals);
            let dialect = match engine {
                engine::Engine::Duckdb => sql::Dialect::DuckDb,
                engine::Engine::Spark => sql::Dialect::Spark,
            };
            let result = explain(&set, &rule, now, signals.as_deref(), site.as_deref(), (!no_sql).then_some(dialect));
            if let Some((dir, _)) = &from_case {
                let _ = std::fs::remove_dir_all(dir);
            }
            result
        }
        Command::Generate { sites, hours, seed, start, out, format, incidents } => {
            let spec = FleetSpec { sites, hours, seed, start: parse_time(&start, "--start")?, incident_percent: incidents };
            let fmt = match format {
                GenFormat::Parquet => FileFormat::Parquet,
                GenFormat::Csv => FileFormat::Csv,
            };
            generate::write_fleet(&spec, &out, fmt).map_err(input_err)?;
            outln!("wrote {} sites x {} h to {}; audit it at {}", sites, hours, out.display(), exec::iso(spec.end()));
            Ok(())
        }
        Command::Test { paths, rules, format, accept, verbose } => run_tests(&rules, &paths, format, accept, verbose),
        Command::Runbook { action, rules } => runbook_command(&rules, action),
        Command::Baseline { action, rules } => baseline_command(&rules, action),
        Command::Fmt { paths, check } => fmt_command(&paths, check),
        Command::Findings { action, state } => findings_command(&state, action),
        Command::Actions { action, state } => actions::actions_command(&state, action),
        Command::Report { rules, signals, state, tenant, site, from, to, format, out, internal } => {
            let args = report::ReportArgs { rules: &rules, signals: &signals, state: &state, tenant, site, from: &from, to: &to, internal };
            let r = report::build(&args)?;
            report::write(&r, format, &out)
        }
        Command::Status { state } => status(&state),
        Command::Lsp => lsp::serve(),
        Command::EvaluateAnomalies { series, labels, timezone, only_rules, rules } => {
            evaluate::evaluate_anomalies(&rules, &series, &labels, &timezone, &only_rules)
        }
        Command::Watch { rules, signals, clock } => {
            let opts = watch_options(&rules, Some(signals), &clock)?;
            watch::run(&opts)
        }
        Command::Serve(args) => {
            let ServeArgs {
                rules,
                config: _,
                signals,
                ingest_db,
                retention,
                retain,
                feed_stale_after,
                feed_dependent,
                silence_max,
                clock,
                tokens,
                demo,
                listen,
                heartbeat,
                actions,
                reports_dir,
                report_schedule,
                report_review,
                ingest_rate,
                keep_resolved,
            } = *args;
            // The demo shows runbook actions too, all in dry-run (see fixtures/actions-demo.toml).
            let actions = match (demo, actions) {
                (true, None) => Some(PathBuf::from("fixtures/actions-demo.toml")).filter(|p| p.exists()),
                (_, actions) => actions,
            };
            let (signals, tokens, clock) = if demo {
                let (state, tokens) = demo_service(&clock.state)?;
                let start = clock.start.or_else(|| Some("2025-10-04T10:00:00Z".into()));
                let tick_interval = if clock.tick_interval == "1s" { "3s".to_string() } else { clock.tick_interval };
                (signals.or_else(|| Some(PathBuf::from("fixtures/demo"))), tokens, LoopArgs { state, start, tick_interval, ..clock })
            } else {
                (signals, tokens.unwrap_or_default(), clock)
            };
            let mut watch = watch_options(&rules, signals, &clock)?;
            let ingest = ingest_db.unwrap_or_else(|| watch.state.with_extension("signals.duckdb"));
            watch.ingest = Some(ingest);
            watch.feed = Some(watch::FeedPolicy {
                stale_after: positive_duration(&feed_stale_after, "--feed-stale-after")?,
                dependent: feed_dependent.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect(),
            });
            let retention = retention_of(&retention, &retain)?;
            let heartbeat = positive_duration(&heartbeat, "--heartbeat")?;
            let silence_max = positive_duration(&silence_max, "--silence-max")?;
            let reports_dir = reports_dir.unwrap_or_else(|| watch.state.with_extension("reports"));
            let report_review = report_review.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
            let report_schedule = report_schedule || demo;
            serve::run(serve::Options {
                watch,
                listen,
                tokens,
                heartbeat,
                retention,
                silence_max,
                actions,
                reports_dir,
                report_schedule,
                report_review,
                ingest_rate,
                keep_resolved: positive_micros(&keep_resolved, "--keep-resolved")?,
            })
        }
        Command::BenchServe { rules, sites, rate, minutes, clients, batch } => {
            bench_serve::bench_serve(&rules, &bench_serve::BenchServe { sites, rate, minutes, clients, batch })
        }
        Command::BenchSoak { rules, sites, days, every, tick_interval, clients, retention, keep_resolved, out } => bench_soak::bench_soak(
            &rules,
            &bench_soak::BenchSoak { sites, days, every, tick_interval, clients, retention, keep_resolved, out },
        ),
        Command::BenchReport { rules, sites, days, runs } => bench_report::bench_report(&rules, sites, days, runs),
        Command::Token { action: TokenCommand::New { name, role, tenants, append } } => {
            token_new(&name, &role, &tenants, append.as_deref())
        }
        Command::Categorize { finding_type, context, rules } => categorize(&rules, &finding_type, &context),
        Command::Bench { rules, signals, at, from: Some(from), every, runs, engine } => {
            let ticks = span_ticks(&from, (&at, "--at"), &every)?;
            bench_replay(&rules, &signals, &ticks, runs, &engine)
        }
        Command::Bench { rules, signals, at, from: None, runs, engine, .. } => bench(&rules, &signals, &at, runs, &engine),
        Command::BenchBaselines { rules, sites, days } => bench_baselines(&rules, sites, days),
        Command::Demo { rules, sites, seed, incidents, output } => {
            let set = load_rules(&rules)?;
            let spec =
                FleetSpec { sites, hours: 24, seed, start: parse_time("2025-10-03T12:00:00Z", "start")?, incident_percent: incidents };
            let conn = load::open_database().map_err(input_err)?;
            generate::fill(&conn, &spec).map_err(input_err)?;
            let sig = load::Signals::from_connection(conn);
            let (findings, failures) = exec::evaluate_all(&sig, &set, spec.end(), &filter_of(&output, &set)?);
            if output.format == Format::Table {
                outln!(
                    "Vigil demo: {} synthetic sites, 24 h of signals, {} rules and {} anomaly rules, audited at {}\n",
                    sites,
                    set.patterns().count(),
                    set.anomalies().count(),
                    exec::iso(spec.end())
                );
            }
            print_findings(findings, &output);
            report_failures(&failures)
        }
    }
}

/// `serve --demo`: a fresh state and a tokens file with one admin token, in a temporary
/// directory (unless --state names another file); prints the token.
fn demo_service(state: &Path) -> Result<(PathBuf, PathBuf), CliError> {
    let dir = std::env::temp_dir().join(format!("vigil-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| input_err(format!("{}: {e}", dir.display())))?;
    let state = if state == Path::new("vigil-state.duckdb") { dir.join("state.duckdb") } else { state.to_path_buf() };
    let token = serve::new_token().map_err(input_err)?;
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, serve::file_line("demo", "admin", "*", &token) + "\n")
        .map_err(|e| input_err(format!("{}: {e}", tokens.display())))?;
    eprintln!("serve --demo: state in {}; log in to the console with the token\n\n    {token}\n", state.display());
    Ok((state, tokens))
}

/// Retention per signal table (µs) from `--retention` and `--retain TABLE=DURATION`.
fn retention_of(default: &str, per_table: &[String]) -> Result<std::collections::BTreeMap<&'static str, i64>, CliError> {
    let all = positive_micros(default, "--retention")?;
    let mut out: std::collections::BTreeMap<&'static str, i64> =
        vigil_engine::schema::contract_tables().filter(|t| t.event_time.is_some()).map(|t| (t.name, all)).collect();
    for item in per_table {
        let (name, duration) =
            item.split_once('=').ok_or_else(|| input_err(format!("--retain: `{item}` is not TABLE=DURATION such as shifts=60d")))?;
        let table = vigil_engine::schema::contract_tables().find(|t| t.name == name).ok_or_else(|| {
            input_err(format!(
                "--retain: `{name}` is not a signal table ({})",
                vigil_engine::schema::contract_tables().map(|t| t.name).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if table.event_time.is_none() {
            return Err(input_err(format!("--retain: `{name}` has no event time; its rows are kept until replaced")));
        }
        out.insert(table.name, positive_micros(duration, "--retain")?);
    }
    Ok(out)
}

/// The loop's options from the flags `watch` and `serve` share.
fn watch_options(rules: &RuleArgs, signals: Option<PathBuf>, clock: &LoopArgs) -> Result<watch::Options, CliError> {
    let LoopArgs { every, state, start, tick_interval, until, engine } = clock;
    if !rules.rules.is_dir() {
        return Err(input_err(format!("rules directory `{}` does not exist (use --rules DIR)", rules.rules.display())));
    }
    let interval = vigil_engine::syntax::duration_micros(tick_interval)
        .filter(|d| *d >= 0)
        .ok_or_else(|| input_err(format!("--tick-interval: `{tick_interval}` is not a duration such as 200ms or 1s")))?;
    Ok(watch::Options {
        runbooks: rules.runbooks.clone().unwrap_or_else(|| sibling(&rules.rules, "runbooks")),
        rules: rules.rules.clone(),
        signals,
        ingest: None,
        feed: None,
        every: parse_duration(every)?,
        state: state.clone(),
        start: start.as_deref().map(|s| parse_time(s, "--start")).transpose()?,
        tick_interval: std::time::Duration::from_micros(interval.unsigned_abs()),
        until: until.as_deref().map(|s| parse_time(s, "--until")).transpose()?,
        spark: engine.for_loop()?,
    })
}

/// `vigil token new`: the token once on stdout, its tokens-file line on stderr or appended.
fn token_new(name: &str, role: &str, tenants: &str, append: Option<&Path>) -> CliResult {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(input_err(format!("--name: `{name}` must be one word (no spaces or `#`)")));
    }
    if !["client", "viewer", "operator", "admin"].contains(&role) {
        return Err(input_err(format!("--role: unknown role `{role}` (client, viewer, operator or admin)")));
    }
    if tenants.is_empty() || tenants.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(input_err(format!("--tenants: `{tenants}` must be comma-separated tenant ids or `*`")));
    }
    let token = serve::new_token().map_err(input_err)?;
    let line = serve::file_line(name, role, tenants, &token);
    match append {
        Some(file) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .map_err(|e| input_err(format!("--append {}: {e}", file.display())))?;
            writeln!(f, "{line}").map_err(|e| input_err(format!("--append {}: {e}", file.display())))?;
            eprintln!("added `{name}` ({role}, tenants {tenants}) to {}; the token is shown once:", file.display());
        }
        None => eprintln!("add this line to the tokens file (it holds only the token's digest):\n{line}\nthe token is shown once:"),
    }
    outln!("{token}");
    Ok(())
}

/// Rules that failed are reported after the findings of the others (exit 3).
fn report_failures(failures: &[exec::ExecError]) -> CliResult {
    if failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failures.iter().map(|f| format!("error: {f}")).collect();
    Err(CliError::Eval(format!("{}\n{} rule(s) failed; the findings of the other rules were printed", lines.join("\n"), failures.len())))
}

fn load_signals(path: &Path) -> Result<load::Signals, CliError> {
    let sig = load::load(path).map_err(input_err)?;
    for w in &sig.warnings {
        eprintln!("warning: {w}");
    }
    Ok(sig)
}
