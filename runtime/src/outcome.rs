//! Outcomes and audit traces: decoding the kernel's outcome record into the
//! JSON objects a host receives.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value as Json;

use crate::bind::Strings;
use crate::factor::Factor;
use crate::program::{out, Decision, Flow, Output, Program, ValueType, Verdict};
use crate::value::{format_cidr, format_duration, format_ip, format_time, Cidr};

/// Named output values in the order the policy wrote them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes(pub Vec<(String, Json)>);

impl Attributes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Json> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// An obligation for the host, emitted on the path to a final decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Obligation {
    pub name: String,
    #[serde(skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

/// The result of one evaluation. Empty fields are left out of the JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Factors offered by a challenge or enroll decision, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Roles whose approval a pending decision waits for, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<String>,
    #[serde(skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Only on allow and deny, in the order they were emitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

/// The deterministic audit trace of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trace {
    /// The policy digest.
    pub policy: String,
    pub flow: String,
    pub instance: String,
    /// The canonical request and the events applied so far.
    pub input: Json,
    /// Every step that evaluation reached undecided, in order.
    pub steps: Vec<TraceEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceEntry {
    /// The step's index in the flow's trace table.
    #[serde(skip)]
    pub index: usize,
    pub line: u32,
    pub step: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<bool>,
    /// The selected arm of an `if` or `match`: the number of the first arm
    /// whose guard is true, from 1, or `"else"` when none is. `"else"` is
    /// the `else` block of an `if`, no block for an `if` without one, and
    /// the last arm of a `match`, which has no guard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<Json>,
    /// `continue`, or the decision this step made.
    pub result: String,
}

/// Decodes an outcome record.
pub fn render(program: &Program, flow: &Flow, words: &[u64], strings: &Strings<'_>) -> Outcome {
    let verdict = Verdict(words[out::VERDICT as usize]);
    let decision = verdict.decision().unwrap_or(Decision::Deny);
    let site = usize::try_from(verdict.site())
        .ok()
        .and_then(|site| flow.sites.get(site));
    let mut options: Vec<String> = Vec::new();
    if matches!(decision, Decision::Challenge | Decision::Enroll) {
        let bits = verdict.options();
        options = Factor::ALL
            .iter()
            .filter(|f| bits & f.bit() != 0)
            .map(|f| f.name().to_string())
            .collect();
        options.sort();
    }
    let mut awaiting = Vec::new();
    if decision == Decision::Pending {
        for (index, role) in program.roles.iter().enumerate() {
            let word = words[out::AWAITING as usize + index / 64];
            if word >> (index % 64) & 1 == 1 {
                awaiting.push(role.clone());
            }
        }
    }
    let attributes = match (decision, site) {
        (Decision::Allow, Some(site)) => decode_outputs(program, &site.attributes, words, strings),
        _ => Attributes::default(),
    };
    let mut obligations = Vec::new();
    if decision.is_final() {
        for (index, emit) in flow.emits.iter().enumerate() {
            let word = words[flow.obligations as usize + index / 64];
            if word >> (index % 64) & 1 == 1 {
                obligations.push(Obligation {
                    name: emit.name.clone(),
                    attributes: decode_outputs(program, &emit.attributes, words, strings),
                });
            }
        }
    }
    let exception_marker = words[out::EXCEPTION as usize] as usize;
    let exception = exception_marker
        .checked_sub(1)
        .and_then(|i| flow.exceptions.get(i))
        .cloned();
    Outcome {
        decision,
        reason: if decision == Decision::Deny {
            site.and_then(|s| s.reason.clone())
        } else {
            None
        },
        options,
        awaiting,
        attributes,
        obligations,
        exception,
        trace: None,
    }
}

/// The trace entries of the steps evaluation reached.
pub fn trace_steps(flow: &Flow, words: &[u64], decision: Decision) -> Vec<TraceEntry> {
    let mut entries = Vec::new();
    for (index, step) in flow.steps.iter().enumerate() {
        if words[step.reached as usize] != 1 {
            continue;
        }
        let arm = step.arm.map(|offset| {
            let index = words[offset as usize] as usize;
            let arms = step.guards.len();
            if index < arms {
                Json::from(index + 1)
            } else {
                Json::from("else")
            }
        });
        let decided = words[step.decided as usize] == 1;
        entries.push(TraceEntry {
            index,
            line: step.line,
            step: step.text.clone(),
            guards: step
                .guards
                .iter()
                .map(|&g| words[g as usize] == 1)
                .collect(),
            arm,
            result: if decided {
                decision.name().to_string()
            } else {
                "continue".to_string()
            },
        });
    }
    entries
}

fn decode_outputs(
    program: &Program,
    outputs: &[Output],
    words: &[u64],
    strings: &Strings<'_>,
) -> Attributes {
    Attributes(
        outputs
            .iter()
            .map(|output| {
                let value = match &output.value {
                    Some(constant) => constant.clone(),
                    None => decode(
                        program,
                        &output.ty,
                        &words[output.offset as usize..],
                        strings,
                    ),
                };
                (output.name.clone(), value)
            })
            .collect(),
    )
}

fn decode(program: &Program, ty: &ValueType, words: &[u64], strings: &Strings<'_>) -> Json {
    match ty {
        ValueType::Bool => Json::Bool(words[0] != 0),
        ValueType::Int => Json::from(words[0] as i64),
        ValueType::Duration => Json::from(format_duration(words[0] as i64)),
        ValueType::Time => Json::from(format_time(words[0] as i64)),
        ValueType::String => Json::from(strings.text(words[0], program)),
        ValueType::Ip => Json::from(format_ip(
            (u128::from(words[0]) << 64) | u128::from(words[1]),
        )),
        ValueType::Cidr => {
            let network = (u128::from(words[0]) << 64) | u128::from(words[1]);
            let mask = (u128::from(words[2]) << 64) | u128::from(words[3]);
            Json::from(format_cidr(Cidr {
                network,
                prefix: mask.count_ones() as u8,
            }))
        }
        ValueType::Factor => Json::from(
            Factor::from_index(words[0] as usize)
                .map(Factor::name)
                .unwrap_or("?"),
        ),
        ValueType::Enum(index) => {
            let variants = &program.schema.enums[*index as usize].variants;
            Json::from(variants.get(words[0] as usize).cloned().unwrap_or_default())
        }
        ValueType::Optional(inner) => {
            if words[0] == 0 {
                Json::Null
            } else {
                decode(program, inner, &words[1..], strings)
            }
        }
        ValueType::Set(element) => {
            let mut names: Vec<String> = match element.as_ref() {
                ValueType::String => {
                    let count = program.layout.string_set_words as usize;
                    let mut names = Vec::new();
                    for id in 0..(count * 64) as u64 {
                        if words[(id / 64) as usize] >> (id % 64) & 1 == 1 {
                            names.push(strings.text(id, program).to_string());
                        }
                    }
                    names
                }
                ValueType::Factor => Factor::ALL
                    .iter()
                    .filter(|f| words[0] & f.bit() != 0)
                    .map(|f| f.name().to_string())
                    .collect(),
                ValueType::Enum(index) => program.schema.enums[*index as usize]
                    .variants
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| words[0] >> (i % 64) & 1 == 1)
                    .map(|(_, v)| v.clone())
                    .collect(),
                _ => Vec::new(),
            };
            names.sort();
            Json::from(names)
        }
    }
}
