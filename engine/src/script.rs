//! The Rhai escape hatch: a condition, a severity or an evidence value computed
//! by a script over the row the SQL produced.
//!
//! Invariant: scripts run in one sandboxed engine: bounded operations, call
//! depth, expression depth, string, array and map sizes; no modules (no file
//! access), no clock, no network, no `eval`, no printing. The same row always
//! gives the same result, and a script that loops or blows a limit ends with an
//! error for its rule instead of hanging the engine.

use std::sync::OnceLock;

use rhai::{Dynamic, Engine, Scope, AST};

use crate::syntax::ast::Span;

/// Operations a script may perform per row.
pub const MAX_OPERATIONS: u64 = 100_000;
/// Nested function calls.
pub const MAX_CALL_LEVELS: usize = 16;
/// Longest string a script may build.
pub const MAX_STRING_SIZE: usize = 4_096;
/// Largest array or map.
pub const MAX_COLLECTION_SIZE: usize = 1_024;

/// The one sandboxed engine every script runs in.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut e = Engine::new();
        e.set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(64, 32)
            .set_max_string_size(MAX_STRING_SIZE)
            .set_max_array_size(MAX_COLLECTION_SIZE)
            .set_max_map_size(MAX_COLLECTION_SIZE)
            .set_strict_variables(true);
        e.disable_symbol("eval");
        e.on_print(|_| {});
        e.on_debug(|_, _, _| {});
        e
    })
}

/// What a script computes.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptRole {
    /// A `when` line: the row is a finding only if it returns true.
    Condition,
    /// `severity LEVEL when script(...)`: tried before the SQL severity steps.
    Severity(crate::schema::Severity),
    /// `evidence NAME = script(...)`.
    Evidence(String),
}

/// A compiled script of a rule.
#[derive(Debug, Clone)]
pub struct RuleScript {
    /// What it computes.
    pub role: ScriptRole,
    /// The compiled code.
    pub ast: AST,
    /// Where it is written (the string literal, or the file name).
    pub span: Span,
}

/// A compile error with its 1-based line and column inside the script.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    /// The message.
    pub message: String,
    /// Line in the script.
    pub line: usize,
    /// Column in the script.
    pub column: usize,
}

/// Compiles a script that may read the variables `names` (the row's figures);
/// reading any other variable is a compile error.
pub fn compile(code: &str, names: &[String]) -> Result<AST, CompileError> {
    let mut scope = Scope::new();
    for n in names {
        scope.push_dynamic(n.clone(), Dynamic::UNIT);
    }
    engine().compile_with_scope(&scope, code).map_err(|e| CompileError {
        message: e.0.to_string(),
        line: e.1.line().unwrap_or(1),
        column: e.1.position().unwrap_or(1),
    })
}

/// Byte offset of a 1-based (line, column) inside `text`.
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            return offset + l.char_indices().nth(column.saturating_sub(1)).map(|(b, _)| b).unwrap_or(l.len());
        }
        offset += l.len() + 1;
    }
    text.len()
}

/// Runs a script with the row's values as variables.
pub fn run(script: &RuleScript, row: &[(String, serde_json::Value)]) -> Result<Dynamic, String> {
    let mut scope = Scope::new();
    for (name, value) in row {
        scope.push_dynamic(name.clone(), to_dynamic(value));
    }
    engine().eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast).map_err(|e| e.to_string())
}

fn to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => Dynamic::from_bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Dynamic::from(s.clone()),
        other => Dynamic::from(other.to_string()),
    }
}

/// Converts a script's result into an evidence value.
pub fn to_json(v: &Dynamic) -> serde_json::Value {
    if v.is_unit() {
        serde_json::Value::Null
    } else if let Ok(b) = v.as_bool() {
        serde_json::Value::Bool(b)
    } else if let Ok(i) = v.as_int() {
        serde_json::Value::from(i)
    } else if let Ok(f) = v.as_float() {
        serde_json::Number::from_f64(f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::String(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(code: &str) -> RuleScript {
        let names = vec!["fixes".to_string(), "ratio".to_string()];
        RuleScript { role: ScriptRole::Condition, ast: compile(code, &names).expect("compiles"), span: Span { file: 0, start: 0, end: 0 } }
    }

    #[test]
    fn scripts_read_the_row() {
        let row = vec![("fixes".to_string(), serde_json::json!(4)), ("ratio".to_string(), serde_json::json!(0.25))];
        assert!(run(&condition("fixes > 3 && ratio < 0.5"), &row).expect("runs").as_bool().expect("bool"));
    }

    #[test]
    fn hostile_scripts_are_stopped() {
        let row = vec![];
        assert!(run(&condition("loop { }"), &row).expect_err("stopped").contains("Too many operations"));
        let deep = run(&condition("fn f(n) { f(n + 1) } f(0)"), &row).expect_err("stopped");
        assert!(deep.contains("Stack overflow") || deep.contains("call"), "{deep}");
        let big = run(&condition("let s = \"x\"; loop { s += s; }"), &row).expect_err("stopped");
        assert!(big.contains("Length of string") || big.contains("too large"), "{big}");
    }

    #[test]
    fn compile_errors_have_positions() {
        let e = compile("let x = ;", &[]).expect_err("bad");
        assert_eq!((e.line, e.column), (1, 9));
        let e = compile("fixes > 1 && nope", &["fixes".to_string()]).expect_err("unknown variable");
        assert!(e.message.contains("nope"), "{}", e.message);
        assert_eq!(offset_of("ab\ncd", 2, 2), 4);
    }
}
