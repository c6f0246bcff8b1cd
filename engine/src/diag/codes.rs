//! The registry of diagnostic codes: one place, grouped in ranges, never reused.
//!
//! - E01xx: syntax
//! - E02xx: names (tables, columns, parameters, macros, rules)
//! - E03xx: types
//! - E04xx: rule structure (missing or repeated items, windows)
//! - E05xx: runbooks
//! - E06xx: scripts
//! - E07xx: runbook actions
//! - E08xx: execution engines (`check --engine spark`)
//! - E09xx: internal
//! - W01xx: warnings

/// A diagnostic code with its one-line meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// `E0101`
    pub id: &'static str,
    /// What it means.
    pub summary: &'static str,
}

macro_rules! codes {
    ($($name:ident = $id:literal, $summary:literal;)*) => {
        $(#[doc = $summary] pub const $name: Code = Code { id: $id, summary: $summary };)*
        /// Every code, for the uniqueness test and documentation.
        pub const ALL: &[Code] = &[$($name),*];
    };
}

codes! {
    SYNTAX = "E0101", "the text does not follow the grammar";
    BAD_LITERAL = "E0102", "a number or duration is out of range";
    UNKNOWN_TABLE = "E0201", "the table is not in the signal schema";
    UNKNOWN_COLUMN = "E0202", "the column is not in the table";
    UNKNOWN_NAME = "E0203", "the name is not a column, parameter, let, macro or entity";
    UNKNOWN_FUNCTION = "E0204", "the function is neither built in nor a macro";
    DUPLICATE_ID = "E0205", "two rules, runbooks, macros, parameters or lets share a name";
    UNKNOWN_ENTITY = "E0206", "the entity is not one of site, guard, tour, task, alert, ticket, report, shift";
    UNKNOWN_KEY = "E0207", "a `match` key is not shared by both sides";
    UNKNOWN_VALUE = "E0208", "a category, severity or cadence is not one of the allowed words";
    MACRO_RECURSION = "E0209", "a macro uses itself";
    TYPE_MISMATCH = "E0301", "an operand has the wrong type";
    WRONG_ARITY = "E0302", "a function or macro gets the wrong number of arguments";
    NOT_BOOLEAN = "E0303", "a condition is not true/false";
    MISSING_ITEM = "E0401", "a rule lacks a required item (title, severity, for, when)";
    REPEATED_ITEM = "E0402", "an item that may appear once appears twice";
    BAD_WINDOW = "E0403", "a window or duration parameter is zero or negative";
    AGG_ARGUMENT = "E0404", "an aggregate gets an argument it cannot use";
    RUNBOOK_INCOMPLETE = "E0501", "a runbook lacks its title, match or steps";
    SCRIPT = "E0601", "a Rhai script does not compile or is used where it cannot run";
    ACTION_CONFIG = "E0701", "the actions configuration does not follow its format";
    UNKNOWN_ACTION = "E0702", "a runbook's `auto` line names an action the configuration does not define";
    UNKNOWN_TARGET = "E0703", "an action names a channel or endpoint the configuration does not define";
    MISSING_SECRET = "E0704", "a secret's environment variable or file is missing";
    TEMPLATE_FIELD = "E0705", "a template names a field a finding does not have";
    ENGINE_UNSUPPORTED = "E0801", "the rule uses something the chosen engine cannot run (check --engine spark)";
    INTERNAL = "E0901", "an internal error; please report it";
    CATEGORY_DISAGREES = "W0101", "the stated category differs from the keyword categories";
    UNUSED_PARAM = "W0102", "a parameter is never used";
    NO_RUNBOOK = "W0103", "no runbook matches the finding type exactly";
    SHADOWED_RULE = "W0104", "another rule raises the same finding type (strict)";
    SHARED_KEYWORD = "W0105", "a keyword sits in two categories; the later one never wins (strict)";
    NO_TEST = "W0106", "no case file runs the rule (strict)";
    RUNBOOK_STEP = "W0107", "which cascade step gives the finding type its runbook (strict)";
    NEVER_FIRES = "W0108", "a `when` line is constantly false (strict)";
    UNUSED_RUNBOOK = "W0109", "a runbook matches a finding type no rule of the set raises";
    QUADRATIC = "W0110", "aggregates nested over a whole tenant's rows: cost grows with the square of its rows";
}
