//! Runbook actions: what the `auto` lines of a runbook do when a finding is raised,
//! and the configuration that says how (channels, endpoints, modes and guardrails).
//!
//! The configuration is a TOML file of sections (`[defaults]`, `[storm]`,
//! `[channel.NAME]`, `[endpoint.NAME]`, `[action.NAME]`, `[tenant.ID]`), checked like
//! rules: every error is a diagnostic with its span (unknown key, channel or
//! endpoint, a template field a finding does not have, a secret that is not there),
//! and a runbook's `auto` line naming an action the file does not define is an error
//! at that line.
//!
//! Invariants:
//! - Secrets are references (`env:NAME`, `file:PATH`), resolved only when a request
//!   is signed; their values are never part of a configuration value, a payload, a
//!   log line or an API answer.
//! - An action goes live only when its runbook line says `on`, its configuration says
//!   `live` and its tenant does not cap it lower: the effective mode is the lowest of
//!   the three. Without a switch a runbook's `auto` line runs in dry-run (renders and
//!   records what it would send); `auto X off` never enqueues.
//! - Planning is pure: [`plan`] turns a stored finding and its runbook into the
//!   actions to enqueue, each with an idempotency key derived from (finding, epoch,
//!   runbook step, action, target), so planning twice yields the same keys.

use std::collections::BTreeMap;

use sha2::Digest as _;

use crate::diag::{codes, Diagnostic, Sources};
use crate::runbook::{Runbook, Switch};
use crate::store::Stored;
use crate::syntax::ast::Span;

/// How far an action may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// never enqueued
    Off,
    /// rendered and recorded as "would send"; nothing is sent
    DryRun,
    /// sent
    Live,
}

impl Mode {
    /// As written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::DryRun => "dry-run",
            Mode::Live => "live",
        }
    }

    /// The mode a word names.
    pub fn parse(text: &str) -> Option<Mode> {
        [Mode::Off, Mode::DryRun, Mode::Live].into_iter().find(|m| m.name() == text)
    }
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// a message through a channel (SMS, e-mail, chat), from a template
    Notify,
    /// a signed call to an endpoint
    Webhook,
    /// a ticket opened through an endpoint
    Ticket,
    /// a finding not acknowledged in time goes up the runbook's chain
    Escalate,
}

impl Kind {
    /// As written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Notify => "notify",
            Kind::Webhook => "webhook",
            Kind::Ticket => "ticket",
            Kind::Escalate => "escalate",
        }
    }

    /// The kind a word names.
    pub fn parse(text: &str) -> Option<Kind> {
        [Kind::Notify, Kind::Webhook, Kind::Ticket, Kind::Escalate].into_iter().find(|k| k.name() == text)
    }
}

/// Where a secret is: never the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// an environment variable
    Env(String),
    /// a file (its content, trimmed)
    File(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SecretRef {
    /// `env:NAME` or `file:PATH` (the reference, safe to show).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(n) => format!("env:{n}"),
            SecretRef::File(p) => format!("file:{p}"),
        }
    }

    /// The secret's text, or why it cannot be read (without the value).
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let value = match self {
            SecretRef::Env(n) => env(n).ok_or_else(|| format!("the environment variable `{n}` is not set"))?,
            SecretRef::File(p) => std::fs::read_to_string(p).map_err(|e| format!("cannot read the secret file `{p}`: {e}"))?,
        };
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(format!("the secret {} is empty", self.describe()));
        }
        Ok(value)
    }
}

/// A channel or an endpoint: where requests go.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// The URL requests are POSTed to.
    pub url: String,
    /// Signing secrets, newest first (several while a secret is rotated).
    pub secrets: Vec<SecretRef>,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// May it be a loopback or private address? (off: refused, against SSRF)
    pub allow_private: bool,
    /// Its section header.
    pub span: Span,
}

/// At most `count` deliveries per `window_us` for one action and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limit {
    /// How many.
    pub count: u32,
    /// Over how long (µs).
    pub window_us: i64,
}

/// A template over a finding's fields: `{site}`, `{evidence.silent_minutes}`, `{{` for `{`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(String),
}

/// The fields a template may name, besides `evidence.KEY`.
pub const FIELDS: [&str; 15] = [
    "id",
    "type",
    "severity",
    "category",
    "tenant",
    "site",
    "guard",
    "entity",
    "title",
    "runbook",
    "status",
    "first_seen",
    "last_seen",
    "link",
    "target",
];

impl Template {
    /// Renders with a finding's fields; a field the finding lacks renders as `-`.
    pub fn render(&self, fields: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(fields.get(f).map(String::as_str).unwrap_or("-")),
            }
        }
        out
    }
}

/// One action definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Its name (what `auto NAME` refers to).
    pub name: String,
    /// What it does.
    pub kind: Kind,
    /// The channel (notify) or endpoint (the others) it goes through.
    pub via: String,
    /// Who receives it: `guard`, `site`, `tenant` (the finding's), or a name such as
    /// `role:supervisor`; a runbook's `auto NAME:TARGET` overrides it.
    pub to: Option<String>,
    /// The message.
    pub template: Option<Template>,
    /// The configured mode (default dry-run).
    pub mode: Mode,
    /// Waits this long before it is due (µs); dropped if the finding is acknowledged,
    /// resolved or stops holding meanwhile.
    pub delay_us: i64,
    /// Escalation: each level waits this long more (µs); `None`: the runbook's SLA.
    pub after_us: Option<i64>,
    /// Rate limits per target.
    pub limits: Vec<Limit>,
    /// The role that must approve it first (`operator` or `admin`).
    pub approval: Option<String>,
    /// How long an approval may take (µs).
    pub approval_timeout_us: i64,
    /// When nobody decides in time: approve (true) or reject (false, the default).
    pub on_timeout_approve: bool,
    /// Critical actions pass the storm breaker (so do all actions of CRITICAL findings).
    pub critical: bool,
    /// Its section header.
    pub span: Span,
}

/// The storm breaker: while more than `site` findings were raised at one site (or
/// `tenant` at one tenant) within `window_us`, non-critical actions there wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Storm {
    /// Findings raised at one site within the window that trip it.
    pub site: u32,
    /// Findings raised at one tenant within the window that trip it.
    pub tenant: u32,
    /// The window (µs).
    pub window_us: i64,
}

/// A tenant's cap and kill switch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantPolicy {
    /// The highest mode its actions may have.
    pub mode: Option<Mode>,
    /// Nothing of this tenant is sent.
    pub kill: bool,
    /// The action that delivers its published reports (instead of the default's).
    pub reports: Option<String>,
}

/// A checked actions configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The global kill switch as configured (the API can also throw it).
    pub kill: bool,
    /// The console's base URL, for links in payloads.
    pub link: Option<String>,
    /// Attempts before an action goes to the dead-letter list.
    pub max_attempts: u32,
    /// The first retry's delay (wall clock, µs); it doubles each attempt, with jitter.
    pub backoff_us: i64,
    /// The longest retry delay (µs).
    pub backoff_max_us: i64,
    /// The storm breaker.
    pub storm: Storm,
    /// Channels by name.
    pub channels: BTreeMap<String, Target>,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, Target>,
    /// Actions by name.
    pub actions: BTreeMap<String, Action>,
    /// Tenants' caps and switches.
    pub tenants: BTreeMap<String, TenantPolicy>,
    /// The action that delivers published client reports (a tenant may name its own).
    pub reports: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kill: false,
            link: None,
            max_attempts: 6,
            backoff_us: 2_000_000,
            backoff_max_us: 600_000_000,
            storm: Storm { site: 5, tenant: 20, window_us: 600_000_000 },
            channels: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            actions: BTreeMap::new(),
            tenants: BTreeMap::new(),
            reports: None,
        }
    }
}

impl Config {
    /// The channel or endpoint an action goes through.
    pub fn target_of(&self, action: &Action) -> Option<&Target> {
        match action.kind {
            Kind::Notify => self.channels.get(&action.via),
            _ => self.endpoints.get(&action.via),
        }
    }
}

// ------------------------------------------------------------------ the file format

/// A value as written, with where it is.
#[derive(Debug, Clone)]
enum Value {
    /// A string: its text, and for each byte of the text the file offset it came from.
    Str(String, Vec<usize>),
    Int(i64),
    Bool(bool),
    List(Vec<(String, Span)>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    key_span: Span,
    value: Value,
    value_span: Span,
}

#[derive(Debug, Clone)]
struct Section {
    /// `action.sms_guard` -> ("action", Some("sms_guard"))
    kind: String,
    name: Option<String>,
    span: Span,
    entries: Vec<Entry>,
}

fn err(span: Span, message: impl Into<String>, label: impl Into<String>) -> Diagnostic {
    Diagnostic::error(codes::ACTION_CONFIG, message, span, label)
}

/// Splits the file into sections of `key = value` lines.
fn sections(file: usize, text: &str) -> Result<Vec<Section>, Vec<Diagnostic>> {
    let mut out: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let content = strip_comment(body);
        let trimmed = content.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lead = content.len() - content.trim_start().len();
        let span = |a: usize, b: usize| Span { file, start: start + a, end: start + b };
        if let Some(head) = trimmed.strip_prefix('[') {
            let whole = span(lead, lead + trimmed.len());
            let Some(head) = head.strip_suffix(']') else {
                errors.push(err(whole, "a section header ends with `]`", "no `]`"));
                continue;
            };
            let (kind, name) = match head.trim().split_once('.') {
                Some((k, n)) => (k.trim().to_string(), Some(n.trim().trim_matches('"').to_string())),
                None => (head.trim().to_string(), None),
            };
            out.push(Section { kind, name, span: whole, entries: Vec::new() });
            continue;
        }
        let Some(eq) = content.find('=') else {
            errors.push(err(span(lead, lead + trimmed.len()), "expected `key = value` or a `[section]` header", "here"));
            continue;
        };
        let key = content[..eq].trim().to_string();
        let key_span = span(lead, lead + key.len().max(1));
        let raw = &content[eq + 1..];
        let vlead = eq + 1 + (raw.len() - raw.trim_start().len());
        let raw = raw.trim();
        let value_span = span(vlead, vlead + raw.len().max(1));
        let Some(section) = out.last_mut() else {
            errors.push(err(key_span, "settings belong to a section such as `[defaults]` or `[action.sms_guard]`", "outside any section"));
            continue;
        };
        if section.entries.iter().any(|e| e.key == key) {
            errors.push(err(key_span, format!("`{key}` is set twice in this section"), "again here"));
            continue;
        }
        match value(raw, start + vlead, file) {
            Ok(value) => section.entries.push(Entry { key, key_span, value, value_span }),
            Err((message, at)) => errors.push(err(at, message, "here")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One value: a string (with `\"`, `\\`, `\n` escapes), a whole number, true/false,
/// or a one-line list of strings.
fn value(raw: &str, at: usize, file: usize) -> Result<Value, (String, Span)> {
    let whole = Span { file, start: at, end: at + raw.len().max(1) };
    if raw.starts_with('"') {
        let (s, offsets, used) = string(raw, at, file)?;
        if used != raw.len() {
            return Err(("unexpected text after the string".into(), Span { file, start: at + used, end: at + raw.len() }));
        }
        return Ok(Value::Str(s, offsets));
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(("a list must end with `]` on the same line".into(), whole));
        };
        let mut items = Vec::new();
        let mut pos = 1;
        let mut rest = inner;
        loop {
            let skip = rest.len() - rest.trim_start().len();
            pos += skip;
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            if !rest.starts_with('"') {
                return Err(("list items are quoted strings".into(), Span { file, start: at + pos, end: at + pos + 1 }));
            }
            let (s, _, used) = string(rest, at + pos, file)?;
            items.push((s, Span { file, start: at + pos, end: at + pos + used }));
            pos += used;
            rest = &rest[used..];
            let skip = rest.len() - rest.trim_start().len();
            pos += skip;
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => {
                    rest = r;
                    pos += 1;
                }
                None if rest.is_empty() => break,
                None => return Err(("expected `,` between list items".into(), Span { file, start: at + pos, end: at + pos + 1 })),
            }
        }
        return Ok(Value::List(items));
    }
    match raw {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    raw.parse::<i64>()
        .map(Value::Int)
        .map_err(|_| (format!("`{raw}` is not a value: quote text (\"{raw}\"), or write a whole number, true or false"), whole))
}

/// A quoted string at the start of `raw`: (text, file offset of each text byte, bytes used).
fn string(raw: &str, at: usize, file: usize) -> Result<(String, Vec<usize>, usize), (String, Span)> {
    let mut out = String::new();
    let mut offsets = Vec::new();
    let mut chars = raw.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, offsets, i + 1)),
            '\\' => {
                let (j, e) =
                    chars.next().ok_or_else(|| ("unterminated string".to_string(), Span { file, start: at, end: at + raw.len() }))?;
                let decoded = match e {
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    't' => '\t',
                    other => {
                        return Err((
                            format!("unknown escape `\\{other}` (write \\\", \\\\, \\n or \\t)"),
                            Span { file, start: at + i, end: at + j + other.len_utf8() },
                        ))
                    }
                };
                offsets.extend(std::iter::repeat_n(at + i, decoded.len_utf8()));
                out.push(decoded);
            }
            c => {
                offsets.extend(std::iter::repeat_n(at + i, c.len_utf8()));
                out.push(c);
            }
        }
    }
    Err(("unterminated string".into(), Span { file, start: at, end: at + raw.len() }))
}

/// The line without a `#` comment (a `#` inside quotes stays).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if quoted && !escaped => {
                escaped = true;
                continue;
            }
            '"' if !escaped => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// `30s`, `10m`, `2h`, `1d` in µs.
pub fn parse_duration(text: &str) -> Option<i64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(unit_at);
    let n: i64 = n.parse().ok()?;
    let scale = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(scale).filter(|v| *v > 0)
}

/// Reads a section's settings by key, reporting unknown keys and wrong types.
struct Reader<'a> {
    section: &'a Section,
    known: &'static [&'static str],
    errors: &'a mut Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    fn new(section: &'a Section, known: &'static [&'static str], errors: &'a mut Vec<Diagnostic>) -> Reader<'a> {
        for e in &section.entries {
            if !known.contains(&e.key.as_str()) {
                let what = match &section.name {
                    Some(_) => format!("[{}.*]", section.kind),
                    None => format!("[{}]", section.kind),
                };
                errors.push(
                    err(e.key_span, format!("unknown setting `{}` in {what}", e.key), "not a setting here")
                        .suggest(&e.key, known.iter().copied())
                        .note(format!("the settings of {what} are: {}", known.join(", "))),
                );
            }
        }
        Reader { section, known, errors }
    }

    fn entry(&self, key: &str) -> Option<&'a Entry> {
        debug_assert!(self.known.contains(&key));
        self.section.entries.iter().find(|e| e.key == key)
    }

    fn text(&mut self, key: &str) -> Option<(String, Span, Vec<usize>)> {
        let e = self.entry(key)?;
        match &e.value {
            Value::Str(s, offsets) => Some((s.clone(), e.value_span, offsets.clone())),
            _ => {
                self.errors.push(err(e.value_span, format!("`{key}` takes quoted text"), "not text"));
                None
            }
        }
    }

    fn int(&mut self, key: &str, min: i64) -> Option<i64> {
        let e = self.entry(key)?;
        match &e.value {
            Value::Int(n) if *n >= min => Some(*n),
            _ => {
                self.errors.push(err(e.value_span, format!("`{key}` takes a whole number, at least {min}"), "not such a number"));
                None
            }
        }
    }

    fn flag(&mut self, key: &str) -> Option<bool> {
        let e = self.entry(key)?;
        match &e.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.errors.push(err(e.value_span, format!("`{key}` takes true or false"), "not true or false"));
                None
            }
        }
    }

    fn duration(&mut self, key: &str) -> Option<i64> {
        let (text, span, _) = self.text(key)?;
        let d = parse_duration(&text);
        if d.is_none() {
            self.errors.push(err(span, format!("`{key}` takes a duration such as \"30s\", \"10m\", \"2h\" or \"1d\""), "not a duration"));
        }
        d
    }

    fn mode(&mut self, key: &str) -> Option<Mode> {
        let (text, span, _) = self.text(key)?;
        let m = Mode::parse(&text);
        if m.is_none() {
            self.errors.push(err(span, format!("`{text}` is not a mode: write \"off\", \"dry-run\" or \"live\""), "not a mode"));
        }
        m
    }

    /// A string or a list of strings, with their spans.
    fn texts(&mut self, key: &str) -> Vec<(String, Span)> {
        let Some(e) = self.entry(key) else { return Vec::new() };
        match &e.value {
            Value::Str(s, _) => vec![(s.clone(), e.value_span)],
            Value::List(items) => items.clone(),
            _ => {
                self.errors.push(err(e.value_span, format!("`{key}` takes quoted text or a list of it"), "not text"));
                Vec::new()
            }
        }
    }

    fn require(&mut self, key: &str, example: &str) {
        if self.entry(key).is_none() {
            let what = format!("[{}.{}]", self.section.kind, self.section.name.clone().unwrap_or_default());
            self.errors.push(err(self.section.span, format!("{what} needs `{key}`"), "in this section").hint(format!("{key} = {example}")));
        }
    }
}

/// Parses a template, reporting unknown fields at their place in the file.
fn template(text: &str, offsets: &[usize], span: Span, errors: &mut Vec<Diagnostic>) -> Template {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let at = |i: usize| offsets.get(i).copied().unwrap_or(span.start);
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("{{") || rest.starts_with("}}") {
            literal.push(bytes[i] as char);
            i += 2;
        } else if rest.starts_with('{') {
            let Some(close) = rest.find('}') else {
                errors.push(
                    Diagnostic::error(
                        codes::TEMPLATE_FIELD,
                        "a `{` in a template opens a field that is never closed",
                        Span { file: span.file, start: at(i), end: at(i) + 1 },
                        "opened here",
                    )
                    .hint("write `{{` for a literal brace"),
                );
                break;
            };
            let field = rest[1..close].trim().to_string();
            let field_span = Span { file: span.file, start: at(i), end: at(i + close) + 1 };
            let ok = FIELDS.contains(&field.as_str()) || field.strip_prefix("evidence.").is_some_and(|k| !k.is_empty());
            if !ok {
                errors.push(
                    Diagnostic::error(codes::TEMPLATE_FIELD, format!("a finding has no field `{field}`"), field_span, "unknown field")
                        .suggest(&field, FIELDS.iter().copied())
                        .note(format!("fields: {}, and evidence.KEY", FIELDS.join(", "))),
                );
            }
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Field(field));
            i += close + 1;
        } else if rest.starts_with('}') {
            errors.push(
                Diagnostic::error(
                    codes::TEMPLATE_FIELD,
                    "a `}` in a template closes no field",
                    Span { file: span.file, start: at(i), end: at(i) + 1 },
                    "here",
                )
                .hint("write `}}` for a literal brace"),
            );
            i += 1;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            literal.push(c);
            i += c.len_utf8();
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Template { parts }
}

const DEFAULTS_KEYS: &[&str] = &["kill", "link", "max_attempts", "backoff", "backoff_max", "reports"];
const STORM_KEYS: &[&str] = &["site", "tenant", "window"];
const TARGET_KEYS: &[&str] = &["url", "secret", "timeout", "allow_private"];
const ACTION_KEYS: &[&str] = &[
    "kind",
    "channel",
    "endpoint",
    "to",
    "template",
    "mode",
    "delay",
    "after",
    "limits",
    "approval",
    "approval_timeout",
    "on_timeout",
    "critical",
];
const TENANT_KEYS: &[&str] = &["mode", "kill", "reports"];
const SECTIONS: &[&str] = &["defaults", "storm", "channel", "endpoint", "action", "tenant"];

/// Parses and checks an actions configuration (the file is added to `sources`).
/// Secrets are looked up with `env` (the process environment in production) and
/// must exist; their values are not kept.
pub fn load(sources: &mut Sources, name: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<Diagnostic>> {
    let file = sources.add(name, text);
    let sections = sections(file, text)?;
    let mut errors = Vec::new();
    let mut config = Config::default();
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    // `reports = "ACTION"` lines, checked once every action is known.
    let mut report_refs: Vec<(String, Span)> = Vec::new();
    for s in &sections {
        let id = (s.kind.clone(), s.name.clone());
        if seen.contains(&id) {
            errors.push(err(s.span, "this section appears twice", "again here"));
            continue;
        }
        seen.push(id);
        let named = matches!(s.kind.as_str(), "channel" | "endpoint" | "action" | "tenant");
        if !SECTIONS.contains(&s.kind.as_str()) {
            errors.push(
                err(s.span, format!("unknown section `[{}]`", s.kind), "not a section")
                    .suggest(&s.kind, SECTIONS.iter().copied())
                    .note("sections: [defaults], [storm], [channel.NAME], [endpoint.NAME], [action.NAME], [tenant.ID]"),
            );
            continue;
        }
        if named != s.name.is_some() || s.name.as_deref() == Some("") {
            let shape = if named { format!("[{}.NAME]", s.kind) } else { format!("[{}]", s.kind) };
            errors.push(err(s.span, format!("write this section as {shape}"), "here"));
            continue;
        }
        let name = s.name.clone().unwrap_or_default();
        match s.kind.as_str() {
            "defaults" => {
                let mut r = Reader::new(s, DEFAULTS_KEYS, &mut errors);
                config.kill = r.flag("kill").unwrap_or(false);
                config.link = r.text("link").map(|t| t.0.trim_end_matches('/').to_string());
                config.max_attempts = r.int("max_attempts", 1).map_or(config.max_attempts, |n| n.min(100) as u32);
                config.backoff_us = r.duration("backoff").unwrap_or(config.backoff_us);
                config.backoff_max_us = r.duration("backoff_max").unwrap_or(config.backoff_max_us);
                if let Some((name, span, _)) = r.text("reports") {
                    report_refs.push((name.clone(), span));
                    config.reports = Some(name);
                }
            }
            "storm" => {
                let mut r = Reader::new(s, STORM_KEYS, &mut errors);
                config.storm.site = r.int("site", 1).map_or(config.storm.site, |n| n.min(u32::MAX as i64) as u32);
                config.storm.tenant = r.int("tenant", 1).map_or(config.storm.tenant, |n| n.min(u32::MAX as i64) as u32);
                config.storm.window_us = r.duration("window").unwrap_or(config.storm.window_us);
            }
            "channel" | "endpoint" => {
                let mut r = Reader::new(s, TARGET_KEYS, &mut errors);
                r.require("url", "\"https://hooks.example.com/vigil\"");
                let url = r.text("url");
                if let Some((u, span, _)) = &url {
                    if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() < 10 {
                        r.errors.push(err(*span, "a URL starts with https:// (or http://)", "not a URL"));
                    }
                }
                let mut secrets = Vec::new();
                for (text, span) in r.texts("secret") {
                    let secret = match text.split_once(':') {
                        Some(("env", n)) if !n.is_empty() => SecretRef::Env(n.to_string()),
                        Some(("file", p)) if !p.is_empty() => SecretRef::File(p.to_string()),
                        _ => {
                            r.errors.push(
                                err(span, "a secret is a reference: \"env:NAME\" or \"file:PATH\"", "not a reference")
                                    .note("secrets never live in this file; write where the service finds them"),
                            );
                            continue;
                        }
                    };
                    if let Err(why) = secret.resolve(env) {
                        r.errors.push(Diagnostic::error(codes::MISSING_SECRET, format!("missing secret: {why}"), span, "this secret"));
                    }
                    secrets.push(secret);
                }
                let timeout_ms = r.duration("timeout").map_or(5_000, |us| (us / 1000) as u64);
                let allow_private = r.flag("allow_private").unwrap_or(false);
                let target = Target {
                    name: name.clone(),
                    url: url.map(|u| u.0).unwrap_or_default(),
                    secrets,
                    timeout_ms,
                    allow_private,
                    span: s.span,
                };
                if s.kind == "channel" {
                    config.channels.insert(name, target);
                } else {
                    config.endpoints.insert(name, target);
                }
            }
            "tenant" => {
                let mut r = Reader::new(s, TENANT_KEYS, &mut errors);
                let reports = r.text("reports").map(|(name, span, _)| {
                    report_refs.push((name.clone(), span));
                    name
                });
                let policy = TenantPolicy { mode: r.mode("mode"), kill: r.flag("kill").unwrap_or(false), reports };
                config.tenants.insert(name, policy);
            }
            _ => {
                if let Some(a) = action(s, &name, &mut errors) {
                    config.actions.insert(name, a);
                }
            }
        }
    }
    // Report deliveries name a defined notify or webhook action.
    for (name, span) in &report_refs {
        match config.actions.get(name) {
            None => errors.push(
                Diagnostic::error(
                    codes::UNKNOWN_ACTION,
                    format!("no action `{name}` is defined to deliver reports"),
                    *span,
                    "unknown action",
                )
                .suggest(name, config.actions.keys().map(String::as_str)),
            ),
            Some(a) if !matches!(a.kind, Kind::Notify | Kind::Webhook) => errors.push(err(
                *span,
                format!("reports are delivered by a notify or webhook action; `{name}` is {}", a.kind.name()),
                "not a delivery",
            )),
            Some(_) => {}
        }
    }
    // Every channel and endpoint an action names exists.
    for a in config.actions.values() {
        let (what, known) = match a.kind {
            Kind::Notify => ("channel", &config.channels),
            _ => ("endpoint", &config.endpoints),
        };
        if !a.via.is_empty() && !known.contains_key(&a.via) {
            let span = sections
                .iter()
                .find(|s| s.kind == "action" && s.name.as_deref() == Some(&a.name))
                .and_then(|s| s.entries.iter().find(|e| e.key == what))
                .map_or(a.span, |e| e.value_span);
            errors.push(
                Diagnostic::error(codes::UNKNOWN_TARGET, format!("no {what} `{}` is defined", a.via), span, format!("unknown {what}"))
                    .suggest(&a.via, known.keys().map(String::as_str))
                    .hint(format!("define it in a section [{what}.{}]", a.via)),
            );
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// One `[action.NAME]` section.
fn action(s: &Section, name: &str, errors: &mut Vec<Diagnostic>) -> Option<Action> {
    let mut r = Reader::new(s, ACTION_KEYS, errors);
    r.require("kind", "\"notify\"");
    let kind = r.text("kind").and_then(|(k, span, _)| {
        let kind = Kind::parse(&k);
        if kind.is_none() {
            r.errors.push(err(
                span,
                format!("`{k}` is not a kind of action: write \"notify\", \"webhook\", \"ticket\" or \"escalate\""),
                "not a kind",
            ));
        }
        kind
    });
    let channel = r.text("channel");
    let endpoint = r.text("endpoint");
    let via = match kind {
        Some(Kind::Notify) => {
            r.require("channel", "\"sms\"");
            if let Some((_, span, _)) = &endpoint {
                r.errors.push(err(*span, "a notify action goes through a `channel`, not an endpoint", "not for notify"));
            }
            channel.map(|c| c.0)
        }
        Some(_) => {
            r.require("endpoint", "\"ops_webhook\"");
            if let Some((_, span, _)) = &channel {
                r.errors.push(err(*span, "only notify actions take a `channel`; this one goes through an `endpoint`", "not for this kind"));
            }
            endpoint.map(|e| e.0)
        }
        None => None,
    };
    let to = r.text("to").map(|t| t.0);
    let template = r.text("template").map(|(text, span, offsets)| template(&text, &offsets, span, r.errors));
    if kind == Some(Kind::Notify) && template.is_none() {
        r.require("template", "\"Site {site}: {title}\"");
    }
    let mode = r.mode("mode").unwrap_or(Mode::DryRun);
    let delay_us = r.duration("delay").unwrap_or(0);
    let after_us = match r.text("after") {
        Some((t, _, _)) if t == "sla" => None,
        Some((t, span, _)) => {
            let d = parse_duration(&t);
            if d.is_none() {
                r.errors.push(err(
                    span,
                    "`after` takes \"sla\" (the runbook's escalation SLA) or a duration such as \"15m\"",
                    "not a duration",
                ));
            }
            d
        }
        None => None,
    };
    if kind != Some(Kind::Escalate) {
        if let Some(e) = r.entry("after") {
            r.errors.push(err(e.key_span, "only escalate actions wait `after`; others take a `delay`", "not for this kind"));
        }
    }
    let mut limits = Vec::new();
    for (text, span) in r.texts("limits") {
        let limit = text
            .split_once('/')
            .and_then(|(n, w)| Some(Limit { count: n.trim().parse().ok().filter(|n| *n > 0)?, window_us: parse_duration(w.trim())? }));
        match limit {
            Some(l) => limits.push(l),
            None => {
                r.errors.push(err(span, format!("`{text}` is not a limit such as \"1/10m\" (at most 1 per 10 minutes)"), "not a limit"))
            }
        }
    }
    let approval = r.text("approval").and_then(|(role, span, _)| {
        if role == "operator" || role == "admin" {
            Some(role)
        } else {
            r.errors.push(err(span, format!("`{role}` is not a role that approves: write \"operator\" or \"admin\""), "not a role"));
            None
        }
    });
    let approval_timeout_us = r.duration("approval_timeout").unwrap_or(15 * 60_000_000);
    let on_timeout_approve = match r.text("on_timeout") {
        Some((t, _, _)) if t == "reject" => false,
        Some((t, _, _)) if t == "approve" => true,
        Some((t, span, _)) => {
            r.errors.push(err(span, format!("`{t}` is not what happens on timeout: write \"reject\" or \"approve\""), "here"));
            false
        }
        None => false,
    };
    let critical = r.flag("critical").unwrap_or(false);
    Some(Action {
        name: name.to_string(),
        kind: kind?,
        via: via.unwrap_or_default(),
        to,
        template,
        mode,
        delay_us,
        after_us,
        limits,
        approval,
        approval_timeout_us,
        on_timeout_approve,
        critical,
        span: s.span,
    })
}

/// The runbooks' `auto` lines against the configuration: each names a defined action,
/// and an escalation or a notification has someone to go to.
pub fn check_runbooks(config: &Config, runbooks: &[Runbook]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for book in runbooks {
        for auto in &book.auto_actions {
            let Some(action) = config.actions.get(&auto.name) else {
                out.push(
                    Diagnostic::error(
                        codes::UNKNOWN_ACTION,
                        format!("no action `{}` is defined in the actions configuration", auto.name),
                        auto.span,
                        "unknown action",
                    )
                    .suggest(&auto.name, config.actions.keys().map(String::as_str))
                    .hint(format!(
                        "define it in a section [action.{}], or write `auto {} off`",
                        auto.name,
                        auto.label()
                    )),
                );
                continue;
            };
            if auto.target.is_none() && action.to.is_none() && action.kind == Kind::Escalate {
                out.push(
                    Diagnostic::error(
                        codes::UNKNOWN_ACTION,
                        format!("escalate to whom? `{}` names no role or person", auto.name),
                        auto.span,
                        "no target",
                    )
                    .hint(format!("write `auto {}:ops_manager`, or `to = \"ops_manager\"` in [action.{}]", auto.name, auto.name)),
                );
            }
        }
    }
    out
}

// ------------------------------------------------------------------ planning

/// An action to enqueue for a finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Planned {
    /// The idempotency key: (finding, epoch, runbook step, action, target).
    pub key: String,
    /// The finding.
    pub finding_id: i64,
    /// The finding's lifecycle epoch (1, and one more each time it holds again).
    pub epoch: i64,
    /// The finding's tenant and site.
    pub tenant_id: String,
    /// The site.
    pub site_id: String,
    /// The runbook.
    pub runbook: String,
    /// The runbook step: the `auto` line's place among the runbook's (1-based).
    pub step: i64,
    /// The action's name.
    pub action: String,
    /// Its kind.
    pub kind: Kind,
    /// The channel or endpoint it goes through.
    pub via: String,
    /// Who or what receives it.
    pub target: String,
    /// The effective mode (never off: those are not planned).
    pub mode: Mode,
    /// When it is due on the run's clock (µs).
    pub due_us: i64,
    /// Passes the storm breaker.
    pub critical: bool,
    /// The role that must approve it.
    pub approval: Option<String>,
    /// The payload (no secret in it).
    pub payload: String,
    /// SHA-256 of the payload, hex.
    pub payload_hash: String,
}

/// A stored finding's fields for templates.
pub fn fields(f: &Stored, link: Option<&str>, target: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("id", f.id.to_string());
    put("type", f.finding_type.clone());
    put("severity", f.severity.clone());
    put("category", f.category.clone());
    put("tenant", f.tenant_id.clone());
    put("site", f.site_id.clone());
    put("title", f.title.clone());
    put("runbook", f.runbook.clone());
    put("status", f.status.name().to_string());
    put("first_seen", f.first_seen.clone());
    put("last_seen", f.last_seen.clone());
    put("target", target.to_string());
    if let Some(g) = &f.guard_id {
        put("guard", g.clone());
    }
    if let Some(e) = &f.entity_id {
        put("entity", e.clone());
    }
    if let Some(base) = link {
        put("link", finding_link(base, f.id));
    }
    if let Some(evidence) = f.evidence.as_object() {
        for (k, v) in evidence {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            put(&format!("evidence.{k}"), text);
        }
    }
    m
}

/// The console's link to a finding.
pub fn finding_link(base: &str, id: i64) -> String {
    format!("{base}/#finding={id}")
}

/// Hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The actions to enqueue for a finding raised (or holding again, a new epoch) at
/// `base_us`: one per `auto` line of its runbook that is not off. The k-th escalation
/// of the chain is due k escalation periods after `base_us`; the others after their delay.
pub fn plan(config: &Config, book: &Runbook, f: &Stored, epoch: i64, base_us: i64) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut level = 0;
    let cap = config.tenants.get(&f.tenant_id).and_then(|t| t.mode).unwrap_or(Mode::Live);
    for (i, auto) in book.auto_actions.iter().enumerate() {
        let Some(action) = config.actions.get(&auto.name) else { continue };
        let switch = match auto.switch {
            Switch::Off => Mode::Off,
            Switch::Default => Mode::DryRun,
            Switch::On => Mode::Live,
        };
        let mode = switch.min(action.mode).min(cap);
        if action.kind == Kind::Escalate {
            level += 1;
        }
        if mode == Mode::Off {
            continue;
        }
        let to = auto.target.clone().or_else(|| action.to.clone()).unwrap_or_else(|| match action.kind {
            Kind::Notify => "guard".into(),
            _ => action.via.clone(),
        });
        let target = match to.as_str() {
            "guard" => format!("guard:{}", f.guard_id.as_deref().unwrap_or("-")),
            "site" => format!("site:{}", f.site_id),
            "tenant" => format!("tenant:{}", f.tenant_id),
            other => other.to_string(),
        };
        let due_us = match action.kind {
            Kind::Escalate => {
                let period = action.after_us.unwrap_or(book.escalate_after_minutes * 60_000_000);
                base_us + period * level
            }
            _ => base_us + action.delay_us,
        };
        let fields = fields(f, config.link.as_deref(), &target);
        let text = action.template.as_ref().map(|t| t.render(&fields));
        let step = i as i64 + 1;
        let key = format!("f{}/e{epoch}/{}#{step}/{}/{target}", f.id, book.id, action.name);
        let mut payload = serde_json::json!({
            "type": format!("vigil.action.{}", action.kind.name()),
            "key": key,
            "action": action.name,
            "target": target,
            "finding": {
                "id": f.id,
                "type": f.finding_type,
                "severity": f.severity,
                "tenant": f.tenant_id,
                "site": f.site_id,
            },
        });
        if let Some(text) = &text {
            payload["text"] = serde_json::Value::String(text.clone());
        }
        if action.kind == Kind::Escalate {
            payload["level"] = serde_json::json!(level);
        }
        if let Some(base) = &config.link {
            payload["link"] = serde_json::Value::String(finding_link(base, f.id));
        }
        let payload = payload.to_string();
        out.push(Planned {
            payload_hash: sha256_hex(&payload),
            payload,
            key,
            finding_id: f.id,
            epoch,
            tenant_id: f.tenant_id.clone(),
            site_id: f.site_id.clone(),
            runbook: book.id.clone(),
            step,
            action: action.name.clone(),
            kind: action.kind,
            via: action.via.clone(),
            target,
            mode,
            due_us,
            critical: action.critical || f.severity == "CRITICAL",
            approval: action.approval.clone(),
        });
    }
    out
}

/// What a client report is: its id, whose it is and the period it covers (what the
/// portal lists, and what its delivery carries).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportHeader {
    /// Report id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// One site only.
    pub site: Option<String>,
    /// daily, monthly or on-demand.
    pub kind: String,
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
}

/// The delivery of a published report through the tenant's (or the default) report
/// action, keyed `report/<id>/<action>/<target>` so a report is delivered once. Report
/// deliveries belong to no finding (finding 0, runbook `REPORT`). `None` when no action
/// delivers this tenant's reports or its mode is off.
pub fn plan_report(config: &Config, r: &ReportHeader, due_us: i64) -> Option<Planned> {
    let policy = config.tenants.get(&r.tenant);
    let name = policy.and_then(|p| p.reports.clone()).or_else(|| config.reports.clone())?;
    let action = config.actions.get(&name)?;
    let mode = action.mode.min(policy.and_then(|p| p.mode).unwrap_or(Mode::Live));
    if mode == Mode::Off {
        return None;
    }
    let target = match action.to.as_deref() {
        Some("tenant") | None if action.kind == Kind::Notify => format!("tenant:{}", r.tenant),
        Some(other) => other.to_string(),
        None => action.via.clone(),
    };
    let title = format!("Activity report {} to {}", r.from, r.to);
    let link = config.link.as_ref().map(|base| format!("{base}/api/v1/reports/{}/pdf", r.id));
    let mut fields = BTreeMap::new();
    for (k, v) in
        [("id", r.id.clone()), ("type", "REPORT".to_string()), ("tenant", r.tenant.clone()), ("title", title), ("target", target.clone())]
    {
        fields.insert(k.to_string(), v);
    }
    fields.insert("site".into(), r.site.clone().unwrap_or_else(|| "*".into()));
    fields.insert("first_seen".into(), r.from.clone());
    fields.insert("last_seen".into(), r.to.clone());
    if let Some(l) = &link {
        fields.insert("link".into(), l.clone());
    }
    let key = format!("report/{}/{}/{target}", r.id, action.name);
    let mut payload = serde_json::json!({
        "type": "vigil.report",
        "key": key,
        "action": action.name,
        "target": target,
        "report": { "id": r.id, "tenant": r.tenant, "site": r.site, "kind": r.kind, "from": r.from, "to": r.to },
    });
    if let Some(text) = action.template.as_ref().map(|t| t.render(&fields)) {
        payload["text"] = serde_json::Value::String(text);
    }
    if let Some(l) = link {
        payload["link"] = serde_json::Value::String(l);
    }
    let payload = payload.to_string();
    Some(Planned {
        payload_hash: sha256_hex(&payload),
        payload,
        key,
        finding_id: 0,
        epoch: 0,
        tenant_id: r.tenant.clone(),
        site_id: r.site.clone().unwrap_or_else(|| "*".into()),
        runbook: "REPORT".into(),
        step: 0,
        action: action.name.clone(),
        kind: action.kind,
        via: action.via.clone(),
        target,
        mode,
        due_us,
        critical: action.critical,
        approval: action.approval.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
# how actions reach people
[defaults]
link = "https://vigil.example.com/"
max_attempts = 4

[storm]
site = 3
window = "10m"

[channel.sms]
url = "https://sms.example.com/send"
secret = ["env:SMS_NEW", "env:SMS_OLD"]
timeout = "3s"

[endpoint.pager]
url = "https://pager.example.com/hook"
secret = "env:PAGER"

[action.sms_guard]
kind = "notify"
channel = "sms"
to = "guard"
template = "Site {site}: {title} ({evidence.silent_minutes} min) {{ok}}"
mode = "live"
delay = "2m"
limits = ["1/10m", "3/1h"]

[action.escalate]
kind = "escalate"
endpoint = "pager"
approval = "admin"
approval_timeout = "5m"
on_timeout = "approve"

[tenant.T9]
mode = "dry-run"
"#;

    fn env(name: &str) -> Option<String> {
        matches!(name, "SMS_NEW" | "SMS_OLD" | "PAGER").then(|| "whsec_c2VjcmV0".to_string())
    }

    fn load_text(text: &str) -> Result<Config, (Sources, Vec<Diagnostic>)> {
        let mut sources = Sources::new();
        load(&mut sources, "actions.toml", text, &env).map_err(|e| (sources, e))
    }

    fn errors(text: &str) -> String {
        match load_text(text) {
            Ok(_) => panic!("expected errors"),
            Err((sources, diags)) => diags.iter().map(|d| sources.render_short(d)).collect::<Vec<_>>().join("\n"),
        }
    }

    #[test]
    fn a_full_configuration_loads() {
        let c = load_text(GOOD).map_err(|(s, d)| s.render(&d, false)).expect("loads");
        assert_eq!(c.link.as_deref(), Some("https://vigil.example.com"));
        assert_eq!(c.max_attempts, 4);
        assert_eq!(c.storm, Storm { site: 3, tenant: 20, window_us: 600_000_000 });
        let sms = &c.channels["sms"];
        assert_eq!(sms.secrets, vec![SecretRef::Env("SMS_NEW".into()), SecretRef::Env("SMS_OLD".into())]);
        assert_eq!(sms.timeout_ms, 3000);
        let a = &c.actions["sms_guard"];
        assert_eq!((a.kind, a.mode, a.delay_us), (Kind::Notify, Mode::Live, 120_000_000));
        assert_eq!(a.limits, vec![Limit { count: 1, window_us: 600_000_000 }, Limit { count: 3, window_us: 3_600_000_000 }]);
        let e = &c.actions["escalate"];
        assert_eq!(
            (e.kind, e.mode, e.approval.as_deref(), e.approval_timeout_us, e.on_timeout_approve),
            (Kind::Escalate, Mode::DryRun, Some("admin"), 300_000_000, true)
        );
        assert_eq!(c.tenants["T9"].mode, Some(Mode::DryRun));
        // Secrets are references: their values are nowhere in the configuration.
        assert!(!format!("{c:?}").contains("whsec_"));
    }

    #[test]
    fn errors_point_at_their_place() {
        let text = GOOD.replace("channel = \"sms\"", "channel = \"smss\"");
        assert_eq!(errors(&text), "actions.toml:22:11: error[E0703]: no channel `smss` is defined");
        let text = GOOD.replace("{evidence.silent_minutes}", "{sight}");
        assert_eq!(errors(&text), "actions.toml:24:35: error[E0705]: a finding has no field `sight`");
        let text = GOOD.replace("env:PAGER", "env:NOPE");
        assert_eq!(errors(&text), "actions.toml:18:10: error[E0704]: missing secret: the environment variable `NOPE` is not set");
        let text = GOOD.replace("max_attempts = 4", "max_attempt = 4");
        assert_eq!(errors(&text), "actions.toml:5:1: error[E0701]: unknown setting `max_attempt` in [defaults]");
        assert_eq!(
            errors("[defaults]\nkill = yes\n"),
            "actions.toml:2:8: error[E0701]: `yes` is not a value: quote text (\"yes\"), or write a whole number, true or false"
        );
        assert_eq!(
            errors("[action.x]\nkind = \"page\"\n"),
            "actions.toml:2:8: error[E0701]: `page` is not a kind of action: write \"notify\", \"webhook\", \"ticket\" or \"escalate\""
        );
        assert_eq!(
            errors("[endpoint.p]\nurl = \"https://p.example\"\nsecret = \"hunter2\"\n"),
            "actions.toml:3:10: error[E0701]: a secret is a reference: \"env:NAME\" or \"file:PATH\""
        );
        assert_eq!(errors("[actions.x]\n"), "actions.toml:1:1: error[E0701]: unknown section `[actions]`");
        assert_eq!(
            errors("kill = true\n"),
            "actions.toml:1:1: error[E0701]: settings belong to a section such as `[defaults]` or `[action.sms_guard]`"
        );
        assert!(errors("[action.x]\nkind = \"notify\"\nchannel = \"c\"\ntemplate = \"a } b\"\n").contains("closes no field"));
        assert!(errors("[action.x]\nkind = \"webhook\"\n").contains("[action.x] needs `endpoint`"));
        // Reports are delivered by a defined notify or webhook action.
        let text = GOOD.replace("max_attempts = 4", "max_attempts = 4\nreports = \"escalate\"");
        assert_eq!(
            errors(&text),
            "actions.toml:6:11: error[E0701]: reports are delivered by a notify or webhook action; `escalate` is escalate"
        );
        let text = GOOD.replace("mode = \"dry-run\"\n", "mode = \"dry-run\"\nreports = \"sms_gard\"\n");
        assert_eq!(errors(&text), "actions.toml:38:11: error[E0702]: no action `sms_gard` is defined to deliver reports");
        assert!(errors("[action.x]\nkind = \"webhook\"\nendpoint = \"e\"\nlimits = [\"1 per hour\"]\n").contains("is not a limit"));
    }

    #[test]
    fn templates_render_fields_evidence_and_braces() {
        let mut d = Vec::new();
        let t = template("{site}/{guard} {evidence.n} {{x}} {nope}", &[], Span { file: 0, start: 0, end: 0 }, &mut d);
        assert_eq!(d.len(), 1);
        let mut f = BTreeMap::new();
        f.insert("site".to_string(), "S1".to_string());
        f.insert("evidence.n".to_string(), "42".to_string());
        assert_eq!(t.render(&f), "S1/- 42 {x} -");
    }

    fn runbook(autos: &str) -> Runbook {
        let text = format!(
            "runbook NO_SHOW {{\n  title \"t\"\n  matches finding ATTENDANCE_NO_SHOW\n  escalate_after 15m\n  step \"s\"\n{autos}}}\n"
        );
        let file = crate::syntax::parse(&text, 0).expect("parses");
        crate::runbook::check_runbook(&file.runbooks[0]).expect("checks")
    }

    fn finding(severity: &str) -> Stored {
        Stored {
            id: 42,
            status: crate::store::Status::New,
            finding_type: "ATTENDANCE_NO_SHOW".into(),
            rule: "ATTENDANCE_NO_SHOW".into(),
            tenant_id: "T9".into(),
            site_id: "S1".into(),
            guard_id: Some("G7".into()),
            entity_id: None,
            category: "ATTENDANCE".into(),
            severity: severity.into(),
            title: "No-show".into(),
            evidence: serde_json::json!({ "silent_minutes": 20 }),
            runbook: "NO_SHOW".into(),
            suppressed: false,
            first_seen: "2025-10-04T10:00:00Z".into(),
            last_seen: "2025-10-04T10:00:00Z".into(),
            occurrences: 1,
            holding: true,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            rule_hash: String::new(),
            sql_hash: String::new(),
            ruleset_revision: String::new(),
            inhibited_by: None,
            late: false,
        }
    }

    #[test]
    fn planning_keys_modes_due_times_and_payloads() {
        let c = load_text(GOOD).map_err(|(s, d)| s.render(&d, false)).expect("loads");
        let book = runbook("  auto sms_guard on\n  auto escalate:supervisor\n  auto escalate:ops_manager on\n  auto sms_guard:site off\n");
        let base = 1_759_572_000_000_000; // 2025-10-04T10:00:00Z
        let p = plan(&c, &book, &finding("HIGH"), 2, base);
        // The `off` line is not planned; the others in runbook order, keyed by
        // (finding, epoch, runbook step, action, target).
        let keys: Vec<&str> = p.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["f42/e2/NO_SHOW#1/sms_guard/guard:G7", "f42/e2/NO_SHOW#2/escalate/supervisor", "f42/e2/NO_SHOW#3/escalate/ops_manager"]
        );
        // sms_guard: on + live in its section -> live, but tenant T9 caps it at dry-run.
        assert!(p.iter().all(|a| a.mode == Mode::DryRun));
        // Due: sms_guard after its 2-minute delay; the chain at 1 and 2 SLAs (15m).
        let due: Vec<i64> = p.iter().map(|a| (a.due_us - base) / 60_000_000).collect();
        assert_eq!(due, [2, 15, 30]);
        assert_eq!(p[0].payload_hash, sha256_hex(&p[0].payload));
        let payload: serde_json::Value = serde_json::from_str(&p[0].payload).expect("json");
        assert_eq!(payload["text"], "Site S1: No-show (20 min) {ok}");
        assert_eq!(payload["link"], "https://vigil.example.com/#finding=42");
        let level: Vec<i64> = p[1..]
            .iter()
            .map(|a| serde_json::from_str::<serde_json::Value>(&a.payload).expect("json")["level"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(level, [1, 2]);
        assert_eq!((p[1].approval.as_deref(), p[0].approval.as_deref()), (Some("admin"), None));
        // Planning again gives the same keys (enqueueing twice is a no-op).
        assert_eq!(plan(&c, &book, &finding("HIGH"), 2, base), p);
        // Without the tenant's cap, `on` + live is live; a plain `auto` line stays dry-run.
        let other = Stored { tenant_id: "T1".into(), ..finding("CRITICAL") };
        let modes: Vec<Mode> = plan(&c, &book, &other, 1, base).iter().map(|a| a.mode).collect();
        assert_eq!(modes, [Mode::Live, Mode::DryRun, Mode::DryRun]);
        // CRITICAL findings' actions pass the storm breaker.
        assert!(plan(&c, &book, &other, 1, base).iter().all(|a| a.critical));
        assert!(!p[0].critical);
    }

    #[test]
    fn runbook_lines_must_name_defined_actions() {
        let c = load_text(GOOD).map_err(|(s, d)| s.render(&d, false)).expect("loads");
        let book = runbook("  auto sms_gaurd\n  auto escalate\n");
        let d = check_runbooks(&c, &[book]);
        let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["no action `sms_gaurd` is defined in the actions configuration", "escalate to whom? `escalate` names no role or person"]
        );
        assert!(format!("{:?}", d[0].notes).contains("sms_guard"), "did you mean: {:?}", d[0].notes);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000_000));
        assert_eq!(parse_duration("1d"), Some(86_400_000_000));
        assert_eq!(parse_duration("0m"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
