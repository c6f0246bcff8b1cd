//! `vigil lsp`: a language server over stdio (JSON-RPC with Content-Length framing), so
//! analysts get `vigil check`'s diagnostics as they type in any editor, hover, go to
//! definition, completion of tables and columns, and formatting through `vigil fmt`.
//!
//! Invariants: every diagnostic comes from the same checker as `vigil check`, run over
//! the open file together with the other files of its rules and runbooks directories
//! (the open buffer replacing its file on disk); positions are LSP's (0-based lines,
//! UTF-16 columns); a request the server cannot answer gets `null`, never a crash.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vigil_engine::diag::{Diagnostic, Level, Note, Sources};
use vigil_engine::schema;

use super::CliResult;

/// Runs the server until `exit` (or the end of stdin).
pub(super) fn serve() -> CliResult {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut docs: HashMap<String, String> = HashMap::new();
    while let Some(msg) = read_message(&mut input) {
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let id = msg.get("id").cloned();
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let uri = params.pointer("/textDocument/uri").and_then(Value::as_str).unwrap_or("").to_string();
        match method {
            "initialize" => reply(id, initialize_result()),
            "shutdown" => reply(id, Value::Null),
            "exit" => return Ok(()),
            "textDocument/didOpen" => {
                let text = params.pointer("/textDocument/text").and_then(Value::as_str).unwrap_or("").to_string();
                docs.insert(uri.clone(), text);
                publish(&uri, &docs);
            }
            "textDocument/didChange" => {
                // Full sync: the last change holds the whole text.
                if let Some(text) = params
                    .pointer("/contentChanges")
                    .and_then(Value::as_array)
                    .and_then(|c| c.last())
                    .and_then(|c| c.get("text"))
                    .and_then(Value::as_str)
                {
                    docs.insert(uri.clone(), text.to_string());
                    publish(&uri, &docs);
                }
            }
            "textDocument/didClose" => {
                docs.remove(&uri);
                notify("textDocument/publishDiagnostics", json!({ "uri": uri, "diagnostics": [] }));
            }
            "textDocument/hover" => reply(id, with_word(&docs, &params, hover)),
            "textDocument/definition" => reply(id, with_word(&docs, &params, |text, word, _, uri| definition(text, word, uri))),
            "textDocument/completion" => reply(id, completion(&docs, &params)),
            "textDocument/formatting" => reply(id, formatting(&docs, &uri)),
            _ if id.is_some() => reply_error(id, -32601, &format!("method `{method}` is not supported")),
            _ => {} // other notifications: nothing to do
        }
    }
    Ok(())
}

fn initialize_result() -> Value {
    json!({
        "capabilities": {
            "textDocumentSync": 1,
            "hoverProvider": true,
            "definitionProvider": true,
            "completionProvider": { "triggerCharacters": ["(", " ", "."] },
            "documentFormattingProvider": true
        },
        "serverInfo": { "name": "vigil", "version": env!("CARGO_PKG_VERSION") }
    })
}

// ------------------------------------------------------------------ framing

/// One message: `Content-Length: N` headers, a blank line, N bytes of JSON.
fn read_message(input: &mut impl BufRead) -> Option<Value> {
    loop {
        let mut length: Option<usize> = None;
        loop {
            let mut line = String::new();
            if input.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("Content-Length:") {
                length = n.trim().parse().ok();
            }
        }
        let Some(n) = length else { continue };
        let mut body = vec![0u8; n];
        input.read_exact(&mut body).ok()?;
        // A message that is not JSON is skipped, not fatal.
        if let Ok(v) = serde_json::from_slice(&body) {
            return Some(v);
        }
    }
}

fn send(v: &Value) {
    let body = v.to_string();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "Content-Length: {}\r\n\r\n{body}", body.len());
    let _ = out.flush();
}

fn reply(id: Option<Value>, result: Value) {
    if let Some(id) = id {
        send(&json!({ "jsonrpc": "2.0", "id": id, "result": result }));
    }
}

fn reply_error(id: Option<Value>, code: i64, message: &str) {
    send(&json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }));
}

fn notify(method: &str, params: Value) {
    send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
}

// ------------------------------------------------------------------ positions

fn path_of(uri: &str) -> PathBuf {
    PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri))
}

/// LSP position (0-based line, UTF-16 column) of a byte offset.
fn position(text: &str, offset: usize) -> Value {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let character: usize = before[start..].chars().map(char::len_utf16).sum();
    json!({ "line": line, "character": character })
}

/// Byte offset of an LSP position.
fn offset(text: &str, pos: &Value) -> usize {
    let line = pos.get("line").and_then(Value::as_u64).unwrap_or(0) as usize;
    let character = pos.get("character").and_then(Value::as_u64).unwrap_or(0) as usize;
    let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
    let mut units = 0;
    for (i, c) in text[start.min(text.len())..].char_indices() {
        if units >= character || c == '\n' {
            return start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

fn range(text: &str, start: usize, end: usize) -> Value {
    json!({ "start": position(text, start), "end": position(text, end) })
}

// ------------------------------------------------------------------ diagnostics

/// The other files checked with a document: every `.vigil` file of its directory and of
/// the sibling `rules` or `runbooks` directory, the open buffers replacing their files.
fn library(path: &Path, docs: &HashMap<String, String>) -> Vec<(String, String)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut dirs = vec![dir.to_path_buf()];
    if let Some(parent) = dir.parent() {
        let sibling = if dir.file_name().is_some_and(|n| n == "runbooks") { "rules" } else { "runbooks" };
        dirs.push(parent.join(sibling));
    }
    let open: HashMap<PathBuf, &String> = docs.iter().map(|(u, t)| (path_of(u), t)).collect();
    let mut files = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "vigil")).collect();
        paths.sort();
        for p in paths {
            if p == path || open.contains_key(&p) {
                continue;
            }
            if let Ok(t) = std::fs::read_to_string(&p) {
                files.push((p.display().to_string(), t));
            }
        }
    }
    for (p, t) in open {
        let beside = p.parent() == Some(dir) || p.parent().and_then(Path::parent) == dir.parent();
        if beside && p.extension().is_some_and(|x| x == "vigil") {
            files.push((p.display().to_string(), t.clone()));
        }
    }
    files
}

fn publish(uri: &str, docs: &HashMap<String, String>) {
    let path = path_of(uri);
    let Some(text) = docs.get(uri) else { return };
    if path.extension().is_none_or(|x| x != "vigil") {
        // Case files and others: formatting only.
        notify("textDocument/publishDiagnostics", json!({ "uri": uri, "diagnostics": [] }));
        return;
    }
    let name = path.display().to_string();
    let mut files = library(&path, docs);
    if !files.iter().any(|(n, _)| *n == name) {
        files.push((name.clone(), text.clone()));
    }
    let (sources, diagnostics) = match vigil_engine::ruleset::load_texts(Sources::new(), files) {
        Ok(set) => (set.sources, set.warnings),
        Err(f) => (f.sources, f.diagnostics),
    };
    let mine: Vec<Value> =
        diagnostics.iter().filter(|d| sources.name(d.span.file) == name).map(|d| lsp_diagnostic(d, &sources, text, &name)).collect();
    notify("textDocument/publishDiagnostics", json!({ "uri": uri, "diagnostics": mine }));
}

fn lsp_diagnostic(d: &Diagnostic, sources: &Sources, text: &str, name: &str) -> Value {
    let mut message = d.message.clone();
    if !d.label.is_empty() {
        message.push_str(&format!(" ({})", d.label));
    }
    for n in &d.notes {
        match n {
            Note::Hint(h) | Note::Note(h) => message.push_str(&format!("\nhint: {h}")),
            Note::DidYouMean(s) => message.push_str(&format!("\ndid you mean `{s}`?")),
        }
    }
    let related: Vec<Value> = d
        .context
        .iter()
        .filter(|(s, _)| sources.name(s.file) == name)
        .map(
            |(s, label)| json!({ "location": { "uri": format!("file://{name}"), "range": range(text, s.start, s.end) }, "message": label }),
        )
        .collect();
    json!({
        "range": range(text, d.span.start, d.span.end.max(d.span.start)),
        "severity": if d.level == Level::Error { 1 } else { 2 },
        "code": d.code.id,
        "source": "vigil",
        "message": message,
        "relatedInformation": related
    })
}

// ------------------------------------------------------------------ hover and definition

/// The identifier under the cursor, and its byte range.
fn word_at(text: &str, at: usize) -> Option<(&str, usize, usize)> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = text[..at].rfind(|c: char| !is_word(c)).map(|i| i + 1).unwrap_or(0);
    let end = text[at..].find(|c: char| !is_word(c)).map(|i| at + i).unwrap_or(text.len());
    (start < end).then(|| (&text[start..end], start, end))
}

fn with_word(docs: &HashMap<String, String>, params: &Value, f: impl Fn(&str, &str, (usize, usize), &str) -> Value) -> Value {
    let uri = params.pointer("/textDocument/uri").and_then(Value::as_str).unwrap_or("");
    let Some(text) = docs.get(uri) else { return Value::Null };
    let at = offset(text, params.get("position").unwrap_or(&Value::Null));
    match word_at(text, at) {
        Some((word, s, e)) => f(text, word, (s, e), uri),
        None => Value::Null,
    }
}

fn storage_name(s: schema::Storage) -> &'static str {
    match s {
        schema::Storage::Text => "text",
        schema::Storage::Time => "time",
        schema::Storage::Float => "number",
        schema::Storage::Int => "whole number",
        schema::Storage::Bool => "boolean",
    }
}

/// `param NAME = ...`, `let NAME = ...` or `macro NAME...` of the document: its line's byte range.
fn declaration(text: &str, word: &str) -> Option<(usize, usize)> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let mut words = trimmed.split(|c: char| c.is_whitespace() || c == '(' || c == '=');
        if let (Some(kw), Some(name)) = (words.next(), words.next()) {
            if matches!(kw, "param" | "let" | "macro" | "source") && name == word {
                return Some((at + indent, at + line.trim_end().len()));
            }
        }
        at += line.len();
    }
    None
}

/// The built-in functions and aggregates, as hover shows them.
const BUILTINS: &[(&str, &str)] = &[
    ("minutes", "`minutes(DURATION)`: the duration in minutes (fractional)"),
    ("hours", "`hours(DURATION)`: the duration in hours (fractional)"),
    ("days", "`days(DURATION)`: the duration in days (fractional)"),
    ("distance_m", "`distance_m(lat1, lon1, lat2, lon2)`: great-circle distance in metres"),
    ("greatest", "`greatest(a, b, ...)`: the largest argument"),
    ("least", "`least(a, b, ...)`: the smallest argument"),
    ("coalesce", "`coalesce(a, b, ...)`: the first argument that is not null"),
    ("abs", "`abs(x)`: absolute value"),
    ("lower", "`lower(text)`: lower-case text"),
    ("upper", "`upper(text)`: upper-case text"),
    ("contains", "`contains(text, part)`: does the text contain the part?"),
    ("count", "`count(SOURCE [where ...])`: rows of the source related to this row"),
    ("count_distinct", "`count_distinct(SOURCE, column)`: distinct values among the related rows"),
    ("exists", "`exists(SOURCE)`: is there a related row?"),
    ("none", "`none(SOURCE)`: is there no related row?"),
    ("all", "`all(SOURCE, CONDITION)`: does every related row meet the condition?"),
    ("any", "`any(SOURCE, CONDITION)`: does some related row meet the condition?"),
    ("sum", "`sum(SOURCE, expr)`: sum over the related rows (0 without rows)"),
    ("avg", "`avg(SOURCE, expr)`: mean over the related rows"),
    ("min", "`min(SOURCE, expr)`: smallest value over the related rows"),
    ("max", "`max(SOURCE, expr)`: largest value over the related rows"),
    ("script", "`script('...')`: a sandboxed Rhai expression over the rule's figures"),
    ("script_file", "`script_file('name.rhai')`: a Rhai script beside the rules"),
    ("now", "`now`: the evaluation time T"),
];

fn hover(text: &str, word: &str, span: (usize, usize), _uri: &str) -> Value {
    let mut lines = Vec::new();
    if let Some(t) = schema::table(word) {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("- `{}` {}{}", c.name, storage_name(c.storage), if c.nullable { "" } else { ", never empty" }))
            .collect();
        lines.push(format!(
            "**table `{}`**{}\n\n{}",
            t.name,
            t.event_time.map(|e| format!(" (event time `{e}`)")).unwrap_or_default(),
            cols.join("\n")
        ));
    }
    let tables: Vec<String> = schema::contract_tables()
        .filter_map(|t| {
            t.column(word).map(|c| {
                format!(
                    "`{}` ({}{})",
                    t.name,
                    storage_name(c.storage),
                    if t.closing.contains(&c.name) { ", closing: null until it happens" } else { "" }
                )
            })
        })
        .collect();
    if !tables.is_empty() && schema::table(word).is_none() {
        lines.push(format!("**column `{word}`** of {}", tables.join(", ")));
    }
    if let Some((_, doc)) = BUILTINS.iter().find(|(name, _)| *name == word) {
        lines.push(format!("**`{word}`** (built in): {doc}"));
    }
    if let Some((s, e)) = declaration(text, word) {
        lines.push(format!("```\n{}\n```", &text[s..e]));
    } else if let Some((s, e)) = declaration(vigil_engine::ruleset::PRELUDE, word) {
        lines.push(format!("built-in macro\n```\n{}\n```", &vigil_engine::ruleset::PRELUDE[s..e]));
    }
    if lines.is_empty() {
        return Value::Null;
    }
    json!({ "contents": { "kind": "markdown", "value": lines.join("\n\n") }, "range": range(text, span.0, span.1) })
}

fn definition(text: &str, word: &str, uri: &str) -> Value {
    if let Some((s, e)) = declaration(text, word) {
        return json!({ "uri": uri, "range": range(text, s, e) });
    }
    // A runbook or macro in the library beside the document.
    let path = path_of(uri);
    for (name, other) in library(&path, &HashMap::new()) {
        if let Some((s, e)) = declaration(&other, word) {
            return json!({ "uri": format!("file://{name}"), "range": range(&other, s, e) });
        }
        let needle = format!("runbook {word} ");
        if let Some(s) = other.find(&needle) {
            return json!({ "uri": format!("file://{name}"), "range": range(&other, s, s + needle.len() - 1) });
        }
    }
    Value::Null
}

// ------------------------------------------------------------------ completion and formatting

/// Tables everywhere; after a table name on the line (`count(phone_events where `), its
/// columns first.
fn completion(docs: &HashMap<String, String>, params: &Value) -> Value {
    let uri = params.pointer("/textDocument/uri").and_then(Value::as_str).unwrap_or("");
    let Some(text) = docs.get(uri) else { return Value::Null };
    let at = offset(text, params.get("position").unwrap_or(&Value::Null));
    let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let before = &text[line_start..at];
    let mut items = Vec::new();
    let table =
        before.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).rfind(|w| schema::table(w).is_some()).and_then(schema::table);
    if let Some(t) = table {
        for c in t.columns {
            items.push(json!({ "label": c.name, "kind": 5, "detail": format!("{} column of {}", storage_name(c.storage), t.name), "sortText": format!("0{}", c.name) }));
        }
    }
    for t in schema::contract_tables() {
        items.push(json!({ "label": t.name, "kind": 22, "detail": "table", "sortText": format!("1{}", t.name) }));
    }
    json!({ "isIncomplete": false, "items": items })
}

fn formatting(docs: &HashMap<String, String>, uri: &str) -> Value {
    let Some(text) = docs.get(uri) else { return Value::Null };
    let formatted = if uri.ends_with(".case") { vigil_engine::fmt::format_case(text) } else { vigil_engine::fmt::format_vigil(text) };
    if formatted == *text {
        return json!([]);
    }
    json!([{ "range": range(text, 0, text.len()), "newText": formatted }])
}
