//! `vigil backtest`: what would my rule change do? The current rules and a
//! baseline (a directory, or the rules at a git revision) are evaluated over the
//! same history and compared rule by rule.

use std::path::{Path, PathBuf};

use vigil_engine::backtest::{self, Impact};

use super::{input_err, load_rules, report_failures, sibling, CliError, CliResult, RuleArgs, SpanArgs};

/// Where the baseline rules come from.
pub enum Baseline {
    /// A rules directory and its runbooks directory.
    Dirs(PathBuf, Option<PathBuf>),
    /// The rules and runbooks directories at this git revision.
    Revision(String),
}

/// The arguments of `vigil backtest`.
pub struct Args {
    pub rules: RuleArgs,
    pub span: SpanArgs,
    pub baseline: Baseline,
    pub json: bool,
    pub fail_on_change: bool,
    pub examples: usize,
    pub engine: super::EngineArgs,
}

pub fn run(args: Args) -> CliResult {
    let current = load_rules(&args.rules)?;
    let ticks = args.span.ticks()?;
    // Keeps the checked-out revision until the baseline is loaded.
    let mut checkout: Option<TempDir> = None;
    let baseline_args = match &args.baseline {
        Baseline::Dirs(rules, runbooks) => RuleArgs { rules: rules.clone(), runbooks: runbooks.clone() },
        Baseline::Revision(rev) => {
            let runbooks = args.rules.runbooks.clone().unwrap_or_else(|| sibling(&args.rules.rules, "runbooks"));
            let (dir, rules, runbooks) = files_at_revision(&args.rules.rules, &runbooks, rev)?;
            checkout = Some(dir);
            RuleArgs { rules, runbooks: Some(runbooks) }
        }
    };
    let baseline = load_rules(&baseline_args).map_err(|e| e.context("(in the baseline rules)"))?;
    drop(checkout);
    let signals = args.engine.load(&args.span.signals)?;
    let (impact, failures) = backtest::backtest(&signals, &current, &baseline, &ticks, args.examples);
    if args.json {
        let text = serde_json::to_string_pretty(&impact).map_err(|e| CliError::Eval(format!("error: {e}")))?;
        outln!("{text}");
    } else {
        out!("{}", text_report(&impact));
    }
    report_failures(&failures)?;
    if args.fail_on_change && impact.differs() {
        return Err(CliError::Changed("the rule change changes findings (--fail-on-change)".into()));
    }
    Ok(())
}

fn text_report(impact: &Impact) -> String {
    let mut out = String::new();
    let evaluated = impact.rules.iter().filter(|r| r.status != "same_plan").count();
    out.push_str(&format!(
        "backtest {} .. {}: {} ticks, {} rules ({} evaluated twice, {} with the same plan)\n",
        impact.from,
        impact.to,
        impact.ticks,
        impact.rules.len(),
        evaluated,
        impact.rules.len() - evaluated
    ));
    let changed: Vec<_> = impact.rules.iter().filter(|r| r.differs()).collect();
    if changed.is_empty() {
        out.push_str("no finding changes\n");
    }
    for r in changed {
        let note = match r.status {
            "added" => " (new rule)",
            "removed" => " (rule removed)",
            _ => "",
        };
        out.push_str(&format!(
            "\n{}{note}: +{} added, -{} removed, {} severity changed; first difference at {}\n",
            r.rule,
            r.added,
            r.removed,
            r.severity_changed,
            r.first_difference.as_deref().unwrap_or("-")
        ));
        for (sign, examples) in [("+", &r.added_examples), ("-", &r.removed_examples), ("~", &r.changed_examples)] {
            for e in examples {
                let was = e.baseline_severity.as_ref().map(|before| format!(" (was {before})")).unwrap_or_default();
                out.push_str(&format!("  {sign} {}{was} from {} ({} ticks)\n", e.finding.describe(), e.first_tick, e.ticks));
            }
        }
    }
    let same: Vec<&str> = impact.rules.iter().filter(|r| !r.differs()).map(|r| r.rule.as_str()).collect();
    if !same.is_empty() {
        out.push_str(&format!("\nunchanged: {}\n", same.join(", ")));
    }
    out
}

/// A temporary directory removed when dropped.
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Extracts the rules and runbooks directories as they were at `rev` in the git
/// repository that holds them; returns the checkout and the two directories in it.
fn files_at_revision(rules: &Path, runbooks: &Path, rev: &str) -> Result<(TempDir, PathBuf, PathBuf), CliError> {
    let git = |dir: &Path, args: &[&str]| -> Result<Vec<u8>, CliError> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .map_err(|e| input_err(format!("--baseline-rev needs git: {e}")))?;
        if !out.status.success() {
            return Err(input_err(format!(
                "--baseline-rev {rev}: git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    };
    let top = String::from_utf8_lossy(&git(rules, &["rev-parse", "--show-toplevel"])?).trim().to_string();
    let top = PathBuf::from(top).canonicalize().map_err(|e| input_err(format!("--baseline-rev: {e}")))?;
    let relative = |dir: &Path| -> Result<String, CliError> {
        let full = dir.canonicalize().map_err(|e| input_err(format!("`{}`: {e}", dir.display())))?;
        let rel = full
            .strip_prefix(&top)
            .map_err(|_| input_err(format!("`{}` is not inside the git repository {}", dir.display(), top.display())))?;
        Ok(rel.to_string_lossy().into_owned())
    };
    let (rel_rules, rel_runbooks) = (relative(rules)?, relative(runbooks)?);
    let tar = git(&top, &["archive", "--format=tar", rev, "--", &rel_rules, &rel_runbooks])?;
    let dir = std::env::temp_dir().join(format!("vigil-baseline-{}-{}", std::process::id(), rev.replace(['/', '.', ':'], "_")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| input_err(format!("cannot create {}: {e}", dir.display())))?;
    let checkout = TempDir(dir.clone());
    let tar_file = dir.join("baseline.tar");
    std::fs::write(&tar_file, tar).map_err(|e| input_err(format!("cannot write {}: {e}", tar_file.display())))?;
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&dir)
        .status()
        .map_err(|e| input_err(format!("--baseline-rev needs tar: {e}")))?;
    if !status.success() {
        return Err(input_err(format!("--baseline-rev {rev}: cannot unpack the rules")));
    }
    Ok((checkout, dir.join(rel_rules), dir.join(rel_runbooks)))
}
