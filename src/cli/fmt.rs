//! `vigil fmt`: the canonical layout of rule, runbook and case files.

use super::*;

pub(super) fn fmt_command(paths: &[PathBuf], check: bool) -> CliResult {
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
        outln!("{}{}", if check { "not formatted: " } else { "formatted: " }, f.display());
    }
    if check && !changed.is_empty() {
        return Err(CliError::Rules(format!("error: {} of {} file(s) not formatted (run `vigil fmt`)", changed.len(), files.len())));
    }
    if changed.is_empty() {
        outln!("{} file(s) already formatted", files.len());
    }
    Ok(())
}
