//! Expressions: names, types, operators, calls, macros and aggregates over sources.

use super::*;

impl<'m> Checker<'m> {
    pub(super) fn condition(&mut self, e: &Expr) -> Option<TExpr> {
        let v = self.expr(e)?;
        if !v.ty.fits(Ty::Bool) {
            self.err(
                Diagnostic::error(
                    codes::NOT_BOOLEAN,
                    format!("a condition must be true or false, this is {}", v.ty.name()),
                    e.span,
                    "not a condition",
                )
                .hint("compare it, e.g. `count(...) >= 1`"),
            );
            return None;
        }
        Some(v)
    }

    pub(super) fn expr(&mut self, e: &Expr) -> Option<TExpr> {
        let span = e.span;
        let mk = |kind, ty| Some(TExpr { kind, ty, span });
        match &e.kind {
            ExprKind::Lit(l) => {
                let v = match l {
                    Literal::Duration { micros, .. } => Value::Duration(*micros),
                    Literal::Number { value, .. } => Value::Number(*value),
                    Literal::String(s) => Value::String(s.value.clone()),
                    Literal::Bool { value, .. } => Value::Bool(*value),
                    Literal::Null { .. } => Value::Null,
                };
                let ty = v.ty();
                mk(TKind::Lit(v), ty)
            }
            ExprKind::Now => mk(TKind::Now, Ty::Time),
            ExprKind::Path { qualifier, name } => self.path(qualifier.as_ref(), name, span),
            ExprKind::Call { name, args } => self.call(name, args, span),
            ExprKind::Agg { func, func_span, source, arg } => self.aggregate(*func, *func_span, source, arg.as_deref(), span),
            ExprKind::Binary { op, lhs, rhs } => {
                let (l, r) = (self.expr(lhs), self.expr(rhs));
                let (l, r) = (l?, r?);
                let ty = self.binary_type(*op, &l, &r)?;
                mk(TKind::Binary { op: *op, lhs: Box::new(l), rhs: Box::new(r) }, ty)
            }
            ExprKind::Not(inner) => {
                let v = self.condition(inner)?;
                mk(TKind::Not(Box::new(v)), Ty::Bool)
            }
            ExprKind::Neg(inner) => {
                let v = self.expr(inner)?;
                if !matches!(v.ty, Ty::Number | Ty::Duration | Ty::Null) {
                    self.mismatch(inner.span, "a number or duration", v.ty);
                    return None;
                }
                let ty = v.ty;
                mk(TKind::Neg(Box::new(v)), ty)
            }
            ExprKind::IsNull { expr, negated } => {
                let v = self.expr(expr)?;
                mk(TKind::IsNull { expr: Box::new(v), negated: *negated }, Ty::Bool)
            }
            ExprKind::InLast { expr, window } => {
                let (t, w) = (self.expr(expr), self.expr(window));
                let (t, w) = (t?, w?);
                if !t.ty.fits(Ty::Time) {
                    self.mismatch(expr.span, "a time", t.ty);
                    return None;
                }
                if !w.ty.fits(Ty::Duration) {
                    if !self.param_mismatch(&w, Ty::Duration) {
                        self.mismatch(window.span, "a duration such as 15m", w.ty);
                    }
                    return None;
                }
                if let TKind::Lit(Value::Duration(d)) = w.kind {
                    if d <= 0 {
                        self.err(Diagnostic::error(codes::BAD_WINDOW, "a window must be longer than zero", window.span, "empty window"));
                    }
                }
                mk(TKind::InLast { expr: Box::new(t), window: Box::new(w) }, Ty::Bool)
            }
            ExprKind::InList { expr, list } => {
                let v = self.expr(expr)?;
                let mut items = Vec::new();
                for item in list {
                    let i = self.expr(item)?;
                    if !i.ty.fits(v.ty) {
                        self.mismatch(item.span, v.ty.name(), i.ty);
                    }
                    items.push(i);
                }
                mk(TKind::InList { expr: Box::new(v), list: items }, Ty::Bool)
            }
        }
    }

    /// When `e` is a parameter used where `wanted` is needed and its declaration has the
    /// other unit-bearing type (a number for a duration, or the reverse): one error at the
    /// declaration, which is where the fix goes, with this use as a label; later uses of
    /// it add nothing. Returns whether `e` was such a parameter.
    pub(super) fn param_mismatch(&mut self, e: &TExpr, wanted: Ty) -> bool {
        let TKind::Param(name) = &e.kind else { return false };
        let Some(p) = self.params.iter().find(|p| &p.name == name) else { return false };
        let (span, default) = (p.span, p.default.clone());
        let hint = match (&default, wanted) {
            (Value::Number(n), Ty::Duration) => format!("declare it as a duration, e.g. `param {name} = {n}m` (s, m, h or d)"),
            (Value::Duration(d), Ty::Number) => format!(
                "`{}` is a duration ({} minutes); for a plain number (metres, counts) write `param {name} = {}`",
                crate::time::format_duration(*d),
                d / 60_000_000,
                d / 60_000_000
            ),
            _ => return false,
        };
        if self.misdeclared.insert(name.clone()) {
            self.err(
                Diagnostic::error(
                    codes::TYPE_MISMATCH,
                    format!("parameter `{name}` is declared as {} but used as {}", default.ty().name(), wanted.name()),
                    span,
                    format!("declared as {}", default.ty().name()),
                )
                .with_context(e.span, format!("used here as {}", wanted.name()))
                .hint(hint),
            );
        }
        true
    }

    pub(super) fn mismatch(&mut self, span: Span, expected: &str, found: Ty) {
        self.err(Diagnostic::error(
            codes::TYPE_MISMATCH,
            format!("expected {expected}, found {}", found.name()),
            span,
            format!("this is {}", found.name()),
        ));
    }

    pub(super) fn binary_type(&mut self, op: BinOp, l: &TExpr, r: &TExpr) -> Option<Ty> {
        use Ty::*;
        let (a, b) = (l.ty, r.ty);
        let ty = match op {
            BinOp::And | BinOp::Or => {
                if a.fits(Bool) && b.fits(Bool) {
                    Some(Bool)
                } else {
                    None
                }
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                if a.fits(b) && a != Bool || (a == Bool && b.fits(Bool) && matches!(op, BinOp::Eq | BinOp::Ne)) {
                    Some(Bool)
                } else {
                    None
                }
            }
            BinOp::Add => match (a, b) {
                (Time, Duration) | (Duration, Time) => Some(Time),
                (Duration, Duration) => Some(Duration),
                (Number, Number) => Some(Number),
                (Null, x) | (x, Null) => Some(x),
                _ => None,
            },
            BinOp::Sub => match (a, b) {
                (Time, Duration) => Some(Time),
                (Time, Time) | (Duration, Duration) => Some(Duration),
                (Number, Number) => Some(Number),
                (Null, x) | (x, Null) => Some(x),
                _ => None,
            },
            BinOp::Mul => match (a, b) {
                (Duration, Number) | (Number, Duration) => Some(Duration),
                (Number, Number) => Some(Number),
                (Null, x) | (x, Null) => Some(x),
                _ => None,
            },
            BinOp::Div => match (a, b) {
                (Duration, Number) => Some(Duration),
                (Duration, Duration) | (Number, Number) => Some(Number),
                (Null, x) | (x, Null) => Some(x),
                _ => None,
            },
        };
        if ty.is_none() {
            // A number parameter beside a time or duration (or a duration one beside a
            // number) is fixed at its declaration: say so there.
            let wanted = |other: Ty| if other == Time { Duration } else { other };
            if (matches!(b, Number | Duration | Time) && self.param_mismatch(l, wanted(b)))
                || (matches!(a, Number | Duration | Time) && self.param_mismatch(r, wanted(a)))
            {
                return None;
            }
            // A duration literal beside a number most likely meant the number.
            let literal_duration = [l, r].into_iter().find_map(|e| match e.kind {
                TKind::Lit(Value::Duration(d)) => Some(d),
                _ => None,
            });
            let literal_hint;
            let hint = match (a, b) {
                (Time, Number) | (Number, Time) => "times combine with durations: write `now - 15m`, not `now - 15`",
                (Duration, Number) | (Number, Duration) if literal_duration.is_some() => {
                    let d = literal_duration.unwrap_or_default();
                    literal_hint = format!(
                        "`{}` is {} minutes; for a plain number (metres, counts) write `{}`",
                        crate::time::format_duration(d),
                        d / 60_000_000,
                        d / 60_000_000
                    );
                    &literal_hint
                }
                (Duration, Number) | (Number, Duration) => "convert with minutes(...) or write the number as a duration such as 60m",
                (Time, Time) if op == BinOp::Add => "subtract times to get a duration",
                _ => "both sides must have types that fit the operator",
            };
            self.err(
                Diagnostic::error(
                    codes::TYPE_MISMATCH,
                    format!("`{}` cannot combine {} and {}", op.symbol(), a.name(), b.name()),
                    r.span,
                    format!("this is {}", b.name()),
                )
                .with_context(l.span, format!("this is {}", a.name()))
                .hint(hint),
            );
        }
        ty
    }

    pub(super) fn path(&mut self, qualifier: Option<&Ident>, name: &Ident, span: Span) -> Option<TExpr> {
        let mk = |kind, ty| Some(TExpr { kind, ty, span });
        if let Some(q) = qualifier {
            return self.qualified(q, name, span);
        }
        // 1. macro arguments of the expansion in progress
        if let Some(bound) = self.macro_stack.last().and_then(|(_, args)| args.get(&name.name)) {
            let mut v = bound.clone();
            v.span = span;
            return Some(v);
        }
        // 2. a column of the innermost row
        if let Some(scope) = self.scopes.last() {
            if let Some(col) = visible_column(scope, &name.name) {
                return mk(TKind::Column { scope: scope.id, column: col.name }, col.storage.ty());
            }
        }
        // 3. parameters, 4. lets
        if let Some(p) = self.params.iter().find(|p| p.name == name.name) {
            self.used_params.insert(p.name.clone());
            let ty = p.default.ty();
            return mk(TKind::Param(p.name.clone()), ty);
        }
        if let Some((n, ty)) = self.lets.iter().find(|(n, _)| *n == name.name) {
            return mk(TKind::Let(n.clone()), *ty);
        }
        // 5. macros without parameters
        if let Some(m) = self.macros.get(&name.name) {
            return self.expand(m, &[], name, span);
        }
        // 6. columns of enclosing rows, when unambiguous, are not guessed: say how to qualify.
        let mut d = Diagnostic::error(
            codes::UNKNOWN_NAME,
            format!("unknown name `{}`", name.name),
            name.span,
            "not a column, parameter, let or macro here",
        );
        let mut candidates: Vec<String> = Vec::new();
        if let Some(scope) = self.scopes.last() {
            candidates.extend(scope_columns(scope).iter().map(|c| c.to_string()));
            d = match scope.only_columns {
                Some(cols) => d.note(format!("a guard row has only {}", cols.join(", "))),
                None => d.note(format!("columns here are those of `{}`", scope.table.name)),
            };
        }
        candidates.extend(self.params.iter().map(|p| p.name.clone()));
        candidates.extend(self.lets.iter().map(|(n, _)| n.clone()));
        candidates.extend(self.macros.keys().cloned());
        for outer in self.scopes.iter().rev().skip(1) {
            if visible_column(outer, &name.name).is_some() {
                d = d.hint(format!(
                    "`{}` is a column of the enclosing `{}`: write `{}.{}`",
                    name.name, outer.names[0], outer.names[0], name.name
                ));
                break;
            }
        }
        d = d.suggest(&name.name, candidates.iter().map(String::as_str));
        self.err(d);
        None
    }

    pub(super) fn qualified(&mut self, q: &Ident, name: &Ident, span: Span) -> Option<TExpr> {
        let found = self.scopes.iter().rev().find(|s| s.names.contains(&q.name)).cloned();
        if let Some(scope) = found {
            return match visible_column(&scope, &name.name) {
                Some(col) => Some(TExpr { kind: TKind::Column { scope: scope.id, column: col.name }, ty: col.storage.ty(), span }),
                None => {
                    self.unknown_column(&scope, name);
                    None
                }
            };
        }
        if q.name == "site" {
            // The site of the innermost row: a lookup into `sites`.
            let sites = schema::table("sites")?;
            let Some(col) = sites.column(&name.name) else {
                self.err(
                    Diagnostic::error(
                        codes::UNKNOWN_COLUMN,
                        format!("sites have no column `{}`", name.name),
                        name.span,
                        "not a site column",
                    )
                    .suggest(&name.name, sites.columns.iter().map(|c| c.name)),
                );
                return None;
            };
            let scope = self.scopes.last()?;
            if scope.table.key("site").is_none() {
                self.err(Diagnostic::error(
                    codes::UNKNOWN_NAME,
                    format!("rows of `{}` have no site", scope.table.name),
                    q.span,
                    "no site here",
                ));
                return None;
            }
            return Some(TExpr { kind: TKind::SiteColumn { scope: scope.id, column: col.name }, ty: col.storage.ty(), span });
        }
        let names: Vec<String> = self.scopes.iter().flat_map(|s| s.names.clone()).chain(["site".to_string()]).collect();
        self.err(
            Diagnostic::error(codes::UNKNOWN_NAME, format!("`{}` names no row here", q.name), q.span, "unknown row")
                .suggest(&q.name, names.iter().map(String::as_str))
                .hint(format!("rows in scope: {}", names.join(", "))),
        );
        None
    }

    pub(super) fn unknown_column(&mut self, scope: &RowScope, name: &Ident) {
        let cols = scope_columns(scope);
        self.err(
            Diagnostic::error(
                codes::UNKNOWN_COLUMN,
                format!("`{}` has no column `{}`", scope.names[0], name.name),
                name.span,
                "unknown column",
            )
            .suggest(&name.name, cols.iter().copied())
            .note(format!("columns: {}", cols.join(", "))),
        );
    }

    pub(super) fn call(&mut self, name: &Ident, args: &[Expr], span: Span) -> Option<TExpr> {
        if let Some(m) = self.macros.get(&name.name) {
            return self.expand(m, args, name, span);
        }
        if name.name == "script" || name.name == "script_file" {
            self.err(
                Diagnostic::error(codes::SCRIPT, "a script runs on the row the SQL produced, so it cannot be part of an expression", span, "script here")
                    .hint("use it as a whole line: `when script('...')`, `severity HIGH when script('...')` or `evidence name = script('...')`, with the quotes' text a single string"),
            );
            return None;
        }
        let Some((_, f)) = BUILTINS.iter().find(|(n, _)| *n == name.name) else {
            let mut candidates: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
            candidates.extend(self.macros.keys().map(|k| k.as_str()));
            self.err(
                Diagnostic::error(
                    codes::UNKNOWN_FUNCTION,
                    format!("unknown function `{}`", name.name),
                    name.span,
                    "not a function or macro",
                )
                .suggest(&name.name, candidates)
                .note("aggregates are count, count_distinct, min, max, sum, avg, exists, none, all, any"),
            );
            return None;
        };
        let mut checked = Vec::new();
        for a in args {
            checked.push(self.expr(a)?);
        }
        use Builtin::*;
        use Ty::*;
        let arity_err = |c: &mut Self, want: &str| {
            c.err(Diagnostic::error(codes::WRONG_ARITY, format!("`{}` takes {want}", name.name), span, format!("{} given", args.len())));
        };
        let expect = |c: &mut Self, i: usize, ty: Ty| -> bool {
            let ok = checked.get(i).map(|a| a.ty.fits(ty)).unwrap_or(false);
            if !ok {
                if let Some(a) = checked.get(i) {
                    if !c.param_mismatch(a, ty) {
                        c.mismatch(a.span, ty.name(), a.ty);
                    }
                }
            }
            ok
        };
        let ty = match f {
            Minutes | Hours | Days => {
                if checked.len() != 1 {
                    arity_err(self, "one duration");
                    return None;
                }
                if !expect(self, 0, Duration) {
                    return None;
                }
                Number
            }
            DistanceM => {
                if checked.len() != 4 {
                    arity_err(self, "four numbers: lat1, lon1, lat2, lon2");
                    return None;
                }
                if !(0..4).all(|i| expect(self, i, Number)) {
                    return None;
                }
                Number
            }
            Greatest | Least | Coalesce => {
                if checked.is_empty() {
                    arity_err(self, "at least one argument");
                    return None;
                }
                let first = checked.iter().map(|a| a.ty).find(|t| *t != Null).unwrap_or(Null);
                if !(0..checked.len()).all(|i| expect(self, i, first)) {
                    return None;
                }
                first
            }
            Abs => {
                if checked.len() != 1 {
                    arity_err(self, "one number");
                    return None;
                }
                if !expect(self, 0, Number) {
                    return None;
                }
                Number
            }
            Lower | Upper => {
                if checked.len() != 1 {
                    arity_err(self, "one string");
                    return None;
                }
                if !expect(self, 0, String) {
                    return None;
                }
                String
            }
            Contains => {
                if checked.len() != 2 {
                    arity_err(self, "two strings");
                    return None;
                }
                if !(expect(self, 0, String) & expect(self, 1, String)) {
                    return None;
                }
                Bool
            }
        };
        Some(TExpr { kind: TKind::Call(*f, checked), ty, span })
    }

    pub(super) fn expand(&mut self, m: &MacroDef, args: &[Expr], name: &Ident, span: Span) -> Option<TExpr> {
        if self.macro_stack.iter().any(|(n, _)| *n == m.name.name) {
            self.err(
                Diagnostic::error(codes::MACRO_RECURSION, format!("macro `{}` uses itself", m.name.name), name.span, "recursive use")
                    .with_context(m.name.span, "defined here"),
            );
            return None;
        }
        if args.len() != m.params.len() {
            self.err(
                Diagnostic::error(
                    codes::WRONG_ARITY,
                    format!("macro `{}` takes {} argument(s), {} given", m.name.name, m.params.len(), args.len()),
                    span,
                    "wrong number of arguments",
                )
                .with_context(m.name.span, "defined here"),
            );
            return None;
        }
        let mut bound = HashMap::new();
        for (p, a) in m.params.iter().zip(args) {
            bound.insert(p.name.clone(), self.expr(a)?);
        }
        self.macro_stack.push((m.name.name.clone(), bound));
        let before = self.errors.len();
        let out = self.expr(&m.body);
        self.macro_stack.pop();
        if self.errors.len() > before {
            // Errors inside a macro body also say where the macro was used.
            for d in &mut self.errors[before..] {
                d.context.push((name.span, format!("in this use of macro `{}`", m.name.name)));
            }
        }
        out.map(|mut v| {
            v.span = span;
            v
        })
    }

    pub(super) fn aggregate(&mut self, func: AggFn, func_span: Span, src: &Source, arg: Option<&Expr>, span: Span) -> Option<TExpr> {
        // A named source reads its table with its own condition and-ed to the use's.
        let named = self.macros.sources.get(&src.table.name);
        let table = match named {
            Some(def) => self.table(&def.table)?,
            None => self.table(&src.table)?,
        };
        let outer = self.scopes.last().cloned()?;
        let join = self.join_keys(&outer, table, src)?;
        let scope_id = self.next_scope;
        self.next_scope += 1;
        let mut names = vec![table.name.to_string()];
        if let Some(def) = named {
            names.insert(0, def.name.name.clone());
        }
        if let Some(a) = &src.alias {
            names.insert(0, a.name.clone());
        }
        self.scopes.push(RowScope { id: scope_id, names, table, only_columns: None });
        let own = named.and_then(|def| def.filter.as_ref()).map(|f| self.condition(f));
        let filter = src.filter.as_ref().map(|f| self.condition(f));
        let arg_checked = arg.map(|a| self.expr(a));
        self.scopes.pop();
        let filter = match (own, filter) {
            (Some(None), _) | (_, Some(None)) => return None,
            (Some(Some(a)), Some(Some(b))) => {
                let span = b.span;
                Some(TExpr { kind: TKind::Binary { op: BinOp::And, lhs: Box::new(a), rhs: Box::new(b) }, ty: Ty::Bool, span })
            }
            (Some(Some(f)), None) | (None, Some(Some(f))) => Some(f),
            (None, None) => None,
        };
        let arg_checked = match arg_checked {
            Some(Some(a)) => Some(a),
            Some(None) => return None,
            None => None,
        };
        let source = TSource { table, scope: scope_id, join, filter };
        let needs_arg = !matches!(func, AggFn::Count | AggFn::Exists | AggFn::None);
        match (&arg_checked, needs_arg) {
            (Some(a), false) => {
                self.err(
                    Diagnostic::error(
                        codes::AGG_ARGUMENT,
                        format!("`{}` counts rows and takes no second argument", func.name()),
                        a.span,
                        "not used",
                    )
                    .hint(format!("move the condition into the source: {}({} where ...)", func.name(), table.name)),
                );
                return None;
            }
            (None, true) => {
                let example = match func {
                    AggFn::All | AggFn::Any => format!("{}({} where ..., CONDITION)", func.name(), table.name),
                    _ => format!("{}({}, COLUMN)", func.name(), table.name),
                };
                self.err(
                    Diagnostic::error(
                        codes::AGG_ARGUMENT,
                        format!("`{}` needs a value to aggregate", func.name()),
                        func_span,
                        "what should it aggregate?",
                    )
                    .hint(example),
                );
                return None;
            }
            _ => {}
        }
        let ty = match func {
            AggFn::Count | AggFn::CountDistinct => Ty::Number,
            AggFn::Exists | AggFn::None => Ty::Bool,
            AggFn::All | AggFn::Any => {
                let a = arg_checked.as_ref()?;
                if !a.ty.fits(Ty::Bool) {
                    self.mismatch(a.span, "a condition", a.ty);
                    return None;
                }
                Ty::Bool
            }
            AggFn::Min | AggFn::Max => arg_checked.as_ref()?.ty,
            AggFn::Sum | AggFn::Avg => {
                let a = arg_checked.as_ref()?;
                if !a.ty.fits(Ty::Number) {
                    self.mismatch(a.span, "a number", a.ty);
                    return None;
                }
                Ty::Number
            }
        };
        Some(TExpr { kind: TKind::Agg { func, source: Box::new(source), arg: arg_checked.map(Box::new) }, ty, span })
    }

    /// The equalities relating a source's rows to the enclosing row.
    pub(super) fn join_keys(
        &mut self,
        outer: &RowScope,
        table: &'static Table,
        src: &Source,
    ) -> Option<Vec<(&'static str, ScopeId, &'static str)>> {
        let outer_key = |k: &str| -> Option<&'static str> {
            if outer.only_columns.is_some() {
                // The guard entity row: tenant_id, site_id, guard_id.
                match k {
                    "tenant" => Some("tenant_id"),
                    "site" => Some("site_id"),
                    "guard" => Some("guard_id"),
                    _ => None,
                }
            } else {
                outer.table.key(k).map(|key| key.column)
            }
        };
        let names: Vec<String> = match &src.keys {
            Some(keys) => {
                let mut ok = true;
                for k in keys {
                    if table.key(&k.name).is_none() || outer_key(&k.name).is_none() {
                        let shared: Vec<&str> = table.keys.iter().map(|k| k.name).filter(|k| outer_key(k).is_some()).collect();
                        self.err(
                            Diagnostic::error(
                                codes::UNKNOWN_KEY,
                                format!("`{}` is not a key shared by `{}` and `{}`", k.name, outer.names[0], table.name),
                                k.span,
                                "not shared",
                            )
                            .suggest(&k.name, shared.iter().copied())
                            .note(format!("shared keys: {}", shared.join(", "))),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                // Rules never mix tenants: the tenant is always matched.
                let mut names = vec!["tenant".to_string()];
                names.extend(keys.iter().map(|k| k.name.clone()).filter(|k| k != "tenant"));
                names
            }
            None => {
                let mut keys = vec!["tenant".to_string()];
                if table.key("site").is_some() && outer_key("site").is_some() {
                    keys.push("site".into());
                }
                let own = if outer.only_columns.is_some() { Some("guard") } else { outer.table.own_key };
                match own.filter(|k| *k != "site" && table.key(k).is_some()) {
                    Some(k) => keys.push(k.to_string()),
                    None => {
                        if table.key("guard").is_some() && outer_key("guard").is_some() {
                            keys.push("guard".into());
                        }
                    }
                }
                keys
            }
        };
        let mut out = Vec::new();
        for k in names {
            if let (Some(here), Some(there)) = (table.key(&k), outer_key(&k)) {
                out.push((here.column, outer.id, there));
            }
        }
        Some(out)
    }
}

pub(super) fn scope_columns(scope: &RowScope) -> Vec<&'static str> {
    match scope.only_columns {
        Some(cols) => cols.to_vec(),
        None => scope.table.columns.iter().map(|c| c.name).collect(),
    }
}

pub(super) fn visible_column(scope: &RowScope, name: &str) -> Option<&'static schema::Column> {
    if let Some(cols) = scope.only_columns {
        if !cols.contains(&name) {
            return None;
        }
        return schema::table("shifts").and_then(|t| t.column(name));
    }
    scope.table.column(name)
}
