//! Whole-program checks: termination, `run` cycles, inlined size and routes.

use super::*;

impl<'s, 'a> Checker<'s, 'a> {
    pub(super) fn terminates(&self, steps: &[TStep], visiting: &mut Vec<u32>) -> bool {
        steps
            .iter()
            .any(|step| self.step_terminates(step, visiting))
    }

    pub(super) fn step_terminates(&self, step: &TStep, visiting: &mut Vec<u32>) -> bool {
        match &step.kind {
            TStepKind::Allow { .. } => true,
            TStepKind::Deny { when, .. } => when
                .as_ref()
                .is_none_or(|w| matches!(w.as_const(), Some(ConstValue::Bool(true)))),
            TStepKind::If { arms, otherwise } => {
                otherwise
                    .as_ref()
                    .is_some_and(|o| self.terminates(o, visiting))
                    && arms.iter().all(|(_, body)| self.terminates(body, visiting))
            }
            TStepKind::Run { flow } => {
                if visiting.contains(flow) {
                    return false;
                }
                visiting.push(*flow);
                let decl = self.scope.flows[*flow as usize];
                let result = self.ast_terminates(&decl.body, visiting);
                visiting.pop();
                result
            }
            _ => false,
        }
    }

    /// Termination on the AST, for `run` targets whose checked body may not
    /// exist yet.
    pub(super) fn ast_terminates(&self, block: &ast::Block, visiting: &mut Vec<u32>) -> bool {
        block.steps.iter().any(|step| match &step.kind {
            StepKind::Allow { .. } => true,
            StepKind::Deny { when, .. } => when.is_none(),
            StepKind::If { arms, otherwise } => {
                otherwise
                    .as_ref()
                    .is_some_and(|o| self.ast_terminates(o, visiting))
                    && arms.iter().all(|(_, b)| self.ast_terminates(b, visiting))
            }
            StepKind::Match { arms, .. } => {
                !arms.is_empty()
                    && arms
                        .iter()
                        .all(|arm| self.ast_terminates(&arm.body, visiting))
            }
            StepKind::Run { flow } => {
                let Some(&index) = self.scope.flow_index.get(&flow.name) else {
                    return false;
                };
                if let Some(&known) = self.run_terminates.borrow().get(&index) {
                    return known;
                }
                if visiting.contains(&index) {
                    self.cycle_cuts.set(self.cycle_cuts.get() + 1);
                    return false;
                }
                let cuts = self.cycle_cuts.get();
                visiting.push(index);
                let result = self.ast_terminates(&self.scope.flows[index as usize].body, visiting);
                visiting.pop();
                // A result that stopped at a `run` cycle depends on where the
                // walk started, so only results without a cut are kept.
                if self.cycle_cuts.get() == cuts {
                    self.run_terminates.borrow_mut().insert(index, result);
                }
                result
            }
            _ => false,
        })
    }

    /// Reports flows with more than [`MAX_INLINED_STEPS`] steps, counting
    /// the steps that their `run` steps inline: each `run` copies the
    /// target's steps, so sizes multiply. Returns whether every flow is
    /// within the limit.
    pub(super) fn expansion_limits(&mut self, checked: &Checked) -> bool {
        fn size(steps: &[TStep], flows: &[CheckedFlow], memo: &mut Vec<Option<u64>>) -> u64 {
            steps.iter().fold(0u64, |total, step| {
                let own = match &step.kind {
                    TStepKind::If { arms, otherwise } => {
                        let arms_size = arms.iter().fold(0u64, |t, (_, body)| {
                            t.saturating_add(size(body, flows, memo))
                        });
                        arms_size
                            .saturating_add(otherwise.as_ref().map_or(0, |o| size(o, flows, memo)))
                    }
                    TStepKind::Exception { body, .. } => size(body, flows, memo),
                    TStepKind::Run { flow } => flow_size(*flow as usize, flows, memo),
                    _ => 0,
                };
                total.saturating_add(1).saturating_add(own)
            })
        }
        fn flow_size(index: usize, flows: &[CheckedFlow], memo: &mut Vec<Option<u64>>) -> u64 {
            if let Some(known) = memo[index] {
                return known;
            }
            memo[index] = Some(0);
            let total = size(&flows[index].body, flows, memo);
            memo[index] = Some(total);
            total
        }
        let mut memo = vec![None; checked.flows.len()];
        let mut within = true;
        for (index, flow) in checked.flows.iter().enumerate() {
            let total = flow_size(index, &checked.flows, &mut memo);
            if total <= MAX_INLINED_STEPS {
                continue;
            }
            within = false;
            let runs = |step: &TStep| matches!(step.kind, TStepKind::Run { .. });
            let diagnostic = if any_step(&flow.body, &runs) {
                Diagnostic::error(
                    format!("flow `{}` expands to {total} steps through `run`; the limit is {MAX_INLINED_STEPS}", flow.name),
                    flow.span,
                )
                .with_label("every `run` copies the steps of its target")
                .with_help("run shared flows once, not from several arms of every level")
            } else {
                Diagnostic::error(
                    format!(
                        "flow `{}` has {total} steps; the limit is {MAX_INLINED_STEPS}",
                        flow.name
                    ),
                    flow.span,
                )
                .with_help("move rules that apply to other requests into flows of their own")
            };
            self.error(diagnostic);
        }
        within
    }

    /// Marks the flows a request may name: every flow with an event, and
    /// every flow of the root file that no flow runs. A library flow or a
    /// flow that another flow runs is reached only through its caller, so a
    /// request cannot skip the caller's checks by naming it.
    /// A flow with an event that another flow also runs gets a warning:
    /// requests for its event reach it without the caller's checks.
    pub(super) fn entries(&mut self, checked: &mut Checked) {
        // The first flow that runs each flow, if any.
        let mut callers: Vec<Option<usize>> = vec![None; checked.flows.len()];
        for (caller, flow) in checked.flows.iter().enumerate() {
            let mut out = Vec::new();
            run_targets(&flow.body, &mut out);
            for (target, _) in out {
                if let Some(slot) = callers.get_mut(target as usize) {
                    slot.get_or_insert(caller);
                }
            }
        }
        for (index, caller) in callers.iter().enumerate() {
            let flow = &checked.flows[index];
            let (Some(caller), Some(event)) = (caller, &flow.event) else {
                continue;
            };
            let span = self.scope.flows[index]
                .event
                .as_ref()
                .map_or(flow.span, |e| e.span);
            self.diagnostics.push(
                Diagnostic::warning(
                    format!(
                        "flow `{}` handles event `{event}` and is also run by `{}`",
                        flow.name, checked.flows[*caller].name
                    ),
                    span,
                )
                .with_label("requests for this event skip the checks of the flows that run it")
                .with_help(
                    "remove `on` to make the flow a building block, or keep the checks inside it",
                ),
            );
        }
        for (flow, caller) in checked.flows.iter_mut().zip(callers) {
            flow.entry = flow.event.is_some() || (flow.span.file == FileId(0) && caller.is_none());
        }
    }

    pub(super) fn run_cycles(&mut self, checked: &Checked) {
        let edges: Vec<Vec<(u32, Span)>> = checked
            .flows
            .iter()
            .map(|flow| {
                let mut out = Vec::new();
                run_targets(&flow.body, &mut out);
                out
            })
            .collect();
        // 0 = unvisited, 1 = on the stack, 2 = finished.
        let mut state = vec![0u8; edges.len()];
        let mut reported = HashSet::new();
        for start in 0..edges.len() {
            let mut path: Vec<u32> = Vec::new();
            self.visit(
                start as u32,
                &edges,
                &mut state,
                &mut path,
                &mut reported,
                checked,
            );
        }
    }

    pub(super) fn visit(
        &mut self,
        node: u32,
        edges: &[Vec<(u32, Span)>],
        state: &mut [u8],
        path: &mut Vec<u32>,
        reported: &mut HashSet<Vec<u32>>,
        checked: &Checked,
    ) {
        if state[node as usize] != 0 {
            return;
        }
        state[node as usize] = 1;
        path.push(node);
        for &(target, span) in &edges[node as usize] {
            match state[target as usize] {
                1 => {
                    let start = path.iter().position(|&n| n == target).unwrap_or(0);
                    let mut cycle: Vec<u32> = path[start..].to_vec();
                    let mut key = cycle.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        cycle.push(target);
                        let names: Vec<&str> = cycle
                            .iter()
                            .map(|&i| checked.flows[i as usize].name.as_str())
                            .collect();
                        self.error(
                            Diagnostic::error(format!("`run` cycle: {}", names.join(" → ")), span)
                                .with_label("this `run` closes the cycle")
                                .with_help(
                                    "flows cannot run themselves, directly or through other flows",
                                ),
                        );
                    }
                }
                0 => self.visit(target, edges, state, path, reported, checked),
                _ => {}
            }
        }
        path.pop();
        state[node as usize] = 2;
    }

    pub(super) fn routes(&mut self, checked: &Checked) {
        let mut seen: Vec<(usize, &str)> = Vec::new();
        for (index, flow) in checked.flows.iter().enumerate() {
            let Some(event) = flow.event.as_deref() else {
                continue;
            };
            for &(other_index, other_event) in &seen {
                if other_event != event {
                    continue;
                }
                let other = &checked.flows[other_index];
                let shared: Vec<&str> = if flow.any_kind || other.any_kind {
                    vec!["any"]
                } else {
                    flow.kinds
                        .iter()
                        .filter(|k| other.kinds.contains(k))
                        .map(|&k| checked.kinds[k as usize].name.as_str())
                        .collect()
                };
                if shared.is_empty() {
                    continue;
                }
                let event_span = self.scope.flows[index]
                    .event
                    .as_ref()
                    .map(|e| e.span)
                    .unwrap_or(flow.span);
                let other_span = self.scope.flows[other_index]
                    .event
                    .as_ref()
                    .map(|e| e.span)
                    .unwrap_or(other.span);
                let who = if shared == ["any"] {
                    "the same principals".to_string()
                } else {
                    format!("`{}`", shared.join("`, `"))
                };
                self.error(
                    Diagnostic::error(
                        format!(
                            "flows `{}` and `{}` both handle event `{event}` for {who}",
                            other.name, flow.name
                        ),
                        event_span,
                    )
                    .with_label("second route")
                    .with_secondary(other_span, "first route")
                    .with_help("give each flow its own event, or merge them into one flow"),
                );
                break;
            }
            seen.push((index, event));
        }
    }
}

/// Collects the target and span of every `run` in `steps`, nested ones too.
fn run_targets(steps: &[TStep], out: &mut Vec<(u32, Span)>) {
    for step in steps {
        match &step.kind {
            TStepKind::Run { flow } => out.push((*flow, step.span)),
            TStepKind::If { arms, otherwise } => {
                for (_, body) in arms {
                    run_targets(body, out);
                }
                if let Some(o) = otherwise {
                    run_targets(o, out);
                }
            }
            TStepKind::Exception { body, .. } => run_targets(body, out),
            _ => {}
        }
    }
}

/// Returns whether `test` holds for a step of `steps` or of a block nested
/// in them.
fn any_step(steps: &[TStep], test: &dyn Fn(&TStep) -> bool) -> bool {
    steps.iter().any(|step| {
        test(step)
            || match &step.kind {
                TStepKind::If { arms, otherwise } => {
                    arms.iter().any(|(_, body)| any_step(body, test))
                        || otherwise.as_ref().is_some_and(|body| any_step(body, test))
                }
                TStepKind::Exception { body, .. } => any_step(body, test),
                _ => false,
            }
    })
}
