//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use vigil_engine::ruleset::{self, RuleSet};

pub mod receiver;
pub mod server;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped rule library.
pub fn shipped_rules() -> RuleSet {
    ruleset::load_dirs(&root().join("rules"), &root().join("runbooks")).expect("the shipped rules check clean")
}

/// A fresh, empty temporary directory.
pub fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("vigil-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A fresh directory with a copy of the shipped rules and runbooks (to edit).
pub fn library(label: &str) -> PathBuf {
    let dir = temp_dir(label);
    for sub in ["rules", "runbooks"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        for f in std::fs::read_dir(root().join(sub)).expect("read") {
            let p = f.expect("entry").path();
            std::fs::copy(&p, dir.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

/// Writes `files` (name, contents) into a fresh directory.
pub fn write_dir(label: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir(label);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    dir
}

/// Runs the `vigil` binary; returns (exit code, stdout, stderr).
pub fn vigil(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil")).args(args).current_dir(cwd).output().expect("run vigil");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Findings as JSON lines (the `--format jsonl` output).
pub fn jsonl(findings: &[vigil_engine::Finding]) -> String {
    findings.iter().map(|f| serde_json::to_string(f).expect("json") + "\n").collect()
}
