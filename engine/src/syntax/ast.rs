//! The abstract syntax tree of a rule file.
//!
//! Invariant: every node carries the [`Span`] of the text it came from, so that
//! diagnostics, `explain` and script errors can always point back into the file.

use std::fmt;

/// Index of a source file in a [`crate::diag::Sources`] set.
pub type FileId = usize;

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the range belongs to.
    pub file: FileId,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// A name with its place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The name as written.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A parsed rule file: macros, rules and runbooks in the order written.
#[derive(Debug, Clone, Default)]
pub struct RuleFile {
    /// `macro name(params) = expr` definitions.
    pub macros: Vec<MacroDef>,
    /// `source name = table where ...` definitions.
    pub sources: Vec<SourceDef>,
    /// `rule ID { ... }` definitions.
    pub rules: Vec<RuleDef>,
    /// `runbook ID { ... }` definitions.
    pub runbooks: Vec<RunbookDef>,
    /// `categories { ... }` blocks.
    pub categories: Vec<CategoriesDef>,
    /// `severity TYPE { ... }` adjustment blocks.
    pub severities: Vec<SeverityDef>,
    /// `override tenant "T" site "S" { ... }` blocks.
    pub overrides: Vec<OverrideDef>,
    /// `cascade { ... }` blocks (runbook matching order).
    pub cascades: Vec<CascadeDef>,
    /// `metric NAME { ... }` definitions (series for baselines).
    pub metrics: Vec<MetricDef>,
    /// `anomaly ID { ... }` rules.
    pub anomalies: Vec<AnomalyDef>,
    /// `inhibit ... while ... holds at the same site|guard` lines.
    pub inhibits: Vec<InhibitDef>,
}

/// `inhibit A, B while C holds at the same site`: findings of A and B at a site (or
/// guard) where a C finding holds at the same time are marked as inhibited by it.
#[derive(Debug, Clone)]
pub struct InhibitDef {
    /// The finding types inhibited.
    pub inhibited: Vec<Ident>,
    /// The finding type that inhibits them.
    pub by: Ident,
    /// Same guard rather than same site.
    pub same_guard: bool,
    /// The whole line.
    pub span: Span,
}

/// `source NAME = TABLE [where CONDITION]`: a filtered table named once and
/// aggregated like a table (`count(NAME where ...)`).
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// Its name.
    pub name: Ident,
    /// The table it reads.
    pub table: Ident,
    /// Its rows' condition, over the table's columns.
    pub filter: Option<Expr>,
    /// The whole definition.
    pub span: Span,
}

/// `metric NAME { count TABLE ... | sum TABLE.COLUMN ...; bucket 60m }`
#[derive(Debug, Clone)]
pub struct MetricDef {
    /// Its name.
    pub name: Ident,
    /// `doc "..."`
    pub doc: Option<StringLit>,
    /// What is counted or summed (more than one is an error the checker reports).
    pub sources: Vec<MetricSource>,
    /// `bucket DURATION`, with where it was written.
    pub bucket: Option<(i64, Span)>,
    /// The whole block.
    pub span: Span,
}

/// What a metric measures per bucket.
#[derive(Debug, Clone)]
pub enum MetricSource {
    /// `count TABLE [at COLUMN] [where COND]`
    Count {
        /// The table.
        table: Ident,
        /// The time column (default: the table's event time).
        time: Option<Ident>,
        /// Row filter.
        filter: Option<Expr>,
        /// The line.
        span: Span,
    },
    /// `sum|avg|min|max|last TABLE.COLUMN [per COLUMN] [where COND]`
    Sum {
        /// How a bucket's rows become its value.
        aggregate: MetricAgg,
        /// The table.
        table: Ident,
        /// The aggregated column.
        column: Ident,
        /// One series per value of this column.
        per: Option<Ident>,
        /// Row filter.
        filter: Option<Expr>,
        /// The line.
        span: Span,
    },
}

/// How the rows of one bucket become the bucket's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricAgg {
    /// the total (counters; `count` sums ones)
    Sum,
    /// the mean (gauges)
    Avg,
    /// the smallest value (gauges)
    Min,
    /// the largest value (gauges)
    Max,
    /// the value of the latest row (gauges)
    Last,
}

impl MetricAgg {
    /// Its word in rule files.
    pub fn name(self) -> &'static str {
        match self {
            MetricAgg::Sum => "sum",
            MetricAgg::Avg => "avg",
            MetricAgg::Min => "min",
            MetricAgg::Max => "max",
            MetricAgg::Last => "last",
        }
    }
}

/// `anomaly ID { ... }`
#[derive(Debug, Clone)]
pub struct AnomalyDef {
    /// Rule id.
    pub id: Ident,
    /// Its lines, in order.
    pub items: Vec<AnomalyItem>,
    /// The whole block.
    pub span: Span,
}

/// One line of an anomaly rule.
#[derive(Debug, Clone)]
pub enum AnomalyItem {
    /// finding, title, doc, category, cadence or action: as in a rule.
    Common(Box<RuleItem>),
    /// `severity LEVEL [beyond NUMBER]`
    Severity {
        /// The level.
        level: Ident,
        /// |z| from which this level applies.
        beyond: Option<(f64, Span)>,
    },
    /// `NAME VALUE[, VALUE...]` such as `direction below` or `fallback hour_of_day, all_hours`.
    Setting {
        /// The setting.
        name: Ident,
        /// Its values.
        values: Vec<SettingValue>,
        /// The line.
        span: Span,
    },
}

/// A value of an anomaly setting.
#[derive(Debug, Clone)]
pub enum SettingValue {
    /// A word, optionally with `stable_after N` (for fallback levels).
    Name(Ident, Option<(f64, Span)>),
    /// A number.
    Number(f64, Span),
}

/// What a cascade step compares between a finding and a runbook's `matches` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchField {
    /// the finding type
    FindingType,
    /// the category
    Category,
    /// the severity
    Severity,
}

/// The runbook matching cascade: steps in order, then the fallback runbook.
#[derive(Debug, Clone)]
pub struct CascadeDef {
    /// Each step's fields, e.g. [Category, Severity].
    pub steps: Vec<(Vec<MatchField>, Span)>,
    /// The runbook used when no step matches.
    pub fallback: Ident,
    /// The whole block.
    pub span: Span,
}

/// Parameter values for a tenant, a site, or one site of a tenant.
#[derive(Debug, Clone)]
pub struct OverrideDef {
    /// `tenant "T1"`
    pub tenant: Option<StringLit>,
    /// `site "S-17"`
    pub site: Option<StringLit>,
    /// `RULE.param = VALUE` lines.
    pub settings: Vec<OverrideSetting>,
    /// The whole block.
    pub span: Span,
}

/// One `RULE.param = VALUE` line.
#[derive(Debug, Clone)]
pub struct OverrideSetting {
    /// The rule id.
    pub rule: Ident,
    /// The parameter.
    pub param: Ident,
    /// The new value.
    pub value: Literal,
}

/// Severity adjustments for one finding type, kept apart from the pattern.
#[derive(Debug, Clone)]
pub struct SeverityDef {
    /// The finding type they apply to.
    pub finding_type: Ident,
    /// `LEVEL when CONDITION`, first true wins.
    pub steps: Vec<(Ident, Expr)>,
    /// The whole block.
    pub span: Span,
}

/// Keyword categorization: `CATEGORY: KEYWORD, ...` lines in order, then `otherwise CATEGORY`.
#[derive(Debug, Clone)]
pub struct CategoriesDef {
    /// (category, keywords) in order; the first category with a keyword inside the finding type wins.
    pub rules: Vec<(Ident, Vec<Ident>)>,
    /// The category when no keyword matches.
    pub fallback: Option<Ident>,
    /// The whole block.
    pub span: Span,
}

/// A reusable, named condition or value (Falco's `macro`).
#[derive(Debug, Clone)]
pub struct MacroDef {
    /// Its name.
    pub name: Ident,
    /// Formal parameters, substituted by the arguments at each use.
    pub params: Vec<Ident>,
    /// The expression it stands for.
    pub body: Expr,
    /// The whole definition.
    pub span: Span,
}

/// One `rule ID { ... }` block, items in the order written.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// The rule id (also the finding type unless `finding` says otherwise).
    pub id: Ident,
    /// The items of the rule.
    pub items: Vec<RuleItem>,
    /// The whole block.
    pub span: Span,
}

/// One line of a rule.
#[derive(Debug, Clone)]
pub enum RuleItem {
    /// `finding TYPE`
    Finding(Ident),
    /// `title "..."`
    Title(StringLit),
    /// `doc "..."`
    Doc(StringLit),
    /// `category NAME`
    Category(Ident),
    /// `severity LEVEL [when EXPR]`
    Severity { level: Ident, when: Option<Expr>, span: Span },
    /// `cadence heartbeat|comprehensive|deep`
    Cadence(Ident),
    /// `for ENTITY [in TABLE] [where EXPR]`
    For { entity: Ident, table: Option<Ident>, filter: Option<Expr>, span: Span },
    /// `param NAME = LITERAL`
    Param { name: Ident, value: Literal, span: Span },
    /// `let NAME = EXPR`
    Let { name: Ident, value: Expr, span: Span },
    /// `when EXPR`
    When(Expr),
    /// `evidence a, b = expr, ...`
    Evidence(Vec<EvidenceField>),
    /// `action "..."`
    Action(StringLit),
}

/// A figure copied into the finding's evidence.
#[derive(Debug, Clone)]
pub struct EvidenceField {
    /// The key in the evidence object.
    pub name: Ident,
    /// The value; `None` means "the `let`, parameter or column of that name".
    pub value: Option<Expr>,
}

/// A string literal with its span (quotes excluded from `value`).
#[derive(Debug, Clone, PartialEq)]
pub struct StringLit {
    /// The unescaped text.
    pub value: String,
    /// Where it was written, quotes included.
    pub span: Span,
}

/// A constant written in a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `15m`, `30d`: stored in microseconds.
    Duration { micros: i64, span: Span },
    /// `5`, `0.8`
    Number { value: f64, span: Span },
    /// `'checkin'`
    String(StringLit),
    /// `true`, `false`
    Bool { value: bool, span: Span },
    /// `null`
    Null { span: Span },
}

impl Literal {
    /// Where it was written.
    pub fn span(&self) -> Span {
        match self {
            Literal::Duration { span, .. } | Literal::Number { span, .. } | Literal::Bool { span, .. } | Literal::Null { span } => *span,
            Literal::String(s) => s.span,
        }
    }
}

/// Binary operators, loosest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    /// The operator as written in the language.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

/// Aggregate functions over the rows of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    CountDistinct,
    Min,
    Max,
    Sum,
    Avg,
    Exists,
    None,
    All,
    Any,
}

impl AggFn {
    /// The name as written.
    pub fn name(self) -> &'static str {
        match self {
            AggFn::Count => "count",
            AggFn::CountDistinct => "count_distinct",
            AggFn::Min => "min",
            AggFn::Max => "max",
            AggFn::Sum => "sum",
            AggFn::Avg => "avg",
            AggFn::Exists => "exists",
            AggFn::None => "none",
            AggFn::All => "all",
            AggFn::Any => "any",
        }
    }
}

/// The rows an aggregate runs over: `TABLE [as ALIAS] [match KEYS] [where EXPR]`.
#[derive(Debug, Clone)]
pub struct Source {
    /// The table (or derived table such as `activity`).
    pub table: Ident,
    /// A name for its row, to refer to it from nested sources.
    pub alias: Option<Ident>,
    /// Keys relating its rows to the enclosing row; default: the shared keys.
    pub keys: Option<Vec<Ident>>,
    /// Row filter.
    pub filter: Option<Box<Expr>>,
    /// The whole source.
    pub span: Span,
}

/// An expression.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What kind of expression.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The shapes of expressions.
#[derive(Debug, Clone)]
pub enum ExprKind {
    /// A constant.
    Lit(Literal),
    /// The evaluation time T.
    Now,
    /// `name` or `qualifier.name`.
    Path { qualifier: Option<Ident>, name: Ident },
    /// `f(a, b)`: a built-in function or a macro.
    Call { name: Ident, args: Vec<Expr> },
    /// `count(source)`, `max(source, expr)`, `all(source, predicate)`.
    Agg { func: AggFn, func_span: Span, source: Source, arg: Option<Box<Expr>> },
    /// `a op b`
    Binary { op: BinOp, lhs: Box<Expr>, rhs: Box<Expr> },
    /// `not a`
    Not(Box<Expr>),
    /// `-a`
    Neg(Box<Expr>),
    /// `a is null` / `a is not null`
    IsNull { expr: Box<Expr>, negated: bool },
    /// `t in last 15m`: the half-open window (now - 15m, now].
    InLast { expr: Box<Expr>, window: Box<Expr> },
    /// `a in ('x', 'y')`
    InList { expr: Box<Expr>, list: Vec<Expr> },
}

/// One `runbook ID { ... }` block.
#[derive(Debug, Clone)]
pub struct RunbookDef {
    /// The runbook id.
    pub id: Ident,
    /// Its lines.
    pub items: Vec<RunbookItem>,
    /// The whole block.
    pub span: Span,
}

/// One line of a runbook.
#[derive(Debug, Clone)]
pub enum RunbookItem {
    /// `title "..."`
    Title(StringLit),
    /// `tenant "T1"`: a tenant's own runbook.
    Tenant(StringLit),
    /// `matches finding TYPE`
    MatchesFinding(Ident),
    /// `matches category C [severity S]`
    MatchesClass { category: Ident, severity: Option<Ident> },
    /// `escalate_after 15m`
    EscalateAfter(Literal),
    /// `step "..."`
    Step(StringLit),
    /// `auto sms_guard [on|off]` (`None`: no switch written)
    Auto { action: Ident, enabled: Option<bool> },
}
