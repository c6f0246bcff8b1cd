//! `vigil fmt`: the one canonical layout of rule files (`.vigil`) and case files (`.case`).
//!
//! The formatter is line based and layout only: it moves whitespace between tokens and never
//! touches a token, a string or a comment, so a formatted file means exactly what the original
//! meant (the tests check the token sequence and, for rule files, the parsed tree). Formatting
//! is idempotent: a formatted file formats to itself.
//!
//! # Rule files
//!
//! - Blocks are indented two spaces per `{` level, as in the shipped files; a line
//!   that starts with `}` is dedented. Braces count only outside strings and comments.
//! - A *continuation* line, one that carries on the statement above it, keeps its indentation
//!   relative to the first line of the statement, so the shipped layouts survive: `and` under
//!   `when`, arguments aligned under an open parenthesis. A continuation written at or left of
//!   its statement's column gets one level (two spaces) more than the statement. A line is a
//!   continuation when it starts inside parentheses, starts with a token no item starts with (an
//!   operator, `,`, `)`, a string, or a keyword such as `and`, `or`, `not`, `in`, `is`, `where`),
//!   or follows a line that ends with an operator, `(`, `,`, `=` or such a keyword (or `when`).
//! - A comment line is indented like the code line below it (like its block before a `}`).
//! - A line that begins inside a multi-line string is kept byte for byte up to the string's end,
//!   and so is the end of a line that ends inside one: that text is the string's value.
//! - Spacing inside a line is kept: the shipped files align columns (`title    "..."`,
//!   `let a   = ...`, `HIGH     when ...`). Tabs and carriage returns outside strings and comments
//!   become spaces, a trailing comment gets at least one space before its `#`, and trailing
//!   whitespace goes.
//! - Blank lines: runs collapse to one; none at the start or the end of the file, right after a
//!   line that opens a block or right before a `}`; exactly one between top-level items (comment
//!   lines directly above an item belong to it). Other blank lines stay: they group the lines of
//!   a block.
//! - Lines end with `\n` (outside strings), and the file with exactly one (a file that ends
//!   inside an unterminated string is left without one, as that line break would be string text).
//!
//! # Case files
//!
//! The layout follows [`crate::case::parse_case`], which trims every line:
//!
//! - Every line starts at column 0 and has no trailing whitespace.
//! - `rules` and `expect` lines: words separated by one space (they are read word by word).
//!   `case`, `at` and `table` lines: one space after the keyword, the rest as written.
//! - Table rows as written; blank lines inside a table (skipped by the parser) are dropped.
//! - Exactly one blank line before every `table` (above the comments directly over it) and after
//!   every `end`; other runs of blank lines collapse to one; none at the start or the end; lines
//!   end with `\n`, the file with exactly one.

use std::path::Path;

/// Spaces per block level in rule files: the indentation of the shipped files.
const INDENT: usize = 2;

/// A tab in written indentation advances to the next multiple of this many columns.
const TAB_WIDTH: usize = 4;

/// Keywords that never start an item, so a line starting with one carries on the line above.
/// Only reserved words (the grammar's `keyword`), never a possible identifier.
const CONTINUING_START_WORDS: &[&str] = &["and", "or", "not", "is", "null", "in", "last", "as", "match", "where", "true", "false", "now"];

/// Keywords after which an expression must go on, so the next line carries on this one.
const CONTINUING_END_WORDS: &[&str] = &["and", "or", "not", "is", "in", "last", "as", "match", "where", "when"];

/// Formats the text of a file by its extension: `.vigil` as a rule file, `.case` as a case
/// file; `None` for any other file.
pub fn format_path_text(path: &Path, text: &str) -> Option<String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("vigil") => Some(format_vigil(text)),
        Some("case") => Some(format_case(text)),
        _ => None,
    }
}

// ---------------------------------------------------------------- rule files

/// A token of a rule file, as far as layout needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier, keyword, number or duration.
    Word(String),
    /// An operator or punctuation mark: `==`, `(`, `{`, `,`, ...
    Punct(String),
    /// A string literal (its text is never looked at).
    Str,
}

/// True when a line starting with `first` carries on the statement above it.
fn starts_continuation(first: &Token) -> bool {
    match first {
        Token::Word(w) => CONTINUING_START_WORDS.contains(&w.as_str()),
        Token::Punct(p) => p != "{" && p != "}",
        Token::Str => true,
    }
}

/// True when the line after one ending with `last` carries on its statement.
fn ends_continuation(last: &Token) -> bool {
    match last {
        Token::Word(w) => CONTINUING_END_WORDS.contains(&w.as_str()),
        Token::Punct(p) => !matches!(p.as_str(), ")" | "{" | "}"),
        Token::Str => false,
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whitespace as the grammar knows it (`WHITESPACE`), without the line break.
fn is_blank_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// Where the scanner is at a line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens (a comment always ends at the line break).
    Code,
    /// Inside a string opened by this quote.
    Str(char),
}

/// One line of a rule file as scanned, before layout.
#[derive(Debug)]
struct Scanned {
    /// The line without its indentation, tabs and carriage returns outside strings and
    /// comments as spaces, trailing whitespace removed unless it is inside a string. A line
    /// that begins inside a string keeps its beginning as written.
    text: String,
    /// The line begins inside a multi-line string.
    starts_in_string: bool,
    /// The line ends inside a string.
    ends_in_string: bool,
    /// Columns of indentation as written.
    written_indent: usize,
    /// Block depth at the start of the line.
    depth: usize,
    /// Open parentheses at the start of the line.
    parens: usize,
    /// Closing braces at the start of the line.
    closers: usize,
    /// The line holds a comment and no code.
    comment_only: bool,
    /// First and last token (strings count as one token each).
    first: Option<Token>,
    last: Option<Token>,
}

/// Carries string state, block depth and parenthesis depth from line to line.
struct Scanner {
    lex: Lex,
    depth: usize,
    parens: usize,
}

impl Scanner {
    fn new() -> Self {
        Scanner { lex: Lex::Code, depth: 0, parens: 0 }
    }

    /// Scans one line (without its `\n`).
    fn line(&mut self, raw: &str) -> Scanned {
        let chars: Vec<char> = raw.chars().collect();
        let starts_in_string = self.lex != Lex::Code;
        let (depth, parens) = (self.depth, self.parens);
        let mut i = 0;
        let mut written_indent = 0;
        if !starts_in_string {
            while let Some(&c) = chars.get(i) {
                match c {
                    ' ' => written_indent += 1,
                    '\t' => written_indent = (written_indent / TAB_WIDTH + 1) * TAB_WIDTH,
                    '\r' => {}
                    _ => break,
                }
                i += 1;
            }
        }
        let mut text = String::with_capacity(raw.len());
        let mut first: Option<Token> = None;
        let mut last: Option<Token> = None;
        let mut comment_only = false;
        // A backslash in a string escapes the next character; at the end of the line that is
        // the line break itself, so the escape never carries over to the next line.
        let mut escaped = false;
        while let Some(&c) = chars.get(i) {
            if let Lex::Str(quote) = self.lex {
                text.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == quote {
                    self.lex = Lex::Code;
                }
                i += 1;
                continue;
            }
            if c == '#' {
                // A comment runs to the end of the line and is kept as written.
                comment_only = !starts_in_string && first.is_none();
                if matches!(text.chars().next_back(), Some(p) if p != ' ') {
                    text.push(' ');
                }
                text.extend(chars.iter().skip(i));
                break;
            }
            if is_blank_char(c) {
                text.push(' ');
                i += 1;
                continue;
            }
            let token = if c == '"' || c == '\'' {
                self.lex = Lex::Str(c);
                text.push(c);
                i += 1;
                Token::Str
            } else if is_word_char(c) {
                let start = i;
                while chars.get(i).is_some_and(|&w| is_word_char(w)) {
                    i += 1;
                }
                let word: String = chars.iter().skip(start).take(i - start).collect();
                text.push_str(&word);
                Token::Word(word)
            } else {
                let two = matches!(c, '=' | '!' | '<' | '>') && chars.get(i + 1) == Some(&'=');
                let len = if two { 2 } else { 1 };
                let punct: String = chars.iter().skip(i).take(len).collect();
                match c {
                    '{' => self.depth += 1,
                    '}' => self.depth = self.depth.saturating_sub(1),
                    '(' => self.parens += 1,
                    ')' => self.parens = self.parens.saturating_sub(1),
                    _ => {}
                }
                text.push_str(&punct);
                i += len;
                Token::Punct(punct)
            };
            if first.is_none() {
                first = Some(token.clone());
            }
            last = Some(token);
        }
        let ends_in_string = self.lex != Lex::Code;
        if !ends_in_string {
            let kept = text.trim_end_matches(is_blank_char).len();
            text.truncate(kept);
        }
        let closers = if starts_in_string { 0 } else { text.chars().take_while(|&c| c == '}' || c == ' ').filter(|&c| c == '}').count() };
        Scanned { text, starts_in_string, ends_in_string, written_indent, depth, parens, closers, comment_only, first, last }
    }
}

/// The layout role of a rule-file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Begins inside a multi-line string: kept as written.
    Verbatim,
    /// Only whitespace.
    Blank,
    /// Only a comment.
    Comment,
    /// Starts with `}`.
    Closer,
    /// Starts with `{`.
    Opener,
    /// Carries on the statement above.
    Continuation,
    /// Starts a statement: an item, or a line of a block.
    Head,
}

/// A rule-file line with its layout decided.
#[derive(Debug)]
struct Line {
    kind: Kind,
    text: String,
    indent: usize,
    depth: usize,
    /// Ends, outside strings and comments, with `{`.
    opens_block: bool,
    /// Ends inside a string.
    ends_in_string: bool,
}

fn classify(s: &Scanned, previous_last: Option<&Token>) -> Kind {
    if s.starts_in_string {
        return Kind::Verbatim;
    }
    if s.text.is_empty() {
        return Kind::Blank;
    }
    if s.comment_only {
        return Kind::Comment;
    }
    match &s.first {
        Some(Token::Punct(p)) if p == "}" => Kind::Closer,
        Some(Token::Punct(p)) if p == "{" => Kind::Opener,
        Some(first) if s.parens > 0 || starts_continuation(first) || previous_last.is_some_and(ends_continuation) => Kind::Continuation,
        _ => Kind::Head,
    }
}

/// Formats a rule file (see the module documentation for the layout).
pub fn format_vigil(text: &str) -> String {
    // The piece after a final line break is not a line.
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut scanner = Scanner::new();
    let mut lines: Vec<Line> = Vec::new();
    // Last token of the most recent line that had one.
    let mut previous_last: Option<Token> = None;
    // (written indentation, new indentation) of the first line of the current statement.
    let mut head: Option<(usize, usize)> = None;
    for raw in body.split('\n') {
        let s = scanner.line(raw);
        let kind = classify(&s, previous_last.as_ref());
        let indent = match kind {
            Kind::Head => {
                let indent = s.depth * INDENT;
                head = Some((s.written_indent, indent));
                indent
            }
            Kind::Continuation => match head {
                Some((written, indent)) if s.written_indent > written => indent + (s.written_indent - written),
                Some((_, indent)) => indent + INDENT,
                None => (s.depth + 1) * INDENT,
            },
            Kind::Closer => {
                head = None;
                s.depth.saturating_sub(s.closers) * INDENT
            }
            Kind::Opener => s.depth * INDENT,
            // Comments are placed below, once the line after them is known.
            Kind::Comment | Kind::Blank | Kind::Verbatim => 0,
        };
        if s.last.is_some() {
            previous_last.clone_from(&s.last);
        }
        let opens_block = !s.ends_in_string && s.last == Some(Token::Punct("{".into()));
        lines.push(Line { kind, text: s.text, indent, depth: s.depth, opens_block, ends_in_string: s.ends_in_string });
    }

    // A comment line takes the indentation of the code line below it, or its block's.
    let mut next_indent: Option<usize> = None;
    for line in lines.iter_mut().rev() {
        match line.kind {
            Kind::Head | Kind::Continuation | Kind::Opener => next_indent = Some(line.indent),
            Kind::Closer | Kind::Verbatim => next_indent = None,
            Kind::Comment => line.indent = next_indent.unwrap_or(line.depth * INDENT),
            Kind::Blank => {}
        }
    }

    // Exactly one blank line before each top-level item, above the comments directly over it.
    let mut blank_before = vec![false; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        if line.kind == Kind::Head && line.depth == 0 {
            let mut start = i;
            while start > 0 && lines.get(start - 1).is_some_and(|l| l.kind == Kind::Comment) {
                start -= 1;
            }
            if start > 0 && lines.get(start - 1).is_some_and(|l| l.kind != Kind::Blank) {
                if let Some(flag) = blank_before.get_mut(start) {
                    *flag = true;
                }
            }
        }
    }

    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut pending_blank = false;
    let mut after_block_open = false;
    for (line, &blank) in lines.iter().zip(&blank_before) {
        if line.kind == Kind::Blank {
            // Kept only if something was written before it and code follows it.
            pending_blank = !out.is_empty();
            continue;
        }
        pending_blank |= blank && !out.is_empty();
        if line.kind == Kind::Closer || after_block_open {
            pending_blank = false;
        }
        if pending_blank {
            out.push('\n');
            pending_blank = false;
        }
        if line.kind != Kind::Verbatim {
            out.push_str(&" ".repeat(line.indent));
        }
        out.push_str(&line.text);
        out.push('\n');
        after_block_open = line.opens_block;
    }
    // A file that ends inside an unterminated string gets no line break added to that string.
    if lines.last().is_some_and(|l| l.ends_in_string) && !text.ends_with('\n') {
        out.pop();
    }
    out
}

// ---------------------------------------------------------------- case files

/// The layout role of a case-file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseKind {
    Blank,
    Comment,
    /// A `table NAME` line: rows follow up to `end`.
    Table,
    /// The `end` of a table.
    End,
    /// Any other line: a row, or a `case`, `rules`, `at` or `expect` line.
    Other,
}

/// Formats a case file (see the module documentation for the layout).
pub fn format_case(text: &str) -> String {
    let mut lines: Vec<(CaseKind, String)> = Vec::new();
    let mut in_table = false;
    // Line splitting and trimming as in `parse_case`.
    for raw in text.lines() {
        let line = raw.trim();
        if in_table {
            if line == "end" {
                in_table = false;
                lines.push((CaseKind::End, line.to_string()));
            } else if line.starts_with('#') {
                lines.push((CaseKind::Comment, line.to_string()));
            } else if !line.is_empty() {
                lines.push((CaseKind::Other, line.to_string()));
            }
            continue;
        }
        if line.is_empty() {
            lines.push((CaseKind::Blank, String::new()));
            continue;
        }
        if line.starts_with('#') {
            lines.push((CaseKind::Comment, line.to_string()));
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).map(|(w, r)| (w, r.trim())).unwrap_or((line, ""));
        let normalized = match word {
            // Read word by word.
            "rules" | "expect" => rest.split_whitespace().fold(word.to_string(), |acc, w| acc + " " + w),
            // Read as one trimmed rest.
            "case" | "at" | "table" if !rest.is_empty() => format!("{word} {rest}"),
            _ => line.to_string(),
        };
        // `table NAME from FILE` is one line; `table NAME` opens rows up to `end`.
        let kind = if word == "table" && !rest.split_whitespace().any(|w| w == "from") {
            in_table = true;
            CaseKind::Table
        } else {
            CaseKind::Other
        };
        lines.push((kind, normalized));
    }

    // One blank line before each table (above the comments directly over it) and after each end.
    let mut blank_before = vec![false; lines.len()];
    for (i, (kind, _)) in lines.iter().enumerate() {
        match kind {
            CaseKind::Table => {
                let mut start = i;
                while start > 0 && lines.get(start - 1).is_some_and(|(k, _)| *k == CaseKind::Comment) {
                    start -= 1;
                }
                if let Some(flag) = blank_before.get_mut(start) {
                    *flag = true;
                }
            }
            CaseKind::End => {
                if let Some(flag) = blank_before.get_mut(i + 1) {
                    *flag = true;
                }
            }
            _ => {}
        }
    }

    let mut out = String::with_capacity(text.len());
    let mut pending_blank = false;
    for ((kind, line), &blank) in lines.iter().zip(&blank_before) {
        if *kind == CaseKind::Blank {
            pending_blank = !out.is_empty();
            continue;
        }
        if (pending_blank || blank) && !out.is_empty() {
            out.push('\n');
        }
        pending_blank = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The tokens of a rule file as its grammar sees them, by a scanner independent of the
    /// formatter: runs of non-whitespace outside strings and comments, each string as written,
    /// each comment without trailing whitespace.
    fn vigil_tokens(text: &str) -> Vec<String> {
        #[derive(PartialEq)]
        enum State {
            Code,
            Str(char, bool),
            Comment,
        }
        let mut tokens = Vec::new();
        let mut current = String::new();
        let mut state = State::Code;
        let flush = |current: &mut String, tokens: &mut Vec<String>| {
            if !current.is_empty() {
                tokens.push(std::mem::take(current));
            }
        };
        for c in text.chars() {
            match state {
                State::Code => match c {
                    ' ' | '\t' | '\r' | '\n' => flush(&mut current, &mut tokens),
                    '#' => {
                        flush(&mut current, &mut tokens);
                        current.push(c);
                        state = State::Comment;
                    }
                    '"' | '\'' => {
                        flush(&mut current, &mut tokens);
                        current.push(c);
                        state = State::Str(c, false);
                    }
                    _ => current.push(c),
                },
                State::Str(quote, escaped) => {
                    current.push(c);
                    state = if escaped {
                        State::Str(quote, false)
                    } else if c == '\\' {
                        State::Str(quote, true)
                    } else if c == quote {
                        flush(&mut current, &mut tokens);
                        State::Code
                    } else {
                        State::Str(quote, false)
                    };
                }
                State::Comment => {
                    if c == '\n' {
                        let kept = current.trim_end_matches([' ', '\t', '\r']).len();
                        current.truncate(kept);
                        flush(&mut current, &mut tokens);
                        state = State::Code;
                    } else {
                        current.push(c);
                    }
                }
            }
        }
        if state == State::Comment {
            let kept = current.trim_end_matches([' ', '\t', '\r']).len();
            current.truncate(kept);
        }
        flush(&mut current, &mut tokens);
        tokens
    }

    /// For each line of a rule file: (begins inside a string, ends inside a string).
    fn string_lines(text: &str) -> Vec<(bool, bool)> {
        let mut scanner = Scanner::new();
        text.split('\n')
            .map(|l| {
                let s = scanner.line(l);
                (s.starts_in_string, s.ends_in_string)
            })
            .collect()
    }

    /// A parse tree's debug text without its spans (which move with the layout).
    fn without_spans(debug: &str) -> String {
        let mut out = String::new();
        let mut rest = debug;
        while let Some(at) = rest.find("Span {") {
            out.push_str(&rest[..at]);
            out.push_str("Span");
            rest = match rest[at..].find('}') {
                Some(end) => &rest[at + end + 1..],
                None => "",
            };
        }
        out.push_str(rest);
        out
    }

    fn assert_stable(formatted: &str, again: &str, what: &str) {
        assert_eq!(formatted, again, "formatting {what} twice changed it:\n--- once\n{formatted}\n--- twice\n{again}");
    }

    /// Checks idempotence and meaning of one rule file's formatting; returns the formatted text.
    fn check_vigil(text: &str, what: &str) -> String {
        let formatted = format_vigil(text);
        assert_stable(&formatted, &format_vigil(&formatted), what);
        assert_eq!(vigil_tokens(text), vigil_tokens(&formatted), "formatting {what} changed its tokens:\n{formatted}");
        if let Ok(tree) = crate::syntax::parse(text, 0) {
            match crate::syntax::parse(&formatted, 0) {
                Ok(after) => {
                    assert_eq!(without_spans(&format!("{tree:?}")), without_spans(&format!("{after:?}")), "{what}: parse tree changed");
                }
                Err(e) => panic!("{what} parsed before formatting but not after: {e:?}\n{formatted}"),
            }
        }
        formatted
    }

    /// What a case means: everything `parse_case` returns except line numbers.
    fn case_meaning(text: &str) -> Result<String, String> {
        let case = crate::case::parse_case(text).map_err(|e| e.message)?;
        let checks: Vec<String> = case
            .checks
            .iter()
            .map(|c| {
                let expect: Vec<String> = c.expect.iter().map(|e| format!("{} {:?}", e.finding_type, e.fields)).collect();
                format!("{} {expect:?} {:?}", c.at, c.expect_none)
            })
            .collect();
        Ok(format!("{:?} {:?} {:?} {checks:?}", case.name, case.rules, case.tables))
    }

    fn check_case(text: &str, what: &str) -> String {
        let formatted = format_case(text);
        assert_stable(&formatted, &format_case(&formatted), what);
        let squeeze = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(squeeze(text), squeeze(&formatted), "formatting {what} changed more than whitespace");
        assert_eq!(case_meaning(text), case_meaning(&formatted), "formatting {what} changed its meaning");
        formatted
    }

    fn shipped_files() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("src/prelude.vigil")];
        for dir in ["../rules", "../runbooks", "../tests/cases", "../tests/diagnostics"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("a shipped directory") {
                let path = entry.expect("a directory entry").path();
                if format_path_text(&path, "").is_some() {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn reindents_blocks_and_keeps_continuations_relative() {
        let text = "rule A {\ntitle \"x\"\n      severity HIGH\n    when a >= 1\n     and b\n  and c\n        }\n";
        let want = "rule A {\n  title \"x\"\n  severity HIGH\n  when a >= 1\n   and b\n    and c\n}\n";
        assert_eq!(check_vigil(text, "blocks"), want);
    }

    #[test]
    fn continuations_by_parentheses_and_trailing_operators() {
        let text = "macro m = a and (\n       b or\n  c)\nmacro n =\nx\nmacro o = f(a,\n b)\n";
        let want = "macro m = a and (\n       b or\n  c)\n\nmacro n =\n  x\n\nmacro o = f(a,\n b)\n";
        assert_eq!(check_vigil(text, "continuations"), want);
    }

    #[test]
    fn keeps_multi_line_strings_byte_for_byte() {
        let text = "rule A {\n    evidence u = script('  \n  if x { \"}\" }  \n\n}}')   \n    action \"a\"\n}\n";
        let want = "rule A {\n  evidence u = script('  \n  if x { \"}\" }  \n\n}}')\n  action \"a\"\n}\n";
        assert_eq!(check_vigil(text, "strings"), want);
    }

    #[test]
    fn braces_and_quotes_in_comments_and_escapes_do_not_count() {
        let text = "# it's { open\nrule A { # \"} closed\n  title \"a \\\" { b\" # {\n  doc 'it\\'s {'\n}\nrule B {\n}\n";
        let want = "# it's { open\nrule A { # \"} closed\n  title \"a \\\" { b\" # {\n  doc 'it\\'s {'\n}\n\nrule B {\n}\n";
        assert_eq!(check_vigil(text, "comments"), want);
    }

    #[test]
    fn blank_lines_between_and_inside_items() {
        let text = "\n\n# head\n\n\nmacro a = 1\n# about b\nmacro b = 2\nrule C {\n\n  title \"c\"\n\n\n  when x\n\n}\n\n\n\n";
        let want = "# head\n\nmacro a = 1\n\n# about b\nmacro b = 2\n\nrule C {\n  title \"c\"\n\n  when x\n}\n";
        assert_eq!(check_vigil(text, "blank lines"), want);
    }

    #[test]
    fn comments_follow_the_code_below_them() {
        let text = "rule A {\n# one\n  when a\n        # two\n   and b\n      # three\n}\n";
        let want = "rule A {\n  # one\n  when a\n   # two\n   and b\n  # three\n}\n";
        assert_eq!(check_vigil(text, "comment indentation"), want);
    }

    #[test]
    fn tabs_crlf_and_trailing_comments() {
        let text = "rule A {\r\n\ttitle\t\"a\tb\"# c\t \r\n\t\twhen x  \r\n}\r\n";
        let want = "rule A {\n  title \"a\tb\" # c\n  when x\n}\n";
        assert_eq!(check_vigil(text, "tabs and CRLF"), want);
        // A line break inside a string keeps its carriage return: it is part of the value.
        assert_eq!(check_vigil("rule A {\r\n  doc 'a\r\nb'\r\n}\r\n", "CRLF string"), "rule A {\n  doc 'a\r\nb'\n}\n");
    }

    #[test]
    fn odd_inputs_do_not_panic_and_stay_stable() {
        let inputs = [
            "",
            "\n\n",
            "}}}\n{{{\n",
            "rule A { 'unterminated\n  x {\n",
            "rule A { \"ends with a backslash \\",
            "'a'\"b\"#c\n#\n",
            "rule é { title \"ünï\" }\n  and ( ) ) ) (\n",
            "macro a = 1 macro b = 2\n\n\n    }\n",
            "\t\t\r\r\n\u{feff}rule A {}\n",
            "rule A {\n  when a ==\n\n  # c\n\n  b\n}\n",
        ];
        for text in inputs {
            check_vigil(text, &format!("{text:?}"));
            check_case(text, &format!("{text:?}"));
        }
    }

    #[test]
    fn random_inputs_stay_stable_and_keep_their_tokens() {
        // Deterministic xorshift over pieces that exercise strings, escapes, comments, braces,
        // parentheses, continuations, tabs and line ends.
        let pieces =
            ["{", "}", "(", ")", "'", "\"", "\\", "#", "\n", "\r\n", "\t", " ", "  ", "a", "when", "and", "or", "=", ",", "rule A", "é"];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..3000 {
            let mut text = String::new();
            for _ in 0..(round % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            check_vigil(&text, &format!("{text:?}"));
            check_case(&text, &format!("{text:?}"));
        }
    }

    #[test]
    fn every_comment_is_kept() {
        let text = "# a {\nrule A { # b '\n  when x # c \"\n   # d }\n   and y\n}   # e\n# f";
        let formatted = check_vigil(text, "comments");
        for comment in ["# a {", "# b '", "# c \"", "# d }", "# e", "# f"] {
            assert!(formatted.contains(comment), "lost {comment:?}:\n{formatted}");
        }
    }

    #[test]
    fn case_files() {
        let text = "  # about\n\ncase   \"A  b\"  \nrules\tX   Y\nat 2025-10-04T12:00:00Z\n# rows\ntable sites\r\n  \
                    tenant_id,site_id\n\n  # a row\n T1, S 1 \n  end  \nexpect X   site=S1\n\n\n";
        let want = "# about\n\ncase \"A  b\"\nrules X Y\nat 2025-10-04T12:00:00Z\n\n# rows\ntable sites\n\
                    tenant_id,site_id\n# a row\nT1, S 1\nend\n\nexpect X site=S1\n";
        assert_eq!(check_case(text, "case"), want);
    }

    #[test]
    fn unknown_extensions_are_left_alone() {
        assert_eq!(format_path_text(Path::new("a/b.vigil"), "rule A {}"), Some("rule A {}\n".into()));
        assert_eq!(format_path_text(Path::new("a/b.case"), "at x"), Some("at x\n".into()));
        assert_eq!(format_path_text(Path::new("a/b.csv"), "x"), None);
        assert_eq!(format_path_text(Path::new("vigil"), "x"), None);
    }

    #[test]
    fn shipped_files_are_stable_and_keep_their_meaning() {
        let files = shipped_files();
        assert!(files.len() > 50, "found only {} shipped files", files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).expect("a readable shipped file");
            let what = path.display().to_string();
            if path.extension().is_some_and(|e| e == "vigil") {
                check_vigil(&text, &what);
            } else {
                check_case(&text, &what);
            }
        }
    }

    /// Layout noise the formatter must remove entirely: the same extra indentation on every
    /// line, trailing whitespace, CRLF line ends, doubled blank lines, blank lines at both
    /// ends. Lines inside multi-line strings are left alone: their text is meaning.
    fn add_noise(text: &str) -> String {
        let flags = string_lines(text);
        let mut out = String::from("\n \n");
        for (line, (starts, ends)) in text.split('\n').zip(flags) {
            let mut noisy = String::new();
            if !starts {
                noisy.push('\t');
            }
            noisy.push_str(line);
            if !ends {
                noisy.push_str(" \t \r");
            }
            if !starts && !ends && line.trim().is_empty() {
                noisy.push_str("\n  ");
            }
            out.push_str(&noisy);
            out.push('\n');
        }
        out.push_str("\n\n");
        out
    }

    #[test]
    fn shipped_files_with_noise_format_the_same() {
        for path in shipped_files() {
            let text = std::fs::read_to_string(&path).expect("a readable shipped file");
            let what = path.display().to_string();
            if path.extension().is_some_and(|e| e == "vigil") {
                assert_eq!(format_vigil(&add_noise(&text)), format_vigil(&text), "{what} with noise");
            } else {
                let noisy: String =
                    text.lines().map(|l| if l.trim().is_empty() { "\t\r\n \n".to_string() } else { format!("  {l}\t \r\n") }).collect();
                assert_eq!(format_case(&noisy), format_case(&text), "{what} with noise");
            }
        }
    }
}
