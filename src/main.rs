//! `vigil`: the command line of the Vigil rules engine.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod watch;
use vigil_engine::exec::{self, Filter, Finding};
use vigil_engine::generate::{self, FileFormat, FleetSpec};
use vigil_engine::load::{self, parse_timestamp};
use vigil_engine::ruleset::{self, RuleSet};
use vigil_engine::{plan, sql};

/// Exit code: rules have errors.
const EXIT_RULES: u8 = 1;
/// Exit code: bad input (signals, times, paths).
const EXIT_INPUT: u8 = 2;
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
}

#[derive(clap::Args, Clone)]
struct RuleArgs {
    /// Directory of rule files (*.vigil).
    #[arg(long, default_value = "rules")]
    rules: PathBuf,
    /// Directory of runbook files (*.vigil); default: `runbooks` beside the rules directory.
    #[arg(long)]
    runbooks: Option<PathBuf>,
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
    },
    /// Evaluate at every tick from --from to --to and print each finding once, at its first tick.
    Replay {
        #[command(flatten)]
        rules: RuleArgs,
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
        #[command(flatten)]
        output: OutputArgs,
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
    },
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
        /// Evaluation time T, ISO-8601 UTC.
        #[arg(long)]
        at: String,
        /// How many load + audit runs.
        #[arg(long, default_value_t = 3)]
        runs: u32,
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
    Ack {
        /// The finding's id.
        id: i64,
        /// Who acknowledges it.
        #[arg(long)]
        by: String,
        /// A note for the history.
        #[arg(long)]
        note: Option<String>,
    },
    /// NEW or ACKNOWLEDGED -> RESOLVED.
    Resolve {
        /// The finding's id.
        id: i64,
        /// Who resolves it.
        #[arg(long)]
        by: String,
        /// A note for the history.
        #[arg(long)]
        note: Option<String>,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(code)
        }
    }
}

type CliResult = Result<(), (u8, String)>;

fn input_err(e: impl std::fmt::Display) -> (u8, String) {
    (EXIT_INPUT, format!("error: {e}"))
}

fn load_rules(args: &RuleArgs) -> Result<RuleSet, (u8, String)> {
    let runbooks = args.runbooks.clone().unwrap_or_else(|| sibling(&args.rules, "runbooks"));
    if !args.rules.is_dir() {
        return Err(input_err(format!("rules directory `{}` does not exist (use --rules DIR)", args.rules.display())));
    }
    match ruleset::load_dirs(&args.rules, &runbooks) {
        Ok(set) => Ok(set),
        Err(failure) => {
            let errors = failure.diagnostics.iter().filter(|d| d.is_error()).count();
            Err((
                EXIT_RULES,
                format!(
                    "{}error: the rule set has {errors} error(s); nothing was evaluated",
                    failure.sources.render(&failure.diagnostics, false)
                ),
            ))
        }
    }
}

fn sibling(dir: &Path, name: &str) -> PathBuf {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join(name)
}

fn parse_time(text: &str, flag: &str) -> Result<i64, (u8, String)> {
    parse_timestamp(text).map_err(|e| input_err(format!("{flag}: {e}")))
}

fn parse_duration(text: &str) -> Result<i64, (u8, String)> {
    vigil_engine::syntax::duration_micros(text)
        .filter(|d| *d > 0)
        .ok_or_else(|| input_err(format!("--every: `{text}` is not a duration such as 5m, 15m or 1h")))
}

fn filter_of(output: &OutputArgs) -> Filter {
    Filter { tenant: output.tenant.clone(), site: output.site.clone(), rules: output.only_rules.iter().cloned().collect() }
}

fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Check { rules, short, strict, tests, format } => check(&rules, short, strict.then_some(tests.as_slice()), format),
        Command::Audit { rules, signals, at, state, output } => {
            let set = load_rules(&rules)?;
            let now = parse_time(&at, "--at")?;
            let sig = load_signals(&signals)?;
            let filter = filter_of(&output);
            let (findings, failures) = exec::evaluate_all(&sig, &set, now, &filter);
            let written = state
                .as_ref()
                .map(|st| (st, vigil_engine::store::record(st, &set, &set.completed_rules(&filter, &failures), now, &findings)));
            print_findings(findings, &output);
            if let Some((st, written)) = written {
                let w = written.map_err(|e| (EXIT_EVAL, format!("error: {}: {e}", st.display())))?;
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
        Command::Replay { rules, signals, from, to, every, output } => {
            let set = load_rules(&rules)?;
            let (from, to, every) = (parse_time(&from, "--from")?, parse_time(&to, "--to")?, parse_duration(&every)?);
            if to < from {
                return Err(input_err("--to is before --from"));
            }
            let sig = load_signals(&signals)?;
            let (findings, failures) = exec::replay(&sig, &set, from, to, every, &filter_of(&output));
            print_findings(findings, &output);
            report_failures(&failures)
        }
        Command::Explain { rule, rules, at, signals, site, prelude } => {
            if prelude {
                print!("{}", ruleset::PRELUDE);
                return Ok(());
            }
            let set = load_rules(&rules)?;
            let now = match at {
                Some(t) => parse_time(&t, "--at")?,
                None => parse_time("2025-01-01T00:00:00Z", "--at")?,
            };
            explain(&set, &rule, now, signals.as_deref(), site.as_deref())
        }
        Command::Generate { sites, hours, seed, start, out, format, incidents } => {
            let spec = FleetSpec { sites, hours, seed, start: parse_time(&start, "--start")?, incident_percent: incidents };
            let fmt = match format {
                GenFormat::Parquet => FileFormat::Parquet,
                GenFormat::Csv => FileFormat::Csv,
            };
            generate::write_fleet(&spec, &out, fmt).map_err(input_err)?;
            println!("wrote {} sites x {} h to {}; audit it at {}", sites, hours, out.display(), exec::iso(spec.end()));
            Ok(())
        }
        Command::Test { paths, rules, format, accept } => run_tests(&rules, &paths, format, accept),
        Command::Runbook { action, rules } => runbook_command(&rules, action),
        Command::Baseline { action, rules } => baseline_command(&rules, action),
        Command::Fmt { paths, check } => fmt_command(&paths, check),
        Command::Findings { action, state } => findings_command(&state, action),
        Command::Status { state } => status(&state),
        Command::Watch { rules, signals, every, state, start, tick_interval, until } => {
            if !rules.rules.is_dir() {
                return Err(input_err(format!("rules directory `{}` does not exist (use --rules DIR)", rules.rules.display())));
            }
            let interval = vigil_engine::syntax::duration_micros(&tick_interval)
                .filter(|d| *d >= 0)
                .ok_or_else(|| input_err(format!("--tick-interval: `{tick_interval}` is not a duration such as 200ms or 1s")))?;
            let opts = watch::Options {
                runbooks: rules.runbooks.clone().unwrap_or_else(|| sibling(&rules.rules, "runbooks")),
                rules: rules.rules.clone(),
                signals,
                every: parse_duration(&every)?,
                state,
                start: start.as_deref().map(|s| parse_time(s, "--start")).transpose()?,
                tick_interval: std::time::Duration::from_micros(interval.unsigned_abs()),
                until: until.as_deref().map(|s| parse_time(s, "--until")).transpose()?,
            };
            watch::run(&opts)
        }
        Command::Categorize { finding_type, context, rules } => categorize(&rules, &finding_type, &context),
        Command::Bench { rules, signals, at, runs } => bench(&rules, &signals, &at, runs),
        Command::BenchBaselines { rules, sites, days } => bench_baselines(&rules, sites, days),
        Command::Demo { rules, sites, seed, incidents, output } => {
            let set = load_rules(&rules)?;
            let spec =
                FleetSpec { sites, hours: 24, seed, start: parse_time("2025-10-03T12:00:00Z", "start")?, incident_percent: incidents };
            let conn = load::open_database().map_err(input_err)?;
            generate::fill(&conn, &spec).map_err(input_err)?;
            let sig = load::Signals::from_connection(conn);
            let (findings, failures) = exec::evaluate_all(&sig, &set, spec.end(), &filter_of(&output));
            if output.format == Format::Table {
                println!(
                    "Vigil demo: {} synthetic sites, 24 h of signals, {} rules and {} anomaly rules, audited at {}\n",
                    sites,
                    set.rules.len(),
                    set.anomalies.len(),
                    exec::iso(spec.end())
                );
            }
            print_findings(findings, &output);
            report_failures(&failures)
        }
    }
}

/// Rules that failed are reported after the findings of the others (exit 3).
fn report_failures(failures: &[exec::ExecError]) -> CliResult {
    if failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = failures.iter().map(|f| format!("error: {f}")).collect();
    Err((EXIT_EVAL, format!("{}\n{} rule(s) failed; the findings of the other rules were printed", lines.join("\n"), failures.len())))
}

fn load_signals(path: &Path) -> Result<load::Signals, (u8, String)> {
    let sig = load::load(path).map_err(input_err)?;
    for w in &sig.warnings {
        eprintln!("warning: {w}");
    }
    Ok(sig)
}

fn check(args: &RuleArgs, short: bool, strict_tests: Option<&[PathBuf]>, format: CheckFormat) -> CliResult {
    let runbooks = args.runbooks.clone().unwrap_or_else(|| sibling(&args.rules, "runbooks"));
    if !args.rules.is_dir() {
        return Err(input_err(format!("rules directory `{}` does not exist (use --rules DIR)", args.rules.display())));
    }
    let (sources, mut diagnostics, ok, (rules, anomaly_count), runbook_count) = match ruleset::load_dirs(&args.rules, &runbooks) {
        Ok(set) => {
            let mut warnings = set.warnings.clone();
            if let Some(paths) = strict_tests {
                let cases: Vec<(String, String)> = case_files(paths)?
                    .into_iter()
                    .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p.display().to_string(), t)))
                    .collect();
                warnings.extend(ruleset::strict_checks(&set, &cases));
                if format == CheckFormat::Text {
                    for (finding_type, book, step) in ruleset::runbook_resolution(&set) {
                        println!("runbook: {finding_type:<34} -> {book} (cascade step `{step}`)");
                    }
                }
            }
            let (r, a, b) = (set.rules.len(), set.anomalies.len(), set.runbooks.len());
            (set.sources, warnings, true, (r, a), b)
        }
        Err(f) => (f.sources, f.diagnostics, false, (0, 0), 0),
    };
    diagnostics.sort_by_key(|d| (d.span.file, d.span.start));
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match format {
        CheckFormat::Json => {
            for d in &diagnostics {
                let (line, column) = sources.line_col(d.span);
                let v = serde_json::json!({
                    "file": sources.name(d.span.file),
                    "line": line,
                    "column": column,
                    "level": if d.is_error() { "error" } else { "warning" },
                    "code": d.code.id,
                    "message": d.message,
                });
                println!("{v}");
            }
        }
        CheckFormat::Text if short => {
            for d in &diagnostics {
                println!("{}", sources.render_short(d));
            }
        }
        CheckFormat::Text => print!("{}", sources.render(&diagnostics, false)),
    }
    let strict_failed = strict_tests.is_some() && warnings > 0;
    if ok && !strict_failed {
        if format == CheckFormat::Text {
            println!("ok: {rules} rules, {anomaly_count} anomaly rules, {runbook_count} runbooks, {warnings} warning(s)");
        }
        Ok(())
    } else if ok {
        Err((EXIT_RULES, format!("error: --strict: {warnings} warning(s)")))
    } else {
        Err((EXIT_RULES, format!("error: {errors} error(s), {warnings} warning(s)")))
    }
}

fn print_findings(mut findings: Vec<Finding>, output: &OutputArgs) {
    if output.hide_suppressed {
        findings.retain(|f| !f.suppressed);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match output.format {
        Format::Jsonl => {
            for f in &findings {
                let _ = writeln!(out, "{}", serde_json::to_string(f).unwrap_or_default());
            }
        }
        Format::Json => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&findings).unwrap_or_default());
        }
        Format::Table => {
            let _ = write!(out, "{}", table(&findings));
        }
    }
}

fn table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".to_string();
    }
    let headers = ["detected_at", "severity", "finding_type", "tenant", "site", "guard", "entity", "runbook", "evidence"];
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            let evidence: Vec<String> = f
                .evidence
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect();
            vec![
                f.detected_at.clone(),
                if f.suppressed { format!("{} (suppressed)", f.severity) } else { f.severity.clone() },
                f.finding_type.clone(),
                f.tenant_id.clone(),
                f.site_id.clone(),
                f.guard_id.clone().unwrap_or_else(|| "-".into()),
                f.entity_id.clone().unwrap_or_else(|| "-".into()),
                f.runbook.clone(),
                evidence.join(" "),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    let counts = exec::count_by_type(findings);
    out.push_str(&format!(
        "\n{} finding(s): {}\n",
        findings.len(),
        counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    ));
    out
}

fn explain(set: &RuleSet, id: &str, now: i64, signals: Option<&Path>, site: Option<&str>) -> CliResult {
    if let Some(a) = set.anomalies.iter().find(|a| a.id == id) {
        return explain_anomaly(set, a, now, signals, site);
    }
    let Some(rule) = set.rule(id) else {
        let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).chain(set.anomalies.iter().map(|a| a.id.as_str())).collect();
        let hint = vigil_engine::diag::closest(id, ids.iter().copied()).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        return Err(input_err(format!("no rule `{id}`{hint}")));
    };
    let (line, _) = set.sources.line_col(rule.span);
    println!("rule {} -> finding {}", rule.id, rule.finding_type);
    println!("  defined at   {}:{line}", set.sources.name(rule.span.file));
    println!("  title        {}", rule.title);
    println!(
        "  category     {}   severity {}{}",
        rule.category,
        rule.base_severity,
        if rule.severity_steps.is_empty() { String::new() } else { format!(" (+{} conditional step(s))", rule.severity_steps.len()) }
    );
    println!("  cadence      {}   for {} (rows of {})", rule.cadence, rule.entity.entity.name, rule.entity.table.name);
    for p in &rule.params {
        println!("  param        {} = {:?}", p.name, p.default);
    }
    if let Some(doc) = &rule.doc {
        println!("\n{doc}");
    }
    println!("\n-- source ------------------------------------------------------------");
    println!("{}", set.sources.slice(rule.span));
    let params = set.params_for(rule);
    let planned = plan::plan(rule, now, &params);
    println!("\n-- SQL as of {} ------------------------------------------", exec::iso(now));
    println!("{}", sql::render(&planned.query));
    if let Some(path) = signals {
        let sig = load_signals(path)?;
        println!("\n-- candidates as of {} (one row per {}) --", exec::iso(now), rule.entity.entity.name);
        let (columns, rows) = exec::explain_candidates(&sig, rule, now, &params).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
        let mut shown = 0;
        for row in rows {
            if site.is_some_and(|s| row.get(1).map(String::as_str) != Some(s)) {
                continue;
            }
            shown += 1;
            let cells: Vec<String> = columns.iter().zip(&row).map(|(c, v)| format!("{c}={v}")).collect();
            println!("{}", cells.join("  "));
        }
        if shown == 0 {
            println!("no candidate rows: no {} matched the rule's `for` line", rule.entity.entity.name);
        }
    }
    Ok(())
}

fn explain_anomaly(
    set: &RuleSet,
    a: &vigil_engine::anomaly::AnomalyRule,
    now: i64,
    signals: Option<&Path>,
    site: Option<&str>,
) -> CliResult {
    let (line, _) = set.sources.line_col(a.span);
    let m = &a.metric;
    println!("anomaly {} -> finding {}", a.id, a.finding_type);
    println!("  defined at   {}:{line}", set.sources.name(a.span.file));
    println!("  title        {}", a.title);
    println!(
        "  category     {}   severity {}{}",
        a.category,
        a.base_severity,
        a.escalations.iter().map(|(l, z)| format!(", {l} when |z| >= {z}")).collect::<String>()
    );
    println!(
        "  metric       {} ({} of {}{}, {}-minute buckets in site-local time)",
        m.name,
        m.value_column.map(|v| format!("sum of {v}")).unwrap_or_else(|| "count".into()),
        m.table.name,
        m.per.map(|p| format!(", one series per {p}")).unwrap_or_default(),
        m.bucket / 60_000_000
    );
    println!(
        "  fires when   z {} {} ({})",
        match a.direction {
            vigil_engine::anomaly::Direction::Above => ">=",
            vigil_engine::anomaly::Direction::Below => "<= -",
            vigil_engine::anomaly::Direction::Both => "|z| >=",
        },
        a.threshold,
        a.statistic.name()
    );
    let levels: Vec<String> = a.levels.iter().map(|(l, n)| format!("{} (stable after {n})", l.name())).collect();
    println!("  levels       {}", levels.join(", then "));
    if let Some(doc) = &a.doc {
        println!("\n{doc}");
    }
    println!("\n-- source ------------------------------------------------------------");
    println!("{}", set.sources.slice(a.span));
    println!("\n-- SQL as of {} ------------------------------------------", exec::iso(now));
    println!("{}", vigil_engine::anomaly::evaluation_sql(a, now));
    if let Some(path) = signals {
        let sig = load_signals(path)?;
        println!("\n-- last complete bucket of every series as of {} --", exec::iso(now));
        let (columns, rows) = vigil_engine::anomaly::explain(&sig.conn, a, now).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
        let mut shown = 0;
        for row in rows.iter().filter(|r| site.is_none_or(|s| r.get(1).map(String::as_str) == Some(s))) {
            shown += 1;
            let cells: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{c}={v}")).collect();
            println!("{}", cells.join("  "));
        }
        if shown == 0 {
            println!("no series has a complete bucket before T");
        }
    }
    Ok(())
}

fn baseline_command(args: &RuleArgs, action: BaselineCommand) -> CliResult {
    use vigil_engine::anomaly::Level;
    use vigil_engine::baseline;
    let set = load_rules(args)?;
    match action {
        BaselineCommand::Update { signals, until, state } => {
            let until = parse_time(&until, "until")?;
            let sig = load_signals(&signals)?;
            let (metrics, window) = set.baseline_metrics();
            let folded = baseline::update(&sig, &metrics, &state, until, window)
                .map_err(|e| (EXIT_EVAL, format!("error: {}: {e}", state.display())))?;
            for f in folded {
                let from = f.from.map(exec::iso).unwrap_or_else(|| "the beginning".into());
                println!("{}: folded {} bucket(s) after {from} up to {}", f.metric, f.samples, exec::iso(f.until));
            }
            Ok(())
        }
        BaselineCommand::Show { tenant, site, metric, level, state } => {
            let Some(level) = Level::ALL.into_iter().find(|l| l.name() == level) else {
                return Err(input_err(format!("unknown level `{level}` (hour_of_week, hour_of_day or all_hours)")));
            };
            let Some(m) = set.metrics.iter().find(|m| m.name == metric) else {
                let names: Vec<&str> = set.metrics.iter().map(|m| m.name.as_str()).collect();
                return Err(input_err(format!("no metric `{metric}` (metrics: {})", names.join(", "))));
            };
            if !state.exists() {
                return Err(input_err(format!("no state database `{}` (run `vigil baseline update` first)", state.display())));
            }
            let sig = load::Signals::from_connection(load::open_database().map_err(|e| (EXIT_EVAL, format!("error: {e}")))?);
            let marks = baseline::watermarks(&sig, &state).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
            let mark = marks.iter().find(|(name, _, _)| *name == metric).map(|(_, _, t)| exec::iso(*t)).unwrap_or_else(|| "never".into());
            let rows =
                baseline::show(&sig, &state, tenant.as_deref(), &site, &metric, level).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
            println!("site {site}  metric {metric}  level {}  folded until {mark}  (site-local slots)", level.name());
            let per_level = match level {
                Level::HourOfWeek => 7 * 86_400_000_000 / m.bucket,
                Level::HourOfDay => 86_400_000_000 / m.bucket,
                Level::AllHours => 1,
            };
            let mut groups: Vec<(&str, &str)> = rows.iter().map(|(t, s, _)| (t.as_str(), s.as_str())).collect();
            groups.dedup();
            if groups.is_empty() {
                println!("no stored baseline for this site and metric");
            }
            let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
            for (tenant_id, name) in groups {
                println!("# tenant {tenant_id}, series {}", if name.is_empty() { "-" } else { name });
                println!(
                    "{:<10} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6}",
                    "series", "slot", "n", "mean", "std", "median", "mad", "kept"
                );
                for slot in 0..per_level {
                    let label = baseline::slot_label(level, slot, m.bucket);
                    match rows.iter().find(|(t, s, r)| t == tenant_id && s == name && r.slot == slot) {
                        Some((_, _, r)) => println!(
                            "{:<10} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6}",
                            name,
                            label,
                            r.n,
                            f(Some(r.mean)),
                            f(r.std),
                            f(r.median),
                            f(r.mad),
                            r.kept
                        ),
                        None => println!("{:<10} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>6}", name, label, 0, "-", "-", "-", "-", 0),
                    }
                }
            }
            Ok(())
        }
    }
}

fn findings_command(state: &Path, action: FindingsCommand) -> CliResult {
    use vigil_engine::store;
    if !state.exists() {
        return Err(input_err(format!("no state database `{}` (audit --state or watch writes it)", state.display())));
    }
    let db = |e: vigil_engine::duckdb::Error| (EXIT_EVAL, format!("error: {}: {e}", state.display()));
    match action {
        FindingsCommand::List { status, format } => {
            let known = ["open", "new", "acknowledged", "resolved", "all"];
            if !known.contains(&status.to_lowercase().as_str()) {
                return Err(input_err(format!("unknown status `{status}` (open, new, acknowledged, resolved or all)")));
            }
            let rows = store::list(state, Some(&status.to_lowercase())).map_err(db)?;
            match format {
                Format::Table => {
                    println!(
                        "{:>5}  {:<12}  {:<8}  {:<34}  {:<8}  {:<8}  {:<10}  {:<20}  {:<20}  {:>5}",
                        "id", "status", "severity", "finding_type", "tenant", "site", "guard", "first_seen", "last_seen", "seen"
                    );
                    for r in &rows {
                        println!(
                            "{:>5}  {:<12}  {:<8}  {:<34}  {:<8}  {:<8}  {:<10}  {:<20}  {:<20}  {:>5}{}",
                            r.id,
                            r.status,
                            r.severity,
                            r.finding_type,
                            r.tenant_id,
                            r.site_id,
                            r.guard_id.as_deref().unwrap_or("-"),
                            r.first_seen,
                            r.last_seen,
                            r.occurrences,
                            if r.holding { "" } else { "  (no longer holds)" }
                        );
                    }
                    eprintln!("{} finding(s)", rows.len());
                }
                Format::Json | Format::Jsonl => {
                    for r in &rows {
                        println!("{}", serde_json::to_string(r).unwrap_or_default());
                    }
                }
            }
            Ok(())
        }
        FindingsCommand::Show { id } => {
            let rows = store::list(state, Some("all")).map_err(db)?;
            let Some(r) = rows.iter().find(|r| r.id == id) else { return Err(input_err(format!("no finding {id}"))) };
            println!("finding {} {} ({})", r.id, r.finding_type, r.status);
            println!(
                "  where        tenant {} site {} guard {} entity {}",
                r.tenant_id,
                r.site_id,
                r.guard_id.as_deref().unwrap_or("-"),
                r.entity_id.as_deref().unwrap_or("-")
            );
            println!("  what         {} | {} {} | runbook {}", r.title, r.category, r.severity, r.runbook);
            println!(
                "  seen         first {}  last {}  {} time(s){}",
                r.first_seen,
                r.last_seen,
                r.occurrences,
                if r.holding { "" } else { ", no longer holds" }
            );
            println!("  evidence     {}", r.evidence);
            println!("  provenance   rule {} (text {}), SQL {}, rule set {}", r.rule, r.rule_hash, r.sql_hash, r.ruleset_revision);
            if let (Some(by), Some(at)) = (&r.acknowledged_by, &r.acknowledged_at) {
                println!("  acknowledged by {by} at {at}");
            }
            if let (Some(by), Some(at)) = (&r.resolved_by, &r.resolved_at) {
                println!("  resolved     by {by} at {at}");
            }
            println!("  history:");
            for (at, event, detail, who) in store::history(state, id).map_err(db)? {
                println!(
                    "    {at}  {event}{}{}",
                    detail.map(|d| format!("  {d}")).unwrap_or_default(),
                    who.map(|w| format!("  by {w}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        FindingsCommand::Ack { id, by, note } => lifecycle_step(state, id, false, &by, note.as_deref()),
        FindingsCommand::Resolve { id, by, note } => lifecycle_step(state, id, true, &by, note.as_deref()),
    }
}

fn status(state: &Path) -> CliResult {
    use vigil_engine::store;
    if !state.exists() {
        return Err(input_err(format!("no state database `{}` (audit --state or watch writes it)", state.display())));
    }
    let db = |e: vigil_engine::duckdb::Error| (EXIT_EVAL, format!("error: {}: {e}", state.display()));
    println!("state {}", state.display());
    println!("  last tick        {}", store::last_tick(state).map_err(db)?.unwrap_or_else(|| "none".into()));
    let all = store::list(state, Some("all")).map_err(db)?;
    let count = |status: &str| all.iter().filter(|f| f.status == status).count();
    println!("  findings         {} new, {} acknowledged, {} resolved", count("NEW"), count("ACKNOWLEDGED"), count("RESOLVED"));
    let open: Vec<&store::Stored> = all.iter().filter(|f| f.status != "RESOLVED").collect();
    for level in ["CRITICAL", "HIGH", "MEDIUM", "LOW"] {
        let n = open.iter().filter(|f| f.severity == level).count();
        if n > 0 {
            println!("    open {level:<9}  {n}");
        }
    }
    let sig = load::Signals::from_connection(load::open_database().map_err(db)?);
    for (metric, minutes, until) in vigil_engine::baseline::watermarks(&sig, state).map_err(db)? {
        println!("  baseline         {metric}: {minutes}-minute buckets folded until {}", exec::iso(until));
    }
    let reloads = store::reloads(state).map_err(db)?;
    let failed: Vec<&store::Reload> = reloads.iter().filter(|r| !r.ok).collect();
    println!("  reloads          {} ok, {} failed", reloads.len() - failed.len(), failed.len());
    if let Some(last) = reloads.iter().rev().find(|r| r.ok) {
        println!("    last ok        {} rule set {}", last.at, last.revision.as_deref().unwrap_or("?"));
    }
    for r in &failed {
        println!("    failed at {}:", r.at);
        for line in r.error.as_deref().unwrap_or("").lines() {
            println!("      {line}");
        }
    }
    Ok(())
}

fn lifecycle_step(state: &Path, id: i64, resolve: bool, by: &str, note: Option<&str>) -> CliResult {
    let at = exec::iso(chrono::Utc::now().timestamp() * 1_000_000);
    match vigil_engine::store::step(state, id, resolve, by, &at, note) {
        Ok(()) => {
            println!("finding {id} {} by {by} at {at}", if resolve { "resolved" } else { "acknowledged" });
            Ok(())
        }
        Err(vigil_engine::store::StepError::Db(e)) => Err((EXIT_EVAL, format!("error: {}: {e}", state.display()))),
        Err(e) => Err(input_err(e.to_string())),
    }
}

fn fmt_command(paths: &[PathBuf], check: bool) -> CliResult {
    let roots: Vec<PathBuf> =
        if paths.is_empty() { ["rules", "runbooks", "tests/cases"].iter().map(PathBuf::from).collect() } else { paths.to_vec() };
    let mut files = Vec::new();
    for root in &roots {
        if root.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(root)
                .map_err(|e| input_err(format!("{}: {e}", root.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("vigil") | Some("case")))
                .collect();
            found.sort();
            files.extend(found);
        } else if root.is_file() {
            files.push(root.clone());
        } else {
            return Err(input_err(format!("{}: no such file or directory", root.display())));
        }
    }
    let mut changed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| input_err(format!("{}: {e}", f.display())))?;
        let Some(formatted) = vigil_engine::fmt::format_path_text(f, &text) else {
            return Err(input_err(format!("{}: not a .vigil or .case file", f.display())));
        };
        if formatted != text {
            changed.push(f.clone());
            if !check {
                std::fs::write(f, formatted).map_err(|e| input_err(format!("{}: {e}", f.display())))?;
            }
        }
    }
    for f in &changed {
        println!("{}{}", if check { "not formatted: " } else { "formatted: " }, f.display());
    }
    if check && !changed.is_empty() {
        return Err((EXIT_RULES, format!("error: {} of {} file(s) not formatted (run `vigil fmt`)", changed.len(), files.len())));
    }
    if changed.is_empty() {
        println!("{} file(s) already formatted", files.len());
    }
    Ok(())
}

fn bench(args: &RuleArgs, signals: &Path, at: &str, runs: u32) -> CliResult {
    let set = load_rules(args)?;
    let now = parse_time(at, "--at")?;
    let mut times = Vec::new();
    let mut findings = 0;
    for _ in 0..runs.max(1) {
        let started = std::time::Instant::now();
        let sig = load::load(signals).map_err(input_err)?;
        let loaded = started.elapsed();
        let found = exec::evaluate(&sig, &set, now, &Filter::default()).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
        let total = started.elapsed();
        findings = found.len();
        times.push((loaded, total));
    }
    let peak = peak_memory_kib();
    // Time per rule (on one loaded copy), slowest first.
    let sig = load::load(signals).map_err(input_err)?;
    let mut per_rule = Vec::new();
    for rule in &set.rules {
        let started = std::time::Instant::now();
        exec::evaluate_rule(&sig, &set, rule, now, &set.params_for(rule)).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
        per_rule.push((started.elapsed().as_secs_f64(), rule.id.clone()));
    }
    for a in &set.anomalies {
        let started = std::time::Instant::now();
        exec::evaluate_anomaly(&sig, &set, a, now).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
        per_rule.push((started.elapsed().as_secs_f64(), a.id.clone()));
    }
    per_rule.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (i, (loaded, total)) in times.iter().enumerate() {
        println!("run {}: load {:.3} s, load + audit {:.3} s", i + 1, loaded.as_secs_f64(), total.as_secs_f64());
    }
    let mut totals: Vec<f64> = times.iter().map(|(_, t)| t.as_secs_f64()).collect();
    totals.sort_by(f64::total_cmp);
    println!("rules: {} (+ {} anomaly rules), findings: {findings}", set.rules.len(), set.anomalies.len());
    println!("load + audit: best {:.3} s, median {:.3} s", totals[0], totals[totals.len() / 2]);
    println!("peak memory (VmHWM): {:.1} MiB", peak as f64 / 1024.0);
    println!("slowest rules:");
    for (secs, id) in per_rule.iter().take(8) {
        println!("  {secs:>7.3} s  {id}");
    }
    // Rows per table, and rows inside the widest time range any rule reads.
    let mut widest: std::collections::BTreeMap<&str, Option<i64>> = std::collections::BTreeMap::new();
    for rule in &set.rules {
        for (table, bound) in plan::read_ranges(rule, now, &set.params_for(rule)) {
            let slot = widest.entry(table).or_insert(bound);
            *slot = match (*slot, bound) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
        }
    }
    let (mut all_rows, mut read_rows) = (0i64, 0i64);
    for table in vigil_engine::schema::contract_tables() {
        let count = |filter: String| -> i64 {
            let q = format!("SELECT count(*) FROM {}.{}{filter}", sql::ident(sql::RAW_SCHEMA), sql::ident(table.name));
            sig.conn.query_row(&q, [], |r| r.get::<_, i64>(0)).unwrap_or(0)
        };
        let total = count(String::new());
        let read = match (widest.get(table.name), table.event_time) {
            (None, _) => 0,
            (Some(Some(bound)), Some(ev)) => count(format!(
                " WHERE {} > {} AND {} <= {}",
                sql::ident(ev),
                sql::timestamp_literal(*bound),
                sql::ident(ev),
                sql::timestamp_literal(now)
            )),
            (Some(_), _) => total,
        };
        all_rows += total;
        read_rows += read;
        println!("  {:<20} {:>12} rows, {:>12} inside the time ranges the rules read", table.name, total, read);
    }
    println!("rows: {all_rows} in all, {read_rows} inside the time ranges the rules read");
    Ok(())
}

/// Peak resident memory of this process, in KiB (Linux), or 0 when unknown.
fn bench_baselines(args: &RuleArgs, sites: u32, days: u32) -> CliResult {
    let set = load_rules(args)?;
    let metrics: Vec<vigil_engine::anomaly::Metric> = set.metrics.iter().filter(|m| m.table.name == "metrics").cloned().collect();
    if metrics.is_empty() || sites == 0 || days == 0 {
        return Err(input_err("need --sites and --days above 0 and a metric over the `metrics` table in the rules"));
    }
    let dir = std::env::temp_dir().join(format!("vigil-bench-baselines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(input_err)?;
    let sig = load::load(&dir).map_err(input_err)?; // every contract table, empty
    let start = parse_time("2025-09-01T00:00:00Z", "start")?;
    let end = start + i64::from(days) * 86_400_000_000;
    let started = std::time::Instant::now();
    sig.conn
        .execute_batch(&format!(
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
        .map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
    let rows: i64 =
        sig.conn.query_row("SELECT count(*) FROM raw.metrics", [], |r| r.get(0)).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
    println!("generated {sites} sites x {days} days: {rows} metric rows in {:.1} s", started.elapsed().as_secs_f64());
    let state = dir.join("state.duckdb");
    let (_, window) = set.baseline_metrics();
    let hour = 3_600_000_000;
    for (label, until) in [(format!("backfill of {days} days minus the last hour"), end - hour), ("the last hour".to_string(), end)] {
        let t = std::time::Instant::now();
        let folded =
            vigil_engine::baseline::update(&sig, &metrics, &state, until, window).map_err(|e| (EXIT_EVAL, format!("error: {e}")))?;
        let buckets: i64 = folded.iter().map(|f| f.samples).sum();
        println!("{label}: {buckets} buckets folded in {:.2} s", t.elapsed().as_secs_f64());
    }
    println!("peak memory (VmHWM): {:.1} MiB", peak_memory_kib() as f64 / 1024.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn categorize(args: &RuleArgs, finding_type: &str, context: &[String]) -> CliResult {
    use vigil_engine::categorize_eval::{severity_for, Val};
    let set = load_rules(args)?;
    let mut values = std::collections::HashMap::new();
    for pair in context {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| input_err(format!("--context `{pair}`: write NAME=VALUE, e.g. overdue_minutes=120")))?;
        values.insert(k.trim().to_string(), Val::parse(v.trim()));
    }
    let (by_keyword, keyword) = set.categories.categorize(finding_type);
    let rule = set.rules.iter().find(|r| r.finding_type == finding_type);
    let (category, why_category) = match rule {
        Some(r) if r.category_stated.is_some() => (r.category.clone(), format!("stated by rule {}", r.id)),
        _ => (by_keyword.to_string(), keyword.map(|k| format!("keyword {k}")).unwrap_or_else(|| "fallback".to_string())),
    };
    println!("finding_type  {finding_type}");
    println!("category      {category}  ({why_category})");
    let Some(rule) = rule else {
        println!("severity      unknown: no rule raises {finding_type}");
        return Ok(());
    };
    let outcome = severity_for(rule, &values);
    let why = match outcome.step {
        Some(i) => format!("severity step {i}: the first whose condition holds"),
        None => format!("the base severity of rule {}", rule.id),
    };
    println!("severity      {}  ({why})", outcome.severity);
    if outcome.step.is_none() && !outcome.missing.is_empty() {
        println!("not given     {} (steps reading them did not match)", outcome.missing.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

fn runbook_command(args: &RuleArgs, action: RunbookCommand) -> CliResult {
    use vigil_engine::runbook::{self, FindingKey};
    let set = load_rules(args)?;
    match action {
        RunbookCommand::Match { finding_type, category, severity, tenant } => {
            let rule = set.rules.iter().find(|r| r.finding_type == finding_type);
            let category = category.unwrap_or_else(|| match rule {
                Some(r) => r.category.clone(),
                None => set.categories.categorize(&finding_type).0.to_string(),
            });
            let severity = severity.or_else(|| rule.map(|r| r.base_severity.clone())).unwrap_or_else(|| "MEDIUM".to_string());
            let key = FindingKey { finding_type: &finding_type, category: &category, severity: &severity, tenant: &tenant };
            let (found, step, attempts) = runbook::match_runbook(&set.runbooks, &set.cascade, &key);
            println!(
                "finding {finding_type} (category {category}, severity {severity}{})",
                if tenant.is_empty() { String::new() } else { format!(", tenant {tenant}") }
            );
            for (i, a) in attempts.iter().enumerate() {
                let whose = if a.step == "otherwise" {
                    "fallback".to_string()
                } else if a.tenant_pass {
                    format!("tenant {}", if tenant.is_empty() { "-" } else { &tenant })
                } else {
                    "global".to_string()
                };
                match &a.found {
                    Some(id) => println!("  {}. {:<20} {:<12} -> {id}", i + 1, a.step, whose),
                    None => println!("  {}. {:<20} {:<12} no runbook", i + 1, a.step, whose),
                }
            }
            match found {
                Some(r) => println!("runbook {} (step {step})", r.id),
                None => println!("no runbook: even the fallback `{}` is missing", set.cascade.fallback),
            }
            Ok(())
        }
        RunbookCommand::Show { id, tenant } => {
            let book = set
                .runbooks
                .iter()
                .find(|r| r.id == id && tenant.is_some() && r.tenant == tenant)
                .or_else(|| set.runbooks.iter().find(|r| r.id == id && r.tenant.is_none()))
                .or_else(|| set.runbooks.iter().find(|r| r.id == id));
            let Some(book) = book else {
                let ids: Vec<&str> = set.runbooks.iter().map(|r| r.id.as_str()).collect();
                let hint =
                    vigil_engine::diag::closest(&id, ids.iter().copied()).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                return Err(input_err(format!("no runbook `{id}`{hint}")));
            };
            println!("{}: {}", book.id, book.title);
            let matches = match &book.matches {
                runbook::Matches::Finding(f) => format!("finding {f}"),
                runbook::Matches::Class { category, severity: Some(s) } => format!("category {category}, severity {s}"),
                runbook::Matches::Class { category, severity: None } => format!("category {category}"),
                runbook::Matches::Anything => "anything (fallback)".to_string(),
            };
            println!("matches: {matches}{}", book.tenant.as_ref().map(|t| format!(" (tenant {t})")).unwrap_or_default());
            println!("escalate after: {} min\n", book.escalate_after_minutes);
            for (i, step) in book.steps.iter().enumerate() {
                println!("  {}. {step}", i + 1);
            }
            if !book.auto_actions.is_empty() {
                println!();
                for (action, on) in &book.auto_actions {
                    println!("  auto {action}: {}", if *on { "on" } else { "off" });
                }
            }
            Ok(())
        }
    }
}

/// One case's outcome.
struct CaseOutcome {
    name: String,
    file: PathBuf,
    problems: Vec<String>,
    /// The snapshot file `--accept` wrote (new or changed).
    accepted: Option<PathBuf>,
}

fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, (u8, String)> {
    let roots = if paths.is_empty() { vec![PathBuf::from("tests/cases")] } else { paths.to_vec() };
    let mut out = Vec::new();
    for root in roots {
        if root.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
                .map_err(|e| input_err(format!("{}: {e}", root.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "case"))
                .collect();
            files.sort();
            out.extend(files);
        } else if root.is_file() {
            out.push(root);
        } else {
            return Err(input_err(format!("{}: no such case file or directory", root.display())));
        }
    }
    Ok(out)
}

fn run_case(set: &RuleSet, file: &Path, accept: bool) -> CaseOutcome {
    use vigil_engine::case;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("case").to_string();
    let fail = |problem: String| CaseOutcome { name: name.clone(), file: file.to_path_buf(), problems: vec![problem], accepted: None };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    let parsed = match case::parse_case(&text) {
        Ok(c) => c,
        Err(e) => return fail(format!("{}:{e}", file.display())),
    };
    let dir = std::env::temp_dir().join(format!("vigil-case-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = case::write_tables(&parsed, &dir) {
        return fail(format!("cannot write the case's tables: {e}"));
    }
    let loaded = load::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let signals = match loaded {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: table {e}", file.display())),
    };
    let filter = Filter { rules: parsed.rules.iter().cloned().collect(), ..Default::default() };
    let mut problems: Vec<String> = Vec::new();
    let snap_file = case::snapshot_path(file);
    let stored = std::fs::read_to_string(&snap_file).ok().map(|t| case::parse_snapshot(&t));
    let mut sections = Vec::new();
    for check in &parsed.checks {
        let (findings, failures) = exec::evaluate_all(&signals, set, check.at, &filter);
        let at = exec::iso(check.at);
        problems.extend(failures.iter().map(|f| format!("at {at}: {f}")));
        problems.extend(case::compare(&parsed, check, &findings).into_iter().map(|p| format!("at {at}: {p}")));
        if check.snapshot {
            let lines = case::snapshot_lines(&findings);
            if !accept {
                problems.extend(case::compare_snapshot(stored.as_ref(), check.at, &lines).into_iter().map(|p| format!("at {at}: {p}")));
            }
            sections.push((check.at, lines));
        }
    }
    let mut accepted = None;
    if accept && !sections.is_empty() {
        let text = case::render_snapshot(file, &sections);
        let before = std::fs::read_to_string(&snap_file).ok();
        if before.as_deref() != Some(text.as_str()) {
            match std::fs::write(&snap_file, text) {
                Ok(()) => accepted = Some(snap_file.clone()),
                Err(e) => problems.push(format!("cannot write {}: {e}", snap_file.display())),
            }
        }
    }
    CaseOutcome { name: if parsed.name.is_empty() { name } else { parsed.name.clone() }, file: file.to_path_buf(), problems, accepted }
}

fn run_tests(args: &RuleArgs, paths: &[PathBuf], format: TestFormat, accept: bool) -> CliResult {
    let set = load_rules(args)?;
    let files = case_files(paths)?;
    let outcomes: Vec<CaseOutcome> = files.iter().map(|f| run_case(&set, f, accept)).collect();
    for o in &outcomes {
        if let Some(p) = &o.accepted {
            eprintln!("accepted {} (review it in the diff)", p.display());
        }
    }
    let failed = outcomes.iter().filter(|o| !o.problems.is_empty()).count();
    let passed = outcomes.len() - failed;
    match format {
        TestFormat::Text => {
            for o in outcomes.iter().filter(|o| !o.problems.is_empty()) {
                println!("FAIL {} ({})", o.file.display(), o.name);
                for p in &o.problems {
                    println!("  {p}");
                }
            }
            println!("{passed} passed, {failed} failed");
        }
        TestFormat::Junit => {
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            println!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            println!("<testsuite name=\"vigil\" tests=\"{}\" failures=\"{failed}\">", outcomes.len());
            for o in &outcomes {
                let class = esc(&o.file.display().to_string());
                if o.problems.is_empty() {
                    println!("  <testcase classname=\"{class}\" name=\"{}\"/>", esc(&o.name));
                } else {
                    println!("  <testcase classname=\"{class}\" name=\"{}\">", esc(&o.name));
                    println!("    <failure message=\"{}\">{}</failure>", esc(&o.problems[0]), esc(&o.problems.join("\n")));
                    println!("  </testcase>");
                }
            }
            println!("</testsuite>");
        }
    }
    if failed > 0 {
        Err((EXIT_RULES, String::new()))
    } else {
        Ok(())
    }
}
