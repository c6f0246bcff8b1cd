//! Fuzzing every input surface (issue 15) on the stable toolchain, with no fuzzing crate:
//! a seeded generator and grammar-aware mutator over a seed corpus of the shipped files.
//!
//! Targets and what each must hold for every input:
//! - `parse`: the parser returns a tree or one diagnostic whose span lies in the text.
//! - `check`: checking a file never panics; every diagnostic renders (its spans are in the
//!   text); a rule set that checks also *runs*: every rule evaluates on empty signals
//!   (a checked rule whose SQL DuckDB rejects is a bug of ours).
//! - `fmt`: formatting never changes the parse tree or the text between whitespace, and
//!   formatting twice gives what formatting once gave, on any input.
//! - `case`: the case-file parser and formatter never panic; formatting keeps whether and
//!   how a case parses, and is idempotent.
//! - `batch`: CSV and JSON-lines batches of every contract table (what the ingest endpoint
//!   and the file loaders parse) are rows or an error naming where.
//! - `files`: signal directories of mutated CSV, JSON lines and Parquet files load or fail
//!   with an error naming the file.
//! - `ingest`: a running `vigil serve` answers every mutated `POST /api/v1/signals/{table}`
//!   with a 2xx or 4xx, never a 5xx, and stays up; a token never stores another tenant's rows.
//!
//! Each target runs for `VIGIL_FUZZ_SECS` seconds (default 8; `.ci/run` runs them all in
//! about a minute). For hours: `VIGIL_FUZZ_SECS=3600 cargo test --release --test fuzz --
//! --nocapture --test-threads 1`. An input that breaks a property is written to
//! `$TMPDIR/vigil-fuzz-found/` and fails the test; copied into `tests/fuzz/regressions/<target>/`
//! it is replayed by every run from then on.

mod common;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_engine::diag::Sources;
use vigil_engine::load::{self, BatchFormat};
use vigil_engine::{case, exec, fmt, ruleset, schema, syntax};

// ------------------------------------------------------------------ the machinery

/// xorshift64*: deterministic for a seed, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// How long each target runs.
fn budget() -> Duration {
    let secs = std::env::var("VIGIL_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(8.0);
    Duration::from_secs_f64(secs.max(0.1))
}

/// The run's seed: `VIGIL_FUZZ_SEED`, else from the clock (printed, so a run can be repeated).
fn seed() -> u64 {
    std::env::var("VIGIL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1)
}

/// Runs `property` on the target's regressions, then on generated inputs until the budget
/// is spent; panics (listing where the failing inputs were saved) if any input broke it.
/// A property's verdict on an input it holds for: whether the input was valid (parsed,
/// checked, loaded, stored), to tell how deep the inputs reach.
type Verdict = Result<bool, String>;

thread_local! {
    /// Set while a property runs: its panics are caught and reported, not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for the panics the harness catches.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

fn fuzz(target: &str, corpus: &[Vec<u8>], mutate: impl Fn(&mut Rng, &[Vec<u8>]) -> Vec<u8>, property: impl Fn(&[u8]) -> Verdict) {
    quiet_panics();
    let regressions = common::root().join("tests/fuzz/regressions").join(target);
    let mut failures: Vec<String> = Vec::new();
    let valid = std::cell::Cell::new(0u64);
    let check = |input: &[u8], failures: &mut Vec<String>| {
        QUIET.with(|q| q.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| property(input)));
        QUIET.with(|q| q.set(false));
        let problem = match outcome {
            Ok(Ok(accepted)) => {
                valid.set(valid.get() + u64::from(accepted));
                return;
            }
            Ok(Err(broken)) => broken,
            Err(panic) => format!(
                "panicked: {}",
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            ),
        };
        let saved = save_found(target, input);
        failures.push(format!("{}: {problem}", saved.display()));
    };
    let mut replayed = 0;
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).expect("a regression input");
            check(&input, &mut failures);
            replayed += 1;
        }
    }
    for input in corpus {
        check(input, &mut failures);
    }
    let seed = seed();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + budget();
    let mut tried = 0u64;
    valid.set(0);
    while Instant::now() < deadline && failures.len() < 20 {
        let input = mutate(&mut rng, corpus);
        check(&input, &mut failures);
        tried += 1;
    }
    eprintln!(
        "fuzz {target}: seed {seed}, {replayed} regressions, {} seeds, {tried} generated inputs ({} valid), {} failures",
        corpus.len(),
        valid.get(),
        failures.len()
    );
    assert!(failures.is_empty(), "fuzz {target} (seed {seed}) found {} failing inputs:\n{}", failures.len(), failures.join("\n"));
}

/// Writes a failing input where it can be looked at (and copied into the regressions).
fn save_found(target: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("vigil-fuzz-found").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let path = dir.join(format!("{hash:016x}"));
    let _ = std::fs::write(&path, input);
    path
}

/// The files of `dir` (relative to the repository) whose names end with one of `exts`.
fn files(dir: &str, exts: &[&str]) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(common::root().join(dir))
        .expect("a shipped directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| exts.iter().any(|e| n.ends_with(e))))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("a shipped file")).collect()
}

/// Every quoted literal of the grammar (keywords, operators, punctuation), the names of
/// the schema's tables and columns, and values that have broken parsers elsewhere: the
/// words the mutator puts into rule files.
fn dictionary() -> Vec<String> {
    let grammar = std::fs::read_to_string(common::root().join("grammar/vigil.pest")).expect("the grammar");
    let mut words: BTreeSet<String> = BTreeSet::new();
    let mut rest = grammar.as_str();
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        let word = &after[..close];
        if !word.is_empty() && !word.contains('\\') {
            words.insert(word.to_string());
        }
        rest = &after[close + 1..];
    }
    for t in schema::contract_tables() {
        words.insert(t.name.to_string());
        for c in t.columns {
            words.insert(c.name.to_string());
        }
    }
    for w in HOSTILE_WORDS {
        words.insert(w.to_string());
    }
    words.into_iter().collect()
}

/// Words that break hand-written parsers and SQL generators.
const HOSTILE_WORDS: &[&str] = &[
    "'; DROP TABLE sites; --",
    "\"; DROP TABLE sites; --",
    "/* */",
    "\\",
    "\\'",
    "\u{0}",
    "\u{feff}",
    "é",
    "𝔘",
    "\u{202e}",
    "99999999999999999999999999",
    "1e308",
    "0.0000000000000000001",
    "9223372036854775807",
    "-9223372036854775808",
    "2147483647d",
    "999999999w",
    "0m",
    "1ms",
    "((((((((((",
    "))))))))))",
    "not not not not",
    "now - 9999999d",
    "in last 0s",
    "count_distinct(",
    "match tenant",
    "as other",
    "script('')",
    "script(\"while true {}\")",
];

/// A rule file's text split into tokens and the whitespace between them (joined back, the text).
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    let class = |b: u8| -> u8 {
        if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 {
            0
        } else if b.is_ascii_whitespace() {
            1
        } else {
            2
        }
    };
    while i < bytes.len() {
        let c = class(bytes[i]);
        let mut j = i + 1;
        if bytes[i] == b'"' || bytes[i] == b'\'' {
            // A string literal is one token, escapes included.
            let quote = bytes[i];
            while j < bytes.len() && bytes[j] != quote {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(bytes.len());
        } else if c != 2 {
            while j < bytes.len() && class(bytes[j]) == c {
                j += 1;
            }
        }
        while j < bytes.len() && !text.is_char_boundary(j) {
            j += 1;
        }
        if start < i {
            out.push(&text[start..i]);
        }
        out.push(&text[i..j]);
        start = j;
        i = j;
    }
    out
}

/// Grammar-aware mutation of a text: token edits, words of the dictionary, splices of
/// another seed, deep nesting, and a little byte noise.
fn mutate_text(rng: &mut Rng, corpus: &[Vec<u8>], dict: &[String]) -> Vec<u8> {
    let base = String::from_utf8_lossy(rng.pick(corpus).as_slice()).into_owned();
    let mut toks: Vec<String> = tokens(&base).into_iter().map(String::from).collect();
    for _ in 0..1 + rng.below(4) {
        let n = toks.len().max(1);
        match rng.below(9) {
            0 if !toks.is_empty() => {
                let at = rng.below(toks.len());
                toks.remove(at);
            }
            1 if !toks.is_empty() => {
                let at = rng.below(toks.len());
                let t = toks[at].clone();
                toks.insert(at, t);
            }
            2 if toks.len() > 1 => {
                let (a, b) = (rng.below(toks.len()), rng.below(toks.len()));
                toks.swap(a, b);
            }
            3 | 4 => {
                let at = rng.below(n);
                let word = rng.pick(dict).clone();
                if at < toks.len() && rng.chance(50) {
                    toks[at] = word;
                } else {
                    toks.insert(at.min(toks.len()), format!(" {word} "));
                }
            }
            5 => {
                // Splice lines of another seed in.
                let other = String::from_utf8_lossy(rng.pick(corpus).as_slice()).into_owned();
                let lines: Vec<&str> = other.lines().collect();
                if !lines.is_empty() {
                    let from = rng.below(lines.len());
                    let to = (from + 1 + rng.below(8)).min(lines.len());
                    let at = rng.below(n).min(toks.len());
                    toks.insert(at, format!("\n{}\n", lines[from..to].join("\n")));
                }
            }
            6 => {
                // Nesting: parentheses or `not` around a token, many levels deep.
                let deep = rng.chance(10);
                let depth = 1 + rng.below(if deep { 400 } else { 20 });
                let at = rng.below(n).min(toks.len());
                if rng.chance(50) {
                    toks.insert(at, "(".repeat(depth));
                    let close = (at + 1 + rng.below(6)).min(toks.len());
                    toks.insert(close, ")".repeat(depth));
                } else {
                    toks.insert(at, "not ".repeat(depth));
                }
            }
            7 => {
                // An enormous token.
                let at = rng.below(n).min(toks.len());
                let huge = rng.chance(5);
                let size = 1 + rng.below(if huge { 200_000 } else { 500 });
                toks.insert(at, "a".repeat(size));
            }
            _ => {
                let at = rng.below(n).min(toks.len());
                let noise = ["\u{0}", "\r", "\t", "\n", "{", "}", "#", "\"", "'", "\\", ".", ",", "=", "-", "é"];
                toks.insert(at, rng.pick(&noise).to_string());
            }
        }
    }
    toks.concat().into_bytes()
}

/// Mutation for data inputs (`name\n` + a file's bytes): text files are cut to a few rows
/// (so that most batches stay valid and reach the store), then mutated byte by byte in
/// six of ten inputs; Parquet files are mutated byte by byte.
fn mutate_data(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let seed = rng.pick(corpus);
    let name_end = seed.iter().position(|b| *b == b'\n').unwrap_or(seed.len());
    let parquet = seed[..name_end].ends_with(b".parquet");
    let text_lines = if parquet { None } else { std::str::from_utf8(seed).ok() };
    let mut data = match text_lines {
        Some(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let (head, rows) = lines.split_at(lines.len().min(2));
            let from = rng.below(rows.len());
            let to = (from + 1 + rng.below(30)).min(rows.len());
            let mut out = head.join("\n");
            out.push('\n');
            for row in &rows[from..to] {
                out.push_str(row);
                out.push('\n');
            }
            out.into_bytes()
        }
        None => seed.clone(),
    };
    if text_lines.is_none() || rng.chance(60) {
        let steps = 1 + rng.below(if text_lines.is_some() { 2 } else { 6 });
        mutate_bytes_of(rng, &mut data, steps);
    }
    data
}

/// Byte-level mutation: flips, inserts, deletions, truncation, repetition, hostile words.
fn mutate_bytes_of(rng: &mut Rng, data: &mut Vec<u8>, steps: usize) {
    for _ in 0..steps {
        let n = data.len().max(1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(n).min(data.len());
                let b = *rng.pick(&[0u8, 0xff, 0xc3, b',', b'"', b'\n', b'{', b'}', b':', b'-', b'9', b'T', b'Z']);
                data.insert(at, b);
            }
            2 if !data.is_empty() => {
                let at = rng.below(data.len());
                let len = rng.below(32).min(data.len() - at);
                data.drain(at..at + len);
            }
            3 => data.truncate(rng.below(n)),
            4 if !data.is_empty() => {
                let at = rng.below(data.len());
                let len = (1 + rng.below(64)).min(data.len() - at);
                let piece = data[at..at + len].to_vec();
                for _ in 0..1 + rng.below(20) {
                    data.splice(at..at, piece.iter().copied());
                }
            }
            _ => {
                let at = rng.below(n).min(data.len());
                let word = rng.pick(HOSTILE_WORDS);
                data.splice(at..at, word.bytes());
            }
        }
    }
}

// ------------------------------------------------------------------ rule files

/// The seed corpus of rule files: every shipped rule, runbook and diagnostics file, and
/// the prelude.
fn rule_corpus() -> Vec<Vec<u8>> {
    let mut corpus = files("rules", &[".vigil"]);
    corpus.extend(files("runbooks", &[".vigil"]));
    corpus.extend(files("tests/diagnostics", &[".vigil"]));
    corpus.push(std::fs::read(common::root().join("engine/src/prelude.vigil")).expect("the prelude"));
    corpus
}

/// A parse tree's debug text without its spans (which move with the layout).
fn without_spans(debug: &str) -> String {
    let mut out = String::new();
    let mut rest = debug;
    while let Some(at) = rest.find("Span {") {
        out.push_str(&rest[..at]);
        rest = match rest[at..].find('}') {
            Some(end) => &rest[at + end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

fn span_in(text: &str, start: usize, end: usize) -> Result<(), String> {
    if start <= end && end <= text.len() && text.is_char_boundary(start) && text.is_char_boundary(end) {
        Ok(())
    } else {
        Err(format!("span {start}..{end} outside a text of {} bytes", text.len()))
    }
}

#[test]
fn fuzz_parse() {
    let dict = dictionary();
    fuzz(
        "parse",
        &rule_corpus(),
        |rng, corpus| mutate_text(rng, corpus, &dict),
        |input| {
            let text = String::from_utf8_lossy(input);
            match syntax::parse(&text, 0) {
                Ok(_) => Ok(true),
                Err(d) => span_in(&text, d.span.start, d.span.end).map(|()| false),
            }
        },
    );
}

#[test]
fn fuzz_check() {
    let dict = dictionary();
    let signals = load::empty().expect("empty signals");
    let seeds: BTreeSet<Vec<u8>> = rule_corpus().into_iter().collect();
    fuzz(
        "check",
        &rule_corpus(),
        |rng, corpus| mutate_text(rng, corpus, &dict),
        |input| {
            let text = String::from_utf8_lossy(input).into_owned();
            let at = vigil_engine::time::parse_timestamp("2025-10-04T12:00:00Z").map_err(|e| e.to_string())?;
            match ruleset::load_texts(Sources::new(), vec![("fuzz.vigil".into(), text)]) {
                Ok(set) => {
                    let _ = set.sources.render(&set.warnings, false);
                    // A set that checks runs: every rule's SQL is accepted by DuckDB. (The
                    // seeds are run by the other suites; here only mutants.)
                    if !seeds.contains(input) {
                        let (_, failures) = exec::evaluate_all(&signals, &set, at, &exec::Filter::default());
                        if let Some(f) = failures.into_iter().find(|f| !f.message.contains("script")) {
                            return Err(format!("a checked rule failed to run: {f}"));
                        }
                    }
                    Ok(true)
                }
                Err(failure) => {
                    if failure.diagnostics.is_empty() {
                        return Err("a failed check without a diagnostic".into());
                    }
                    let rendered = failure.sources.render(&failure.diagnostics, false);
                    if rendered.trim().is_empty() {
                        return Err("diagnostics rendered as nothing".into());
                    }
                    Ok(false)
                }
            }
        },
    );
}

#[test]
fn fuzz_fmt() {
    let dict = dictionary();
    fuzz(
        "fmt",
        &rule_corpus(),
        |rng, corpus| mutate_text(rng, corpus, &dict),
        |input| {
            let text = String::from_utf8_lossy(input);
            let once = fmt::format_vigil(&text);
            let twice = fmt::format_vigil(&once);
            if once != twice {
                return Err("formatting twice changed the text".into());
            }
            let squeeze = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            if squeeze(&text) != squeeze(&once) {
                return Err("formatting changed more than whitespace".into());
            }
            let Ok(tree) = syntax::parse(&text, 0) else { return Ok(false) };
            match syntax::parse(&once, 0) {
                Ok(after) if without_spans(&format!("{tree:?}")) == without_spans(&format!("{after:?}")) => Ok(true),
                Ok(_) => Err("formatting changed the parse tree".into()),
                Err(e) => Err(format!("parsed before formatting, not after: {}", e.message)),
            }
        },
    );
}

// ------------------------------------------------------------------ case files

#[test]
fn fuzz_case() {
    let mut dict = dictionary();
    dict.extend(["table", "end", "expect", "expect none", "at", "rules", "case", "snapshot", "site=", "severity="].map(String::from));
    fuzz(
        "case",
        &files("tests/cases", &[".case"]),
        |rng, corpus| mutate_text(rng, corpus, &dict),
        |input| {
            let text = String::from_utf8_lossy(input);
            let parsed = case::parse_case(&text);
            if let Err(e) = &parsed {
                if e.line == 0 || e.line > text.lines().count().max(1) {
                    return Err(format!("error on line {} of a {}-line file", e.line, text.lines().count()));
                }
            }
            let once = fmt::format_case(&text);
            if fmt::format_case(&once) != once {
                return Err("formatting twice changed the case".into());
            }
            let meaning = |r: &Result<case::Case, case::CaseError>| match r {
                Ok(c) => format!("{:?} {:?} {:?} {}", c.name, c.rules, c.tables, c.checks.len()),
                Err(_) => "error".into(),
            };
            if meaning(&parsed) != meaning(&case::parse_case(&once)) {
                return Err("formatting changed what the case means".into());
            }
            Ok(parsed.is_ok())
        },
    );
}

// ------------------------------------------------------------------ signal data

/// The demo fleet's files of one format (`csv`), each as `table\n` + its bytes.
fn data_corpus() -> Vec<Vec<u8>> {
    let dir = common::root().join("fixtures/demo");
    let mut out = Vec::new();
    for t in schema::contract_tables() {
        if let Ok(bytes) = std::fs::read(dir.join(format!("{}.csv", t.name))) {
            let mut v = format!("{}\n", t.name).into_bytes();
            v.extend(bytes);
            out.push(v);
        }
    }
    out
}

/// Splits a data input into its table and body.
fn table_and_body(input: &[u8]) -> Option<(&'static schema::Table, &[u8])> {
    let nl = input.iter().position(|b| *b == b'\n')?;
    let name = std::str::from_utf8(&input[..nl]).ok()?;
    let table = schema::contract_tables().find(|t| t.name == name)?;
    Some((table, &input[nl + 1..]))
}

/// CSV rows as JSON lines (the same rows in the other batch format; the demo files have
/// no quoted fields). Empty fields are left out, numbers stay numbers.
fn csv_to_jsonl(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return String::new() };
    let headers: Vec<&str> = header.split(',').collect();
    let mut out = String::new();
    for line in lines {
        let mut obj = serde_json::Map::new();
        for (h, v) in headers.iter().zip(line.split(',')) {
            if v.is_empty() {
                continue;
            }
            let value = match v.parse::<f64>() {
                Ok(n) if v.len() < 12 => serde_json::json!(n),
                _ => serde_json::Value::String(v.to_string()),
            };
            obj.insert(h.to_string(), value);
        }
        out.push_str(&serde_json::Value::Object(obj).to_string());
        out.push('\n');
    }
    out
}

/// The demo fleet's rows as JSON lines, each input named `table<suffix>`.
fn jsonl_corpus(suffix: &str) -> Vec<Vec<u8>> {
    data_corpus()
        .iter()
        .filter_map(|c| table_and_body(c).map(|(t, body)| format!("{}{suffix}\n{}", t.name, csv_to_jsonl(body)).into_bytes()))
        .collect()
}

#[test]
fn fuzz_batch() {
    let mut corpus = data_corpus();
    corpus.extend(jsonl_corpus(""));
    fuzz("batch", &corpus, mutate_data, |input| {
        let Some((table, body)) = table_and_body(input) else { return Ok(false) };
        let Ok(text) = std::str::from_utf8(body) else { return Ok(false) };
        let origin = Path::new("POST /api/v1/signals/fuzz");
        let mut parsed = false;
        for format in [BatchFormat::Csv, BatchFormat::JsonLines] {
            match load::parse_batch(table, format, text, origin) {
                Ok(rows) => parsed |= !rows.is_empty(),
                Err(e) if e.message.is_empty() => return Err("an error without a message".into()),
                Err(_) => {}
            }
        }
        Ok(parsed)
    });
}

#[test]
fn fuzz_files() {
    // Parquet seeds: the demo tables written by DuckDB.
    let parquet_dir = common::temp_dir("fuzz-parquet");
    {
        let signals = load::load(&common::root().join("fixtures/demo")).expect("the demo fleet");
        for t in ["sites", "phone_events", "tasks"] {
            let path = parquet_dir.join(format!("{t}.parquet"));
            signals
                .conn
                .execute_batch(&format!("COPY raw.{t} TO '{}' (FORMAT parquet)", path.display()))
                .or_else(|_| signals.conn.execute_batch(&format!("COPY {t} TO '{}' (FORMAT parquet)", path.display())))
                .expect("write parquet");
        }
    }
    let mut corpus = data_corpus();
    for t in ["sites", "phone_events", "tasks"] {
        let mut v = format!("{t}.parquet\n").into_bytes();
        v.extend(std::fs::read(parquet_dir.join(format!("{t}.parquet"))).expect("parquet"));
        corpus.push(v);
    }
    corpus.extend(jsonl_corpus(".jsonl"));
    let work = common::temp_dir("fuzz-files");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    fuzz("files", &corpus, mutate_data, |input| {
        let Some(nl) = input.iter().position(|b| *b == b'\n') else { return Ok(false) };
        let Ok(name) = std::str::from_utf8(&input[..nl]) else { return Ok(false) };
        let (table, ext) = match name.split_once('.') {
            Some((t, e)) if ["parquet", "jsonl"].contains(&e) => (t, e),
            None => (name, "csv"),
            _ => return Ok(false),
        };
        if schema::contract_tables().all(|t| t.name != table) {
            return Ok(false);
        }
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = work.join(n.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join(format!("{table}.{ext}"));
        std::fs::write(&file, &input[nl + 1..]).map_err(|e| e.to_string())?;
        let outcome = load::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.file.file_name() == file.file_name() || e.file == dir => Ok(false),
            Err(e) => Err(format!("the error names {} instead of {}", e.file.display(), file.display())),
        }
    });
}

// ------------------------------------------------------------------ the ingest endpoint

#[test]
fn fuzz_ingest() {
    use common::server::Server;
    let dir = common::library("fuzz-ingest");
    let mut s = Server::start_with(&dir, None, &["--tick-interval", "1s", "--ingest-rate", "0"]);
    s.wait_for("tick 2025-10-04T10:00:00Z");
    let mut corpus = data_corpus();
    corpus.extend(jsonl_corpus(""));
    // Rows of another tenant pushed by `ana` (T000 only) must never be stored (checked
    // for every batch `ana` got stored, below).
    let foreign = b"phone_events\ntenant_id,site_id,guard_id,device_id,ts,kind\nT900,S1,G1,D1,2025-10-04T09:59:00Z,heartbeat\n".to_vec();
    corpus.push(foreign);
    let client = common::server::client();
    let url = s.url("/api/v1/signals/");
    let (ana, root) = (s.tokens["ana"].clone(), s.tokens["root"].clone());
    let rng_headers = std::sync::Mutex::new(Rng(seed()));
    fuzz("ingest", &corpus, mutate_data, |input| {
        let (table, body) = match input.iter().position(|b| *b == b'\n') {
            Some(nl) => (String::from_utf8_lossy(&input[..nl]).into_owned(), input[nl + 1..].to_vec()),
            None => (String::new(), input.to_vec()),
        };
        let mut rng = rng_headers.lock().unwrap_or_else(|p| p.into_inner());
        let content_type = *rng.pick(&["text/csv", "application/x-ndjson", "text/csv; charset=utf-8", "", "application/json"]);
        let key = rng.chance(20).then(|| format!("k{}", rng.below(5)));
        // `ana` (tenant T000 only) or `root` (every tenant).
        let scoped = rng.chance(30);
        drop(rng);
        let token = if scoped { &ana } else { &root };
        let sent = body.clone();
        let mut req = client.post(format!("{url}{}", urlencode(&table))).bearer_auth(token).body(body);
        if !content_type.is_empty() {
            req = req.header("Content-Type", content_type);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let status = req.send().map_err(|e| format!("the server did not answer: {e}"))?.status().as_u16();
        if scoped && (200..300).contains(&status) {
            // What `ana` stored holds only rows of T000.
            let format = if content_type.starts_with("text/csv") { BatchFormat::Csv } else { BatchFormat::JsonLines };
            let t = schema::contract_tables().find(|t| t.name == table).ok_or("stored into no table")?;
            let at = t.columns.iter().position(|c| c.name == "tenant_id");
            let rows = load::parse_batch(t, format, &String::from_utf8_lossy(&sent), Path::new("sent")).map_err(|e| e.to_string())?;
            let foreign = rows
                .iter()
                .filter_map(|r| at.and_then(|p| r.get(p)))
                .any(|v| !matches!(v, vigil_engine::duckdb::types::Value::Text(s) if s == "T000"));
            if foreign && at.is_some() {
                return Err("a token stored rows of a tenant outside its scope".into());
            }
        }
        match status {
            200..=299 => Ok(true),
            400..=499 => Ok(false),
            other => Err(format!("status {other}")),
        }
    });
    let (status, _) = s.get("root", "/api/v1/feed");
    assert_eq!(status, 200, "the server is still up");
    s.terminate();
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[test]
fn the_harness_reports_what_breaks_a_property_and_where_it_saved_it() {
    let corpus = vec![b"rule A { when x }".to_vec()];
    let dict = vec!["((".to_string()];
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        fuzz(
            "selftest",
            &corpus,
            |rng, corpus| mutate_text(rng, corpus, &dict),
            |input| match String::from_utf8_lossy(input).contains("((") {
                true => panic!("nested"),
                false => Ok(true),
            },
        )
    }));
    let message = outcome.err().and_then(|p| p.downcast_ref::<String>().cloned()).expect("the harness failed the test");
    assert!(message.contains("fuzz selftest") && message.contains("panicked: nested"), "{message}");
    assert!(message.contains("vigil-fuzz-found/selftest/"), "{message}");
}
