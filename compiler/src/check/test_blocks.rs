//! Checking of `test` blocks and invariants, and their translation to JSON input.

use super::*;

impl<'s, 'a> Checker<'s, 'a> {
    pub(super) fn test(&mut self, test: &ast::TestDecl, checked: &Checked) -> CheckedTest {
        use ast::TestStatementKind as S;
        let mut kinds: Vec<u32> = Vec::new();
        let mut steps = Vec::new();
        let variants = checked.enum_variants();
        for statement in &test.statements {
            let step = match &statement.kind {
                S::Flow(name) => {
                    let Some(flow) = self.flow_ref(name, checked) else {
                        continue;
                    };
                    kinds = checked.flows[flow as usize].kinds.clone();
                    TestStep::Flow(name.name.clone())
                }
                S::Principal { kind, record } => match self.scope.kind_index.get(&kind.name) {
                    Some(&index) => {
                        let fields = self.scope.kinds[index as usize].fields.clone();
                        let owner = format!("principal `{}`", kind.name);
                        let values = self.constant_record(record, &fields, &owner, &variants);
                        kinds = vec![index];
                        TestStep::Principal {
                            kind: kind.name.clone(),
                            values,
                        }
                    }
                    None => {
                        self.error(Diagnostic::error(
                            format!("unknown principal kind `{}`", kind.name),
                            kind.span,
                        ));
                        continue;
                    }
                },
                S::Context(record) => {
                    let fields = self.scope.context.clone();
                    TestStep::Context(self.constant_record(record, &fields, "context", &variants))
                }
                S::Update {
                    context,
                    principal,
                    switches,
                } => {
                    let update_switches = match switches {
                        Some(record) => self.switch_values(record, &variants),
                        None => Vec::new(),
                    };
                    let mut update_context = Vec::new();
                    let mut update_principal = Vec::new();
                    if let Some(record) = context {
                        let fields = self.scope.context.clone();
                        update_context =
                            self.constant_record(record, &fields, "context", &variants);
                    }
                    if let Some(record) = principal {
                        match kinds.first() {
                            Some(&kind) => {
                                let fields = self.scope.kinds[kind as usize].fields.clone();
                                update_principal =
                                    self.constant_record(record, &fields, "principal", &variants);
                            }
                            None => self.error(
                                Diagnostic::error(
                                    "`update principal` needs the principal's kind",
                                    record.span,
                                )
                                .with_help("give `principal KIND { ... }` before the update"),
                            ),
                        }
                    }
                    TestStep::Event(TestEvent::Update {
                        context: update_context,
                        principal: update_principal,
                        switches: update_switches,
                    })
                }
                S::Session(record) => TestStep::Session(self.session_record(record, &variants)),
                S::Switches(record) => TestStep::Switches(self.switch_values(record, &variants)),
                S::Verify(factor) | S::Fail(factor) | S::Enroll(factor) => {
                    let Some(found) = self.factor(factor, false) else {
                        continue;
                    };
                    let name = found.name().to_string();
                    TestStep::Event(match &statement.kind {
                        S::Verify(_) => TestEvent::Verify(name),
                        S::Fail(_) => TestEvent::Fail(name),
                        _ => TestEvent::Enroll(name),
                    })
                }
                S::Approve { role, approver } => TestStep::Event(TestEvent::Approval {
                    role: role.name.clone(),
                    approver: approver.clone(),
                    granted: true,
                }),
                S::Refuse { role, approver } => TestStep::Event(TestEvent::Approval {
                    role: role.name.clone(),
                    approver: approver.clone(),
                    granted: false,
                }),
                S::Expect { decision, detail } => {
                    let expected = match detail.as_ref().map(|d| &d.kind) {
                        None => None,
                        Some(ExprKind::Str(reason)) => Some(Expected::Reason(reason.clone())),
                        Some(ExprKind::Set(elements)) => {
                            let mut names = Vec::new();
                            for element in elements {
                                match &element.kind {
                                    ExprKind::Name(name) => names.push(name.clone()),
                                    _ => self.error(Diagnostic::error(
                                        "expected a factor or role name",
                                        element.span,
                                    )),
                                }
                            }
                            names.sort();
                            names.dedup();
                            Some(Expected::Names(names))
                        }
                        Some(_) => {
                            let span = detail.as_ref().map(|d| d.span).unwrap_or(statement.span);
                            self.error(
                                Diagnostic::error(
                                    "expected a reason string or a set of names",
                                    span,
                                )
                                .with_help(
                                    "write `expect deny \"reason\"` or `expect challenge {totp}`",
                                ),
                            );
                            None
                        }
                    };
                    TestStep::Expect {
                        decision: decision.name.clone(),
                        detail: expected,
                    }
                }
                S::At(expr) => {
                    let typed = self.expr(expr, None, &Env::Constant);
                    match typed.as_const() {
                        Some(ConstValue::Time(t)) => TestStep::At(Clock::Set(*t)),
                        Some(ConstValue::Duration(d)) => TestStep::At(Clock::Advance(*d)),
                        _ => {
                            if !typed.ty.is_error() {
                                let shown = self.show(&typed.ty);
                                self.error(
                                    Diagnostic::error(format!("`at` needs a `Time` or a `Duration`, found `{shown}`"), typed.span)
                                        .with_help("write `at time(\"2026-12-04T10:00:00Z\")` or `at 5m` to advance the clock"),
                                );
                            }
                            continue;
                        }
                    }
                }
            };
            steps.push((step, statement.span));
        }
        CheckedTest {
            name: test.name.clone(),
            steps,
            span: test.span,
        }
    }

    /// Checks the switch values of a record against the declared switches.
    pub(super) fn switch_values(
        &mut self,
        record: &ast::Record,
        variants: &[Vec<String>],
    ) -> Vec<(String, serde_json::Value)> {
        let mut values = Vec::new();
        for (key, value) in &record.entries {
            match self.scope.switch_index.get(&key.name) {
                Some(&index) => {
                    self.used_switches.insert(index);
                    let ty = resolve_type(
                        &self.scope.switches[index as usize].ty,
                        self.scope,
                        &mut Vec::new(),
                    );
                    if let Some(json) = self.constant_json(value, &ty, variants) {
                        values.push((key.name.clone(), json));
                    }
                }
                None => self.error(Diagnostic::error(
                    format!("unknown switch `{}`", key.name),
                    key.span,
                )),
            }
        }
        values
    }

    /// A test's `session { ... }`: its times, and its factors as names.
    pub(super) fn session_record(
        &mut self,
        record: &ast::Record,
        variants: &[Vec<String>],
    ) -> Vec<(String, serde_json::Value)> {
        let mut values = Vec::new();
        for (key, value) in &record.entries {
            let expected = match key.name.as_str() {
                "factors" => Type::set_of(Type::Factor),
                "started_at" | "last_active_at" => Type::Time,
                _ => {
                    self.error(
                        Diagnostic::error(
                            format!("`session` has no attribute `{}`", key.name),
                            key.span,
                        )
                        .with_help(
                            "a test session sets `factors`, `started_at` and `last_active_at`",
                        ),
                    );
                    continue;
                }
            };
            if let Some(json) = self.constant_json(value, &expected, variants) {
                values.push((key.name.clone(), json));
            }
        }
        values
    }

    pub(super) fn constant_json(
        &mut self,
        value: &ast::Expr,
        ty: &Type,
        variants: &[Vec<String>],
    ) -> Option<serde_json::Value> {
        let typed = self.typed(value, ty, &Env::Constant);
        match typed.as_const() {
            Some(constant) => Some(constant.to_json(variants)),
            None if typed.ty.is_error() => None,
            None => {
                self.error(Diagnostic::error(
                    "test values must be constants",
                    typed.span,
                ));
                None
            }
        }
    }

    pub(super) fn constant_record(
        &mut self,
        record: &ast::Record,
        fields: &[crate::resolve::FieldSymbol],
        owner: &str,
        variants: &[Vec<String>],
    ) -> Vec<(String, serde_json::Value)> {
        let mut values = Vec::new();
        for (key, value) in &record.entries {
            match fields.iter().find(|f| f.name == key.name) {
                Some(field) => {
                    let ty = field.ty.clone();
                    if let Some(json) = self.constant_json(value, &ty, variants) {
                        values.push((key.name.clone(), json));
                    }
                }
                None => {
                    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                    self.unknown_attribute(owner, &names, key);
                }
            }
        }
        values
    }

    pub(super) fn flow_ref(&mut self, name: &ast::Ident, checked: &Checked) -> Option<u32> {
        match checked.flows.iter().position(|f| f.name == name.name) {
            Some(index) => Some(index as u32),
            None => {
                let mut diagnostic =
                    Diagnostic::error(format!("unknown flow `{}`", name.name), name.span);
                if let Some(close) =
                    did_you_mean(&name.name, checked.flows.iter().map(|f| f.name.as_str()))
                {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                None
            }
        }
    }

    pub(super) fn invariant(
        &mut self,
        decl: &ast::InvariantDecl,
        checked: &Checked,
    ) -> Option<CheckedInvariant> {
        let flow = self.flow_ref(&decl.flow, checked)?;
        let target = &checked.flows[flow as usize];
        let env = Env::Flow {
            kinds: target.kinds.clone(),
            any: target.any_kind,
        };
        let when = decl.when.as_ref().map(|w| self.condition(w, &env));
        let implies = self.condition(&decl.implies, &env);
        Some(CheckedInvariant {
            name: decl.name.clone(),
            flow,
            when,
            decision: decl.decision.name.clone(),
            implies,
            span: decl.span,
        })
    }
}
