//! Runs the `test` blocks of a checked policy against its compiled form,
//! exactly as `authflow eval` would evaluate the same request and events,
//! and measures which steps, arms and exception paths the tests reach.

use std::collections::BTreeSet;

use authflow_runtime::program::StepRole;
use authflow_runtime::value::format_time;
use authflow_runtime::{FlowState, Outcome, Policy};
use serde_json::{json, Map, Value};

use crate::check::{Checked, CheckedTest, Clock, Expected, TestEvent, TestStep};
use crate::span::Span;

/// The principal id a test uses when its record gives none.
const DEFAULT_PRINCIPAL_ID: &str = "test-principal";
/// The approver of `approve ROLE` without `by`: never the principal.
const DEFAULT_APPROVER: &str = "test-approver";

/// The result of one test.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    /// The failed statement and what went wrong; `None` when the test passed.
    pub failure: Option<(Span, String)>,
}

/// The steps, arms and exception paths the tests reached in one flow.
#[derive(Clone, Debug, Default)]
pub struct FlowCoverage {
    pub reached: BTreeSet<usize>,
    /// (step index, arm number from 1; the arm count plus one is `else`).
    pub arms: BTreeSet<(usize, usize)>,
    pub exceptions: BTreeSet<usize>,
}

/// One part of a flow that no test reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub flow: String,
    pub line: u32,
    pub description: String,
}

/// Runs every test of `checked` on `policy` (compiled from the same source).
pub fn run_tests(checked: &Checked, policy: &Policy) -> (Vec<TestResult>, Vec<FlowCoverage>) {
    let mut coverage = vec![FlowCoverage::default(); policy.program().flows.len()];
    let results = checked
        .tests
        .iter()
        .map(|test| run_test(test, policy, &mut coverage))
        .collect();
    (results, coverage)
}

fn object(values: &[(String, Value)]) -> Map<String, Value> {
    values.iter().cloned().collect()
}

struct Run<'p> {
    policy: &'p Policy,
    clock: i64,
    flow: Option<String>,
    principal: Option<(String, Vec<(String, Value)>)>,
    context: Vec<(String, Value)>,
    session: Vec<(String, Value)>,
    switches: Vec<(String, Value)>,
    state: Option<FlowState>,
    last: Option<Outcome>,
}

impl Run<'_> {
    fn request(&self) -> Result<Value, String> {
        let flow = self.flow.as_ref().ok_or("the test names no `flow`")?;
        let (kind, values) = self
            .principal
            .as_ref()
            .ok_or("the test gives no `principal`")?;
        let mut principal = object(values);
        principal.insert("kind".into(), Value::from(kind.as_str()));
        principal
            .entry("id")
            .or_insert_with(|| Value::from(DEFAULT_PRINCIPAL_ID));
        let mut request = json!({
            "flow": flow,
            "principal": principal,
            "context": object(&self.context),
            "switches": object(&self.switches),
            "now": format_time(self.clock),
        });
        if !self.session.is_empty() {
            let mut session = object(&self.session);
            let started = session
                .get("started_at")
                .cloned()
                .unwrap_or_else(|| Value::from(format_time(self.clock)));
            if let Some(Value::Array(factors)) = session.remove("factors") {
                let verified: Vec<Value> = factors
                    .into_iter()
                    .map(|f| json!({ "factor": f, "at": started }))
                    .collect();
                session.insert("factors".into(), Value::Array(verified));
            }
            request["session"] = Value::Object(session);
        }
        Ok(request)
    }

    /// Makes the request if it has not been made yet.
    fn start(&mut self, coverage: &mut [FlowCoverage]) -> Result<(), String> {
        if self.state.is_some() {
            return Ok(());
        }
        let request = self.request()?;
        let state = self
            .policy
            .start(&request, self.clock)
            .map_err(|error| format!("the request is {error}"))?;
        self.state = Some(state);
        self.evaluate(coverage)
    }

    fn evaluate(&mut self, coverage: &mut [FlowCoverage]) -> Result<(), String> {
        let state = self.state.as_ref().ok_or("no request was made")?;
        let outcome = self
            .policy
            .evaluate(state, true)
            .map_err(|error| error.to_string())?;
        let flow = self
            .policy
            .program()
            .flow(&state.flow)
            .map(|(index, _)| index);
        if let (Some(flow), Some(trace)) = (flow, &outcome.trace) {
            let record = &mut coverage[flow];
            let steps = &self.policy.program().flows[flow].steps;
            for entry in &trace.steps {
                record.reached.insert(entry.index);
                match steps[entry.index].role {
                    StepRole::Branch { .. } => {
                        let arm = entry
                            .guards
                            .iter()
                            .position(|&g| g)
                            .map_or(entry.guards.len() + 1, |i| i + 1);
                        record.arms.insert((entry.index, arm));
                    }
                    StepRole::Exception if entry.guards.first() == Some(&true) => {
                        record.exceptions.insert(entry.index);
                    }
                    _ => {}
                }
            }
        }
        self.last = Some(outcome);
        Ok(())
    }

    fn event(&mut self, event: &TestEvent, coverage: &mut [FlowCoverage]) -> Result<(), String> {
        self.start(coverage)?;
        let at = format_time(self.clock);
        let json = match event {
            TestEvent::Verify(factor) => {
                json!({ "factor_verified": { "factor": factor, "at": at } })
            }
            TestEvent::Fail(factor) => json!({ "factor_failed": { "factor": factor, "at": at } }),
            TestEvent::Enroll(factor) => {
                json!({ "factor_enrolled": { "factor": factor, "at": at } })
            }
            TestEvent::Approval {
                role,
                approver,
                granted,
            } => json!({ "approval": {
                "role": role, "approver": approver.as_deref().unwrap_or(DEFAULT_APPROVER), "granted": granted, "at": at } }),
            TestEvent::Update {
                context,
                principal,
                switches,
            } => {
                let mut update = Map::new();
                if !context.is_empty() {
                    update.insert("context".into(), Value::Object(object(context)));
                }
                if !principal.is_empty() {
                    update.insert("principal".into(), Value::Object(object(principal)));
                }
                if !switches.is_empty() {
                    update.insert("switches".into(), Value::Object(object(switches)));
                }
                update.insert("at".into(), Value::from(at));
                json!({ "update": update })
            }
        };
        let state = self.state.as_ref().ok_or("no request was made")?;
        let next = self
            .policy
            .resume(state, &json)
            .map_err(|error| format!("the event is {error}"))?;
        self.state = Some(next);
        self.evaluate(coverage)
    }

    fn expect(
        &mut self,
        decision: &str,
        detail: Option<&Expected>,
        coverage: &mut [FlowCoverage],
    ) -> Result<(), String> {
        self.start(coverage)?;
        let outcome = self.last.as_ref().ok_or("nothing was evaluated")?;
        let got = describe(outcome);
        let mismatch = || {
            format!(
                "expected {}, got {got}",
                describe_expected(decision, detail)
            )
        };
        if outcome.decision.name() != decision {
            return Err(mismatch());
        }
        let matches = match detail {
            None => true,
            Some(Expected::Reason(reason)) => outcome.reason.as_deref() == Some(reason.as_str()),
            Some(Expected::Names(names)) => {
                let actual = if decision == "pending" {
                    &outcome.awaiting
                } else {
                    &outcome.options
                };
                actual == names
            }
        };
        if matches {
            Ok(())
        } else {
            Err(mismatch())
        }
    }
}

fn describe(outcome: &Outcome) -> String {
    let mut text = outcome.decision.name().to_string();
    if let Some(reason) = &outcome.reason {
        text.push_str(&format!(" {reason:?}"));
    }
    let names = if outcome.awaiting.is_empty() {
        &outcome.options
    } else {
        &outcome.awaiting
    };
    if !names.is_empty() {
        text.push_str(&format!(" {{{}}}", names.join(", ")));
    }
    text
}

fn describe_expected(decision: &str, detail: Option<&Expected>) -> String {
    match detail {
        None => decision.to_string(),
        Some(Expected::Reason(reason)) => format!("{decision} {reason:?}"),
        Some(Expected::Names(names)) => format!("{decision} {{{}}}", names.join(", ")),
    }
}

fn run_test(test: &CheckedTest, policy: &Policy, coverage: &mut [FlowCoverage]) -> TestResult {
    let mut run = Run {
        policy,
        clock: 0,
        flow: None,
        principal: None,
        context: Vec::new(),
        session: Vec::new(),
        switches: Vec::new(),
        state: None,
        last: None,
    };
    for (step, span) in &test.steps {
        let made = run.state.is_some();
        let late = || {
            Err(
                "the request was already made; describe it before the first event or `expect`"
                    .to_string(),
            )
        };
        let result = match step {
            TestStep::Flow(_)
            | TestStep::Principal { .. }
            | TestStep::Context(_)
            | TestStep::Session(_)
            | TestStep::Switches(_)
                if made =>
            {
                late()
            }
            TestStep::Flow(name) => {
                run.flow = Some(name.clone());
                Ok(())
            }
            TestStep::Principal { kind, values } => {
                run.principal = Some((kind.clone(), values.clone()));
                Ok(())
            }
            TestStep::Context(values) => {
                run.context = values.clone();
                Ok(())
            }
            TestStep::Session(values) => {
                run.session = values.clone();
                Ok(())
            }
            TestStep::Switches(values) => {
                run.switches = values.clone();
                Ok(())
            }
            TestStep::At(Clock::Set(time)) => {
                run.clock = *time;
                Ok(())
            }
            TestStep::At(Clock::Advance(duration)) => {
                run.clock = run.clock.saturating_add(*duration);
                Ok(())
            }
            TestStep::Event(event) => run.event(event, coverage),
            TestStep::Expect { decision, detail } => {
                run.expect(decision, detail.as_ref(), coverage)
            }
        };
        if let Err(message) = result {
            return TestResult {
                name: test.name.clone(),
                failure: Some((*span, message)),
            };
        }
    }
    TestResult {
        name: test.name.clone(),
        failure: None,
    }
}

/// Lists every step, arm and exception path that no test reached, in the flows
/// of the root file (imported library flows are covered by their own tests).
pub fn gaps(checked: &Checked, policy: &Policy, coverage: &[FlowCoverage]) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let root_flows = checked
        .flows
        .iter()
        .map(|flow| flow.span.file == crate::span::FileId(0));
    for ((flow, record), in_root) in policy.program().flows.iter().zip(coverage).zip(root_flows) {
        if !in_root {
            continue;
        }
        for (index, step) in flow.steps.iter().enumerate() {
            let gap = |description: String| Gap {
                flow: flow.name.clone(),
                line: step.line,
                description,
            };
            if !record.reached.contains(&index) {
                gaps.push(gap(format!("`{}` is never reached", step.text)));
                continue;
            }
            match step.role {
                StepRole::Branch { otherwise } => {
                    let arms = step.guards.len() + usize::from(otherwise);
                    for arm in 1..=arms {
                        if !record.arms.contains(&(index, arm)) {
                            let which = if arm > step.guards.len() {
                                "the `else` arm".to_string()
                            } else {
                                format!("arm {arm}")
                            };
                            gaps.push(gap(format!("{which} of `{}` is never selected", step.text)));
                        }
                    }
                }
                StepRole::Exception if !record.exceptions.contains(&index) => {
                    gaps.push(gap(format!("`{}` is never entered", step.text)));
                }
                _ => {}
            }
        }
    }
    gaps
}
