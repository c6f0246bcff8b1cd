//! `vigil lsp` driven as an editor drives it: real JSON-RPC messages over stdio.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vigil lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Server { child, stdin, stdout }
    }

    fn send(&mut self, v: Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let msg = self.read();
            if msg.get("id") == Some(&json!(id)) {
                return msg;
            }
        }
    }

    fn read(&mut self) -> Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).expect("read") > 0, "the server closed its output");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("Content-Length:") {
                length = n.trim().parse().expect("length");
            }
        }
        let mut body = vec![0u8; length];
        self.stdout.read_exact(&mut body).expect("body");
        serde_json::from_slice(&body).expect("json")
    }

    fn notification(&mut self, method: &str) -> Value {
        loop {
            let msg = self.read();
            if msg.get("method").and_then(Value::as_str) == Some(method) {
                return msg;
            }
        }
    }
}

#[test]
fn diagnostics_hover_definition_completion_and_formatting() {
    // A library like the shipped one: rules and runbooks side by side.
    let lib = common::temp_dir("lsp");
    for sub in ["rules", "runbooks"] {
        std::fs::create_dir_all(lib.join(sub)).expect("dir");
        for entry in std::fs::read_dir(common::root().join(sub)).expect("read") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, lib.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let path = lib.join("rules/mine.vigil");
    let uri = format!("file://{}", path.display());
    let mut s = Server::start();
    let init = s.request(1, "initialize", json!({ "capabilities": {} }));
    assert_eq!(init["result"]["capabilities"]["hoverProvider"], json!(true), "{init}");
    s.send(json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }));

    // Open a file with an error: the diagnostic of `vigil check` arrives, with code and hint.
    let broken = "rule MINE {\n  title \"t\"\n  severity LOW\n  for site\n  when count(phone_event where ts in last 1h) == 0\n}\n";
    s.send(json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": { "textDocument": { "uri": uri, "languageId": "vigil", "version": 1, "text": broken } } }));
    let diags = s.notification("textDocument/publishDiagnostics");
    let list = diags["params"]["diagnostics"].as_array().expect("diagnostics").clone();
    let unknown = list.iter().find(|d| d["code"] == json!("E0201")).unwrap_or_else(|| panic!("{diags}"));
    assert_eq!(unknown["range"]["start"], json!({ "line": 4, "character": 13 }), "{unknown}");
    assert!(
        unknown["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown table `phone_event`") && m.contains("did you mean `phone_events`?")),
        "{unknown}"
    );
    assert_eq!(unknown["severity"], json!(1));

    // Fix it: the diagnostics are cleared (other files of the library stay out of it).
    let fixed = "rule MINE {\n  title \"t\"\n  severity LOW\n  for site\n  param quiet = 1h\n  when count(phone_events where ts in last quiet) == 0\n}\n";
    s.send(json!({ "jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": { "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": fixed }] } }));
    let diags = s.notification("textDocument/publishDiagnostics");
    let errors: Vec<&Value> =
        diags["params"]["diagnostics"].as_array().expect("list").iter().filter(|d| d["severity"] == json!(1)).collect();
    assert!(errors.is_empty(), "{diags}");

    // Hover on a table lists its columns; on a parameter shows its declaration.
    let hover = s.request(2, "textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": 5, "character": 15 } }));
    let text = hover["result"]["contents"]["value"].as_str().unwrap_or_default();
    assert!(text.contains("table `phone_events`") && text.contains("`ts` time"), "{hover}");
    let hover = s.request(3, "textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": 5, "character": 44 } }));
    assert!(hover["result"]["contents"]["value"].as_str().unwrap_or_default().contains("param quiet = 1h"), "{hover}");

    // Hover on a built-in aggregate explains it.
    let hover = s.request(9, "textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": 5, "character": 8 } }));
    assert!(hover["result"]["contents"]["value"].as_str().unwrap_or_default().contains("`count(SOURCE [where ...])`"), "{hover}");

    // Definition of the parameter: its `param` line.
    let def =
        s.request(4, "textDocument/definition", json!({ "textDocument": { "uri": uri }, "position": { "line": 5, "character": 44 } }));
    assert_eq!(def["result"]["uri"], json!(uri), "{def}");
    assert_eq!(def["result"]["range"]["start"], json!({ "line": 4, "character": 2 }), "{def}");

    // Completion after a table name offers its columns first, and the tables.
    let comp =
        s.request(5, "textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": { "line": 5, "character": 32 } }));
    let labels: Vec<&str> = comp["result"]["items"].as_array().expect("items").iter().filter_map(|i| i["label"].as_str()).collect();
    assert!(labels.contains(&"ts") && labels.contains(&"device_id") && labels.contains(&"tours"), "{labels:?}");

    // Formatting gives `vigil fmt`'s layout.
    let messy = "rule MINE {\ntitle \"t\"\n      severity LOW\n  for site\n  param quiet = 1h\n  when count(phone_events where ts in last quiet) == 0\n}\n";
    s.send(json!({ "jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": { "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": messy }] } }));
    let fmt = s.request(
        6,
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(fmt["result"][0]["newText"], json!(fixed), "{fmt}");

    // Unknown requests get an error, not a crash; shutdown and exit end the process.
    let unknown = s.request(7, "textDocument/rename", json!({}));
    assert_eq!(unknown["error"]["code"], json!(-32601), "{unknown}");
    let down = s.request(8, "shutdown", Value::Null);
    assert_eq!(down["result"], Value::Null);
    s.send(json!({ "jsonrpc": "2.0", "method": "exit" }));
    let status = s.child.wait().expect("wait");
    assert!(status.success());
}

/// The TextMate grammar in `editors/` is valid JSON and highlights every keyword of the
/// language's grammar (a keyword added to `grammar/vigil.pest` must be added there too).
#[test]
fn the_textmate_grammar_knows_every_keyword() {
    let tm = std::fs::read_to_string(common::root().join("editors/vigil.tmLanguage.json")).expect("grammar");
    let parsed: Value = serde_json::from_str(&tm).expect("valid JSON");
    assert_eq!(parsed["scopeName"], json!("source.vigil"));
    let pest = std::fs::read_to_string(common::root().join("grammar/vigil.pest")).expect("pest");
    let keywords: Vec<&str> = pest.lines().filter(|l| l.trim_start().starts_with("kw_")).filter_map(|l| l.split('"').nth(1)).collect();
    assert!(keywords.len() > 30, "{keywords:?}");
    for k in keywords {
        assert!(
            tm.contains(&format!("|{k}|")) || tm.contains(&format!("({k}|")) || tm.contains(&format!("|{k})")),
            "`{k}` is not highlighted"
        );
    }
}
