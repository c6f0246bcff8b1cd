//! Stage 1, parse: text to [`ast::RuleFile`].
pub mod ast;
mod parser;

pub use parser::parse;

/// Microseconds in a duration written as digits and a unit (`500ms`, `30s`, `15m`,
/// `2h`, `30d`, `1w`), the one spelling used by rules, `--every` and `--context`.
pub fn duration_micros(text: &str) -> Option<i64> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let unit_micros: i64 = match unit {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        "w" => 604_800_000_000,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(unit_micros)
}
