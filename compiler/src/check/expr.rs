//! Typing of expressions: names, attributes, operators, methods and literals,
//! with constant folding.

use super::*;

impl<'s, 'a> Checker<'s, 'a> {
    pub(super) fn condition(&mut self, expr: &ast::Expr, env: &Env) -> TExpr {
        self.typed(expr, &Type::Bool, env)
    }

    pub(super) fn typed(&mut self, expr: &ast::Expr, expected: &Type, env: &Env) -> TExpr {
        let typed = self.expr(expr, Some(expected), env);
        if !self.expect_type(&typed, expected) {
            return TExpr::error(typed.span);
        }
        typed
    }

    pub(super) fn expr(&mut self, expr: &ast::Expr, expected: Option<&Type>, env: &Env) -> TExpr {
        let span = expr.span;
        match &expr.kind {
            ExprKind::Int(value) => TExpr::constant(ConstValue::Int(*value), Type::Int, span),
            ExprKind::Duration(value) => {
                TExpr::constant(ConstValue::Duration(*value), Type::Duration, span)
            }
            ExprKind::Str(value) => {
                TExpr::constant(ConstValue::Str(value.clone()), Type::String, span)
            }
            ExprKind::Bool(value) => TExpr::constant(ConstValue::Bool(*value), Type::Bool, span),
            ExprKind::None => TExpr::constant(ConstValue::None, Type::NoneLiteral, span),
            ExprKind::Error => TExpr::error(span),
            ExprKind::Name(name) => self.name(name, span, expected, env),
            ExprKind::Set(elements) => self.set_literal(elements, span, expected, env),
            ExprKind::Call { function, args } => self.call(function, args, span, env),
            ExprKind::Attr { base, attr } => self.attribute(base, attr, span, env),
            ExprKind::Method {
                receiver,
                method,
                args,
            } => self.method(receiver, method, args, span, env),
            ExprKind::Unary { op, operand } => self.unary(*op, operand, span, expected, env),
            ExprKind::Binary { op, left, right } => {
                self.binary(*op, left, right, span, expected, env)
            }
        }
    }

    pub(super) fn name(
        &mut self,
        name: &str,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        // A bare name that the expected type makes an enum value or factor.
        if let Some(value) = expected.and_then(|ty| self.variant(name, ty, span)) {
            return value;
        }
        if let Some(&index) = self.scope.const_index.get(name) {
            self.used_consts.insert(index);
            let (value, ty) = self.constant(index);
            return if ty.is_error() {
                TExpr::error(span)
            } else {
                TExpr::constant(value, ty, span)
            };
        }
        if let Some(&index) = self.scope.switch_index.get(name) {
            self.used_switches.insert(index);
            if matches!(env, Env::Constant) {
                self.error(
                    Diagnostic::error(
                        format!("switch `{name}` cannot be used in a constant"),
                        span,
                    )
                    .with_help("switches are set at run time; constants are fixed at compile time"),
                );
                return TExpr::error(span);
            }
            let ty = resolve_type(
                &self.scope.switches[index as usize].ty,
                self.scope,
                &mut Vec::new(),
            );
            return TExpr {
                kind: TKind::Input(Input::Switch(index)),
                ty,
                span,
            };
        }
        match name {
            "now" if matches!(env, Env::Flow { .. }) => {
                return TExpr {
                    kind: TKind::Input(Input::Now),
                    ty: Type::Time,
                    span,
                };
            }
            "principal" | "context" | "session" => {
                self.error(
                    Diagnostic::error(format!("`{name}` needs an attribute"), span)
                        .with_help(format!("write `{name}.NAME`")),
                );
                return TExpr::error(span);
            }
            "now" => {
                self.error(
                    Diagnostic::error("`now` cannot be used in a constant", span)
                        .with_help("`now` is the evaluation time; compare it inside a flow"),
                );
                return TExpr::error(span);
            }
            _ => {}
        }
        // Without an expected type, a name that is exactly one enum value
        // or a factor still has one meaning.
        if let Some(value) = self.unique_variant(name, span) {
            return value;
        }
        let mut candidates: Vec<&str> = self
            .scope
            .consts
            .iter()
            .map(|c| c.name.name.as_str())
            .collect();
        candidates.extend(self.scope.switches.iter().map(|s| s.name.name.as_str()));
        candidates.push("now");
        let variants = expected
            .map(|ty| self.variant_names(ty))
            .unwrap_or_default();
        candidates.extend(variants.iter().map(String::as_str));
        let mut diagnostic =
            Diagnostic::error(format!("unknown name `{name}`"), span).with_label("not declared");
        if let Some(close) = did_you_mean(name, candidates) {
            diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
        }
        self.error(diagnostic);
        TExpr::error(span)
    }

    pub(super) fn variant_names(&self, ty: &Type) -> Vec<String> {
        match ty {
            Type::Factor => Factor::ALL.iter().map(|f| f.name().to_string()).collect(),
            Type::Enum(index) => self.scope.enums[*index as usize]
                .variants
                .iter()
                .map(|v| v.name.clone())
                .collect(),
            Type::Optional(inner) => self.variant_names(inner),
            _ => Vec::new(),
        }
    }

    pub(super) fn variant(&self, name: &str, expected: &Type, span: Span) -> Option<TExpr> {
        match expected {
            Type::Factor => Factor::from_name(name)
                .map(|f| TExpr::constant(ConstValue::Factor(f as u8), Type::Factor, span)),
            Type::Enum(index) => {
                let variant = self.scope.enums[*index as usize]
                    .variants
                    .iter()
                    .position(|v| v.name == name)?;
                Some(TExpr::constant(
                    ConstValue::Enum {
                        enumeration: *index,
                        variant: variant as u32,
                    },
                    Type::Enum(*index),
                    span,
                ))
            }
            Type::Optional(inner) => self.variant(name, inner, span),
            _ => None,
        }
    }

    pub(super) fn unique_variant(&self, name: &str, span: Span) -> Option<TExpr> {
        let mut found: Vec<TExpr> = Vec::new();
        if let Some(value) = self.variant(name, &Type::Factor, span) {
            found.push(value);
        }
        for index in 0..self.scope.enums.len() {
            if let Some(value) = self.variant(name, &Type::Enum(index as u32), span) {
                found.push(value);
            }
        }
        if found.len() == 1 {
            found.pop()
        } else {
            None
        }
    }

    pub(super) fn set_literal(
        &mut self,
        elements: &[ast::Expr],
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        let expected_element = expected.and_then(|ty| match ty {
            Type::Set(element) => Some(element.as_ref().clone()),
            Type::Optional(inner) => inner.element().cloned(),
            _ => None,
        });
        let mut element_type = expected_element.clone();
        let mut values = Vec::new();
        let mut failed = false;
        for element in elements {
            let typed = self.expr(element, element_type.as_ref(), env);
            if typed.ty.is_error() {
                failed = true;
                continue;
            }
            match &element_type {
                Some(ty) if !typed.ty.fits(ty) => {
                    let message = format!(
                        "set elements must all be `{}`, found `{}`",
                        self.show(ty),
                        self.show(&typed.ty)
                    );
                    self.error(Diagnostic::error(message, typed.span));
                    failed = true;
                    continue;
                }
                Some(_) => {}
                None => element_type = Some(typed.ty.clone()),
            }
            match typed.kind {
                TKind::Const(value) => values.push(value),
                _ => {
                    self.error(
                        Diagnostic::error("set elements must be constants", typed.span)
                            .with_help("compare the value with `==` and combine with `or`"),
                    );
                    failed = true;
                }
            }
        }
        if failed {
            return TExpr::error(span);
        }
        if let Some(Type::Set(_) | Type::Optional(_) | Type::NoneLiteral | Type::EmptySet) =
            &element_type
        {
            self.error(Diagnostic::error(
                "set elements cannot be sets or optionals",
                span,
            ));
            return TExpr::error(span);
        }
        let ty = match element_type {
            Some(element) => Type::set_of(element),
            None => Type::EmptySet,
        };
        TExpr::constant(ConstValue::set(values), ty, span)
    }

    pub(super) fn literal_argument(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        env: &Env,
    ) -> Option<(String, Span)> {
        if args.len() != 1 {
            self.error(
                Diagnostic::error(
                    format!(
                        "`{}` takes one argument, found {}",
                        function.name,
                        args.len()
                    ),
                    function.span,
                )
                .with_help(format!("write `{}(\"...\")`", function.name)),
            );
            return None;
        }
        let argument = self.expr(&args[0], Some(&Type::String), env);
        match argument.kind {
            TKind::Const(ConstValue::Str(text)) => Some((text, argument.span)),
            TKind::Error => None,
            _ => {
                self.error(
                    Diagnostic::error(
                        format!("`{}` needs a string known at compile time", function.name),
                        argument.span,
                    )
                    .with_help("pass a string literal or a string constant"),
                );
                None
            }
        }
    }

    pub(super) fn call(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        let parsed = match function.name.as_str() {
            "ip" => self
                .literal_argument(function, args, env)
                .map(|(text, at)| (parse_ip(&text).map(ConstValue::Ip), Type::Ip, at)),
            "cidr" => self
                .literal_argument(function, args, env)
                .map(|(text, at)| (parse_cidr(&text).map(ConstValue::cidr), Type::Cidr, at)),
            "time" => self
                .literal_argument(function, args, env)
                .map(|(text, at)| (parse_time(&text).map(ConstValue::Time), Type::Time, at)),
            "hour" | "weekday" => return self.calendar(function, args, span, env),
            "failures" => return self.failures(function, args, span, env),
            other => {
                let mut diagnostic =
                    Diagnostic::error(format!("unknown function `{other}`"), function.span);
                if let Some(close) =
                    did_you_mean(other, ["ip", "cidr", "time", "hour", "weekday", "failures"])
                {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                return TExpr::error(span);
            }
        };
        match parsed {
            Some((Ok(value), ty, _)) => TExpr::constant(value, ty, span),
            Some((Err(message), _, at)) => {
                self.error(Diagnostic::error(message, at).with_label("invalid literal"));
                TExpr::error(span)
            }
            None => TExpr::error(span),
        }
    }

    pub(super) fn calendar(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        if args.len() != 1 {
            self.error(Diagnostic::error(
                format!("`{}` takes one `Time` argument", function.name),
                function.span,
            ));
            return TExpr::error(span);
        }
        let time = self.typed(&args[0], &Type::Time, env);
        if time.ty.is_error() {
            return TExpr::error(span);
        }
        let kind = if function.name == "hour" {
            TKind::Hour(Box::new(time))
        } else {
            TKind::Weekday(Box::new(time))
        };
        fold(TExpr {
            kind,
            ty: Type::Int,
            span,
        })
    }

    pub(super) fn failures(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        if matches!(env, Env::Constant) {
            self.error(Diagnostic::error(
                "`failures` cannot be used in a constant",
                span,
            ));
            return TExpr::error(span);
        }
        let factor = match args {
            [ast::Expr {
                kind: ExprKind::Name(name),
                span: at,
            }] => self.factor(
                &ast::Ident {
                    name: name.clone(),
                    span: *at,
                },
                false,
            ),
            _ => {
                self.error(
                    Diagnostic::error("`failures` takes one factor", function.span)
                        .with_help("write `failures(password)`"),
                );
                None
            }
        };
        match factor {
            Some(factor) => TExpr {
                kind: TKind::Input(Input::Failures(factor)),
                ty: Type::Int,
                span,
            },
            None => TExpr::error(span),
        }
    }

    pub(super) fn attribute(
        &mut self,
        base: &ast::Expr,
        attr: &ast::Ident,
        span: Span,
        env: &Env,
    ) -> TExpr {
        let ExprKind::Name(root) = &base.kind else {
            let typed = self.expr(base, None, env);
            if !typed.ty.is_error() {
                let shown = self.show(&typed.ty);
                self.error(Diagnostic::error(
                    format!("`{shown}` has no attribute `{}`", attr.name),
                    attr.span,
                ));
            }
            return TExpr::error(span);
        };
        let kinds = match env {
            Env::Flow { any: true, .. } if root == "principal" => Vec::new(),
            Env::Flow { kinds, .. }
                if matches!(root.as_str(), "principal" | "context" | "session") =>
            {
                kinds.clone()
            }
            Env::Constant if matches!(root.as_str(), "principal" | "context" | "session") => {
                self.error(
                    Diagnostic::error(format!("`{root}` cannot be used in a constant"), base.span)
                        .with_help(
                            "constants are fixed at compile time; read the request inside a flow",
                        ),
                );
                return TExpr::error(span);
            }
            _ => {
                let typed = self.expr(base, None, env);
                if !typed.ty.is_error() {
                    let shown = self.show(&typed.ty);
                    self.error(Diagnostic::error(
                        format!("`{shown}` has no attribute `{}`", attr.name),
                        attr.span,
                    ));
                }
                return TExpr::error(span);
            }
        };
        match root.as_str() {
            "principal" => self.principal_attribute(&kinds, attr, span),
            "context" => match self.scope.context.iter().find(|f| f.name == attr.name) {
                Some(field) => TExpr {
                    kind: TKind::Input(Input::Context(attr.name.clone())),
                    ty: field.ty.clone(),
                    span,
                },
                None => {
                    let names: Vec<&str> =
                        self.scope.context.iter().map(|f| f.name.as_str()).collect();
                    self.unknown_attribute("context", &names, attr)
                }
            },
            _ => {
                let (input, ty) = match attr.name.as_str() {
                    "factors" => (Input::SessionFactors, Type::set_of(Type::Factor)),
                    "aal" => (Input::SessionAal, Type::Int),
                    "age" => (Input::SessionAge, Type::Duration),
                    "idle" => (Input::SessionIdle, Type::Duration),
                    "started_at" => (Input::SessionStartedAt, Type::Time),
                    "last_active_at" => (Input::SessionLastActiveAt, Type::Time),
                    _ => {
                        let names = [
                            "factors",
                            "aal",
                            "age",
                            "idle",
                            "started_at",
                            "last_active_at",
                        ];
                        return self.unknown_attribute("session", &names, attr);
                    }
                };
                TExpr {
                    kind: TKind::Input(input),
                    ty,
                    span,
                }
            }
        }
    }

    pub(super) fn principal_attribute(
        &mut self,
        kinds: &[u32],
        attr: &ast::Ident,
        span: Span,
    ) -> TExpr {
        if kinds.is_empty() {
            let builtin = crate::resolve::builtin_principal_fields(span);
            return match builtin.iter().find(|f| f.name == attr.name) {
                Some(field) => TExpr {
                    kind: TKind::Input(Input::Principal(attr.name.clone())),
                    ty: field.ty.clone(),
                    span,
                },
                None => {
                    let mut diagnostic = Diagnostic::error(
                        format!(
                            "`principal.{}` cannot be read in a `for any` flow",
                            attr.name
                        ),
                        attr.span,
                    );
                    diagnostic = diagnostic.with_help("a `for any` flow reads only `principal.id` and `principal.enrolled`; list the kinds after `for` to read their attributes");
                    self.error(diagnostic);
                    TExpr::error(attr.span)
                }
            };
        }
        let mut ty: Option<Type> = None;
        for &kind in kinds {
            let symbol = &self.scope.kinds[kind as usize];
            match symbol.field(&attr.name) {
                None => {
                    let names: Vec<&str> = symbol.fields.iter().map(|f| f.name.as_str()).collect();
                    let kind_name = symbol.name.clone();
                    return self.unknown_attribute(&kind_name, &names, attr);
                }
                Some(field) => match &ty {
                    Some(previous) if *previous != field.ty => {
                        let message = format!(
                            "`principal.{}` has different types for the kinds of this flow (`{}` and `{}`)",
                            attr.name,
                            self.show(previous),
                            self.show(&field.ty)
                        );
                        self.error(
                            Diagnostic::error(message, attr.span)
                                .with_help("declare the attribute with one type on every kind"),
                        );
                        return TExpr::error(span);
                    }
                    _ => ty = Some(field.ty.clone()),
                },
            }
        }
        TExpr {
            kind: TKind::Input(Input::Principal(attr.name.clone())),
            ty: ty.unwrap_or(Type::Error),
            span,
        }
    }

    pub(super) fn unknown_attribute(
        &mut self,
        owner: &str,
        names: &[&str],
        attr: &ast::Ident,
    ) -> TExpr {
        let mut diagnostic = Diagnostic::error(
            format!("`{owner}` has no attribute `{}`", attr.name),
            attr.span,
        )
        .with_label("unknown attribute");
        diagnostic = match did_you_mean(&attr.name, names.iter().copied()) {
            Some(close) => diagnostic.with_help(format!("did you mean `{close}`?")),
            None if names.is_empty() => {
                diagnostic.with_help(format!("`{owner}` declares no attributes"))
            }
            None => diagnostic.with_help(format!("the attributes are: {}", names.join(", "))),
        };
        self.error(diagnostic);
        TExpr::error(attr.span)
    }

    pub(super) fn method(
        &mut self,
        receiver: &ast::Expr,
        method: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        let set = self.expr(receiver, None, env);
        if set.ty.is_error() {
            return TExpr::error(span);
        }
        let Some(element) = set.ty.element().cloned() else {
            let shown = self.show(&set.ty);
            let mut diagnostic = Diagnostic::error(
                format!("`{shown}` has no method `{}`", method.name),
                method.span,
            );
            if let Type::Optional(_) = set.ty {
                diagnostic = diagnostic.with_help("give the optional a default with `??` first");
            }
            self.error(diagnostic);
            return TExpr::error(span);
        };
        let arity = |checker: &mut Self, count: usize| {
            if args.len() != count {
                checker.error(Diagnostic::error(
                    format!(
                        "`{}` takes {count} argument{}, found {}",
                        method.name,
                        if count == 1 { "" } else { "s" },
                        args.len()
                    ),
                    method.span,
                ));
                return false;
            }
            true
        };
        let kind = match method.name.as_str() {
            "contains" => {
                if !arity(self, 1) {
                    return TExpr::error(span);
                }
                let value = self.typed(&args[0], &element, env);
                if value.ty.is_error() {
                    return TExpr::error(span);
                }
                TKind::Member {
                    element: Box::new(value),
                    container: Box::new(set),
                }
            }
            "contains_any" | "contains_all" => {
                if !arity(self, 1) {
                    return TExpr::error(span);
                }
                let other = self.typed(&args[0], &set.ty, env);
                if other.ty.is_error() {
                    return TExpr::error(span);
                }
                if element == Type::String && set.as_const().is_none() && other.as_const().is_none()
                {
                    self.error(
                        Diagnostic::error(
                            "two sets of strings from the request cannot be compared",
                            span,
                        )
                        .with_help("compare a request set with a constant set"),
                    );
                    return TExpr::error(span);
                }
                let test = if method.name == "contains_any" {
                    SetTest::ContainsAny
                } else {
                    SetTest::ContainsAll
                };
                TKind::SetTest {
                    test,
                    set: Box::new(set),
                    other: Box::new(other),
                }
            }
            "is_empty" if arity(self, 0) => TKind::IsEmpty(Box::new(set)),
            "len" if arity(self, 0) => TKind::Len(Box::new(set)),
            "is_empty" | "len" => return TExpr::error(span),
            other => {
                let mut diagnostic =
                    Diagnostic::error(format!("sets have no method `{other}`"), method.span);
                if let Some(close) = did_you_mean(
                    other,
                    [
                        "contains",
                        "contains_any",
                        "contains_all",
                        "is_empty",
                        "len",
                    ],
                ) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                return TExpr::error(span);
            }
        };
        let ty = if matches!(kind, TKind::Len(_)) {
            Type::Int
        } else {
            Type::Bool
        };
        self.folded(TExpr { kind, ty, span })
    }

    pub(super) fn unary(
        &mut self,
        op: UnaryOp,
        operand: &ast::Expr,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        match op {
            UnaryOp::Not => {
                let operand = self.typed(operand, &Type::Bool, env);
                if operand.ty.is_error() {
                    return TExpr::error(span);
                }
                self.folded(TExpr {
                    kind: TKind::Not(Box::new(operand)),
                    ty: Type::Bool,
                    span,
                })
            }
            UnaryOp::Neg => {
                let operand = self.expr(operand, expected, env);
                match operand.ty {
                    Type::Int | Type::Duration => {
                        let ty = operand.ty.clone();
                        self.folded(TExpr {
                            kind: TKind::Neg(Box::new(operand)),
                            ty,
                            span,
                        })
                    }
                    Type::Error => TExpr::error(span),
                    _ => {
                        let shown = self.show(&operand.ty);
                        self.error(Diagnostic::error(
                            format!("cannot negate `{shown}`"),
                            operand.span,
                        ));
                        TExpr::error(span)
                    }
                }
            }
        }
    }

    /// Types both operands of a binary operator. When the left operand is a
    /// bare name that only the other side can give a meaning to (an enum
    /// value or factor), the right operand is typed first.
    pub(super) fn operands(
        &mut self,
        left: &ast::Expr,
        right: &ast::Expr,
        env: &Env,
        element_of_right: bool,
    ) -> (TExpr, TExpr) {
        let left_is_bare = matches!(&left.kind, ExprKind::Name(name) if !self.is_value_name(name));
        if left_is_bare {
            let right = self.expr(right, None, env);
            let expected = if element_of_right {
                right.ty.element().cloned()
            } else {
                Some(right.ty.clone())
            };
            let left = self.expr(left, expected.as_ref(), env);
            return (left, right);
        }
        let left = self.expr(left, None, env);
        let expected = if element_of_right {
            // An optional element still expects a set of present values;
            // `membership` then reports the optional with its `??` help.
            let element = match &left.ty {
                Type::Optional(inner) => inner.as_ref(),
                other => other,
            };
            Some(match element {
                Type::Ip => Type::set_of(Type::Cidr),
                other => Type::set_of(other.clone()),
            })
        } else {
            Some(left.ty.clone())
        };
        let right = self.expr(right, expected.as_ref(), env);
        (left, right)
    }

    pub(super) fn is_value_name(&self, name: &str) -> bool {
        self.scope.const_index.contains_key(name)
            || self.scope.switch_index.contains_key(name)
            || matches!(name, "now" | "principal" | "context" | "session")
    }

    pub(super) fn binary(
        &mut self,
        op: BinaryOp,
        left: &ast::Expr,
        right: &ast::Expr,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let left = self.typed(left, &Type::Bool, env);
                let right = self.typed(right, &Type::Bool, env);
                if left.ty.is_error() || right.ty.is_error() {
                    return TExpr::error(span);
                }
                let kind = if op == BinaryOp::And {
                    TKind::And(Box::new(left), Box::new(right))
                } else {
                    TKind::Or(Box::new(left), Box::new(right))
                };
                self.folded(TExpr {
                    kind,
                    ty: Type::Bool,
                    span,
                })
            }
            BinaryOp::Coalesce => self.coalesce(left, right, span, expected, env),
            BinaryOp::In => {
                let (element, container) = self.operands(left, right, env, true);
                self.membership(element, container, span)
            }
            BinaryOp::Add | BinaryOp::Sub => {
                let (left, right) = self.operands(left, right, env, false);
                self.arithmetic(op, left, right, span)
            }
            _ => {
                let (left, right) = self.operands(left, right, env, false);
                self.comparison(op, left, right, span)
            }
        }
    }

    pub(super) fn coalesce(
        &mut self,
        left: &ast::Expr,
        right: &ast::Expr,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        let expected_optional = expected.map(|ty| Type::optional(ty.clone()));
        let left = self.expr(left, expected_optional.as_ref(), env);
        let inner = match &left.ty {
            Type::Optional(inner) => inner.as_ref().clone(),
            Type::Error => return TExpr::error(span),
            other => {
                let shown = self.show(other);
                self.error(
                    Diagnostic::error(
                        format!("`??` needs an optional value on the left, found `{shown}`"),
                        left.span,
                    )
                    .with_help("remove the `??` default: this value is always present"),
                );
                return TExpr::error(span);
            }
        };
        let right = self.expr(right, Some(&inner), env);
        if right.ty.is_error() {
            return TExpr::error(span);
        }
        let ty = match &right.ty {
            Type::Optional(other) if **other == inner => right.ty.clone(),
            actual if actual.fits(&inner) => inner.clone(),
            actual => {
                let message = format!(
                    "the default of `??` must be `{}`, found `{}`",
                    self.show(&inner),
                    self.show(actual)
                );
                self.error(Diagnostic::error(message, right.span));
                return TExpr::error(span);
            }
        };
        self.folded(TExpr {
            kind: TKind::Coalesce(Box::new(left), Box::new(right)),
            ty,
            span,
        })
    }

    pub(super) fn optional_misuse(&mut self, operand: &TExpr, op: &str) -> bool {
        if let Type::Optional(inner) = &operand.ty {
            let shown = self.show(inner);
            let text = self.text(operand.span);
            self.error(
                Diagnostic::error(
                    format!(
                        "`{text}` is optional (`{shown}?`) and cannot be used with `{op}` directly"
                    ),
                    operand.span,
                )
                .with_label("may be absent")
                .with_help(format!(
                    "compare it with `none`, or give a default: `({text} ?? ...)`"
                )),
            );
            return true;
        }
        false
    }

    pub(super) fn comparison(
        &mut self,
        op: BinaryOp,
        left: TExpr,
        right: TExpr,
        span: Span,
    ) -> TExpr {
        if left.ty.is_error() || right.ty.is_error() {
            return TExpr::error(span);
        }
        let equality = matches!(op, BinaryOp::Eq | BinaryOp::Ne);
        if equality {
            let (value, none) = match (&left.ty, &right.ty) {
                (_, Type::NoneLiteral) => (left.clone(), true),
                (Type::NoneLiteral, _) => (right.clone(), true),
                _ => (left.clone(), false),
            };
            if none {
                if !matches!(value.ty, Type::Optional(_)) {
                    let text = self.text(value.span);
                    self.error(
                        Diagnostic::error(format!("`{text}` is never `none`"), value.span)
                            .with_help("only optional attributes (`T?`) can be `none`"),
                    );
                    return TExpr::error(span);
                }
                let kind = TKind::IsNone {
                    operand: Box::new(value),
                    negated: op == BinaryOp::Ne,
                };
                return self.folded(TExpr {
                    kind,
                    ty: Type::Bool,
                    span,
                });
            }
        }
        if self.optional_misuse(&left, op.text()) || self.optional_misuse(&right, op.text()) {
            return TExpr::error(span);
        }
        let comparable = if equality {
            matches!(
                left.ty,
                Type::Bool
                    | Type::Int
                    | Type::String
                    | Type::Duration
                    | Type::Time
                    | Type::Ip
                    | Type::Cidr
                    | Type::Factor
                    | Type::Enum(_)
            )
        } else {
            matches!(left.ty, Type::Int | Type::Duration | Type::Time)
        };
        if left.ty != right.ty {
            let message = format!(
                "cannot compare `{}` with `{}`",
                self.show(&left.ty),
                self.show(&right.ty)
            );
            self.error(
                Diagnostic::error(message, right.span)
                    .with_label(format!("this is `{}`", self.show(&right.ty)))
                    .with_secondary(left.span, format!("this is `{}`", self.show(&left.ty))),
            );
            return TExpr::error(span);
        }
        if !comparable {
            let shown = self.show(&left.ty);
            let help = if matches!(left.ty, Type::Set(_)) {
                "compare sets with `.contains_all(...)` in both directions"
            } else {
                "`<`, `<=`, `>` and `>=` compare `Int`, `Duration` and `Time` values"
            };
            self.error(
                Diagnostic::error(
                    format!("`{}` cannot compare `{shown}` values", op.text()),
                    span,
                )
                .with_help(help),
            );
            return TExpr::error(span);
        }
        let compare = match op {
            BinaryOp::Eq => Compare::Eq,
            BinaryOp::Ne => Compare::Ne,
            BinaryOp::Lt => Compare::Lt,
            BinaryOp::Le => Compare::Le,
            BinaryOp::Gt => Compare::Gt,
            _ => Compare::Ge,
        };
        self.folded(TExpr {
            kind: TKind::Compare(compare, Box::new(left), Box::new(right)),
            ty: Type::Bool,
            span,
        })
    }

    pub(super) fn membership(&mut self, element: TExpr, container: TExpr, span: Span) -> TExpr {
        if element.ty.is_error() || container.ty.is_error() {
            return TExpr::error(span);
        }
        if self.optional_misuse(&element, "in") || self.optional_misuse(&container, "in") {
            return TExpr::error(span);
        }
        let fits = match (&element.ty, &container.ty) {
            (Type::Ip, Type::Cidr) => true,
            (Type::Ip, Type::Set(inner)) if **inner == Type::Cidr => true,
            (_, Type::EmptySet) => true,
            (element_ty, Type::Set(inner)) => **inner == *element_ty,
            _ => false,
        };
        if !fits {
            let message = format!(
                "cannot test whether `{}` is in `{}`",
                self.show(&element.ty),
                self.show(&container.ty)
            );
            self.error(
                Diagnostic::error(message, span)
                    .with_help("`in` tests membership in a set of the same type, or an `Ip` in a `Cidr` or set of `Cidr`"),
            );
            return TExpr::error(span);
        }
        self.folded(TExpr {
            kind: TKind::Member {
                element: Box::new(element),
                container: Box::new(container),
            },
            ty: Type::Bool,
            span,
        })
    }

    pub(super) fn arithmetic(
        &mut self,
        op: BinaryOp,
        left: TExpr,
        right: TExpr,
        span: Span,
    ) -> TExpr {
        if left.ty.is_error() || right.ty.is_error() {
            return TExpr::error(span);
        }
        if self.optional_misuse(&left, op.text()) || self.optional_misuse(&right, op.text()) {
            return TExpr::error(span);
        }
        let add = op == BinaryOp::Add;
        let ty = match (&left.ty, &right.ty) {
            (Type::Int, Type::Int) => Some(Type::Int),
            (Type::Duration, Type::Duration) => Some(Type::Duration),
            (Type::Time, Type::Duration) => Some(Type::Time),
            (Type::Duration, Type::Time) if add => Some(Type::Time),
            (Type::Time, Type::Time) if !add => Some(Type::Duration),
            _ => None,
        };
        let Some(ty) = ty else {
            let message = format!(
                "cannot apply `{}` to `{}` and `{}`",
                op.text(),
                self.show(&left.ty),
                self.show(&right.ty)
            );
            self.error(
                Diagnostic::error(message, span)
                    .with_help("`+` and `-` work on `Int`, `Duration`, and `Time` with `Duration`; `Time - Time` is a `Duration`"),
            );
            return TExpr::error(span);
        };
        let (left, right) = if matches!((&left.ty, &right.ty), (Type::Duration, Type::Time)) {
            (right, left)
        } else {
            (left, right)
        };
        let kind = if add {
            TKind::Add(Box::new(left), Box::new(right))
        } else {
            TKind::Sub(Box::new(left), Box::new(right))
        };
        self.folded(TExpr { kind, ty, span })
    }

    /// Folds a constant expression, reporting overflow as an error.
    pub(super) fn folded(&mut self, expr: TExpr) -> TExpr {
        let span = expr.span;
        let all_const = children(&expr)
            .iter()
            .all(|child| child.as_const().is_some());
        if !all_const {
            return expr;
        }
        match evaluate_const(&expr) {
            Some(Ok(value)) => TExpr::constant(value, expr.ty, span),
            Some(Err(message)) => {
                self.error(
                    Diagnostic::error(message, span)
                        .with_help("constants are 64-bit; keep values in range"),
                );
                TExpr::error(span)
            }
            None => expr,
        }
    }
}
