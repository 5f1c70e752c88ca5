//! Checking of flow bodies: every step, `match` exhaustiveness, factors and records.

use super::*;

impl<'s, 'a> Checker<'s, 'a> {
    pub(super) fn flow_kinds(&mut self, decl: &ast::FlowDecl) -> (Vec<u32>, bool) {
        match &decl.kinds {
            ast::Kinds::Any(_) => ((0..self.scope.kinds.len() as u32).collect(), true),
            ast::Kinds::Listed(names) => {
                let mut kinds = Vec::new();
                for name in names {
                    match self.scope.kind_index.get(&name.name) {
                        Some(&index) if kinds.contains(&index) => self.error(Diagnostic::error(
                            format!("kind `{}` is listed twice", name.name),
                            name.span,
                        )),
                        Some(&index) => kinds.push(index),
                        None => {
                            let mut diagnostic = Diagnostic::error(
                                format!("unknown principal kind `{}`", name.name),
                                name.span,
                            )
                            .with_label("no `principal` declares this kind");
                            let known: Vec<&str> =
                                self.scope.kinds.iter().map(|k| k.name.as_str()).collect();
                            diagnostic = match did_you_mean(&name.name, known.iter().copied()) {
                                Some(close) => {
                                    diagnostic.with_help(format!("did you mean `{close}`?"))
                                }
                                None => diagnostic.with_help(format!(
                                    "declare it with `principal {} {{ ... }}`{}",
                                    name.name,
                                    if known.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" or use one of: {}", known.join(", "))
                                    }
                                )),
                            };
                            self.error(diagnostic);
                        }
                    }
                }
                (kinds, false)
            }
        }
    }

    pub(super) fn block(
        &mut self,
        block: &ast::Block,
        env: &Env,
        flow_kinds: &[(Vec<u32>, bool)],
    ) -> Vec<TStep> {
        block
            .steps
            .iter()
            .filter_map(|step| self.step(step, env, flow_kinds))
            .collect()
    }

    pub(super) fn step(
        &mut self,
        step: &ast::Step,
        env: &Env,
        flow_kinds: &[(Vec<u32>, bool)],
    ) -> Option<TStep> {
        let kind = match &step.kind {
            StepKind::Allow { with } => TStepKind::Allow {
                attributes: self.record(with.as_ref(), env),
            },
            StepKind::Deny { reason, when } => {
                let when = when.as_ref().map(|w| self.condition(w, env));
                TStepKind::Deny {
                    reason: reason.clone(),
                    when,
                }
            }
            StepKind::Require {
                factors,
                within,
                attempts,
            } => {
                let requirement = self.requirement(factors, true)?;
                let within = within.as_ref().map(|w| self.typed(w, &Type::Duration, env));
                let attempts = attempts.as_ref().map(|a| self.typed(a, &Type::Int, env));
                TStepKind::Require {
                    requirement,
                    within,
                    attempts,
                }
            }
            StepKind::Enroll { factors } => TStepKind::Enroll {
                requirement: self.requirement(factors, false)?,
            },
            StepKind::Approve { roles, within } => {
                let mut names: Vec<String> = Vec::new();
                for role in roles {
                    if names.contains(&role.name) {
                        self.error(Diagnostic::error(
                            format!("role `{}` is listed twice", role.name),
                            role.span,
                        ));
                    } else {
                        names.push(role.name.clone());
                    }
                }
                let within = within.as_ref().map(|w| self.typed(w, &Type::Duration, env));
                TStepKind::Approve {
                    roles: names,
                    within,
                }
            }
            StepKind::Emit { name, with } => TStepKind::Emit {
                name: name.clone(),
                attributes: self.record(with.as_ref(), env),
            },
            StepKind::If { arms, otherwise } => {
                let arms = arms
                    .iter()
                    .map(|(guard, body)| {
                        (
                            self.condition(guard, env),
                            self.block(body, env, flow_kinds),
                        )
                    })
                    .collect();
                let otherwise = otherwise.as_ref().map(|b| self.block(b, env, flow_kinds));
                TStepKind::If { arms, otherwise }
            }
            StepKind::Match { scrutinee, arms } => {
                return self.match_step(
                    step.span,
                    crate::format::step_text(step),
                    scrutinee,
                    arms,
                    env,
                    flow_kinds,
                )
            }
            StepKind::Exception { name, when, body } => {
                let when = self.condition(when, env);
                let body = self.block(body, env, flow_kinds);
                if !self.terminates(&body, &mut Vec::new()) {
                    self.error(
                        Diagnostic::error(
                            format!("exception path `{name}` can end without a decision"),
                            step.span,
                        )
                        .with_label("some path through this block does not reach `allow` or `deny`")
                        .with_help("end every path of an exception block with `allow` or `deny`"),
                    );
                }
                TStepKind::Exception {
                    name: name.clone(),
                    when,
                    body,
                }
            }
            StepKind::Run { flow } => {
                let Some(&index) = self.scope.flow_index.get(&flow.name) else {
                    let mut diagnostic =
                        Diagnostic::error(format!("unknown flow `{}`", flow.name), flow.span)
                            .with_label("no flow has this name");
                    let names: Vec<&str> = self
                        .scope
                        .flows
                        .iter()
                        .map(|f| f.name.name.as_str())
                        .collect();
                    if let Some(close) = did_you_mean(&flow.name, names) {
                        diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                    }
                    self.error(diagnostic);
                    return None;
                };
                if let Env::Flow { kinds, any } = env {
                    let (target_kinds, target_any) = &flow_kinds[index as usize];
                    if *any && !*target_any {
                        self.error(
                            Diagnostic::error(format!("flow `{}` does not accept every principal kind", flow.name), flow.span)
                                .with_help(format!("a `for any` flow can only run flows declared `for any`; declare `{}` `for any` or list kinds here", flow.name)),
                        );
                    } else if let Some(missing) = kinds.iter().find(|k| !target_kinds.contains(k)) {
                        let kind_name = self.scope.kinds[*missing as usize].name.clone();
                        self.error(
                            Diagnostic::error(
                                format!(
                                    "flow `{}` does not accept principal kind `{kind_name}`",
                                    flow.name
                                ),
                                flow.span,
                            )
                            .with_help(format!(
                                "add `{kind_name}` to the `for` list of `{}`",
                                flow.name
                            )),
                        );
                    }
                }
                TStepKind::Run { flow: index }
            }
        };
        Some(TStep {
            kind,
            span: step.span,
            text: crate::format::step_text(step),
        })
    }

    pub(super) fn match_step(
        &mut self,
        span: Span,
        text: String,
        scrutinee: &ast::Expr,
        arms: &[ast::MatchArm],
        env: &Env,
        flow_kinds: &[(Vec<u32>, bool)],
    ) -> Option<TStep> {
        let value = self.expr(scrutinee, None, env);
        let Type::Enum(enumeration) = value.ty else {
            if !value.ty.is_error() {
                let found = self.show(&value.ty);
                self.error(
                    Diagnostic::error(
                        format!("`match` needs an enum value, found `{found}`"),
                        value.span,
                    )
                    .with_help("use `if` for other conditions"),
                );
            }
            return None;
        };
        let variants: Vec<String> = self.scope.enums[enumeration as usize]
            .variants
            .iter()
            .map(|v| v.name.clone())
            .collect();
        let mut seen: HashMap<u32, Span> = HashMap::new();
        let mut typed_arms = Vec::new();
        for arm in arms {
            let Some(variant) = variants.iter().position(|v| *v == arm.variant.name) else {
                let enum_name = self.enum_names[enumeration as usize].clone();
                let mut diagnostic = Diagnostic::error(
                    format!("`{}` is not a value of `{enum_name}`", arm.variant.name),
                    arm.variant.span,
                );
                if let Some(close) =
                    did_you_mean(&arm.variant.name, variants.iter().map(String::as_str))
                {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                continue;
            };
            let variant = variant as u32;
            if let Some(first) = seen.get(&variant) {
                self.error(
                    Diagnostic::error(
                        format!("`{}` is matched twice", arm.variant.name),
                        arm.variant.span,
                    )
                    .with_secondary(*first, "first matched here"),
                );
                continue;
            }
            seen.insert(variant, arm.variant.span);
            let guard = TExpr {
                kind: TKind::Compare(
                    Compare::Eq,
                    Box::new(value.clone()),
                    Box::new(TExpr::constant(
                        ConstValue::Enum {
                            enumeration,
                            variant,
                        },
                        Type::Enum(enumeration),
                        arm.variant.span,
                    )),
                ),
                ty: Type::Bool,
                span: arm.variant.span,
            };
            typed_arms.push((guard, self.block(&arm.body, env, flow_kinds)));
        }
        let missing: Vec<&str> = variants
            .iter()
            .enumerate()
            .filter(|(index, _)| !seen.contains_key(&(*index as u32)))
            .map(|(_, name)| name.as_str())
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let enum_name = &self.enum_names[enumeration as usize];
            self.diagnostics.push(
                Diagnostic::error(
                    format!("`match` on `{enum_name}` does not cover {list}"),
                    value.span,
                )
                .with_label("not every value has an arm")
                .with_help(format!("add an arm for {list}")),
            );
            return None;
        }
        // Every value has an arm, so the last arm needs no guard.
        let otherwise = typed_arms.pop().map(|(_, body)| body);
        Some(TStep {
            kind: TStepKind::If {
                arms: typed_arms,
                otherwise,
            },
            span,
            text,
        })
    }

    pub(super) fn requirement(
        &mut self,
        spec: &ast::FactorSpec,
        allow_levels: bool,
    ) -> Option<Requirement> {
        match spec {
            ast::FactorSpec::One(name) => {
                if allow_levels {
                    if let Some(level) = assurance_level_name(&name.name) {
                        return Some(Requirement::Level(level));
                    }
                }
                self.factor(name, allow_levels)
                    .map(|f| Requirement::Any(f.bit()))
            }
            ast::FactorSpec::Any(names) => Some(Requirement::Any(self.factor_set(names)?)),
            ast::FactorSpec::All(names) => Some(Requirement::All(self.factor_set(names)?)),
        }
    }

    pub(super) fn factor_set(&mut self, names: &[ast::Ident]) -> Option<u64> {
        let mut bits = 0;
        let mut ok = true;
        for name in names {
            match self.factor(name, false) {
                Some(factor) if bits & factor.bit() != 0 => {
                    self.error(Diagnostic::error(
                        format!("factor `{}` is listed twice", name.name),
                        name.span,
                    ));
                }
                Some(factor) => bits |= factor.bit(),
                None => ok = false,
            }
        }
        ok.then_some(bits)
    }

    pub(super) fn factor(&mut self, name: &ast::Ident, levels_allowed: bool) -> Option<Factor> {
        if let Some(factor) = Factor::from_name(&name.name) {
            return Some(factor);
        }
        let mut diagnostic =
            Diagnostic::error(format!("unknown factor `{}`", name.name), name.span)
                .with_label("not a built-in factor");
        if assurance_level_name(&name.name).is_some() {
            diagnostic =
                Diagnostic::error(format!("`{}` cannot be used here", name.name), name.span)
                    .with_help("an assurance level stands alone: `require aal2`");
        } else {
            let mut candidates: Vec<&str> = Factor::ALL.iter().map(|f| f.name()).collect();
            if levels_allowed {
                candidates.extend(["aal1", "aal2", "aal3"]);
            }
            diagnostic = match did_you_mean(&name.name, candidates.iter().copied()) {
                Some(close) => diagnostic.with_help(format!("did you mean `{close}`?")),
                None => diagnostic.with_help(format!("the factors are: {}", candidates.join(", "))),
            };
        }
        self.error(diagnostic);
        None
    }

    pub(super) fn record(
        &mut self,
        record: Option<&ast::Record>,
        env: &Env,
    ) -> Vec<(String, TExpr)> {
        let Some(record) = record else {
            return Vec::new();
        };
        let mut entries: Vec<(String, TExpr)> = Vec::new();
        for (key, value) in &record.entries {
            let value = self.expr(value, None, env);
            if entries.iter().any(|(name, _)| *name == key.name) {
                self.error(Diagnostic::error(
                    format!("attribute `{}` is given twice", key.name),
                    key.span,
                ));
                continue;
            }
            self.check_output_type(&value);
            entries.push((key.name.clone(), value));
        }
        entries
    }

    /// Output attributes must be renderable from the bound record: a request
    /// set of strings is stored as membership bits, not as its elements.
    /// Sets of `Bool`, `Int`, `Duration`, `Time`, `Ip` or `Cidr` values have
    /// no membership bits, so lowering returns them as constants. No request
    /// attribute or switch has such a type, so these sets are always
    /// constants, and the check below only guards that rule.
    pub(super) fn check_output_type(&mut self, value: &TExpr) {
        let inner = match &value.ty {
            Type::Optional(inner) => inner.as_ref(),
            other => other,
        };
        if let Type::Set(element) = inner {
            let has_bits = matches!(
                **element,
                Type::String | Type::Factor | Type::Enum(_) | Type::Error
            );
            if !has_bits && value.as_const().is_none() {
                let type_name = self.show(&value.ty);
                self.error(Diagnostic::error(
                    format!(
                        "a `{type_name}` value must be a constant to be returned as an attribute"
                    ),
                    value.span,
                ));
                return;
            }
        }
        let unsupported = match inner {
            Type::Set(element) => **element == Type::String && value.as_const().is_none(),
            Type::NoneLiteral | Type::EmptySet => false,
            _ => false,
        };
        if unsupported {
            self.error(
                Diagnostic::error(
                    "a set of strings from the request cannot be returned as an attribute",
                    value.span,
                )
                .with_help(
                    "return a constant set, or test membership with `in` or `.contains(...)`",
                ),
            );
        }
    }
}
