//! Text to [`RuleFile`]: the only module that sees pest's parse tree.
//!
//! One small function per grammar rule builds the AST node for it and handles
//! every child the grammar allows; the parse tree never leaves this module.

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use crate::diag::{codes, Diagnostic};

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/vigil.pest"]
struct VigilParser;

type Node<'a> = Pair<'a, Rule>;

/// Parses one file. A syntax error is returned as a diagnostic that points at the
/// offending place and says, in words, what was expected there.
pub fn parse(text: &str, file: FileId) -> Result<RuleFile, Diagnostic> {
    // The grammar and every stage after it recurse into brackets: refuse what nests
    // deeper than any rule needs before it can exhaust the stack.
    too_deep(text, file)?;
    let mut pairs = VigilParser::parse(Rule::file, text).map_err(|e| syntax_error(e, file, text))?;
    let b = Builder { file };
    let mut out = RuleFile::default();
    let Some(top) = pairs.next() else { return Ok(out) };
    for item in top.into_inner() {
        match item.as_rule() {
            Rule::macro_def => out.macros.push(b.macro_def(item)?),
            Rule::source_def => out.sources.push(b.source_def(item)?),
            Rule::rule_def => out.rules.push(b.rule_def(item)?),
            Rule::runbook_def => out.runbooks.push(b.runbook_def(item)?),
            Rule::categories_def => out.categories.push(b.categories_def(item)?),
            Rule::severity_def => out.severities.push(b.severity_def(item)?),
            Rule::override_def => out.overrides.push(b.override_def(item)?),
            Rule::cascade_def => out.cascades.push(b.cascade_def(item)?),
            Rule::metric_def => out.metrics.push(b.metric_def(item)?),
            Rule::anomaly_def => out.anomalies.push(b.anomaly_def(item)?),
            Rule::inhibit_def => out.inhibits.push(b.inhibit_def(item)?),
            Rule::EOI => {}
            other => return Err(b.unexpected(&item, other)),
        }
    }
    Ok(out)
}

/// How deep brackets may nest, and how deep an expression's tree may be (operators,
/// `not` and `-` included). Real rules stay far below; a limit turns a hostile or
/// runaway file into a diagnostic instead of a stack overflow.
pub const MAX_NESTING: usize = 64;
/// See [`MAX_NESTING`].
pub const MAX_EXPR_DEPTH: usize = 256;

/// The brackets of a text (`(`, `)`, `[`, `]`, `{`, `}`) with their byte offsets,
/// outside strings and comments: what both nesting checks below walk.
fn brackets(text: &str) -> Vec<(usize, char)> {
    let mut out = Vec::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            '(' | ')' | '[' | ']' | '{' | '}' => out.push((i, c)),
            _ => {}
        }
    }
    out
}

/// Refuses brackets nested deeper than [`MAX_NESTING`] (outside strings and comments),
/// pointing at the first bracket too deep and naming where the outermost one opened.
fn too_deep(text: &str, file: FileId) -> Result<(), Diagnostic> {
    let mut open: Vec<usize> = Vec::new();
    for (i, c) in brackets(text) {
        match c {
            '(' | '[' => {
                open.push(i);
                if open.len() > MAX_NESTING {
                    let span = Span { file, start: i, end: i + 1 };
                    let outer = Span { file, start: open[0], end: open[0] + 1 };
                    return Err(Diagnostic::error(
                        codes::SYNTAX,
                        format!("brackets nested more than {MAX_NESTING} levels deep"),
                        span,
                        "too deep",
                    )
                    .with_context(outer, "the outermost bracket opens here")
                    .hint("name inner parts with `let` or a macro"));
                }
            }
            ')' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    Ok(())
}

/// The depth of an expression's tree, walked without recursion.
fn expr_depth(root: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(root, 1)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        let children: Vec<&Expr> = match &e.kind {
            ExprKind::Lit(_) | ExprKind::Now | ExprKind::Path { .. } => vec![],
            ExprKind::Call { args, .. } => args.iter().collect(),
            ExprKind::Agg { source, arg, .. } => source.filter.iter().chain(arg.iter()).map(|b| &**b).collect(),
            ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
            ExprKind::Not(a) | ExprKind::Neg(a) | ExprKind::IsNull { expr: a, .. } => vec![a],
            ExprKind::InLast { expr, window } => vec![expr, window],
            ExprKind::InList { expr, list } => std::iter::once(&**expr).chain(list.iter()).collect(),
        };
        stack.extend(children.into_iter().map(|c| (c, d + 1)));
    }
    deepest
}

/// The phrase an analyst reads for a grammar rule in "expected ..." messages.
fn rule_phrase(rule: &Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::file | Rule::macro_def | Rule::rule_def | Rule::runbook_def | Rule::categories_def | Rule::kw_categories => {
            "`rule`, `macro`, `source`, `runbook`, `metric`, `anomaly` or `categories`"
        }
        Rule::source_def | Rule::kw_source => "`source NAME = TABLE where CONDITION`",
        Rule::metric_def | Rule::kw_metric => "`metric NAME { count TABLE | sum TABLE.COLUMN; bucket 60m }`",
        Rule::metric_count | Rule::kw_count => "`count TABLE [at COLUMN] [where CONDITION]`",
        Rule::metric_sum | Rule::metric_agg | Rule::kw_sum | Rule::kw_avg | Rule::kw_min | Rule::kw_max => {
            "`sum|avg|min|max|last TABLE.COLUMN [per COLUMN] [where CONDITION]`"
        }
        Rule::bucket_item | Rule::kw_bucket => "`bucket 60m`",
        Rule::kw_at => "`at COLUMN`",
        Rule::kw_per => "`per COLUMN`",
        Rule::anomaly_def | Rule::kw_anomaly => "`anomaly ID { metric M; direction below; ... }`",
        Rule::anomaly_severity | Rule::kw_beyond => "`severity LEVEL [beyond NUMBER]`",
        Rule::anomaly_setting | Rule::setting_name => {
            "a setting: metric, direction, sensitivity, threshold, statistic, stable_after, window, min_spread, fallback, \
             half_life, confirm, clear_below, exclude_outliers or young"
        }
        Rule::setting_value | Rule::kw_stable_after => "a value such as below, MEDIUM, 2.5 or `hour_of_day (stable_after 14)`",
        Rule::category_keywords => "a line such as `SAFETY: PANIC, DISTRESS`",
        Rule::severity_def => "`severity TYPE { LEVEL when CONDITION ... }`",
        Rule::cascade_def | Rule::kw_cascade => "`cascade { step ... otherwise GENERIC }`",
        Rule::inhibit_def | Rule::kw_inhibit => "`inhibit TYPE, ... while TYPE holds at the same site`",
        Rule::kw_while => "`while TYPE holds at the same site`",
        Rule::kw_holds => "`holds`",
        Rule::kw_the => "`the`",
        Rule::kw_same => "`same`",
        Rule::inhibit_scope | Rule::kw_guard => "`site` or `guard`",
        Rule::cascade_step => "a line such as `step category + severity`",
        Rule::match_field => "`finding`, `category` or `severity`",
        Rule::cascade_fallback => "`otherwise RUNBOOK`",
        Rule::override_def | Rule::kw_override => "`override tenant \"T\" site \"S\" { RULE.param = VALUE }`",
        Rule::override_scope | Rule::kw_site => "`tenant \"T\"` and/or `site \"S\"`",
        Rule::override_setting => "a line such as `CORRELATION_SILENT_SITE.silence = 30m`",
        Rule::severity_step => "a line such as `CRITICAL when overdue_minutes >= 120`",
        Rule::category_fallback | Rule::kw_otherwise => "`otherwise CATEGORY`",
        Rule::kw_macro => "`macro`",
        Rule::kw_rule => "`rule`",
        Rule::kw_runbook => "`runbook`",
        Rule::macro_params => "macro parameters such as (grace)",
        Rule::finding_item | Rule::kw_finding => "`finding TYPE`",
        Rule::title_item | Rule::kw_title => "`title \"...\"`",
        Rule::doc_item | Rule::kw_doc => "`doc \"...\"`",
        Rule::category_item | Rule::kw_category => "`category NAME`",
        Rule::severity_item | Rule::kw_severity => "`severity LEVEL [when CONDITION]`",
        Rule::cadence_item | Rule::kw_cadence => "`cadence heartbeat|comprehensive|deep`",
        Rule::for_item | Rule::kw_for => "`for ENTITY`",
        Rule::param_item | Rule::kw_param => "`param NAME = VALUE`",
        Rule::let_item | Rule::kw_let => "`let NAME = EXPRESSION`",
        Rule::when_item | Rule::kw_when => "`when CONDITION`",
        Rule::evidence_item | Rule::kw_evidence => "`evidence NAME, ...`",
        Rule::evidence_field => "an evidence field such as `last_seen` or `late = now - due_at`",
        Rule::action_item | Rule::kw_action => "`action \"...\"`",
        Rule::tenant_item | Rule::kw_tenant => "`tenant \"ID\"`",
        Rule::matches_item | Rule::kw_matches => "`matches finding TYPE` or `matches category C [severity S]`",
        Rule::match_finding => "`finding TYPE`",
        Rule::match_class => "`category C [severity S]`",
        Rule::sla_item | Rule::kw_escalate_after => "`escalate_after DURATION`",
        Rule::step_item | Rule::kw_step => "`step \"...\"`",
        Rule::auto_item | Rule::kw_auto => "`auto ACTION [on|off]`",
        Rule::auto_state | Rule::kw_on | Rule::kw_off => "`on` or `off`",
        Rule::action_name => "an action name such as sms_guard or escalate:ops_manager",
        Rule::expr | Rule::primary => "an expression",
        Rule::op_not | Rule::kw_not => "`not`",
        Rule::op_neg => "`-`",
        Rule::is_null | Rule::is_not_null | Rule::kw_is => "`is null` or `is not null`",
        Rule::in_last | Rule::kw_last => "`in last DURATION`",
        Rule::in_list => "`in (a, b, ...)`",
        Rule::infix
        | Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_le
        | Rule::op_ge
        | Rule::op_lt
        | Rule::op_gt
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::kw_and
        | Rule::kw_or => "an operator such as `and`, `>=` or `+`",
        Rule::now | Rule::kw_now => "`now`",
        Rule::aggregate | Rule::agg_name => "an aggregate such as count(phone_events where ts in last 60m)",
        Rule::source => "a table such as phone_events, optionally `as NAME`, `match KEYS`, `where CONDITION`",
        Rule::key_list | Rule::key_name => "keys such as `tenant, guard`",
        Rule::call => "a function call such as minutes(now - due_at)",
        Rule::path => "a name such as due_at or site.lat",
        Rule::literal => "a value such as 15m, 5, 'text' or true",
        Rule::duration => "a duration such as 15m",
        Rule::number => "a number such as 5 or 0.8",
        Rule::string | Rule::dq_inner | Rule::sq_inner => "a string in quotes",
        Rule::boolean | Rule::kw_true | Rule::kw_false => "`true` or `false`",
        Rule::null | Rule::kw_null => "`null`",
        Rule::ident | Rule::keyword => "a name",
        Rule::kw_in => "`in`",
        Rule::kw_where => "`where`",
        Rule::kw_as => "`as`",
        Rule::kw_match => "`match`",
        Rule::WHITESPACE | Rule::COMMENT => "a comment",
        // Silent rules never appear in errors; anything new falls back to a neutral phrase.
        #[allow(unreachable_patterns)]
        _ => "",
    }
}

fn syntax_error(e: pest::error::Error<Rule>, file: FileId, text: &str) -> Diagnostic {
    let (start, end) = match e.location {
        pest::error::InputLocation::Pos(p) => (p, p),
        pest::error::InputLocation::Span((s, e)) => (s, e),
    };
    // Point at the whole offending word, not just its first byte.
    let word_end = text[start..]
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || "(),{}".contains(*c))
        .map(|(i, _)| start + i)
        .unwrap_or(text.len())
        .max(end);
    // A bracket or comma is a word of its own.
    let word_end = if word_end == start { text[start..].chars().next().map(|c| start + c.len_utf8()).unwrap_or(start) } else { word_end };
    let span = Span { file, start, end: word_end.max(start + usize::from(start < text.len())) };
    let found = &text[start..word_end.min(text.len())];
    let (message, label) = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut phrases: Vec<&str> = positives.iter().map(rule_phrase).filter(|p| !p.is_empty()).collect();
            phrases.sort_unstable();
            phrases.dedup();
            let expected = match phrases.as_slice() {
                [] => "something else".to_string(),
                [one] => (*one).to_string(),
                many => {
                    let (last, rest) = many.split_last().map(|(l, r)| (*l, r.join(", "))).unwrap_or(("", String::new()));
                    format!("{rest} or {last}")
                }
            };
            let label = match found {
                "" => "the file ends here".to_string(),
                f if f.chars().any(char::is_control) => format!("found `{}`", f.escape_default()),
                f => format!("found `{f}`"),
            };
            let digits = found.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 && digits < found.len() && found[digits..].chars().all(|c| c.is_ascii_alphabetic()) {
                let unit = &found[digits..];
                return Diagnostic::error(codes::SYNTAX, format!("unknown duration unit `{unit}` in `{found}`"), span, "not a duration")
                    .hint(format!("durations are written {digits_part}ms, {digits_part}s, {digits_part}m, {digits_part}h, {digits_part}d or {digits_part}w", digits_part = &found[..digits]));
            }
            let mut d = Diagnostic::error(codes::SYNTAX, format!("expected {expected}"), span, label);
            // A condition written without its keyword.
            let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
            let line = text[line_start..].lines().next().unwrap_or("").trim();
            let at_line_start = text[line_start..start].trim().is_empty();
            let looks_like_condition =
                ["==", "!=", ">=", "<=", " > ", " < ", " and ", " or ", " in last "].iter().any(|op| line.contains(op));
            if at_line_start && looks_like_condition && phrases.contains(&"`when CONDITION`") {
                d = d.hint(format!("a condition starts with `when`: `when {line}`"));
            }
            // The bracket that is still open where the text stops making sense.
            if let Some((open, c)) = open_bracket_at(text, start) {
                let opened_before = text[open..start].contains('\n');
                let top_level =
                    ["rule", "runbook", "macro", "source", "categories", "severity", "override", "cascade", "metric", "anomaly"]
                        .contains(&found)
                        && at_line_start
                        && start == line_start;
                let close = match c {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                let at_end = text[start..].trim().is_empty();
                if at_end || (c != '{' && opened_before) || (c == '{' && top_level) {
                    let opener = Span { file, start: open, end: open + 1 };
                    d = d.with_context(opener, format!("this `{c}` is never closed")).hint(format!(
                        "close it with `{close}` {}",
                        if at_end {
                            "at the end"
                        } else if c == '{' {
                            "before the next block"
                        } else {
                            "where the expression ends"
                        }
                    ));
                }
            }
            return d;
        }
        pest::error::ErrorVariant::CustomError { message } => (message.clone(), String::new()),
    };
    Diagnostic::error(codes::SYNTAX, message, span, label)
}

/// The innermost bracket still open at byte `at` (strings and comments skipped):
/// its position and kind.
fn open_bracket_at(text: &str, at: usize) -> Option<(usize, char)> {
    let mut open: Vec<(usize, char)> = Vec::new();
    for (i, c) in brackets(text).into_iter().take_while(|(i, _)| *i < at) {
        match c {
            '(' | '[' | '{' => open.push((i, c)),
            _ => {
                open.pop();
            }
        }
    }
    open.pop()
}

struct Builder {
    file: FileId,
}

impl Builder {
    fn span(&self, p: &Node) -> Span {
        let s = p.as_span();
        Span { file: self.file, start: s.start(), end: s.end() }
    }

    fn unexpected(&self, p: &Node, rule: Rule) -> Diagnostic {
        Diagnostic::error(
            codes::INTERNAL,
            format!("internal parser error: unexpected {rule:?} here"),
            self.span(p),
            "this construct is not handled by the AST builder",
        )
    }

    fn children<'a>(&self, p: Node<'a>) -> Vec<Node<'a>> {
        p.into_inner().collect()
    }

    fn ident(&self, p: Node) -> Ident {
        Ident { name: p.as_str().to_string(), span: self.span(&p) }
    }

    /// The name children of a node (keywords are separate rules and skipped).
    fn idents(&self, p: Node) -> Vec<Ident> {
        p.into_inner().filter(|c| c.as_rule() == Rule::ident).map(|c| self.ident(c)).collect()
    }

    fn macro_def(&self, p: Node) -> Result<MacroDef, Diagnostic> {
        let span = self.span(&p);
        let mut name = None;
        let mut params = Vec::new();
        let mut body = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_macro => {}
                Rule::ident => name = Some(self.ident(c)),
                Rule::macro_params => params = self.idents(c),
                Rule::expr => body = Some(self.expr(c)?),
                other => return Err(self.unexpected(&c, other)),
            }
        }
        match (name, body) {
            (Some(name), Some(body)) => Ok(MacroDef { name, params, body, span }),
            _ => Err(self.incomplete(span, "macro")),
        }
    }

    fn source_def(&self, p: Node) -> Result<SourceDef, Diagnostic> {
        let span = self.span(&p);
        let mut names = Vec::new();
        let mut filter = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_source | Rule::kw_where => {}
                Rule::ident => names.push(self.ident(c)),
                Rule::expr => filter = Some(self.expr(c)?),
                other => return Err(self.unexpected(&c, other)),
            }
        }
        let mut names = names.into_iter();
        match (names.next(), names.next()) {
            (Some(name), Some(table)) => Ok(SourceDef { name, table, filter, span }),
            _ => Err(self.incomplete(span, "source")),
        }
    }

    fn incomplete(&self, span: Span, what: &str) -> Diagnostic {
        Diagnostic::error(codes::INTERNAL, format!("internal parser error: incomplete {what}"), span, "")
    }

    fn rule_def(&self, p: Node) -> Result<RuleDef, Diagnostic> {
        let span = self.span(&p);
        let mut id = None;
        let mut items = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_rule => {}
                Rule::ident => id = Some(self.ident(c)),
                _ => items.push(self.rule_item(c)?),
            }
        }
        let id = id.ok_or_else(|| self.incomplete(span, "rule"))?;
        Ok(RuleDef { id, items, span })
    }

    fn rule_item(&self, p: Node) -> Result<RuleItem, Diagnostic> {
        let span = self.span(&p);
        let rule = p.as_rule();
        let kids = self.children(p);
        let ident_at = |i: usize| kids.get(i).filter(|k| k.as_rule() == Rule::ident).map(|k| self.ident(k.clone()));
        let missing = || self.incomplete(span, "rule item");
        Ok(match rule {
            Rule::finding_item => RuleItem::Finding(ident_at(1).ok_or_else(missing)?),
            Rule::category_item => RuleItem::Category(ident_at(1).ok_or_else(missing)?),
            Rule::cadence_item => RuleItem::Cadence(ident_at(1).ok_or_else(missing)?),
            Rule::title_item => RuleItem::Title(self.string_child(&kids, span)?),
            Rule::doc_item => RuleItem::Doc(self.string_child(&kids, span)?),
            Rule::action_item => RuleItem::Action(self.string_child(&kids, span)?),
            Rule::severity_item => {
                let level = ident_at(1).ok_or_else(missing)?;
                let when = match kids.iter().find(|k| k.as_rule() == Rule::expr) {
                    Some(e) => Some(self.expr(e.clone())?),
                    None => None,
                };
                RuleItem::Severity { level, when, span }
            }
            Rule::for_item => {
                let mut entity = None;
                let mut table = None;
                let mut filter = None;
                let mut after_in = false;
                for k in kids {
                    match k.as_rule() {
                        Rule::kw_for | Rule::kw_where => {}
                        Rule::kw_in => after_in = true,
                        Rule::ident if after_in => table = Some(self.ident(k)),
                        Rule::ident => entity = Some(self.ident(k)),
                        Rule::expr => filter = Some(self.expr(k)?),
                        other => return Err(self.unexpected(&k, other)),
                    }
                }
                RuleItem::For { entity: entity.ok_or_else(missing)?, table, filter, span }
            }
            Rule::param_item => {
                let name = ident_at(1).ok_or_else(missing)?;
                let lit = kids.get(2).cloned().ok_or_else(missing)?;
                RuleItem::Param { name, value: self.literal(lit)?, span }
            }
            Rule::let_item => {
                let name = ident_at(1).ok_or_else(missing)?;
                let value = self.expr(kids.get(2).cloned().ok_or_else(missing)?)?;
                RuleItem::Let { name, value, span }
            }
            Rule::when_item => RuleItem::When(self.expr(kids.get(1).cloned().ok_or_else(missing)?)?),
            Rule::evidence_item => {
                let mut fields = Vec::new();
                for k in kids {
                    match k.as_rule() {
                        Rule::kw_evidence => {}
                        Rule::evidence_field => fields.push(self.evidence_field(k)?),
                        other => return Err(self.unexpected(&k, other)),
                    }
                }
                RuleItem::Evidence(fields)
            }
            other => {
                return Err(Diagnostic::error(codes::INTERNAL, format!("internal parser error: unexpected {other:?} in a rule"), span, ""))
            }
        })
    }

    fn evidence_field(&self, p: Node) -> Result<EvidenceField, Diagnostic> {
        let span = self.span(&p);
        let mut name = None;
        let mut value = None;
        for k in p.into_inner() {
            match k.as_rule() {
                Rule::ident => name = Some(self.ident(k)),
                Rule::expr => value = Some(self.expr(k)?),
                other => return Err(self.unexpected(&k, other)),
            }
        }
        Ok(EvidenceField { name: name.ok_or_else(|| self.incomplete(span, "evidence field"))?, value })
    }

    fn string_child(&self, kids: &[Node], span: Span) -> Result<StringLit, Diagnostic> {
        match kids.iter().find(|k| k.as_rule() == Rule::string) {
            Some(s) => Ok(self.string(s.clone())),
            None => Err(self.incomplete(span, "string item")),
        }
    }

    fn string(&self, p: Node) -> StringLit {
        let span = self.span(&p);
        let raw = p.into_inner().next().map(|i| i.as_str()).unwrap_or("");
        let mut value = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(other) => value.push(other),
                    None => {}
                }
            } else {
                value.push(c);
            }
        }
        StringLit { value, span }
    }

    fn literal(&self, p: Node) -> Result<Literal, Diagnostic> {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::duration => self.duration(p).map(|micros| Literal::Duration { micros, span }),
            Rule::number => p
                .as_str()
                .parse::<f64>()
                .map(|value| Literal::Number { value, span })
                .map_err(|_| Diagnostic::error(codes::BAD_LITERAL, "this number does not parse", span, "")),
            Rule::string => Ok(Literal::String(self.string(p))),
            Rule::boolean => {
                let value = p.into_inner().next().map(|k| k.as_rule() == Rule::kw_true).unwrap_or(false);
                Ok(Literal::Bool { value, span })
            }
            Rule::null => Ok(Literal::Null { span }),
            other => Err(self.unexpected(&p, other)),
        }
    }

    fn duration(&self, p: Node) -> Result<i64, Diagnostic> {
        let span = self.span(&p);
        super::duration_micros(p.as_str()).ok_or_else(|| Diagnostic::error(codes::BAD_LITERAL, "this duration is out of range", span, ""))
    }

    /// `expr = unary (infix unary)*`, with SQL-like precedence (Pratt parsing over
    /// the pieces pest yields in order): `not a == b` is `not (a == b)`, and
    /// `due_at + grace in last 1h` is `(due_at + grace) in last 1h`.
    fn expr(&self, p: Node) -> Result<Expr, Diagnostic> {
        let span = self.span(&p);
        let mut pieces = Vec::new();
        for k in p.into_inner() {
            let at = self.span(&k);
            pieces.push(match k.as_rule() {
                Rule::op_not => Piece::Not(at),
                Rule::op_neg => Piece::Neg(at),
                Rule::is_null | Rule::is_not_null => Piece::Postfix(k, IS_BP),
                Rule::in_last | Rule::in_list => Piece::Postfix(k, IN_BP),
                Rule::op_or
                | Rule::op_and
                | Rule::op_eq
                | Rule::op_ne
                | Rule::op_lt
                | Rule::op_le
                | Rule::op_gt
                | Rule::op_ge
                | Rule::op_add
                | Rule::op_sub
                | Rule::op_mul
                | Rule::op_div => Piece::Infix(binop(k.as_rule())),
                _ => Piece::Operand(self.primary(k)?),
            });
        }
        // `not` and `-` recurse in the climb: refuse a runaway chain before it starts.
        let operators = pieces.iter().filter(|p| !matches!(p, Piece::Operand(_))).count();
        if operators > MAX_EXPR_DEPTH {
            return Err(self.too_complex(span));
        }
        let mut pieces = pieces.into_iter().peekable();
        let e = self.climb(&mut pieces, 0, span)?;
        if pieces.next().is_some() {
            return Err(self.incomplete(span, "expression"));
        }
        if expr_depth(&e) > MAX_EXPR_DEPTH {
            return Err(self.too_complex(span));
        }
        Ok(e)
    }

    fn too_complex(&self, span: Span) -> Diagnostic {
        Diagnostic::error(codes::SYNTAX, format!("this expression is more than {MAX_EXPR_DEPTH} operators deep"), span, "too deep to check")
            .hint("split it into `let` lines or several `when` lines")
    }

    /// Parses pieces while the next operator binds at least `min_bp`.
    fn climb<'i>(
        &self,
        pieces: &mut std::iter::Peekable<std::vec::IntoIter<Piece<'i>>>,
        min_bp: u8,
        whole: Span,
    ) -> Result<Expr, Diagnostic> {
        let mut lhs = match pieces.next() {
            Some(Piece::Not(span)) => {
                let e = self.climb(pieces, NOT_BP, whole)?;
                Expr { span: span.to(e.span), kind: ExprKind::Not(Box::new(e)) }
            }
            Some(Piece::Neg(span)) => {
                let e = self.climb(pieces, NEG_BP, whole)?;
                Expr { span: span.to(e.span), kind: ExprKind::Neg(Box::new(e)) }
            }
            Some(Piece::Operand(e)) => e,
            _ => return Err(self.incomplete(whole, "operand")),
        };
        loop {
            let bp = match pieces.peek() {
                Some(Piece::Postfix(_, bp)) => *bp,
                Some(Piece::Infix(op)) => infix_bp(*op).0,
                _ => break,
            };
            if bp < min_bp {
                break;
            }
            match pieces.next() {
                Some(Piece::Postfix(node, _)) => lhs = self.postfix(lhs, node)?,
                Some(Piece::Infix(op)) => {
                    let rhs = self.climb(pieces, infix_bp(op).1, whole)?;
                    let span = lhs.span.to(rhs.span);
                    lhs = Expr { kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span };
                }
                _ => break,
            }
        }
        Ok(lhs)
    }

    fn postfix(&self, base: Expr, p: Node) -> Result<Expr, Diagnostic> {
        let span = base.span.to(self.span(&p));
        let rule = p.as_rule();
        let kind = match rule {
            Rule::is_null => ExprKind::IsNull { expr: Box::new(base), negated: false },
            Rule::is_not_null => ExprKind::IsNull { expr: Box::new(base), negated: true },
            Rule::in_last => {
                let window = p
                    .into_inner()
                    .find(|k| !matches!(k.as_rule(), Rule::kw_in | Rule::kw_last))
                    .ok_or_else(|| self.incomplete(span, "in last"))?;
                ExprKind::InLast { expr: Box::new(base), window: Box::new(self.primary(window)?) }
            }
            Rule::in_list => {
                let list = p.into_inner().filter(|k| k.as_rule() == Rule::expr).map(|k| self.expr(k)).collect::<Result<Vec<_>, _>>()?;
                ExprKind::InList { expr: Box::new(base), list }
            }
            other => return Err(self.unexpected(&p, other)),
        };
        Ok(Expr { kind, span })
    }

    fn primary(&self, p: Node) -> Result<Expr, Diagnostic> {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::duration | Rule::number | Rule::string | Rule::boolean | Rule::null => ExprKind::Lit(self.literal(p)?),
            Rule::now => ExprKind::Now,
            Rule::expr => return self.expr(p).map(|e| Expr { kind: e.kind, span }),
            Rule::path => {
                let mut ids = self.idents(p);
                let name = ids.pop().ok_or_else(|| self.incomplete(span, "name"))?;
                ExprKind::Path { qualifier: ids.pop(), name }
            }
            Rule::call => {
                let mut name = None;
                let mut args = Vec::new();
                for k in p.into_inner() {
                    match k.as_rule() {
                        Rule::ident => name = Some(self.ident(k)),
                        Rule::expr => args.push(self.expr(k)?),
                        other => return Err(self.unexpected(&k, other)),
                    }
                }
                ExprKind::Call { name: name.ok_or_else(|| self.incomplete(span, "call"))?, args }
            }
            Rule::aggregate => return self.aggregate(p),
            other => return Err(self.unexpected(&p, other)),
        };
        Ok(Expr { kind, span })
    }

    fn aggregate(&self, p: Node) -> Result<Expr, Diagnostic> {
        let span = self.span(&p);
        let mut func = None;
        let mut source = None;
        let mut arg = None;
        for k in p.into_inner() {
            match k.as_rule() {
                Rule::agg_name => func = Some((agg_fn(k.as_str()), self.span(&k))),
                Rule::source => source = Some(self.source(k)?),
                Rule::expr => arg = Some(Box::new(self.expr(k)?)),
                other => return Err(self.unexpected(&k, other)),
            }
        }
        match (func, source) {
            (Some((func, func_span)), Some(source)) => Ok(Expr { kind: ExprKind::Agg { func, func_span, source, arg }, span }),
            _ => Err(self.incomplete(span, "aggregate")),
        }
    }

    fn source(&self, p: Node) -> Result<Source, Diagnostic> {
        let span = self.span(&p);
        let mut table = None;
        let mut alias = None;
        let mut keys = None;
        let mut filter = None;
        for k in p.into_inner() {
            match k.as_rule() {
                Rule::kw_as | Rule::kw_match | Rule::kw_where => {}
                Rule::ident if table.is_none() => table = Some(self.ident(k)),
                Rule::ident => alias = Some(self.ident(k)),
                Rule::key_list => keys = Some(k.into_inner().map(|c| self.ident(c)).collect()),
                Rule::expr => filter = Some(Box::new(self.expr(k)?)),
                other => return Err(self.unexpected(&k, other)),
            }
        }
        Ok(Source { table: table.ok_or_else(|| self.incomplete(span, "source"))?, alias, keys, filter, span })
    }

    fn inhibit_def(&self, p: Node) -> Result<InhibitDef, Diagnostic> {
        let span = self.span(&p);
        let mut names = Vec::new();
        let mut same_guard = false;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::ident => names.push(Ident { name: c.as_str().to_string(), span: self.span(&c) }),
                Rule::inhibit_scope => same_guard = c.into_inner().next().is_some_and(|k| k.as_rule() == Rule::kw_guard),
                _ => {}
            }
        }
        let by = names.pop().ok_or_else(|| self.incomplete(span, "inhibit"))?;
        if names.is_empty() {
            return Err(self.incomplete(span, "inhibit"));
        }
        Ok(InhibitDef { inhibited: names, by, same_guard, span })
    }

    fn cascade_def(&self, p: Node) -> Result<CascadeDef, Diagnostic> {
        let span = self.span(&p);
        let mut steps = Vec::new();
        let mut fallback = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_cascade => {}
                Rule::cascade_step => {
                    let step_span = self.span(&c);
                    let mut fields = Vec::new();
                    for k in c.into_inner() {
                        match k.as_rule() {
                            Rule::kw_step => {}
                            Rule::match_field => {
                                let field = match k.into_inner().next().map(|w| w.as_rule()) {
                                    Some(Rule::kw_finding) => MatchField::FindingType,
                                    Some(Rule::kw_category) => MatchField::Category,
                                    _ => MatchField::Severity,
                                };
                                fields.push(field);
                            }
                            other => return Err(self.unexpected(&k, other)),
                        }
                    }
                    steps.push((fields, step_span));
                }
                Rule::cascade_fallback => fallback = self.idents(c).into_iter().next(),
                other => return Err(self.unexpected(&c, other)),
            }
        }
        Ok(CascadeDef { steps, fallback: fallback.ok_or_else(|| self.incomplete(span, "cascade"))?, span })
    }

    fn metric_def(&self, p: Node) -> Result<MetricDef, Diagnostic> {
        let span = self.span(&p);
        let mut out = MetricDef { name: Ident { name: String::new(), span }, doc: None, sources: Vec::new(), bucket: None, span };
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_metric => {}
                Rule::ident => out.name = self.ident(c),
                Rule::doc_item => {
                    if let RuleItem::Doc(s) = self.rule_item(c)? {
                        out.doc = Some(s);
                    }
                }
                Rule::bucket_item => {
                    let line = self.span(&c);
                    for k in c.into_inner() {
                        if k.as_rule() == Rule::duration {
                            out.bucket = Some((self.duration(k)?, line));
                        }
                    }
                }
                Rule::metric_count | Rule::metric_sum => out.sources.push(self.metric_source(c)?),
                other => return Err(self.unexpected(&c, other)),
            }
        }
        Ok(out)
    }

    fn metric_source(&self, p: Node) -> Result<MetricSource, Diagnostic> {
        let span = self.span(&p);
        let is_count = p.as_rule() == Rule::metric_count;
        let mut names = Vec::new();
        let mut filter = None;
        let mut after: Option<Rule> = None;
        let mut time = None;
        let mut per = None;
        let mut aggregate = MetricAgg::Sum;
        for k in p.into_inner() {
            match k.as_rule() {
                Rule::metric_agg => {
                    aggregate = match k.into_inner().next().map(|w| w.as_rule()) {
                        Some(Rule::kw_avg) => MetricAgg::Avg,
                        Some(Rule::kw_min) => MetricAgg::Min,
                        Some(Rule::kw_max) => MetricAgg::Max,
                        Some(Rule::kw_last) => MetricAgg::Last,
                        _ => MetricAgg::Sum,
                    }
                }
                Rule::kw_count | Rule::kw_where => {}
                Rule::kw_at | Rule::kw_per => after = Some(k.as_rule()),
                Rule::ident => match after {
                    Some(Rule::kw_at) => time = Some(self.ident(k)),
                    Some(_) => per = Some(self.ident(k)),
                    None => names.push(self.ident(k)),
                },
                Rule::expr => filter = Some(self.expr(k)?),
                other => return Err(self.unexpected(&k, other)),
            }
        }
        let mut names = names.into_iter();
        let table = names.next().ok_or_else(|| self.incomplete(span, "metric source"))?;
        if is_count {
            Ok(MetricSource::Count { table, time, filter, span })
        } else {
            let column = names.next().ok_or_else(|| self.incomplete(span, "metric source"))?;
            Ok(MetricSource::Sum { aggregate, table, column, per, filter, span })
        }
    }

    fn anomaly_def(&self, p: Node) -> Result<AnomalyDef, Diagnostic> {
        let span = self.span(&p);
        let mut id = None;
        let mut items = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_anomaly => {}
                Rule::ident => id = Some(self.ident(c)),
                Rule::anomaly_severity => {
                    let mut level = None;
                    let mut beyond = None;
                    for k in c.into_inner() {
                        match k.as_rule() {
                            Rule::kw_severity | Rule::kw_beyond => {}
                            Rule::ident => level = Some(self.ident(k)),
                            Rule::number => beyond = Some((self.number(&k)?, self.span(&k))),
                            other => return Err(self.unexpected(&k, other)),
                        }
                    }
                    let level = level.ok_or_else(|| self.incomplete(span, "severity"))?;
                    items.push(AnomalyItem::Severity { level, beyond });
                }
                Rule::anomaly_setting => {
                    let line = self.span(&c);
                    let mut name = None;
                    let mut values = Vec::new();
                    for k in c.into_inner() {
                        match k.as_rule() {
                            Rule::setting_name => name = Some(self.ident(k)),
                            Rule::setting_value => values.push(self.setting_value(k)?),
                            other => return Err(self.unexpected(&k, other)),
                        }
                    }
                    let name = name.ok_or_else(|| self.incomplete(line, "setting"))?;
                    items.push(AnomalyItem::Setting { name, values, span: line });
                }
                _ => items.push(AnomalyItem::Common(Box::new(self.rule_item(c)?))),
            }
        }
        let id = id.ok_or_else(|| self.incomplete(span, "anomaly"))?;
        Ok(AnomalyDef { id, items, span })
    }

    fn setting_value(&self, p: Node) -> Result<SettingValue, Diagnostic> {
        let span = self.span(&p);
        let mut name = None;
        let mut number = None;
        for k in p.into_inner() {
            match k.as_rule() {
                Rule::kw_stable_after => {}
                Rule::ident => name = Some(self.ident(k)),
                Rule::number => number = Some((self.number(&k)?, self.span(&k))),
                other => return Err(self.unexpected(&k, other)),
            }
        }
        match (name, number) {
            (Some(n), after) => Ok(SettingValue::Name(n, after)),
            (None, Some((v, s))) => Ok(SettingValue::Number(v, s)),
            (None, None) => Err(self.incomplete(span, "setting value")),
        }
    }

    fn number(&self, p: &Node) -> Result<f64, Diagnostic> {
        p.as_str().parse::<f64>().map_err(|_| Diagnostic::error(codes::BAD_LITERAL, "this number does not parse", self.span(p), ""))
    }

    fn override_def(&self, p: Node) -> Result<OverrideDef, Diagnostic> {
        let span = self.span(&p);
        let mut out = OverrideDef { tenant: None, site: None, settings: Vec::new(), span };
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_override => {}
                Rule::override_scope => {
                    let mut next_is_site = false;
                    for k in c.into_inner() {
                        match k.as_rule() {
                            Rule::kw_tenant => next_is_site = false,
                            Rule::kw_site => next_is_site = true,
                            Rule::string if next_is_site => out.site = Some(self.string(k)),
                            Rule::string => out.tenant = Some(self.string(k)),
                            other => return Err(self.unexpected(&k, other)),
                        }
                    }
                }
                Rule::override_setting => {
                    let kids = self.children(c);
                    let (Some(rule), Some(param), Some(value)) = (kids.first(), kids.get(1), kids.get(2)) else {
                        return Err(self.incomplete(span, "override setting"));
                    };
                    out.settings.push(OverrideSetting {
                        rule: self.ident(rule.clone()),
                        param: self.ident(param.clone()),
                        value: self.literal(value.clone())?,
                    });
                }
                other => return Err(self.unexpected(&c, other)),
            }
        }
        Ok(out)
    }

    fn severity_def(&self, p: Node) -> Result<SeverityDef, Diagnostic> {
        let span = self.span(&p);
        let mut finding_type = None;
        let mut steps = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_severity => {}
                Rule::ident => finding_type = Some(self.ident(c)),
                Rule::severity_step => {
                    let mut level = None;
                    let mut cond = None;
                    for k in c.into_inner() {
                        match k.as_rule() {
                            Rule::ident => level = Some(self.ident(k)),
                            Rule::kw_when => {}
                            Rule::expr => cond = Some(self.expr(k)?),
                            other => return Err(self.unexpected(&k, other)),
                        }
                    }
                    match (level, cond) {
                        (Some(l), Some(c)) => steps.push((l, c)),
                        _ => return Err(self.incomplete(span, "severity step")),
                    }
                }
                other => return Err(self.unexpected(&c, other)),
            }
        }
        Ok(SeverityDef { finding_type: finding_type.ok_or_else(|| self.incomplete(span, "severity block"))?, steps, span })
    }

    fn categories_def(&self, p: Node) -> Result<CategoriesDef, Diagnostic> {
        let span = self.span(&p);
        let mut rules = Vec::new();
        let mut fallback = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_categories => {}
                Rule::category_keywords => {
                    let mut ids = self.idents(c).into_iter();
                    let category = ids.next().ok_or_else(|| self.incomplete(span, "categories"))?;
                    rules.push((category, ids.collect()));
                }
                Rule::category_fallback => fallback = self.idents(c).into_iter().next(),
                other => return Err(self.unexpected(&c, other)),
            }
        }
        Ok(CategoriesDef { rules, fallback, span })
    }

    fn runbook_def(&self, p: Node) -> Result<RunbookDef, Diagnostic> {
        let span = self.span(&p);
        let mut id = None;
        let mut items = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_runbook => {}
                Rule::ident => id = Some(self.ident(c)),
                _ => items.push(self.runbook_item(c)?),
            }
        }
        Ok(RunbookDef { id: id.ok_or_else(|| self.incomplete(span, "runbook"))?, items, span })
    }

    fn runbook_item(&self, p: Node) -> Result<RunbookItem, Diagnostic> {
        let span = self.span(&p);
        let rule = p.as_rule();
        let kids = self.children(p);
        Ok(match rule {
            Rule::title_item => RunbookItem::Title(self.string_child(&kids, span)?),
            Rule::tenant_item => RunbookItem::Tenant(self.string_child(&kids, span)?),
            Rule::step_item => RunbookItem::Step(self.string_child(&kids, span)?),
            Rule::sla_item => {
                let d =
                    kids.iter().find(|k| k.as_rule() == Rule::duration).cloned().ok_or_else(|| self.incomplete(span, "escalate_after"))?;
                RunbookItem::EscalateAfter(self.literal(d)?)
            }
            Rule::matches_item => {
                let inner = kids
                    .into_iter()
                    .find(|k| matches!(k.as_rule(), Rule::match_finding | Rule::match_class))
                    .ok_or_else(|| self.incomplete(span, "matches"))?;
                let is_finding = inner.as_rule() == Rule::match_finding;
                let mut ids = self.idents(inner).into_iter();
                let first = ids.next().ok_or_else(|| self.incomplete(span, "matches"))?;
                if is_finding {
                    RunbookItem::MatchesFinding(first)
                } else {
                    RunbookItem::MatchesClass { category: first, severity: ids.next() }
                }
            }
            Rule::auto_item => {
                let mut action = None;
                let mut enabled = None;
                for k in kids {
                    match k.as_rule() {
                        Rule::kw_auto => {}
                        Rule::action_name => action = Some(self.ident(k)),
                        Rule::auto_state => enabled = k.into_inner().next().map(|s| s.as_rule() == Rule::kw_on),
                        other => return Err(self.unexpected(&k, other)),
                    }
                }
                RunbookItem::Auto { action: action.ok_or_else(|| self.incomplete(span, "auto"))?, enabled }
            }
            other => {
                return Err(Diagnostic::error(
                    codes::INTERNAL,
                    format!("internal parser error: unexpected {other:?} in a runbook"),
                    span,
                    "",
                ))
            }
        })
    }
}

/// One piece of an `expr` node, in source order.
enum Piece<'i> {
    /// `not`
    Not(Span),
    /// unary `-`
    Neg(Span),
    /// a primary expression
    Operand(Expr),
    /// `is [not] null`, `in last D`, `in (...)`, with its binding power
    Postfix(Node<'i>, u8),
    /// a binary operator
    Infix(BinOp),
}

/// Binding powers, loosest first, as in SQL: `or`, `and`, `not`, `is [not] null`,
/// comparisons, `in last` / `in (...)`, `+ -`, `* /`, unary minus.
const NOT_BP: u8 = 30;
const IS_BP: u8 = 40;
const IN_BP: u8 = 60;
const NEG_BP: u8 = 90;

/// (left, right) binding power of a binary operator; left-associative.
fn infix_bp(op: BinOp) -> (u8, u8) {
    let left = match op {
        BinOp::Or => 10,
        BinOp::And => 20,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 50,
        BinOp::Add | BinOp::Sub => 70,
        BinOp::Mul | BinOp::Div => 80,
    };
    (left, left + 1)
}

fn binop(rule: Rule) -> BinOp {
    match rule {
        Rule::op_or => BinOp::Or,
        Rule::op_and => BinOp::And,
        Rule::op_eq => BinOp::Eq,
        Rule::op_ne => BinOp::Ne,
        Rule::op_lt => BinOp::Lt,
        Rule::op_le => BinOp::Le,
        Rule::op_gt => BinOp::Gt,
        Rule::op_ge => BinOp::Ge,
        Rule::op_add => BinOp::Add,
        Rule::op_sub => BinOp::Sub,
        Rule::op_mul => BinOp::Mul,
        _ => BinOp::Div,
    }
}

fn agg_fn(name: &str) -> AggFn {
    match name {
        "count_distinct" => AggFn::CountDistinct,
        "min" => AggFn::Min,
        "max" => AggFn::Max,
        "sum" => AggFn::Sum,
        "avg" => AggFn::Avg,
        "exists" => AggFn::Exists,
        "none" => AggFn::None,
        "all" => AggFn::All,
        "any" => AggFn::Any,
        _ => AggFn::Count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree of `macro m = TEXT`, fully parenthesized.
    fn tree(text: &str) -> String {
        let file = parse(&format!("macro m = {text}"), 0).unwrap_or_else(|d| panic!("{text}: {}", d.message));
        let e = &file.macros[0].body;
        shape(e)
    }

    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Lit(Literal::Duration { micros, .. }) => format!("{}m", micros / 60_000_000),
            ExprKind::Lit(Literal::Number { value, .. }) => format!("{value}"),
            ExprKind::Lit(_) => "lit".into(),
            ExprKind::Now => "now".into(),
            ExprKind::Path { name, .. } => name.name.clone(),
            ExprKind::Call { name, args } => format!("{}({})", name.name, args.iter().map(shape).collect::<Vec<_>>().join(", ")),
            ExprKind::Agg { source, arg, .. } => {
                let keys = source.keys.as_ref().map(|k| k.iter().map(|i| i.name.clone()).collect::<Vec<_>>().join(" ")).unwrap_or_default();
                format!("agg({} [{keys}]{})", source.table.name, arg.as_ref().map(|a| format!(", {}", shape(a))).unwrap_or_default())
            }
            ExprKind::Binary { op, lhs, rhs } => format!("({} {} {})", shape(lhs), op.symbol(), shape(rhs)),
            ExprKind::Not(a) => format!("(not {})", shape(a)),
            ExprKind::Neg(a) => format!("(- {})", shape(a)),
            ExprKind::IsNull { expr, negated } => format!("({} is {}null)", shape(expr), if *negated { "not " } else { "" }),
            ExprKind::InLast { expr, window } => format!("({} in last {})", shape(expr), shape(window)),
            ExprKind::InList { expr, list } => format!("({} in [{}])", shape(expr), list.iter().map(shape).collect::<Vec<_>>().join(", ")),
        }
    }

    #[test]
    fn precedence_is_sql_like() {
        assert_eq!(tree("not a == b"), "(not (a == b))");
        assert_eq!(tree("not a and b"), "((not a) and b)");
        assert_eq!(tree("not x is null"), "(not (x is null))");
        assert_eq!(tree("due_at + grace in last 60m"), "((due_at + grace) in last 60m)");
        assert_eq!(tree("a + b * c - d"), "((a + (b * c)) - d)");
        assert_eq!(tree("a or b and c"), "(a or (b and c))");
        assert_eq!(tree("-a * b"), "((- a) * b)");
        assert_eq!(tree("a == b is null"), "((a == b) is null)");
        assert_eq!(tree("kind in ('a', 'b') and x > 1"), "((kind in [lit, lit]) and (x > 1))");
        assert_eq!(tree("a - b - c"), "((a - b) - c)");
        assert_eq!(tree("not not a"), "(not (not a))");
        assert_eq!(tree("ts in last 15m or ts is null"), "((ts in last 15m) or (ts is null))");
    }

    #[test]
    fn a_key_list_does_not_swallow_the_argument() {
        assert_eq!(tree("count_distinct(shifts match tenant, site, guard_id)"), "agg(shifts [tenant site], guard_id)");
        assert_eq!(tree("count(panic_events match tenant, guard where ts in last 30m)"), "agg(panic_events [tenant guard])");
        assert_eq!(tree("max(shifts match tenant, guard_id)"), "agg(shifts [tenant], guard_id)");
    }

    #[test]
    fn the_grammar_knows_every_key_of_the_schema() {
        for table in crate::schema::TABLES {
            for key in table.keys {
                assert_eq!(tree(&format!("count(x match {})", key.name)), format!("agg(x [{}])", key.name), "key `{}`", key.name);
            }
        }
    }
}
