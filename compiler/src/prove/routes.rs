//! Route changes between two policy versions: which flow an event reaches
//! for each principal kind, and which flows a request may name. A change of
//! route changes decisions without changing any flow, so a semantic diff of
//! flows alone would miss it.

use std::collections::BTreeSet;

use authflow_runtime::bind;
use authflow_runtime::program::Program;

/// One change in how requests reach flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// Event `event` for kind `kind` reaches another flow, or none.
    Event {
        event: String,
        kind: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A request for kind `kind` may name flow `flow` in one version only.
    Named {
        flow: String,
        kind: String,
        now_allowed: bool,
    },
}

impl std::fmt::Display for RouteChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flow = |name: &Option<String>| match name {
            Some(name) => format!("flow `{name}`"),
            None => "no flow".to_string(),
        };
        match self {
            RouteChange::Event {
                event,
                kind,
                old,
                new,
            } => write!(
                f,
                "event `{event}` for kind `{kind}`: {} → {}",
                flow(old),
                flow(new)
            ),
            RouteChange::Named {
                flow,
                kind,
                now_allowed: true,
            } => write!(f, "requests for kind `{kind}` may now name flow `{flow}`"),
            RouteChange::Named {
                flow,
                kind,
                now_allowed: false,
            } => write!(
                f,
                "requests for kind `{kind}` may no longer name flow `{flow}`"
            ),
        }
    }
}

/// Lists every route that differs between `old` and `new`, for the
/// principal kinds both declare, in a stable order.
pub fn route_changes(old: &Program, new: &Program) -> Vec<RouteChange> {
    let kinds: Vec<&str> = old
        .schema
        .kinds
        .iter()
        .map(|kind| kind.name.as_str())
        .filter(|name| new.schema.kinds.iter().any(|k| k.name == *name))
        .collect();
    let events: BTreeSet<&str> = old
        .flows
        .iter()
        .chain(&new.flows)
        .filter_map(|flow| flow.event.as_deref())
        .collect();
    let mut changes = Vec::new();
    for kind in &kinds {
        for event in &events {
            let (before, after) = (routed(old, event, kind), routed(new, event, kind));
            if before != after {
                changes.push(RouteChange::Event {
                    event: event.to_string(),
                    kind: kind.to_string(),
                    old: before,
                    new: after,
                });
            }
        }
        let (before, after) = (named(old, kind), named(new, kind));
        for flow in before.symmetric_difference(&after) {
            changes.push(RouteChange::Named {
                flow: flow.to_string(),
                kind: kind.to_string(),
                now_allowed: after.contains(flow),
            });
        }
    }
    changes
}

/// Returns the name of the flow that `event` reaches for kind `kind`.
fn routed(program: &Program, event: &str, kind: &str) -> Option<String> {
    let index = kind_index(program, kind)?;
    let flow = bind::flow_for_event(program, event, index).ok()?;
    Some(program.flows[flow].name.clone())
}

/// Returns the names of the flows a request for kind `kind` may name.
fn named<'p>(program: &'p Program, kind: &str) -> BTreeSet<&'p str> {
    let Some(index) = kind_index(program, kind) else {
        return BTreeSet::new();
    };
    program
        .flows
        .iter()
        .filter(|flow| flow.entry && flow.kinds.contains(&index))
        .map(|flow| flow.name.as_str())
        .collect()
}

fn kind_index(program: &Program, kind: &str) -> Option<u32> {
    program
        .schema
        .kinds
        .iter()
        .position(|k| k.name == kind)
        .map(|index| index as u32)
}
