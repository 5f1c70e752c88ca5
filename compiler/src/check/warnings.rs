//! Warnings and lints: unreachable arms and steps, flows that can end without
//! a decision, unused names, and misconfigurations seen in the field.

use super::*;

impl<'s, 'a> Checker<'s, 'a> {
    /// Reports the warnings of one flow; `follow_runs` enables the lints
    /// that walk every path through the targets of `run`.
    pub(super) fn flow_warnings(
        &mut self,
        flow: &CheckedFlow,
        checked: &Checked,
        follow_runs: bool,
    ) {
        self.block_warnings(&flow.body);
        let index = checked
            .flows
            .iter()
            .position(|f| f.name == flow.name)
            .unwrap_or(0) as u32;
        let elevated = ELEVATED_NAME_PARTS
            .iter()
            .any(|part| flow.name.contains(part))
            || self
                .scope
                .invariants
                .iter()
                .any(|i| i.flow.name == flow.name);
        let mut path = LintPath {
            factor_required: false,
            switches: Vec::new(),
        };
        if follow_runs {
            self.lint_steps(&flow.body, &mut path, elevated, checked, &mut vec![index]);
        }
        if !self.terminates(&flow.body, &mut Vec::new()) {
            self.diagnostics.push(
                Diagnostic::warning(
                    format!("flow `{}` can end without a decision", flow.name),
                    flow.span,
                )
                .with_label("some path reaches the end of this flow")
                .with_help(
                    "such a path denies with reason \"no decision\"; end it with `allow` or `deny`",
                ),
            );
        }
    }

    /// Lints for misconfigurations seen in the field, along every path.
    fn lint_steps(
        &mut self,
        steps: &[TStep],
        path: &mut LintPath,
        elevated: bool,
        checked: &Checked,
        running: &mut Vec<u32>,
    ) {
        for step in steps {
            match &step.kind {
                TStepKind::Require {
                    requirement: Requirement::Any(bits),
                    ..
                } => {
                    path.factor_required = true;
                    let strong = bits & PHISHING_RESISTANT;
                    let weak = bits & !PHISHING_RESISTANT;
                    if elevated && strong != 0 && weak != 0 {
                        let weaker: Vec<&str> = Factor::ALL
                            .iter()
                            .filter(|f| weak & f.bit() != 0)
                            .map(|f| f.name())
                            .collect();
                        self.diagnostics.push(
                            Diagnostic::warning(
                                format!("`{}` accepts {} in place of a phishing-resistant factor", self.text(step.span), weaker.join(", ")),
                                step.span,
                            )
                            .with_label("the weaker factor satisfies the step alone")
                            .with_help("require the phishing-resistant factors on their own, or add a separate step for the weaker one"),
                        );
                    }
                }
                TStepKind::Require { .. } => path.factor_required = true,
                TStepKind::Allow { .. } if !path.factor_required && !path.switches.is_empty() => {
                    let names = path.switches.join("`, `");
                    self.diagnostics.push(
                        Diagnostic::warning(format!("switch `{names}` leads to `allow` without any factor"), step.span)
                            .with_label("no `require` on this path")
                            .with_help("an operator switch should tighten a flow; keep at least one `require` on every path it selects"),
                    );
                }
                TStepKind::If { arms, otherwise } => {
                    for (guard, body) in arms {
                        let mut inner = path.clone();
                        switch_names(guard, &self.scope.switches, &mut inner.switches);
                        self.lint_steps(body, &mut inner, elevated, checked, running);
                    }
                    if let Some(body) = otherwise {
                        let mut inner = path.clone();
                        for (guard, _) in arms {
                            switch_names(guard, &self.scope.switches, &mut inner.switches);
                        }
                        self.lint_steps(body, &mut inner, elevated, checked, running);
                    }
                }
                TStepKind::Exception { name, body, when } => {
                    let header = Span {
                        end: when.span.end,
                        ..step.span
                    };
                    let has_approval =
                        contains_step(body, &|k| matches!(k, TStepKind::Approve { .. }));
                    let has_obligation =
                        contains_step(body, &|k| matches!(k, TStepKind::Emit { .. }));
                    if !has_approval || !has_obligation {
                        let missing = match (has_approval, has_obligation) {
                            (false, false) => "no approval and no obligation",
                            (false, true) => "no approval",
                            _ => "no obligation",
                        };
                        self.diagnostics.push(
                            Diagnostic::warning(
                                format!("exception path `{name}` has {missing}"),
                                header,
                            )
                            .with_label("a break-glass path that nobody approves or reviews")
                            .with_help(
                                "add `approve by ROLE` and an `emit` that pages or opens a review",
                            ),
                        );
                    }
                    let mut inner = path.clone();
                    self.lint_steps(body, &mut inner, elevated, checked, running);
                }
                TStepKind::Run { flow } if !running.contains(flow) => {
                    running.push(*flow);
                    let body = checked.flows[*flow as usize].body.clone();
                    self.lint_steps(&body, path, elevated, checked, running);
                    running.pop();
                }
                _ => {}
            }
        }
    }

    pub(super) fn block_warnings(&mut self, steps: &[TStep]) {
        let mut decided = false;
        for step in steps {
            if decided {
                self.diagnostics.push(
                    Diagnostic::warning("unreachable step", step.span)
                        .with_label("an earlier step in this block always decides")
                        .with_help("remove the step or the decision before it"),
                );
                break;
            }
            decided = self.step_terminates(step, &mut Vec::new());
            match &step.kind {
                TStepKind::If { arms, otherwise } => {
                    self.arm_warnings(arms);
                    for (_, body) in arms {
                        self.block_warnings(body);
                    }
                    if let Some(o) = otherwise {
                        self.block_warnings(o);
                    }
                }
                TStepKind::Exception { body, .. } => self.block_warnings(body),
                _ => {}
            }
        }
    }

    pub(super) fn arm_warnings(&mut self, arms: &[(TExpr, Vec<TStep>)]) {
        let mut earlier: Vec<(Vec<String>, Span)> = Vec::new();
        for (guard, _) in arms {
            if let Some(ConstValue::Bool(false)) = guard.as_const() {
                self.diagnostics.push(
                    Diagnostic::warning("this arm can never be selected", guard.span)
                        .with_label("the condition is always false"),
                );
                continue;
            }
            let conjuncts = self.conjuncts(guard);
            let covered = earlier.iter().find(|(previous, _)| {
                previous.is_empty() || previous.iter().all(|c| conjuncts.contains(c))
            });
            if let Some((_, previous_span)) = covered {
                self.diagnostics.push(
                    Diagnostic::warning("this arm can never be selected", guard.span)
                        .with_label("an earlier condition holds whenever this one does")
                        .with_secondary(*previous_span, "earlier condition"),
                );
            }
            earlier.push((conjuncts, guard.span));
        }
    }

    /// Returns the source text of each `and` operand of a guard, or nothing for `true`.
    pub(super) fn conjuncts(&self, guard: &TExpr) -> Vec<String> {
        match &guard.kind {
            TKind::And(left, right) => {
                let mut parts = self.conjuncts(left);
                parts.extend(self.conjuncts(right));
                parts
            }
            TKind::Const(ConstValue::Bool(true)) => Vec::new(),
            _ => vec![self
                .text(guard.span)
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_string()],
        }
    }

    pub(super) fn unused(&mut self) {
        for (index, decl) in self.scope.consts.iter().enumerate() {
            if decl.name.span.file == FileId(0) && !self.used_consts.contains(&(index as u32)) {
                self.diagnostics.push(
                    Diagnostic::warning(
                        format!("constant `{}` is never used", decl.name.name),
                        decl.name.span,
                    )
                    .with_help("remove it, or use it in a flow"),
                );
            }
        }
        for (index, decl) in self.scope.switches.iter().enumerate() {
            if decl.name.span.file == FileId(0) && !self.used_switches.contains(&(index as u32)) {
                self.diagnostics.push(
                    Diagnostic::warning(
                        format!("switch `{}` is never used", decl.name.name),
                        decl.name.span,
                    )
                    .with_help("a switch no flow reads has no effect; remove it or use it"),
                );
            }
        }
    }
}

/// Factors that resist phishing: WebAuthn and PIV authenticators bind the
/// sign-in to the verifier's origin (NIST SP 800-63B revision 3, 5.2.5).
const PHISHING_RESISTANT: u64 = authflow_runtime::factor::mask(&[
    Factor::Passkey,
    Factor::SecurityKey,
    Factor::Piv,
    Factor::Webauthn,
]);

/// Flow name parts that mark a flow guarding elevated access.
const ELEVATED_NAME_PARTS: &[&str] = &[
    "admin",
    "privileged",
    "root",
    "sudo",
    "step_up",
    "sensitive",
    "break_glass",
];

/// What the lints know about the path to a step.
#[derive(Clone)]
struct LintPath {
    factor_required: bool,
    /// Switches read by the guards that select this path.
    switches: Vec<String>,
}

fn switch_names(expr: &TExpr, switches: &[&ast::SwitchDecl], out: &mut Vec<String>) {
    if let TKind::Input(Input::Switch(index)) = &expr.kind {
        let name = switches[*index as usize].name.name.clone();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    for child in children(expr) {
        switch_names(child, switches, out);
    }
}

fn contains_step(steps: &[TStep], wanted: &dyn Fn(&TStepKind) -> bool) -> bool {
    steps.iter().any(|step| {
        wanted(&step.kind)
            || match &step.kind {
                TStepKind::If { arms, otherwise } => {
                    arms.iter().any(|(_, body)| contains_step(body, wanted))
                        || otherwise
                            .as_ref()
                            .is_some_and(|body| contains_step(body, wanted))
                }
                TStepKind::Exception { body, .. } => contains_step(body, wanted),
                _ => false,
            }
    })
}
