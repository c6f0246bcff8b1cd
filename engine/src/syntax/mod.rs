//! Stage 1, parse: text to [`ast::RuleFile`].
pub mod ast;
mod parser;

pub use parser::parse;

pub use crate::time::duration_micros;
