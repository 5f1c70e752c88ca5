//! Input binding: validates a request and its events against the schema,
//! folds the events into facts, and writes the facts into the fixed-layout
//! input record that the kernel reads.
//!
//! Validation is complete before evaluation starts: any invalid field is an
//! [`InputError`] naming the field, and no decision is made.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value as Json;

use crate::factor::Factor;
use crate::program::{slot, Attribute, Instr, Program, ValueType};
use crate::value::{parse_cidr, parse_duration, parse_ip, parse_time, Cidr};

/// Invalid input: the field (a JSON path such as `principal.roles`) and
/// what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid input: {}", self.message)
        } else {
            write!(f, "invalid input at `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for InputError {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        message: message.into(),
    }
}

/// A validated attribute value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
    Duration(i64),
    Time(i64),
    Ip(u128),
    Cidr(Cidr),
    Factor(u8),
    Enum(u32),
    /// Elements sorted, without duplicates.
    Set(Vec<Value>),
}

/// A validated request.
#[derive(Clone, Debug)]
pub struct Request {
    pub flow: usize,
    pub kind: u32,
    pub id: String,
    /// Per attribute of the principal's kind, in declaration order.
    pub principal: Vec<Option<Value>>,
    pub enrolled: u64,
    /// Per context attribute, in declaration order.
    pub context: Vec<Option<Value>>,
    pub switches: Vec<Option<Value>>,
    pub now: i64,
    pub session_started: i64,
    pub last_active: i64,
    pub session_factors: Vec<(Factor, i64)>,
}

/// A validated event.
#[derive(Clone, Debug)]
pub enum Event {
    Verified {
        factor: Factor,
        at: i64,
    },
    Failed {
        factor: Factor,
        at: i64,
    },
    Enrolled {
        factor: Factor,
        at: i64,
    },
    Approval {
        role: String,
        approver: String,
        granted: bool,
        at: i64,
    },
    Update {
        principal: Vec<(usize, Option<Value>)>,
        context: Vec<(usize, Option<Value>)>,
        /// Switch values by index; `None` restores the default.
        switches: Vec<(usize, Option<Value>)>,
        at: i64,
    },
}

impl Event {
    pub fn at(&self) -> i64 {
        match self {
            Event::Verified { at, .. }
            | Event::Failed { at, .. }
            | Event::Enrolled { at, .. }
            | Event::Approval { at, .. }
            | Event::Update { at, .. } => *at,
        }
    }
}

/// The state of one approval role.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleState {
    pub granted: bool,
    /// The earliest grant.
    pub granted_at: i64,
    pub refused: bool,
}

/// Everything known at one evaluation: the request with every event applied.
#[derive(Clone, Debug)]
pub struct Facts {
    pub request: Request,
    pub now: i64,
    pub flow_started: i64,
    pub verified: u64,
    pub verified_at: [i64; Factor::COUNT],
    pub failures: [u64; Factor::COUNT],
    pub enrolled: u64,
    /// Per role of the program's role universe.
    pub roles: Vec<RoleState>,
    /// Per role of the program's role universe: whether an `approve` step
    /// of the request's flow, or of a flow it runs, lists the role.
    /// Approvals for other roles are ignored.
    pub listed: Vec<bool>,
    /// Each approver and the one role whose approval of theirs counts.
    pub approvers: Vec<(String, usize)>,
}

pub(crate) fn kind_of(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn object<'a>(
    value: &'a Json,
    field: &str,
) -> Result<&'a serde_json::Map<String, Json>, InputError> {
    value.as_object().ok_or_else(|| {
        invalid(
            field,
            format!("expected an object, found {}", kind_of(value)),
        )
    })
}

fn string<'a>(value: &'a Json, field: &str) -> Result<&'a str, InputError> {
    value.as_str().ok_or_else(|| {
        invalid(
            field,
            format!("expected a string, found {}", kind_of(value)),
        )
    })
}

fn time(value: &Json, field: &str) -> Result<i64, InputError> {
    parse_time(string(value, field)?).map_err(|message| invalid(field, message))
}

fn factor(value: &Json, field: &str) -> Result<Factor, InputError> {
    factor_named(string(value, field)?, || field.to_string())
}

/// Looks up a factor by name; the error names `field()`.
pub(crate) fn factor_named(
    name: &str,
    field: impl FnOnce() -> String,
) -> Result<Factor, InputError> {
    Factor::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Factor::ALL.iter().map(|f| f.name()).collect();
        invalid(
            field(),
            format!(
                "unknown factor `{name}` (expected one of: {})",
                names.join(", ")
            ),
        )
    })
}

/// Looks up a variant of enum `index` by name; the error names `field()`.
pub(crate) fn variant_named(
    program: &Program,
    index: u32,
    name: &str,
    field: impl FnOnce() -> String,
) -> Result<u32, InputError> {
    let enumeration = &program.schema.enums[index as usize];
    enumeration
        .variants
        .iter()
        .position(|v| v == name)
        .map(|v| v as u32)
        .ok_or_else(|| {
            invalid(
                field(),
                format!(
                    "unknown value `{name}` for `{}` (expected one of: {})",
                    enumeration.name,
                    enumeration.variants.join(", ")
                ),
            )
        })
}

fn reject_unknown_keys(
    map: &serde_json::Map<String, Json>,
    allowed: &[&str],
    field: &str,
) -> Result<(), InputError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let path = if field.is_empty() {
                key.clone()
            } else {
                format!("{field}.{key}")
            };
            return Err(invalid(
                path,
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Validates one value against its type; `null` is `None` for optionals.
pub fn value(
    program: &Program,
    json: &Json,
    ty: &ValueType,
    field: &str,
) -> Result<Option<Value>, InputError> {
    if let ValueType::Optional(inner) = ty {
        if json.is_null() {
            return Ok(None);
        }
        return value(program, json, inner, field);
    }
    if json.is_null() {
        return Err(invalid(
            field,
            format!("expected {}, found null", describe(program, ty)),
        ));
    }
    let mismatch = || {
        invalid(
            field,
            format!(
                "expected {}, found {}",
                describe(program, ty),
                kind_of(json)
            ),
        )
    };
    let parsed = match ty {
        ValueType::Bool => Value::Bool(json.as_bool().ok_or_else(mismatch)?),
        ValueType::Int => match json {
            Json::Number(number) => match number.as_i64() {
                Some(v) => Value::Int(v),
                None if number.is_u64() => {
                    return Err(invalid(field, format!("integer {number} is out of range")))
                }
                None => {
                    return Err(invalid(
                        field,
                        format!("expected an integer, found {number}"),
                    ))
                }
            },
            _ => return Err(mismatch()),
        },
        ValueType::String => Value::Str(json.as_str().ok_or_else(mismatch)?.to_string()),
        ValueType::Duration => Value::Duration(
            parse_duration(json.as_str().ok_or_else(mismatch)?).map_err(|m| invalid(field, m))?,
        ),
        ValueType::Time => Value::Time(
            parse_time(json.as_str().ok_or_else(mismatch)?).map_err(|m| invalid(field, m))?,
        ),
        ValueType::Ip => {
            Value::Ip(parse_ip(json.as_str().ok_or_else(mismatch)?).map_err(|m| invalid(field, m))?)
        }
        ValueType::Cidr => Value::Cidr(
            parse_cidr(json.as_str().ok_or_else(mismatch)?).map_err(|m| invalid(field, m))?,
        ),
        ValueType::Factor => Value::Factor(factor(json, field)? as u8),
        ValueType::Enum(index) => {
            let name = json.as_str().ok_or_else(mismatch)?;
            Value::Enum(variant_named(program, *index, name, || field.to_string())?)
        }
        ValueType::Set(element) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            check_set_len(items.len(), || field.to_string())?;
            let mut elements = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let path = format!("{field}[{i}]");
                match value(program, item, element, &path)? {
                    Some(v) => elements.push(v),
                    None => return Err(invalid(path, "set elements cannot be null")),
                }
            }
            elements.sort();
            elements.dedup();
            Value::Set(elements)
        }
        ValueType::Optional(_) => {
            return Err(invalid(field, "nested optional types are not supported"))
        }
    };
    Ok(Some(parsed))
}

pub(crate) fn describe(program: &Program, ty: &ValueType) -> String {
    match ty {
        ValueType::Bool => "a boolean".into(),
        ValueType::Int => "an integer".into(),
        ValueType::String => "a string".into(),
        ValueType::Duration => "a duration string such as \"15m\"".into(),
        ValueType::Time => "an RFC 3339 time string".into(),
        ValueType::Ip => "an IP address string".into(),
        ValueType::Cidr => "a CIDR string such as \"10.0.0.0/8\"".into(),
        ValueType::Factor => "a factor name".into(),
        ValueType::Enum(index) => {
            format!("a `{}` value", program.schema.enums[*index as usize].name)
        }
        ValueType::Set(element) => format!(
            "an array of {}",
            describe(program, element)
                .trim_start_matches("a ")
                .trim_start_matches("an ")
        ),
        ValueType::Optional(inner) => format!("{} or null", describe(program, inner)),
    }
}

/// Validates attributes given in `map` against `declared`. With `complete`,
/// every non-optional attribute must be present.
fn attributes(
    program: &Program,
    map: &serde_json::Map<String, Json>,
    declared: &[Attribute],
    field: &str,
    skip: &[&str],
    complete: bool,
) -> Result<Vec<(usize, Option<Value>)>, InputError> {
    for key in map.keys() {
        if skip.contains(&key.as_str()) || declared.iter().any(|a| a.name == *key) {
            continue;
        }
        let names: Vec<&str> = declared
            .iter()
            .map(|a| a.name.as_str())
            .chain(skip.iter().copied())
            .collect();
        return Err(invalid(
            format!("{field}.{key}"),
            format!("undeclared attribute (declared: {})", names.join(", ")),
        ));
    }
    let mut values = Vec::new();
    for (index, attribute) in declared.iter().enumerate() {
        let path = format!("{field}.{}", attribute.name);
        match map.get(&attribute.name) {
            Some(json) => values.push((index, value(program, json, &attribute.ty, &path)?)),
            None if complete && !matches!(attribute.ty, ValueType::Optional(_)) => {
                return Err(invalid(
                    path,
                    format!(
                        "missing required attribute ({})",
                        describe(program, &attribute.ty)
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(values)
}

fn full(values: Vec<(usize, Option<Value>)>, count: usize) -> Vec<Option<Value>> {
    let mut result = vec![None; count];
    for (index, value) in values {
        result[index] = value;
    }
    result
}

/// The flows a request may name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Routes {
    /// The flows marked [`crate::program::Flow::entry`], as a host serves
    /// them.
    #[default]
    Entries,
    /// Every flow, for test runners and proofs that exercise a building
    /// block on its own.
    All,
}

/// Validates a request to an entry flow. `default_now` is used when the
/// request has no `now`.
pub fn request(program: &Program, json: &Json, default_now: i64) -> Result<Request, InputError> {
    request_with(program, json, default_now, Routes::Entries)
}

/// Validates a request to a flow that `routes` allows.
pub fn request_with(
    program: &Program,
    json: &Json,
    default_now: i64,
    routes: Routes,
) -> Result<Request, InputError> {
    let map = object(json, "")?;
    reject_unknown_keys(
        map,
        &[
            "flow",
            "event",
            "principal",
            "context",
            "session",
            "switches",
            "now",
        ],
        "",
    )?;
    let now = match map.get("now") {
        Some(value) => time(value, "now")?,
        None => default_now,
    };

    let principal_json = map
        .get("principal")
        .ok_or_else(|| invalid("principal", "missing required field"))?;
    let principal_map = object(principal_json, "principal")?;
    let kind_name = string(
        principal_map
            .get("kind")
            .ok_or_else(|| invalid("principal.kind", "missing required field"))?,
        "principal.kind",
    )?;
    let kind = program
        .schema
        .kinds
        .iter()
        .position(|k| k.name == kind_name)
        .ok_or_else(|| {
            let names: Vec<&str> = program
                .schema
                .kinds
                .iter()
                .map(|k| k.name.as_str())
                .collect();
            invalid(
                "principal.kind",
                format!(
                    "unknown principal kind `{kind_name}` (declared: {})",
                    names.join(", ")
                ),
            )
        })? as u32;
    let id = string(
        principal_map
            .get("id")
            .ok_or_else(|| invalid("principal.id", "missing required field"))?,
        "principal.id",
    )?
    .to_string();
    check_identifier(&id, "principal.id")?;
    let mut enrolled = 0;
    if let Some(list) = principal_map.get("enrolled") {
        let items = list.as_array().ok_or_else(|| {
            invalid(
                "principal.enrolled",
                format!("expected an array of factor names, found {}", kind_of(list)),
            )
        })?;
        for (i, item) in items.iter().enumerate() {
            enrolled |= factor(item, &format!("principal.enrolled[{i}]"))?.bit();
        }
    }
    let declared = &program.schema.kinds[kind as usize].attributes;
    let principal = full(
        attributes(
            program,
            principal_map,
            declared,
            "principal",
            &["kind", "id", "enrolled"],
            true,
        )?,
        declared.len(),
    );

    let flow = route(program, map, kind, routes)?;

    let empty = serde_json::Map::new();
    let context_map = match map.get("context") {
        Some(value) => object(value, "context")?,
        None => &empty,
    };
    let context = full(
        attributes(
            program,
            context_map,
            &program.schema.context,
            "context",
            &[],
            true,
        )?,
        program.schema.context.len(),
    );

    let switches = switches(program, map.get("switches"))?;

    let (session_started, last_active, session_factors) = session(map.get("session"), now)?;
    Ok(Request {
        flow,
        kind,
        id,
        principal,
        enrolled,
        context,
        switches,
        now,
        session_started,
        last_active,
        session_factors,
    })
}

fn route(
    program: &Program,
    map: &serde_json::Map<String, Json>,
    kind: u32,
    routes: Routes,
) -> Result<usize, InputError> {
    match (map.get("flow"), map.get("event")) {
        (Some(_), Some(_)) => Err(invalid("event", "give either `flow` or `event`, not both")),
        (None, None) => Err(invalid(
            "flow",
            "missing: give `flow` (a flow name) or `event` (a lifecycle event)",
        )),
        (Some(flow), None) => flow_named(program, string(flow, "flow")?, kind, routes),
        (None, Some(event)) => flow_for_event(program, string(event, "event")?, kind),
    }
}

/// Finds the flow a request names, for a principal of kind `kind`.
pub(crate) fn flow_named(
    program: &Program,
    name: &str,
    kind: u32,
    routes: Routes,
) -> Result<usize, InputError> {
    let kind_name = &program.schema.kinds[kind as usize].name;
    let (index, flow) = program
        .flow(name)
        .filter(|(_, flow)| flow.entry || routes == Routes::All)
        .ok_or_else(|| {
            let names: Vec<&str> = program
                .flows
                .iter()
                .filter(|f| f.entry || routes == Routes::All)
                .map(|f| f.name.as_str())
                .collect();
            let message = match program.flow(name) {
                Some(_) => format!(
                    "flow `{name}` is reached only with `run` from another flow, after that flow's checks (flows a request may name: {})",
                    names.join(", ")
                ),
                None => format!("unknown flow `{name}` (flows: {})", names.join(", ")),
            };
            invalid("flow", message)
        })?;
    if !flow.kinds.contains(&kind) {
        return Err(invalid(
            "flow",
            format!("flow `{name}` does not accept principal kind `{kind_name}`"),
        ));
    }
    Ok(index)
}

/// Finds the flow that handles `event` for a principal of kind `kind`.
pub fn flow_for_event(program: &Program, event: &str, kind: u32) -> Result<usize, InputError> {
    program
        .flows
        .iter()
        .position(|f| f.event.as_deref() == Some(event) && f.kinds.contains(&kind))
        .ok_or_else(|| {
            let kind_name = &program.schema.kinds[kind as usize].name;
            invalid(
                "event",
                format!("no flow handles event `{event}` for principal kind `{kind_name}`"),
            )
        })
}

/// Validates the switches an `update` event sets. `null` restores a
/// switch's default.
fn switch_updates(
    program: &Program,
    values: &serde_json::Map<String, Json>,
    path: &str,
) -> Result<Vec<(usize, Option<Value>)>, InputError> {
    let declared = &program.schema.switches;
    values
        .iter()
        .map(|(key, json)| {
            let field = format!("{path}.switches.{key}");
            let index = switch_index(program, key, || field.clone())?;
            let switch = &declared[index];
            let source = if json.is_null() {
                &switch.default
            } else {
                json
            };
            Ok((index, value(program, source, &switch.ty, &field)?))
        })
        .collect()
}

/// Finds the declared switch named `key`. `field` names it in the error.
fn switch_index(
    program: &Program,
    key: &str,
    field: impl FnOnce() -> String,
) -> Result<usize, InputError> {
    let declared = &program.schema.switches;
    declared.iter().position(|s| s.name == key).ok_or_else(|| {
        let names: Vec<&str> = declared.iter().map(|s| s.name.as_str()).collect();
        invalid(
            field(),
            format!("unknown switch (declared: {})", names.join(", ")),
        )
    })
}

fn switches(program: &Program, json: Option<&Json>) -> Result<Vec<Option<Value>>, InputError> {
    let empty = serde_json::Map::new();
    let given = match json {
        Some(value) => object(value, "switches")?,
        None => &empty,
    };
    for key in given.keys() {
        switch_index(program, key, || format!("switches.{key}"))?;
    }
    program
        .schema
        .switches
        .iter()
        .map(|switch| {
            let path = format!("switches.{}", switch.name);
            match given.get(&switch.name) {
                Some(json) => value(program, json, &switch.ty, &path),
                None => value(program, &switch.default, &switch.ty, &path),
            }
        })
        .collect()
}

/// The maximum number of elements a set in a request may list. Invariant
/// proofs and semantic diffs cover sets up to this size, so a larger set is
/// rejected rather than decided outside what was proved.
pub const MAX_SET_ELEMENTS: usize = 65_535;

/// The maximum number of events in a flow state. It bounds every failure
/// count to what invariant proofs and semantic diffs cover.
pub const MAX_EVENTS: usize = 65_535;

/// Checks a principal id, an approver or an approval role. Ids are compared
/// byte for byte, so text that displays like another id must not pass.
/// An id is not empty and has no whitespace at either end, and the space is
/// its only whitespace. It has no control or invisible characters and does
/// not start with a combining mark. It is in Unicode normalization form C,
/// so `é` has one spelling, not also `e` followed by a combining accent.
pub(crate) fn check_identifier(text: &str, field: &str) -> Result<(), InputError> {
    let message = if text.is_empty() {
        "must not be empty"
    } else if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        "must not start or end with whitespace"
    } else if text.chars().any(|c| c.is_whitespace() && c != ' ') {
        "must not contain whitespace other than the space character"
    } else if text.chars().any(|c| c.is_control() || is_invisible(c)) {
        "must not contain control or invisible characters"
    } else if text.chars().next().is_some_and(is_combining_mark) {
        "must not start with a combining mark"
    } else if !unicode_normalization::is_nfc(text) {
        "must be in Unicode normalization form C (NFC); normalize it before sending"
    } else {
        return Ok(());
    };
    Err(invalid(field, message))
}

/// Returns whether `c` shows nothing by itself: Unicode's format characters
/// (general category Cf) and default ignorable code points as of Unicode
/// 15.1, such as zero-width spaces, direction marks, variation selectors and
/// Hangul fillers, and the blank Braille pattern.
fn is_invisible(c: char) -> bool {
    const INVISIBLE: [(u32, u32); 26] = [
        (0x00AD, 0x00AD),
        (0x034F, 0x034F),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0x2800, 0x2800),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFEFF, 0xFEFF),
        (0xFFA0, 0xFFA0),
        (0xFFF0, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF),
    ];
    let code = u32::from(c);
    INVISIBLE
        .iter()
        .any(|&(first, last)| (first..=last).contains(&code))
}

/// Returns whether `c` is in one of the blocks of combining diacritical
/// marks, which attach to the character before them.
fn is_combining_mark(c: char) -> bool {
    matches!(
        u32::from(c),
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F
    )
}

/// Rejects a set that lists more than [`MAX_SET_ELEMENTS`] elements.
/// `field` names the set and is called only on error, so a valid set costs
/// no allocation.
pub(crate) fn check_set_len(len: usize, field: impl FnOnce() -> String) -> Result<(), InputError> {
    if len > MAX_SET_ELEMENTS {
        return Err(invalid(
            field(),
            format!("a set lists at most {MAX_SET_ELEMENTS} elements, found {len}"),
        ));
    }
    Ok(())
}

type Session = (i64, i64, Vec<(Factor, i64)>);

fn session(json: Option<&Json>, now: i64) -> Result<Session, InputError> {
    let Some(json) = json else {
        return Ok((now, now, Vec::new()));
    };
    let map = object(json, "session")?;
    reject_unknown_keys(map, &["started_at", "last_active_at", "factors"], "session")?;
    let given_start = match map.get("started_at") {
        Some(value) => Some(time(value, "session.started_at")?),
        None => None,
    };
    let given_last_active = match map.get("last_active_at") {
        Some(value) => Some(time(value, "session.last_active_at")?),
        None => None,
    };
    let mut factors = Vec::new();
    if let Some(list) = map.get("factors") {
        let items = list.as_array().ok_or_else(|| {
            invalid(
                "session.factors",
                format!("expected an array, found {}", kind_of(list)),
            )
        })?;
        for (i, item) in items.iter().enumerate() {
            let path = format!("session.factors[{i}]");
            let entry = object(item, &path)?;
            reject_unknown_keys(entry, &["factor", "at"], &path)?;
            let f = factor(
                entry
                    .get("factor")
                    .ok_or_else(|| invalid(format!("{path}.factor"), "missing required field"))?,
                &format!("{path}.factor"),
            )?;
            let at = time(
                entry
                    .get("at")
                    .ok_or_else(|| invalid(format!("{path}.at"), "missing required field"))?,
                &format!("{path}.at"),
            )?;
            if at > now {
                return Err(invalid(
                    format!("{path}.at"),
                    "a factor cannot be verified after the request's `now`",
                ));
            }
            factors.push((f, at));
        }
    }
    // The earliest factor, the first in request order among equal times.
    let earliest = factors
        .iter()
        .enumerate()
        .min_by_key(|&(index, &(_, at))| (at, index))
        .map(|(index, &(_, at))| (index, at));
    let latest = factors.iter().map(|&(_, at)| at).max();
    let times = SessionTimes::new(given_start, given_last_active, now, earliest, latest)?;
    Ok((times.started, times.last_active, factors))
}

/// When a session started and was last active, from what the request gives
/// and the times of its factors.
pub(crate) struct SessionTimes {
    pub started: i64,
    pub last_active: i64,
}

impl SessionTimes {
    /// Checks the given times against `now` and the session's factors. A
    /// session starts no later than its first factor, so a missing start is
    /// the earliest factor's time (else `now`), and a factor dated before a
    /// given start is invalid. Verifying a factor is activity, so a missing
    /// last activity is the latest factor's time, or the start.
    /// `earliest` is the index and time of the earliest factor, `latest`
    /// the time of the latest.
    pub fn new(
        started: Option<i64>,
        last_active: Option<i64>,
        now: i64,
        earliest: Option<(usize, i64)>,
        latest: Option<i64>,
    ) -> Result<SessionTimes, InputError> {
        let started = match (started, earliest) {
            (Some(started), Some((index, at))) if at < started => {
                return Err(invalid(
                    format!("session.factors[{index}].at"),
                    "a factor cannot be verified before `session.started_at`",
                ));
            }
            (Some(started), _) => started,
            (None, Some((_, at))) => at,
            (None, None) => now,
        };
        if started > now {
            return Err(invalid(
                "session.started_at",
                "the session starts after the request's `now`",
            ));
        }
        let last_active = last_active.unwrap_or(latest.unwrap_or(started).max(started));
        if last_active > now || last_active < started {
            return Err(invalid(
                "session.last_active_at",
                "must lie between `session.started_at` and the request's `now`",
            ));
        }
        Ok(SessionTimes {
            started,
            last_active,
        })
    }
}

/// Validates one event. `field` prefixes error paths, e.g. `events[2]`.
pub fn event(
    program: &Program,
    request: &Request,
    json: &Json,
    field: &str,
) -> Result<Event, InputError> {
    let map = object(json, field)?;
    if map.len() != 1 {
        return Err(invalid(field, "an event is an object with exactly one key: factor_verified, factor_failed, factor_enrolled, approval or update"));
    }
    let (name, body) = map
        .iter()
        .next()
        .ok_or_else(|| invalid(field, "empty event"))?;
    let path = format!("{field}.{name}");
    let body_map = object(body, &path)?;
    let at_of = |map: &serde_json::Map<String, Json>| -> Result<i64, InputError> {
        time(
            map.get("at")
                .ok_or_else(|| invalid(format!("{path}.at"), "missing required field"))?,
            &format!("{path}.at"),
        )
    };
    let factor_of = |map: &serde_json::Map<String, Json>| -> Result<Factor, InputError> {
        factor(
            map.get("factor")
                .ok_or_else(|| invalid(format!("{path}.factor"), "missing required field"))?,
            &format!("{path}.factor"),
        )
    };
    match name.as_str() {
        "factor_verified" | "factor_failed" | "factor_enrolled" => {
            reject_unknown_keys(body_map, &["factor", "at"], &path)?;
            let (factor, at) = (factor_of(body_map)?, at_of(body_map)?);
            Ok(match name.as_str() {
                "factor_verified" => Event::Verified { factor, at },
                "factor_failed" => Event::Failed { factor, at },
                _ => Event::Enrolled { factor, at },
            })
        }
        "approval" => {
            reject_unknown_keys(body_map, &["role", "approver", "granted", "at"], &path)?;
            let text = |key: &str| -> Result<String, InputError> {
                let value = body_map.get(key).ok_or_else(|| invalid(format!("{path}.{key}"), "missing required field"))?;
                let text = string(value, &format!("{path}.{key}"))?;
                check_identifier(text, &format!("{path}.{key}"))?;
                Ok(text.to_string())
            };
            let granted = body_map.get("granted").ok_or_else(|| invalid(format!("{path}.granted"), "missing required field"))?;
            let granted = granted.as_bool().ok_or_else(|| invalid(format!("{path}.granted"), format!("expected a boolean, found {}", kind_of(granted))))?;
            Ok(Event::Approval { role: text("role")?, approver: text("approver")?, granted, at: at_of(body_map)? })
        }
        "update" => {
            reject_unknown_keys(body_map, &["principal", "context", "switches", "at"], &path)?;
            let at = at_of(body_map)?;
            let mut principal = Vec::new();
            if let Some(json) = body_map.get("principal") {
                let partial = object(json, &format!("{path}.principal"))?;
                for key in ["kind", "id"] {
                    if partial.contains_key(key) {
                        return Err(invalid(format!("{path}.principal.{key}"), format!("an update cannot change the principal's `{key}`")));
                    }
                }
                let declared = &program.schema.kinds[request.kind as usize].attributes;
                principal = attributes(program, partial, declared, &format!("{path}.principal"), &[], false)?;
            }
            let mut context = Vec::new();
            if let Some(json) = body_map.get("context") {
                let partial = object(json, &format!("{path}.context"))?;
                context = attributes(program, partial, &program.schema.context, &format!("{path}.context"), &[], false)?;
            }
            let mut switches = Vec::new();
            if let Some(json) = body_map.get("switches") {
                switches = switch_updates(program, object(json, &format!("{path}.switches"))?, &path)?;
            }
            if principal.is_empty() && context.is_empty() && switches.is_empty() {
                return Err(invalid(path, "an update must set at least one `principal` or `context` attribute or switch"));
            }
            Ok(Event::Update { principal, context, switches, at })
        }
        other => Err(invalid(
            format!("{field}.{other}"),
            "unknown event (expected factor_verified, factor_failed, factor_enrolled, approval or update)",
        )),
    }
}

impl Facts {
    /// Builds the facts of a request before any event.
    pub fn new(program: &Program, request: Request) -> Facts {
        let mut verified_at = [i64::MIN; Factor::COUNT];
        let mut verified = 0;
        for &(factor, at) in &request.session_factors {
            verified |= factor.bit();
            verified_at[factor as usize] = verified_at[factor as usize].max(at);
        }
        Facts {
            now: request.now,
            flow_started: request.now,
            verified,
            verified_at,
            failures: [0; Factor::COUNT],
            enrolled: request.enrolled,
            roles: vec![RoleState::default(); program.roles.len()],
            listed: listed_roles(program, request.flow),
            approvers: Vec::new(),
            request,
        }
    }

    /// Applies one event. Events may not go back in time.
    pub fn apply(
        &mut self,
        program: &Program,
        event: &Event,
        field: &str,
    ) -> Result<(), InputError> {
        let at = event.at();
        if at < self.now {
            return Err(invalid(
                format!("{field}.at"),
                "the event is earlier than the previous evaluation; events must be in time order",
            ));
        }
        self.now = at;
        match event {
            Event::Verified { factor, at } => {
                self.verified |= factor.bit();
                self.verified_at[*factor as usize] = self.verified_at[*factor as usize].max(*at);
            }
            Event::Failed { factor, .. } => {
                self.failures[*factor as usize] = self.failures[*factor as usize].saturating_add(1);
            }
            Event::Enrolled { factor, .. } => self.enrolled |= factor.bit(),
            Event::Approval {
                role,
                approver,
                granted,
                at,
            } => {
                // Approvals by the principal itself, and for roles that no
                // step of this flow lists, never count. Dropping the latter
                // first keeps them from using up an approver's one grant.
                if *approver == self.request.id {
                    return Ok(());
                }
                let index = program.roles.iter().position(|r| r == role);
                if let Some(index) = index.filter(|&index| self.listed.get(index) == Some(&true)) {
                    // Separation of duties: one approver grants at most one role.
                    let granted_other = self
                        .approvers
                        .iter()
                        .any(|(a, r)| a == approver && *r != index);
                    if *granted && granted_other {
                        return Ok(());
                    }
                    if *granted
                        && !self
                            .approvers
                            .iter()
                            .any(|(a, r)| a == approver && *r == index)
                    {
                        self.approvers.push((approver.clone(), index));
                    }
                    let state = &mut self.roles[index];
                    if *granted {
                        if !state.granted {
                            state.granted_at = *at;
                        }
                        state.granted = true;
                    } else {
                        state.refused = true;
                    }
                }
            }
            Event::Update {
                principal,
                context,
                switches,
                ..
            } => {
                for (index, value) in principal {
                    self.request.principal[*index] = value.clone();
                }
                for (index, value) in context {
                    self.request.context[*index] = value.clone();
                }
                for (index, value) in switches {
                    self.request.switches[*index] = value.clone();
                }
            }
        }
        Ok(())
    }
}

/// Marks the roles whose approval words the code of `flow` loads. Lowering
/// loads them exactly for the roles that the flow's `approve` steps list,
/// including the steps of the flows it runs, which are inlined.
fn listed_roles(program: &Program, flow: usize) -> Vec<bool> {
    let mut listed = vec![false; program.roles.len()];
    let code = program.flows.get(flow).map_or(&[][..], |f| &f.code[..]);
    for instr in code {
        let Instr::Load { slot, .. } = *instr else {
            continue;
        };
        let Some(offset) = slot.checked_sub(slot::ROLES) else {
            continue;
        };
        if let Some(role) = listed.get_mut((offset / slot::WORDS_PER_ROLE) as usize) {
            *role = true;
        }
    }
    listed
}

/// Interns strings for one evaluation: pool strings keep their pool id, and
/// each scalar string slot's value that is not in the pool gets the id
/// `pool size + slot index` (or the id of an equal earlier value).
pub struct Strings<'p> {
    pool: &'p HashMap<String, u64>,
    pool_size: u64,
    dynamic: Vec<(String, u64)>,
}

impl<'p> Strings<'p> {
    pub fn new(pool: &'p HashMap<String, u64>) -> Strings<'p> {
        Strings {
            pool,
            pool_size: pool.len() as u64,
            dynamic: Vec::new(),
        }
    }

    fn intern(&mut self, text: &str, slot_index: usize) -> u64 {
        if let Some(&id) = self.pool.get(text) {
            return id;
        }
        if let Some((_, id)) = self.dynamic.iter().find(|(s, _)| s == text) {
            return *id;
        }
        let id = self.pool_size + slot_index as u64;
        self.dynamic.push((text.to_string(), id));
        id
    }

    fn lookup(&self, text: &str) -> Option<u64> {
        self.pool.get(text).copied().or_else(|| {
            self.dynamic
                .iter()
                .find(|(s, _)| s == text)
                .map(|(_, id)| *id)
        })
    }

    /// Returns the text of an id, for rendering outputs.
    pub fn text<'s>(&'s self, id: u64, program: &'s Program) -> &'s str {
        if id < self.pool_size {
            return program
                .strings
                .get(id as usize)
                .map(String::as_str)
                .unwrap_or("");
        }
        self.dynamic
            .iter()
            .find(|(_, i)| *i == id)
            .map(|(s, _)| s.as_str())
            .unwrap_or("")
    }
}

/// Writes facts into `record` (which must hold `layout.words` words).
/// `slot_index` maps a string slot's record word to its index.
pub fn bind(
    program: &Program,
    facts: &Facts,
    slot_index: &HashMap<u32, usize>,
    strings: &mut Strings<'_>,
    record: &mut [u64],
) {
    record.fill(0);
    record[slot::NOW as usize] = facts.now as u64;
    record[slot::FLOW_STARTED as usize] = facts.flow_started as u64;
    record[slot::SESSION_STARTED as usize] = facts.request.session_started as u64;
    record[slot::LAST_ACTIVE as usize] = facts.request.last_active as u64;
    record[slot::VERIFIED as usize] = facts.verified;
    record[slot::ENROLLED as usize] = facts.enrolled;
    for i in 0..Factor::COUNT {
        record[slot::VERIFIED_AT as usize + i] = facts.verified_at[i] as u64;
        record[slot::FAILURES as usize + i] = facts.failures[i];
    }
    for (i, role) in facts.roles.iter().enumerate() {
        let base = (slot::ROLES + slot::WORDS_PER_ROLE * i as u32) as usize;
        record[base] = u64::from(role.granted);
        record[base + 1] = role.granted_at as u64;
        record[base + 2] = u64::from(role.refused);
    }
    record[slot::PRINCIPAL_ID as usize] = strings.intern(&facts.request.id, 0);

    let kind = &program.schema.kinds[facts.request.kind as usize];
    let mut values: Vec<(&Attribute, &Option<Value>)> = kind
        .attributes
        .iter()
        .zip(&facts.request.principal)
        .collect();
    values.extend(program.schema.context.iter().zip(&facts.request.context));
    let switch_attributes: Vec<Attribute> = program
        .schema
        .switches
        .iter()
        .map(|s| Attribute {
            name: s.name.clone(),
            ty: s.ty.clone(),
            slot: s.slot,
        })
        .collect();
    values.extend(switch_attributes.iter().zip(&facts.request.switches));

    // Scalar strings first, so that sets can mark their ids.
    let string_words = program.layout.string_set_words as usize;
    for pass in 0..2 {
        for (attribute, value) in &values {
            let is_set = matches!(&attribute.ty, ValueType::Set(_))
                || matches!(&attribute.ty, ValueType::Optional(inner) if matches!(**inner, ValueType::Set(_)));
            if (pass == 0) == is_set {
                continue;
            }
            let mut at = attribute.slot as usize;
            let ty = match &attribute.ty {
                ValueType::Optional(inner) => {
                    record[at] = u64::from(value.is_some());
                    at += 1;
                    inner.as_ref()
                }
                other => other,
            };
            let Some(value) = value else { continue };
            write_value(value, ty, at, record, strings, slot_index, string_words);
        }
    }
}

fn write_value(
    value: &Value,
    ty: &ValueType,
    at: usize,
    record: &mut [u64],
    strings: &mut Strings<'_>,
    slot_index: &HashMap<u32, usize>,
    string_words: usize,
) {
    match value {
        Value::Bool(b) => record[at] = u64::from(*b),
        Value::Int(v) | Value::Duration(v) | Value::Time(v) => record[at] = *v as u64,
        Value::Str(text) => {
            let index = slot_index.get(&(at as u32)).copied().unwrap_or(0);
            record[at] = strings.intern(text, index);
        }
        Value::Ip(ip) => {
            record[at] = (*ip >> 64) as u64;
            record[at + 1] = *ip as u64;
        }
        Value::Cidr(cidr) => {
            let mask = cidr.mask();
            record[at] = (cidr.network >> 64) as u64;
            record[at + 1] = cidr.network as u64;
            record[at + 2] = (mask >> 64) as u64;
            record[at + 3] = mask as u64;
        }
        Value::Factor(f) => record[at] = u64::from(*f),
        Value::Enum(v) => record[at] = u64::from(*v),
        Value::Set(elements) => {
            if matches!(ty, ValueType::Set(element) if **element == ValueType::String) {
                // Only strings the policy can ask about have a bit; the count covers all.
                for element in elements {
                    if let Value::Str(text) = element {
                        if let Some(id) = strings.lookup(text) {
                            let word = (id / 64) as usize;
                            if word < string_words {
                                record[at + word] |= 1 << (id % 64);
                            }
                        }
                    }
                }
                record[at + string_words] = elements.len() as u64;
            } else {
                let mut bits = 0u64;
                for element in elements {
                    match element {
                        Value::Factor(f) => bits |= 1 << f,
                        Value::Enum(v) => bits |= 1u64 << (v % 64),
                        _ => {}
                    }
                }
                record[at] = bits;
            }
        }
    }
}
