//! `vigil test`: case files through the engine's case runner, text or JUnit.

use super::*;

pub(super) fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
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

pub(super) fn run_tests(args: &RuleArgs, paths: &[PathBuf], format: TestFormat, accept: bool, verbose: bool) -> CliResult {
    let set = load_rules(args)?;
    let files = case_files(paths)?;
    let outcomes: Vec<vigil_engine::case::CaseOutcome> = files.iter().map(|f| vigil_engine::case::run(&set, f, accept)).collect();
    for o in &outcomes {
        if let Some(p) = &o.accepted {
            eprintln!("accepted {} (review it in the diff)", p.display());
        }
    }
    let failed = outcomes.iter().filter(|o| !o.problems.is_empty()).count();
    let passed = outcomes.len() - failed;
    match format {
        TestFormat::Text => {
            for o in &outcomes {
                if o.problems.is_empty() {
                    if verbose {
                        outln!("ok   {} ({})", o.file.display(), o.name);
                    }
                    continue;
                }
                outln!("FAIL {} ({})", o.file.display(), o.name);
                for p in &o.problems {
                    outln!("  {p}");
                }
            }
            outln!("{passed} passed, {failed} failed");
        }
        TestFormat::Junit => {
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            outln!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            outln!("<testsuite name=\"vigil\" tests=\"{}\" failures=\"{failed}\">", outcomes.len());
            for o in &outcomes {
                let class = esc(&o.file.display().to_string());
                if o.problems.is_empty() {
                    outln!("  <testcase classname=\"{class}\" name=\"{}\"/>", esc(&o.name));
                } else {
                    outln!("  <testcase classname=\"{class}\" name=\"{}\">", esc(&o.name));
                    outln!("    <failure message=\"{}\">{}</failure>", esc(&o.problems[0]), esc(&o.problems.join("\n")));
                    outln!("  </testcase>");
                }
            }
            outln!("</testsuite>");
        }
    }
    if failed > 0 {
        Err(CliError::Rules(String::new()))
    } else {
        Ok(())
    }
}
