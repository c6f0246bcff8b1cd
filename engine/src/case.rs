//! Case files: signal rows, an evaluation time and the expected findings in one
//! readable file (in the spirit of promtool rule tests and regorus YAML cases).
//!
//! ```text
//! case "Silent site fires after 61 minutes"
//! rules CORRELATION_SILENT_SITE
//! at 2025-10-04T12:00:00Z
//! table shifts
//! tenant_id,site_id,shift_id,guard_id,starts_at,ends_at,checked_in_at,checked_out_at
//! T1,S1,SH1,G1,2025-10-04T08:00:00Z,2025-10-04T16:00:00Z,2025-10-04T08:00:00Z,
//! end
//! expect CORRELATION_SILENT_SITE tenant=T1 site=S1 severity=CRITICAL
//! expect none TOUR_OVERDUE
//! ```
//!
//! A case may hold several `at` lines; the `expect` lines after an `at` are
//! checked at that time, over the same rows (a virtual clock).
//!
//! Snapshot mode: a `snapshot` line after an `at` compares the whole outcome at
//! that time (every finding of the case's rules, every field) with the file
//! `NAME.case.snap` beside the case; `vigil test --accept` writes or refreshes
//! it, for review in the diff like `cargo insta accept`.
//!
//! Invariant: a parsed [`Case`] has at least one evaluation time and tables
//! named after contract tables; the rows themselves are checked by the loader.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::exec::Finding;
use crate::load::parse_timestamp;
use crate::schema;

/// One expected finding (fields left out are not compared).
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The finding type.
    pub finding_type: String,
    /// field -> expected value; `None` means the field must be null.
    pub fields: BTreeMap<String, Option<String>>,
    /// Line in the case file.
    pub line: usize,
}

/// A parsed case file.
#[derive(Debug, Clone, Default)]
pub struct Case {
    /// Its description.
    pub name: String,
    /// Rule ids to evaluate (empty: all).
    pub rules: Vec<String>,
    /// Table name -> CSV text (header and rows).
    pub tables: BTreeMap<String, String>,
    /// Table name -> the case file's line of each CSV line (header first).
    pub table_lines: BTreeMap<String, Vec<usize>>,
    /// Table name -> a file beside the case holding its rows (`table NAME from FILE`:
    /// CSV, Parquet or JSON lines, read like any signal file).
    pub table_files: BTreeMap<String, String>,
    /// One check per `at` line, in order.
    pub checks: Vec<Check>,
    /// Every rule id (`rules` lines) and finding type (`expect` lines) the case names,
    /// with its line: each must exist in the rule set the case runs against.
    pub names: Vec<Named>,
}

/// A rule id or finding type a case file names, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    /// The name as written.
    pub name: String,
    /// A rule id (`rules`) rather than a finding type (`expect`).
    pub rule: bool,
    /// 1-based line.
    pub line: usize,
}

/// The names a case uses that its rule set does not have, one message each with its
/// line and the closest existing name: a typo in a case must fail it, never make it
/// pass by testing nothing.
pub fn unknown_names(case: &Case, set: &crate::RuleSet) -> Vec<(usize, String)> {
    let ids: Vec<&str> = set.headers().map(|h| h.id.as_str()).collect();
    let types: Vec<&str> = set.headers().map(|h| h.finding_type.as_str()).collect();
    case.names
        .iter()
        .filter_map(|n| {
            let (known, what) = if n.rule { (&ids, "rule") } else { (&types, "finding type") };
            if known.contains(&n.name.as_str()) {
                return None;
            }
            let hint = crate::diag::closest(&n.name, known.iter().copied()).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
            Some((n.line, format!("no {what} `{}` in the rule set{hint}", n.name)))
        })
        .collect()
}

/// The expectations at one evaluation time.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// Evaluation time, microseconds UTC.
    pub at: i64,
    /// Expected findings.
    pub expect: Vec<Expectation>,
    /// Finding types expected to be absent.
    pub expect_none: Vec<String>,
    /// `snapshot`: compare the whole outcome with the case's snapshot file.
    pub snapshot: bool,
}

/// A case file error with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

const FIELDS: &[&str] = &["tenant", "site", "guard", "entity", "severity", "category", "runbook", "suppressed"];

/// Parses a case file.
pub fn parse_case(text: &str) -> Result<Case, CaseError> {
    let mut case = Case::default();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| CaseError { line: n, message };
        let (word, rest) = line.split_once(char::is_whitespace).map(|(w, r)| (w, r.trim())).unwrap_or((line, ""));
        match word {
            "case" => case.name = rest.trim_matches('"').to_string(),
            "rules" => {
                for id in rest.split_whitespace() {
                    case.rules.push(id.to_string());
                    case.names.push(Named { name: id.to_string(), rule: true, line: n });
                }
            }
            "at" => case.checks.push(Check { at: parse_timestamp(rest).map_err(err)?, ..Check::default() }),
            "table" if rest.split_whitespace().nth(1) == Some("from") => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (name, file) = match words.as_slice() {
                    [name, "from", file] => (*name, *file),
                    _ => return Err(err("write `table NAME from FILE`".into())),
                };
                if schema::contract_tables().all(|t| t.name != name) {
                    return Err(err(format!("`{name}` is not a contract table")));
                }
                if case.tables.contains_key(name) || case.table_files.insert(name.to_string(), file.to_string()).is_some() {
                    return Err(err(format!("table `{name}` is given twice")));
                }
            }
            "table" => {
                if schema::contract_tables().all(|t| t.name != rest) {
                    return Err(err(format!("`{rest}` is not a contract table")));
                }
                if case.table_files.contains_key(rest) {
                    return Err(err(format!("table `{rest}` is given twice")));
                }
                let mut csv = String::new();
                let mut at = Vec::new();
                let mut closed = false;
                for (line_no, l) in lines.by_ref() {
                    if l.trim() == "end" {
                        closed = true;
                        break;
                    }
                    if l.trim().is_empty() || l.trim_start().starts_with('#') {
                        continue;
                    }
                    csv.push_str(l.trim());
                    csv.push('\n');
                    at.push(line_no);
                }
                if !closed {
                    return Err(err(format!("table `{rest}` has no closing `end` line")));
                }
                if case.tables.insert(rest.to_string(), csv).is_some() {
                    return Err(err(format!("table `{rest}` is given twice")));
                }
                case.table_lines.insert(rest.to_string(), at);
            }
            "snapshot" => match case.checks.last_mut() {
                Some(check) => check.snapshot = true,
                None => return Err(err("write an `at` line before `snapshot`".into())),
            },
            "expect" => {
                let Some(check) = case.checks.last_mut() else {
                    return Err(err("write an `at` line before the `expect` lines it applies to".into()));
                };
                let mut parts = rest.split_whitespace();
                match parts.next() {
                    Some("none") => match parts.next() {
                        Some(t) => {
                            check.expect_none.push(t.to_string());
                            case.names.push(Named { name: t.to_string(), rule: false, line: n });
                        }
                        None => return Err(err("`expect none` needs a finding type".into())),
                    },
                    Some(t) => {
                        let mut fields = BTreeMap::new();
                        for p in parts {
                            let (k, v) = p.split_once('=').ok_or_else(|| err(format!("`{p}` is not key=value")))?;
                            if !FIELDS.contains(&k) {
                                return Err(err(format!("unknown field `{k}` (use {})", FIELDS.join(", "))));
                            }
                            fields.insert(k.to_string(), if v == "-" { None } else { Some(v.to_string()) });
                        }
                        check.expect.push(Expectation { finding_type: t.to_string(), fields, line: n });
                        case.names.push(Named { name: t.to_string(), rule: false, line: n });
                    }
                    None => return Err(err("`expect` needs a finding type".into())),
                }
            }
            other => return Err(err(format!("unknown line `{other}` (case, rules, at, table, expect, snapshot)"))),
        }
    }
    if case.checks.is_empty() {
        return Err(CaseError { line: 1, message: "the case has no `at` line".into() });
    }
    Ok(case)
}

/// Writes the case's tables as CSV files into `dir` (for the normal loader). Columns
/// the header leaves out are added empty: they read as null (a non-nullable one is
/// then refused by the loader, naming the column). Tables read from files are copied
/// from `base` (the case file's directory), keeping their format.
pub fn write_tables(case: &Case, base: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, file) in &case.table_files {
        let from = base.join(file);
        let ext = from.extension().and_then(|e| e.to_str()).unwrap_or("csv").to_ascii_lowercase();
        std::fs::copy(&from, dir.join(format!("{name}.{ext}")))
            .map_err(|e| std::io::Error::new(e.kind(), format!("table {name}: cannot read {}: {e}", from.display())))?;
    }
    for (name, csv) in &case.tables {
        let mut lines = csv.lines();
        let header = lines.next().unwrap_or_default();
        let given: Vec<&str> = header.split(',').map(str::trim).collect();
        let missing: Vec<&str> =
            schema::table(name).map(|t| t.columns.iter().map(|c| c.name).filter(|c| !given.contains(c)).collect()).unwrap_or_default();
        let mut text = String::with_capacity(csv.len());
        text.push_str(header);
        for m in &missing {
            text.push(',');
            text.push_str(m);
        }
        text.push('\n');
        for row in lines {
            text.push_str(row);
            text.push_str(&",".repeat(missing.len()));
            text.push('\n');
        }
        std::fs::write(dir.join(format!("{name}.csv")), text)?;
    }
    Ok(())
}

/// A loading error of a case's table, at the case file's own line.
fn table_problem(case: &Case, file: &Path, e: &crate::load::LoadError) -> String {
    let table = e.file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
    let line = e.line.and_then(|l| case.table_lines.get(table).and_then(|at| at.get(usize::try_from(l).ok()?.checked_sub(1)?)));
    let column = e.column.as_ref().map(|c| format!("column `{c}`: ")).unwrap_or_default();
    match line {
        Some(line) => format!("{}:{line}: table {table}: {column}{}", file.display(), e.message),
        None => format!("{}: table {table}: {column}{}", file.display(), e.message),
    }
}

fn field(f: &Finding, key: &str) -> Option<String> {
    match key {
        "tenant" => Some(f.tenant_id.clone()),
        "site" => Some(f.site_id.clone()),
        "guard" => f.guard_id.clone(),
        "entity" => f.entity_id.clone(),
        "severity" => Some(f.severity.clone()),
        "category" => Some(f.category.clone()),
        "runbook" => Some(f.runbook.clone()),
        "suppressed" => Some(f.suppressed.to_string()),
        _ => None,
    }
}

/// Compares the findings at one check's time with its expectations; returns one
/// line per mismatch.
///
/// Every expectation must match exactly one finding; every finding of a type
/// the case talks about (expected, expected absent, or of a rule it runs) must
/// be expected.
pub fn compare(case: &Case, check: &Check, findings: &[Finding]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = vec![false; findings.len()];
    for e in &check.expect {
        let hit = findings
            .iter()
            .enumerate()
            .find(|(i, f)| !used[*i] && f.finding_type == e.finding_type && e.fields.iter().all(|(k, v)| field(f, k) == *v));
        match hit {
            Some((i, _)) => used[i] = true,
            None => {
                let fields: Vec<String> =
                    FIELDS.iter().filter_map(|k| e.fields.get(*k).map(|v| format!("{k}={}", v.as_deref().unwrap_or("-")))).collect();
                problems.push(format!("line {}: expected {} {} but no such finding", e.line, e.finding_type, fields.join(" ")));
            }
        }
    }
    for (i, f) in findings.iter().enumerate() {
        if used[i] {
            continue;
        }
        let talked_about = check.expect.iter().any(|e| e.finding_type == f.finding_type)
            || check.expect_none.contains(&f.finding_type)
            || case.rules.contains(&f.rule);
        if talked_about {
            problems.push(format!("unexpected finding: {}", f.describe()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_case() {
        let c = parse_case("case \"x\"\nrules A B\nat 2025-10-04T12:00:00Z\ntable sites\ntenant_id,site_id\nT1,S1\nend\nexpect A site=S1 guard=-\nexpect none B\n").expect("parses");
        assert_eq!(c.rules, vec!["A", "B"]);
        assert_eq!(c.tables["sites"], "tenant_id,site_id\nT1,S1\n");
        assert_eq!(c.checks[0].expect[0].fields["guard"], None);
        assert_eq!(c.checks[0].expect_none, vec!["B"]);
    }

    #[test]
    fn rejects_unknown_tables_and_missing_end() {
        assert!(parse_case("at 2025-10-04T12:00:00Z\ntable nope\nend\n").is_err());
        assert_eq!(parse_case("at 2025-10-04T12:00:00Z\ntable sites\na,b\n").unwrap_err().line, 2);
    }
}

/// The snapshot file of a case: `NAME.case.snap` beside it.
pub fn snapshot_path(case_file: &Path) -> std::path::PathBuf {
    let mut name = case_file.as_os_str().to_owned();
    name.push(".snap");
    std::path::PathBuf::from(name)
}

/// The lines a snapshot keeps for findings: one JSON object each, in output order.
pub fn snapshot_lines(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(|f| serde_json::to_string(f).unwrap_or_default()).collect()
}

/// Renders a snapshot file: per snapshot time an `at` line and its findings.
pub fn render_snapshot(case_file: &Path, sections: &[(i64, Vec<String>)]) -> String {
    let mut out = format!("# vigil snapshot of {}; review it, refresh with `vigil test --accept`\n", case_file.display());
    for (at, lines) in sections {
        out.push_str(&format!("at {}\n", crate::exec::iso(*at)));
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Reads a snapshot file: findings lines per time (ISO-8601).
pub fn parse_snapshot(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(at) = line.strip_prefix("at ") {
            current = Some(at.trim().to_string());
            out.entry(at.trim().to_string()).or_default();
        } else if let Some(at) = &current {
            out.entry(at.clone()).or_default().push(line.to_string());
        }
    }
    out
}

/// Compares a snapshot check: the problems, as `-` (only in the snapshot) and
/// `+` (only now) lines; a missing snapshot is one problem.
pub fn compare_snapshot(stored: Option<&BTreeMap<String, Vec<String>>>, at: i64, actual: &[String]) -> Vec<String> {
    let at = crate::exec::iso(at);
    let Some(expected) = stored.and_then(|s| s.get(&at)) else {
        return vec![format!("no snapshot for {at} yet: run `vigil test --accept` and review the .snap file")];
    };
    if expected.as_slice() == actual {
        return Vec::new();
    }
    let mut problems = vec!["the findings differ from the snapshot (- snapshot, + now):".to_string()];
    problems.extend(expected.iter().filter(|l| !actual.contains(l)).map(|l| format!("- {l}")));
    problems.extend(actual.iter().filter(|l| !expected.contains(l)).map(|l| format!("+ {l}")));
    if problems.len() == 1 {
        problems.push("(the same findings in another order)".into());
    }
    problems
}

/// What running one case file gave.
#[derive(Debug)]
pub struct CaseOutcome {
    /// The case's name (its `name` line, else the file stem).
    pub name: String,
    /// The case file.
    pub file: std::path::PathBuf,
    /// What did not match; empty when the case passed.
    pub problems: Vec<String>,
    /// The snapshot file `accept` wrote (new or changed).
    pub accepted: Option<std::path::PathBuf>,
    /// The findings at each `at` time, in order (for test harnesses that keep them).
    pub findings: Vec<(i64, Vec<Finding>)>,
}

/// Runs one case file against a rule set: loads its rows, evaluates every `at`
/// time in one pass over all ticks, and compares expectations and snapshots.
/// With `accept`, snapshot sections are written instead of compared.
pub fn run(set: &crate::RuleSet, file: &Path, accept: bool) -> CaseOutcome {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("case").to_string();
    let mut outcome =
        CaseOutcome { name: stem.clone(), file: file.to_path_buf(), problems: Vec::new(), accepted: None, findings: Vec::new() };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            outcome.problems.push(format!("cannot read: {e}"));
            return outcome;
        }
    };
    let parsed = match parse_case(&text) {
        Ok(c) => c,
        Err(e) => {
            outcome.problems.push(format!("{}:{e}", file.display()));
            return outcome;
        }
    };
    if !parsed.name.is_empty() {
        outcome.name = parsed.name.clone();
    }
    let unknown = unknown_names(&parsed, set);
    if !unknown.is_empty() {
        outcome.problems.extend(unknown.into_iter().map(|(line, p)| format!("{}:{line}: {p}", file.display())));
        return outcome;
    }
    let dir = std::env::temp_dir().join(format!("vigil-case-{}-{stem}-{}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = file.parent().unwrap_or(Path::new("."));
    if let Err(e) = write_tables(&parsed, base, &dir) {
        let _ = std::fs::remove_dir_all(&dir);
        outcome.problems.push(format!("cannot write the case's tables: {e}"));
        return outcome;
    }
    let loaded = crate::load::load(&dir);
    let signals = match loaded {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            outcome.problems.push(table_problem(&parsed, file, &e));
            return outcome;
        }
    };
    let filter = crate::exec::Filter { rules: parsed.rules.iter().cloned().collect(), ..Default::default() };
    let ticks: Vec<i64> = parsed.checks.iter().map(|c| c.at).collect();
    // Parquet tables are read where they lie, during evaluation: the directory goes after.
    let (findings, failures) = crate::exec::evaluate_ticks(&signals, set, &ticks, &filter);
    drop(signals);
    let _ = std::fs::remove_dir_all(&dir);
    outcome.problems.extend(failures.iter().map(|f| f.to_string()));
    let snap_file = snapshot_path(file);
    let stored = std::fs::read_to_string(&snap_file).ok().map(|t| parse_snapshot(&t));
    let mut sections = Vec::new();
    for check in &parsed.checks {
        let at = crate::exec::iso(check.at);
        let at_tick: Vec<Finding> = findings.iter().filter(|f| f.detected_at == at).cloned().collect();
        outcome.problems.extend(compare(&parsed, check, &at_tick).into_iter().map(|p| format!("at {at}: {p}")));
        if check.snapshot {
            let lines = snapshot_lines(&at_tick);
            if !accept {
                outcome.problems.extend(compare_snapshot(stored.as_ref(), check.at, &lines).into_iter().map(|p| format!("at {at}: {p}")));
            }
            sections.push((check.at, lines));
        }
        outcome.findings.push((check.at, at_tick));
    }
    if accept && !sections.is_empty() {
        let text = render_snapshot(file, &sections);
        let before = std::fs::read_to_string(&snap_file).ok();
        if before.as_deref() != Some(text.as_str()) {
            match std::fs::write(&snap_file, text) {
                Ok(()) => outcome.accepted = Some(snap_file.clone()),
                Err(e) => outcome.problems.push(format!("cannot write {}: {e}", snap_file.display())),
            }
        }
    }
    outcome
}

/// A number unique within this process, for temporary directories of cases run in parallel.
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
