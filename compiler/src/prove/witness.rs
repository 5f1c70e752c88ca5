//! Counterexamples: a satisfying assignment of the symbolic facts turned
//! into a request and events that `authflow eval` accepts, and their replay
//! through the real engine.

use authflow_runtime::factor::Factor;
use authflow_runtime::program::{Program, ValueType};
use authflow_runtime::value::{format_cidr, format_duration, format_ip, format_time, Cidr};
use authflow_runtime::{FlowState, Outcome, Policy};
use serde_json::{json, Map, Value as Json};

use super::circuit::{Circuit, Word};
use super::request::{Key, Request, Universe};

/// Names the texts of a model: universe texts by index, and a made-up text
/// outside the universe for each fresh index.
struct Texts<'a> {
    universe: &'a Universe,
    fresh: Vec<String>,
}

impl Texts<'_> {
    fn new(universe: &Universe, slots: usize) -> Texts<'_> {
        let fresh = (0..slots)
            .map(|q| outside(universe, &[], &format!("text-{q}")))
            .collect();
        Texts { universe, fresh }
    }

    fn text(&self, index: u64) -> String {
        let index = index as usize;
        let base = self.universe.texts.len();
        if index < base {
            self.universe.texts[index].clone()
        } else {
            self.fresh.get(index - base).cloned().unwrap_or_default()
        }
    }
}

/// `stem`, made unique against the universe and `taken` by a suffix.
fn outside(universe: &Universe, taken: &[String], stem: &str) -> String {
    let mut text = stem.to_string();
    while universe.index(&text).is_some() || taken.contains(&text) {
        text.push('x');
    }
    text
}

fn factor_names(bits: u64) -> Vec<Json> {
    authflow_runtime::factor::names_of(bits)
        .into_iter()
        .map(Json::from)
        .collect()
}

/// The JSON input form of a value in text-index form.
fn value_json(
    c: &Circuit,
    program: &Program,
    ty: &ValueType,
    words: &[Word],
    texts: &Texts<'_>,
    taken: &mut Vec<String>,
    text_count: usize,
) -> Json {
    let value = |i: usize| c.word_value(&words[i]);
    match ty {
        ValueType::Optional(inner) => {
            if value(0) == 0 {
                Json::Null
            } else {
                value_json(c, program, inner, &words[1..], texts, taken, text_count)
            }
        }
        ValueType::Bool => Json::Bool(value(0) == 1),
        ValueType::Int => Json::from(value(0) as i64),
        ValueType::String => Json::from(texts.text(value(0))),
        ValueType::Duration => Json::from(format_duration(value(0) as i64)),
        ValueType::Time => Json::from(format_time(value(0) as i64)),
        ValueType::Ip => {
            let ip = (u128::from(value(0)) << 64) | u128::from(value(1));
            Json::from(format_ip(ip))
        }
        ValueType::Cidr => {
            let network = (u128::from(value(0)) << 64) | u128::from(value(1));
            let mask = (u128::from(value(2)) << 64) | u128::from(value(3));
            Json::from(format_cidr(Cidr {
                network,
                prefix: mask.count_ones() as u8,
            }))
        }
        ValueType::Factor => Json::from(
            Factor::from_index(value(0) as usize)
                .map(Factor::name)
                .unwrap_or("password"),
        ),
        ValueType::Enum(index) => Json::from(
            program.schema.enums[*index as usize]
                .variants
                .get(value(0) as usize)
                .cloned()
                .unwrap_or_default(),
        ),
        ValueType::Set(element) => match element.as_ref() {
            ValueType::Factor => Json::Array(factor_names(value(0))),
            ValueType::Enum(index) => {
                let variants = &program.schema.enums[*index as usize].variants;
                let bits = value(0);
                Json::Array(
                    variants
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i < 64 && bits >> i & 1 == 1)
                        .map(|(_, v)| Json::from(v.clone()))
                        .collect(),
                )
            }
            _ => {
                let mut elements = Vec::new();
                for index in 0..text_count {
                    if value(index / 64) >> (index % 64) & 1 == 1 {
                        elements.push(texts.text(index as u64));
                    }
                }
                let count = value(words.len() - 1) as usize;
                let mut filler = 0;
                while elements.len() < count {
                    let text = outside(texts.universe, taken, &format!("other-{filler}"));
                    filler += 1;
                    if !elements.contains(&text) {
                        taken.push(text.clone());
                        elements.push(text);
                    }
                }
                Json::Array(elements.into_iter().map(Json::from).collect())
            }
        },
    }
}

/// Builds the request and events whose final evaluation has the facts of
/// the model.
pub fn build(
    c: &Circuit,
    program: &Program,
    flow: &str,
    request: &Request,
    universe: &Universe,
) -> (Json, Vec<Json>) {
    let texts = Texts::new(universe, request.strings.len());
    let mut taken: Vec<String> = texts.fresh.clone();
    let time = |word: &Word| c.word_value(word) as i64;
    let flow_started = time(&request.flow_started);
    let now = time(&request.now);
    let id = texts.text(c.word_value(&request.strings[0].text));

    let mut principal = Map::new();
    principal.insert("kind".into(), Json::from(request.kind.clone()));
    principal.insert("id".into(), Json::from(id.clone()));
    principal.insert(
        "enrolled".into(),
        Json::Array(factor_names(c.word_value(&request.enrolled))),
    );
    let mut context = Map::new();
    let mut switches = Map::new();
    for attribute in &request.attributes {
        let value = value_json(
            c,
            program,
            &attribute.ty,
            &attribute.words,
            &texts,
            &mut taken,
            request.text_count,
        );
        match &attribute.key {
            Key::Principal(name) => principal.insert(name.clone(), value),
            Key::Context(name) => context.insert(name.clone(), value),
            Key::Switch(name) => switches.insert(name.clone(), value),
        };
    }

    let verified = c.word_value(&request.verified);
    let mut session_factors = Vec::new();
    let mut events: Vec<(i64, Json)> = Vec::new();
    for (f, factor) in Factor::ALL.iter().enumerate() {
        if verified >> f & 1 == 1 {
            let at = time(&request.verified_at[f]);
            if at <= flow_started {
                session_factors.push(json!({ "factor": factor.name(), "at": format_time(at) }));
            } else {
                events.push((
                    at,
                    json!({ "factor_verified": { "factor": factor.name(), "at": format_time(at) } }),
                ));
            }
        }
        for _ in 0..c.word_value(&request.failures[f]) {
            events.push((
                flow_started,
                json!({ "factor_failed": { "factor": factor.name(), "at": format_time(flow_started) } }),
            ));
        }
    }
    taken.push(id.clone());
    for (i, role) in request.roles.iter().enumerate() {
        if c.value(role.granted) {
            let at = time(&role.granted_at);
            let approver = outside(universe, &taken, &format!("approver-{i}"));
            events.push((
                at,
                json!({ "approval": { "role": role.name, "approver": approver, "granted": true, "at": format_time(at) } }),
            ));
        }
        if c.value(role.refused) {
            let approver = outside(universe, &taken, &format!("refuser-{i}"));
            events.push((
                flow_started,
                json!({ "approval": { "role": role.name, "approver": approver, "granted": false, "at": format_time(flow_started) } }),
            ));
        }
    }
    events.sort_by_key(|(at, _)| *at);
    if events.last().map(|(at, _)| *at).unwrap_or(flow_started) < now {
        // The principal's own approvals never count, so this event only
        // moves the evaluation time to `now`.
        let role = request
            .roles
            .first()
            .map(|r| r.name.clone())
            .unwrap_or_else(|| "none".to_string());
        events.push((
            now,
            json!({ "approval": { "role": role, "approver": id, "granted": false, "at": format_time(now) } }),
        ));
    }

    let request_json = json!({
        "flow": flow,
        "now": format_time(flow_started),
        "principal": principal,
        "context": context,
        "switches": switches,
        "session": {
            "started_at": format_time(time(&request.session_started)),
            "last_active_at": format_time(time(&request.last_active)),
            "factors": session_factors,
        },
    });
    (request_json, events.into_iter().map(|(_, e)| e).collect())
}

/// Runs a request and its events through the engine and returns the state
/// and the outcome of the final evaluation.
pub fn replay(
    policy: &Policy,
    request: &Json,
    events: &[Json],
) -> Result<(FlowState, Outcome), String> {
    let mut state = policy
        .start(request, 0)
        .map_err(|e| format!("the engine rejects the request: {e}"))?;
    for event in events {
        state = policy
            .resume(&state, event)
            .map_err(|e| format!("the engine rejects an event: {e}"))?;
    }
    let outcome = policy
        .evaluate(&state, false)
        .map_err(|e| format!("the engine cannot evaluate the request: {e}"))?;
    Ok((state, outcome))
}
