//! Diagnostics: every file in `tests/diagnostics/` is checked as a one-file rule
//! set (with the shipped runbooks absent) and its rendered errors are snapshotted.

mod common;

use vigil_engine::diag::Sources;
use vigil_engine::ruleset;

#[test]
fn diagnostics() {
    insta::glob!("diagnostics/*.vigil", |path| {
        let text = std::fs::read_to_string(path).expect("read");
        let name = format!("tests/diagnostics/{}", path.file_name().and_then(|n| n.to_str()).unwrap_or(""));
        let rendered = match ruleset::load_texts(Sources::new(), vec![(name, text)]) {
            Ok(set) => format!("(no errors)\n{}", set.sources.render(&set.warnings, false)),
            Err(f) => f.sources.render(&f.diagnostics, false),
        };
        insta::assert_snapshot!(rendered);
    });
}
