//! `vigil report`: a client's activity report over the signal tables and the findings
//! store, as PDF (typeset with Typst), HTML (one self-contained page), CSV (a directory
//! of tables) or JSON.

pub mod csv;
pub mod html;
pub mod pdf;
pub mod svg;

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use vigil_engine::report::{self, Report, Request};
use vigil_engine::store;

/// Output formats of `vigil report`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ReportFormat {
    /// A paginated PDF (typeset with Typst; fonts embedded).
    Pdf,
    /// One self-contained HTML page.
    Html,
    /// A directory of CSV tables.
    Csv,
    /// The report's figures as JSON.
    Json,
}

/// What `vigil report` was asked.
pub struct ReportArgs<'a> {
    pub rules: &'a RuleArgs,
    pub signals: &'a Path,
    pub state: &'a Path,
    pub tenant: String,
    pub site: Option<String>,
    pub from: &'a str,
    pub to: &'a str,
    pub internal: bool,
}

fn date(text: &str, flag: &str) -> Result<chrono::NaiveDate, CliError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| input_err(format!("{flag}: `{text}` is not a date such as 2025-10-04 (local days of each site)")))
}

/// Builds the report from files (rules, signals, state).
pub fn build(a: &ReportArgs) -> Result<Report, CliError> {
    let req = Request {
        tenant: a.tenant.clone(),
        site: a.site.clone(),
        from: date(a.from, "--from")?,
        to: date(a.to, "--to")?,
        internal: a.internal,
    };
    let set = load_rules(a.rules)?;
    if !a.state.exists() {
        return Err(input_err(format!(
            "no state database `{}`: reports read the findings store that `vigil serve`, `vigil watch` or `vigil audit --state` write",
            a.state.display()
        )));
    }
    let signals = load::load(a.signals).map_err(input_err)?;
    let query = store::Query { tenants: Some(vec![a.tenant.clone()]), site: a.site.clone(), ..store::Query::default() };
    let findings = store::find(a.state, &query).map_err(|e| CliError::Eval(format!("error: {}: {e}", a.state.display())))?;
    let serious: Vec<i64> = findings.iter().filter(|f| f.severity == "HIGH" || f.severity == "CRITICAL").map(|f| f.id).collect();
    let mut histories = BTreeMap::new();
    for id in serious {
        let h = store::history(a.state, id).map_err(|e| CliError::Eval(format!("error: {}: {e}", a.state.display())))?;
        histories.insert(id, h);
    }
    let slas: BTreeMap<String, i64> = set.runbooks.iter().map(|r| (r.id.clone(), r.escalate_after_minutes)).collect();
    let revision = store::revision(&set);
    report::build(&signals, &findings, &histories, &slas, &revision, &req).map_err(|e| input_err(format!("error: {e}")))
}

/// Writes the report: a file (HTML, JSON) or a directory of CSV files. Written aside and
/// renamed, so a reader never sees half a report.
pub fn write(r: &Report, format: ReportFormat, out: &Path) -> CliResult {
    let fail = |e: std::io::Error| input_err(format!("--out {}: {e}", out.display()));
    match format {
        ReportFormat::Pdf | ReportFormat::Html | ReportFormat::Json => {
            let text = match format {
                ReportFormat::Pdf => pdf::render(r).map_err(|e| CliError::Eval(format!("error: cannot typeset the report: {e}")))?,
                ReportFormat::Html => html::render(r).into_bytes(),
                _ => (serde_json::to_string_pretty(r).map_err(|e| CliError::Eval(e.to_string()))? + "\n").into_bytes(),
            };
            let tmp = out.with_extension("partial");
            std::fs::write(&tmp, text).map_err(fail)?;
            std::fs::rename(&tmp, out).map_err(fail)?;
        }
        ReportFormat::Csv => {
            let tmp = out.with_extension("partial");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(fail)?;
            for (name, text) in csv::render(r) {
                std::fs::write(tmp.join(name), text).map_err(fail)?;
            }
            let _ = std::fs::remove_dir_all(out);
            std::fs::rename(&tmp, out).map_err(fail)?;
        }
    }
    eprintln!(
        "report {} written to {} ({} finding(s), {} signal row(s) read)",
        r.id,
        out.display(),
        r.built_from.findings,
        r.built_from.signal_rows
    );
    Ok(())
}
