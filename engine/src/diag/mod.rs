//! Diagnostics: one type for every error and warning, rendered like rustc.
//!
//! Every diagnostic has a code from [`codes`], a primary label at a span, optional
//! context labels, and typed notes (hint, "did you mean").

pub mod codes;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor};

use crate::syntax::ast::{FileId, Span};
pub use codes::Code;

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Stops the rule set from loading.
    Error,
    /// Reported, but the rule set loads.
    Warning,
}

/// A typed note under a diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// How to fix it.
    Hint(String),
    /// A close name that exists.
    DidYouMean(String),
    /// A plain remark.
    Note(String),
}

/// One error or warning about a source file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// Registry code.
    pub code: Code,
    /// One-line message.
    pub message: String,
    /// The offending place.
    pub span: Span,
    /// What to say at the offending place.
    pub label: String,
    /// Other places worth showing.
    pub context: Vec<(Span, String)>,
    /// Hints and suggestions.
    pub notes: Vec<Note>,
}

/// Reads a word of a closed vocabulary (severity, category, cadence) where it is
/// written; an unknown one is E-UNKNOWN_VALUE with "did you mean" and every word.
pub fn parse_word<T: crate::schema::Word>(word: &crate::syntax::ast::Ident) -> Result<T, Diagnostic> {
    T::parse(&word.name).ok_or_else(|| {
        let all: Vec<&str> = T::ALL.iter().map(|w| w.name()).collect();
        Diagnostic::error(codes::UNKNOWN_VALUE, format!("unknown {} `{}`", T::WHAT, word.name), word.span, format!("not a {}", T::WHAT))
            .suggest(&word.name, all.iter().copied())
            .hint(format!("a {} is one of {}", T::WHAT, all.join(", ")))
    })
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic { level: Level::Error, code, message: message.into(), span, label: label.into(), context: vec![], notes: vec![] }
    }

    /// A new warning.
    pub fn warning(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic { level: Level::Warning, ..Diagnostic::error(code, message, span, label) }
    }

    /// Adds a hint.
    pub fn hint(mut self, text: impl Into<String>) -> Self {
        self.notes.push(Note::Hint(text.into()));
        self
    }

    /// Adds a plain note.
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(Note::Note(text.into()));
        self
    }

    /// Adds "did you mean" when a candidate is close enough to `wrong`.
    pub fn suggest<'a>(mut self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(best) = closest(wrong, candidates) {
            self.notes.push(Note::DidYouMean(best.to_string()));
        }
        self
    }

    /// Adds a context label.
    pub fn with_context(mut self, span: Span, label: impl Into<String>) -> Self {
        self.context.push((span, label.into()));
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }
}

/// The closest candidate by edit distance, if it is plausibly a typo.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.len() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= limit && *d < c.len())
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c)
}

/// Levenshtein distance.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

/// The source files diagnostics point into.
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
    names: Vec<String>,
}

impl Sources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let name = name.into();
        self.names.push(name.clone());
        self.files.add(name, text.into())
    }

    /// How many files there are (ids are 0..len).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// No files at all?
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of a file.
    pub fn name(&self, file: FileId) -> &str {
        self.names.get(file).map(String::as_str).unwrap_or("<unknown>")
    }

    /// Every file as (name, text), in the order added.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.names.len()).map(|id| (self.name(id), self.text(id)))
    }

    /// The text of a file.
    pub fn text(&self, file: FileId) -> &str {
        self.files.get(file).map(|f| f.source().as_str()).unwrap_or("")
    }

    /// The text a span covers.
    pub fn slice(&self, span: Span) -> &str {
        self.text(span.file).get(span.start..span.end).unwrap_or("")
    }

    /// 1-based line and column of a span's start.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let text = self.text(span.file);
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        (line, col)
    }

    /// Renders diagnostics as plain text (tests, logs) or with colour (terminals).
    pub fn render(&self, diags: &[Diagnostic], color: bool) -> String {
        let config = term::Config::default();
        if !color {
            let mut out = String::new();
            for d in diags {
                let _ = term::emit_to_string(&mut out, &config, &self.files, &to_codespan(d));
            }
            return out;
        }
        let styles = term::Styles::default();
        let mut buf = termcolor::Buffer::ansi();
        {
            let mut writer = term::StylesWriter::new(&mut buf, &styles);
            for d in diags {
                let _ = term::emit_to_write_style(&mut writer, &config, &self.files, &to_codespan(d));
            }
        }
        String::from_utf8_lossy(buf.as_slice()).into_owned()
    }

    /// One line per diagnostic: `file:line:col: error[E0202]: message` (for editors and CI).
    pub fn render_short(&self, d: &Diagnostic) -> String {
        let (line, col) = self.line_col(d.span);
        let level = if d.is_error() { "error" } else { "warning" };
        format!("{}:{line}:{col}: {level}[{}]: {}", self.name(d.span.file), d.code.id, d.message)
    }
}

fn to_codespan(d: &Diagnostic) -> CsDiagnostic<FileId> {
    let base = match d.level {
        Level::Error => CsDiagnostic::error(),
        Level::Warning => CsDiagnostic::warning(),
    };
    let mut labels = vec![Label::primary(d.span.file, d.span.start..d.span.end).with_message(d.label.clone())];
    for (span, msg) in &d.context {
        labels.push(Label::secondary(span.file, span.start..span.end).with_message(msg.clone()));
    }
    let notes = d
        .notes
        .iter()
        .map(|n| match n {
            Note::Hint(h) => format!("hint: {h}"),
            Note::DidYouMean(s) => format!("help: did you mean `{s}`?"),
            Note::Note(s) => format!("note: {s}"),
        })
        .collect();
    base.with_code(d.code.id).with_message(d.message.clone()).with_labels(labels).with_notes(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut ids: Vec<&str> = codes::ALL.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "a diagnostic code is used twice");
    }

    #[test]
    fn suggestions_only_for_close_names() {
        assert_eq!(closest("phone_event", ["phone_events", "tours"]), Some("phone_events"));
        assert_eq!(closest("xyz", ["phone_events", "tours"]), None);
    }
}
