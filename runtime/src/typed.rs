//! Requests given as borrowed Rust values, bound straight into a record.
//!
//! [`RequestBuilder`] does what [`crate::bind::request`] and
//! [`crate::bind::bind`] do for a JSON request, without JSON and without
//! allocating. The host names each field and passes borrowed values.
//! [`RequestBuilder::finish`] validates them by the rules of a JSON request
//! and reports an invalid field by the same path (`context.risk`,
//! `session.factors[1].at`). It then writes the record that the JSON
//! request with the same content binds. Only requests are covered, so
//! events go through [`crate::Policy::resume`].
//!
//! ```
//! # use authflow_runtime::{Policy, typed::Input};
//! # fn decide(policy: &Policy, now: i64) -> Result<(), authflow_runtime::InputError> {
//! let mut scratch = policy.scratch();
//! let mut request = policy.request(&mut scratch, now);
//! request
//!     .event("login")
//!     .principal("human", "u-1")
//!     .principal_attribute("roles", Input::Texts(&["admin"]))
//!     .context("resource", Input::Text("admin_console"))
//!     .context("risk", Input::Int(10))
//!     .session_factor("password", now);
//! let flow = request.finish()?;
//! policy.decide(flow, &mut scratch);
//! # Ok(())
//! # }
//! ```

use crate::bind::{self, InputError, Value};
use crate::engine::Policy;
use crate::factor::Factor;
use crate::program::{slot, Attribute, Program, ValueType};
use crate::value::{parse_cidr, parse_duration, parse_ip, parse_time, Cidr, MAX_TIME, MIN_TIME};

/// The maximum number of attributes that one principal kind, the context
/// or the switches may declare for the builder to bind them. The builder
/// rejects every request of a policy that declares more, which JSON binds.
pub const MAX_ATTRIBUTES: usize = 32;

/// The maximum number of distinct strings outside the policy's string pool
/// in the scalar string fields of one request, the principal id included.
pub const MAX_DYNAMIC_STRINGS: usize = 32;

/// One attribute value, borrowed from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    Bool(bool),
    Int(i64),
    /// A string, an enum variant, a factor name, or a time, duration, IP
    /// address or CIDR block written as in a JSON request.
    Text(&'a str),
    /// A set of strings, enum variants or factor names, or of times,
    /// durations, IP addresses or CIDR blocks in their text form.
    Texts(&'a [&'a str]),
    /// Microseconds since the Unix epoch.
    Time(i64),
    /// Microseconds.
    Duration(i64),
    /// No value: `null` in JSON. Only optional attributes accept it.
    Absent,
}

impl Input<'_> {
    /// Returns the JSON kind of a value of this shape, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Input::Bool(_) => "a boolean",
            Input::Int(_) => "a number",
            Input::Text(_) | Input::Time(_) | Input::Duration(_) => "a string",
            Input::Texts(_) => "an array",
            Input::Absent => "null",
        }
    }
}

/// The target of a request: a flow by name, or a lifecycle event.
#[derive(Clone, Copy)]
enum Route<'a> {
    Flow(&'a str),
    Event(&'a str),
}

/// A validated value, ready to be written into the record.
#[derive(Clone, Copy)]
enum Checked<'v> {
    Word(u64),
    Text(&'v str),
    Ip(u128),
    Cidr(Cidr),
    Strings(&'v [&'v str]),
    PoolStrings(&'v [Value]),
    Bits(u64),
}

/// Validates and binds one request; see the module documentation.
pub struct RequestBuilder<'p, 's, 'a> {
    policy: &'p Policy,
    record: &'s mut [u64],
    now: i64,
    route: Option<Route<'a>>,
    routes_given: u8,
    kind: Option<u32>,
    id: &'a str,
    enrolled: u64,
    session_started: Option<i64>,
    last_active: Option<i64>,
    session_factors: usize,
    verified: u64,
    verified_at: [i64; Factor::COUNT],
    /// Per attribute: `None` when not given, `Some(None)` when given as
    /// absent.
    principal: [Option<Option<Checked<'a>>>; MAX_ATTRIBUTES],
    context: [Option<Option<Checked<'a>>>; MAX_ATTRIBUTES],
    switches: [Option<Option<Checked<'a>>>; MAX_ATTRIBUTES],
    error: Option<InputError>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        message: message.into(),
    }
}

impl<'p, 's, 'a> RequestBuilder<'p, 's, 'a> {
    /// Starts a request evaluated at `now` (microseconds since the epoch),
    /// bound into `record`. Use [`Policy::request`].
    pub(crate) fn new(policy: &'p Policy, record: &'s mut [u64], now: i64) -> Self {
        let schema = &policy.program().schema;
        let widest = schema
            .kinds
            .iter()
            .map(|kind| kind.attributes.len())
            .chain([schema.context.len(), schema.switches.len()])
            .max()
            .unwrap_or(0);
        let mut builder = RequestBuilder {
            policy,
            record,
            now,
            route: None,
            routes_given: 0,
            kind: None,
            id: "",
            enrolled: 0,
            session_started: None,
            last_active: None,
            session_factors: 0,
            verified: 0,
            verified_at: [i64::MIN; Factor::COUNT],
            principal: [None; MAX_ATTRIBUTES],
            context: [None; MAX_ATTRIBUTES],
            switches: [None; MAX_ATTRIBUTES],
            error: None,
        };
        if widest > MAX_ATTRIBUTES {
            builder.fail(invalid(
                "",
                format!(
                    "the policy declares {widest} attributes in one place, more than the {MAX_ATTRIBUTES} \
                     that a typed request binds; submit the request as JSON"
                ),
            ));
        }
        if !(MIN_TIME..=MAX_TIME).contains(&now) {
            builder.fail(invalid(
                "now",
                "the time is outside the range RFC 3339 can write",
            ));
        }
        builder
    }

    fn program(&self) -> &'p Program {
        self.policy.program()
    }

    /// Keeps the first error; every later call is then ignored.
    fn fail(&mut self, error: InputError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Routes the request to the flow called `name`, like `"flow"` in JSON.
    pub fn flow(&mut self, name: &'a str) -> &mut Self {
        self.route = Some(Route::Flow(name));
        self.routes_given += 1;
        self
    }

    /// Routes the request to the flow that handles lifecycle event `name`
    /// for the principal's kind, like `"event"` in JSON.
    pub fn event(&mut self, name: &'a str) -> &mut Self {
        self.route = Some(Route::Event(name));
        self.routes_given += 1;
        self
    }

    /// Names the principal's kind and id. Principal attributes can be given
    /// only after it.
    pub fn principal(&mut self, kind: &'a str, id: &'a str) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let kinds = &self.program().schema.kinds;
        match kinds.iter().position(|k| k.name == kind) {
            Some(index) => self.kind = Some(index as u32),
            None => {
                let names: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
                self.fail(invalid(
                    "principal.kind",
                    format!(
                        "unknown principal kind `{kind}` (declared: {})",
                        names.join(", ")
                    ),
                ));
                return self;
            }
        }
        if id.is_empty() {
            self.fail(invalid("principal.id", "must not be empty"));
        }
        self.id = id;
        self
    }

    /// Lists the factors the principal has enrolled.
    pub fn enrolled(&mut self, factors: &[&str]) -> &mut Self {
        for (i, name) in factors.iter().enumerate() {
            match factor(name, || format!("principal.enrolled[{i}]")) {
                Ok(factor) => self.enrolled |= factor.bit(),
                Err(error) => self.fail(error),
            }
        }
        self
    }

    /// Sets attribute `name` of the principal's kind.
    pub fn principal_attribute(&mut self, name: &str, value: Input<'a>) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let Some(kind) = self.kind else {
            self.fail(invalid(
                "principal.kind",
                "name the principal's kind before its attributes",
            ));
            return self;
        };
        let declared = &self.program().schema.kinds[kind as usize].attributes;
        if let Some((index, checked)) = self.attribute(
            declared,
            "principal",
            &["kind", "id", "enrolled"],
            name,
            value,
        ) {
            self.principal[index] = Some(checked);
        }
        self
    }

    /// Sets context attribute `name`.
    pub fn context(&mut self, name: &str, value: Input<'a>) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let declared = &self.program().schema.context;
        if let Some((index, checked)) = self.attribute(declared, "context", &[], name, value) {
            self.context[index] = Some(checked);
        }
        self
    }

    /// Sets operator switch `name`; a switch not set keeps its default.
    pub fn switch(&mut self, name: &str, value: Input<'a>) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let switches = &self.program().schema.switches;
        let Some(index) = switches.iter().position(|s| s.name == name) else {
            let names: Vec<&str> = switches.iter().map(|s| s.name.as_str()).collect();
            self.fail(invalid(
                format!("switches.{name}"),
                format!("unknown switch (declared: {})", names.join(", ")),
            ));
            return self;
        };
        let program = self.program();
        match check(program, value, &switches[index].ty, &|| {
            format!("switches.{name}")
        }) {
            Ok(checked) => self.switches[index] = Some(checked),
            Err(error) => self.fail(error),
        }
        self
    }

    /// Sets when the session started; by default, at `now`.
    pub fn session_started(&mut self, at: i64) -> &mut Self {
        self.session_started = Some(at);
        self
    }

    /// Sets when the session was last active; by default, when it started.
    pub fn last_active(&mut self, at: i64) -> &mut Self {
        self.last_active = Some(at);
        self
    }

    /// Adds a factor the session verified at `at`.
    pub fn session_factor(&mut self, name: &str, at: i64) -> &mut Self {
        let index = self.session_factors;
        self.session_factors += 1;
        if self.error.is_some() {
            return self;
        }
        let path = || format!("session.factors[{index}]");
        let factor = match factor(name, || format!("{}.factor", path())) {
            Ok(factor) => factor,
            Err(error) => {
                self.fail(error);
                return self;
            }
        };
        if !(MIN_TIME..=MAX_TIME).contains(&at) {
            self.fail(invalid(
                format!("{}.at", path()),
                "the time is outside the range RFC 3339 can write",
            ));
        } else if at > self.now {
            self.fail(invalid(
                format!("{}.at", path()),
                "a factor cannot be verified after the request's `now`",
            ));
        } else {
            self.verified |= factor.bit();
            let slot = &mut self.verified_at[factor as usize];
            *slot = (*slot).max(at);
        }
        self
    }

    /// Looks up and validates one attribute; records an error and returns
    /// `None` when either fails.
    fn attribute(
        &mut self,
        declared: &'p [Attribute],
        field: &str,
        reserved: &[&str],
        name: &str,
        value: Input<'a>,
    ) -> Option<(usize, Option<Checked<'a>>)> {
        let Some(index) = declared.iter().position(|a| a.name == name) else {
            let names: Vec<&str> = declared
                .iter()
                .map(|a| a.name.as_str())
                .chain(reserved.iter().copied())
                .collect();
            self.fail(invalid(
                format!("{field}.{name}"),
                format!("undeclared attribute (declared: {})", names.join(", ")),
            ));
            return None;
        };
        let program = self.program();
        match check(program, value, &declared[index].ty, &|| {
            format!("{field}.{name}")
        }) {
            Ok(checked) => Some((index, checked)),
            Err(error) => {
                self.fail(error);
                None
            }
        }
    }
}

impl RequestBuilder<'_, '_, '_> {
    /// Validates the whole request and writes its record. Returns the index
    /// of the flow to decide, or the first error found. After an error the
    /// record is unchanged and there is no flow to decide.
    pub fn finish(&mut self) -> Result<usize, InputError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let program = self.program();
        let kind = self
            .kind
            .ok_or_else(|| invalid("principal", "missing required field"))?;
        let declared = &program.schema.kinds[kind as usize].attributes;
        require_all(program, declared, &self.principal, "principal")?;
        let flow = self.route(kind)?;
        require_all(program, &program.schema.context, &self.context, "context")?;

        let now = self.now;
        let started = self.session_started.unwrap_or(now);
        if !(MIN_TIME..=MAX_TIME).contains(&started) {
            return Err(invalid(
                "session.started_at",
                "the time is outside the range RFC 3339 can write",
            ));
        }
        if started > now {
            return Err(invalid(
                "session.started_at",
                "the session starts after the request's `now`",
            ));
        }
        let last_active = self.last_active.unwrap_or(started);
        if last_active > now || last_active < started {
            return Err(invalid(
                "session.last_active_at",
                "must lie between `session.started_at` and the request's `now`",
            ));
        }
        self.write(kind, started, last_active)?;
        Ok(flow)
    }

    fn route(&self, kind: u32) -> Result<usize, InputError> {
        let program = self.program();
        let kind_name = &program.schema.kinds[kind as usize].name;
        if self.routes_given > 1 {
            return Err(invalid("event", "give either `flow` or `event`, not both"));
        }
        match self.route {
            None => Err(invalid(
                "flow",
                "missing: give `flow` (a flow name) or `event` (a lifecycle event)",
            )),
            Some(Route::Flow(name)) => {
                let (index, flow) = program.flow(name).ok_or_else(|| {
                    let names: Vec<&str> = program.flows.iter().map(|f| f.name.as_str()).collect();
                    invalid(
                        "flow",
                        format!("unknown flow `{name}` (flows: {})", names.join(", ")),
                    )
                })?;
                if !flow.kinds.contains(&kind) {
                    return Err(invalid(
                        "flow",
                        format!("flow `{name}` does not accept principal kind `{kind_name}`"),
                    ));
                }
                Ok(index)
            }
            Some(Route::Event(name)) => program
                .flows
                .iter()
                .position(|f| f.event.as_deref() == Some(name) && f.kinds.contains(&kind))
                .ok_or_else(|| {
                    invalid(
                        "event",
                        format!("no flow handles event `{name}` for principal kind `{kind_name}`"),
                    )
                }),
        }
    }

    /// Writes the record exactly as [`bind::bind`] writes it for the same
    /// request without events.
    fn write(&mut self, kind: u32, started: i64, last_active: i64) -> Result<(), InputError> {
        let policy = self.policy;
        let program = policy.program();
        let (pool, slot_index) = policy.string_tables();
        let record = &mut *self.record;
        record.fill(0);
        record[slot::NOW as usize] = self.now as u64;
        record[slot::FLOW_STARTED as usize] = self.now as u64;
        record[slot::SESSION_STARTED as usize] = started as u64;
        record[slot::LAST_ACTIVE as usize] = last_active as u64;
        record[slot::VERIFIED as usize] = self.verified;
        record[slot::ENROLLED as usize] = self.enrolled;
        for (i, at) in self.verified_at.iter().enumerate() {
            record[slot::VERIFIED_AT as usize + i] = *at as u64;
        }

        let mut strings = Interner {
            pool,
            pool_size: pool.len() as u64,
            dynamic: [("", 0); MAX_DYNAMIC_STRINGS],
            len: 0,
        };
        record[slot::PRINCIPAL_ID as usize] = strings.intern(self.id, 0)?;

        let declared = &program.schema.kinds[kind as usize].attributes;
        let defaults = policy.switch_defaults();
        let string_words = program.layout.string_set_words as usize;
        // Scalar strings first, so that sets can mark their ids.
        for sets in [false, true] {
            let principal = declared
                .iter()
                .zip(&self.principal)
                .map(|(a, v)| (a.slot, &a.ty, *v));
            let context = program
                .schema
                .context
                .iter()
                .zip(&self.context)
                .map(|(a, v)| (a.slot, &a.ty, *v));
            let switches = program
                .schema
                .switches
                .iter()
                .zip(&self.switches)
                .zip(defaults)
                .map(|((s, v), default)| {
                    (
                        s.slot,
                        &s.ty,
                        Some(v.unwrap_or_else(|| default.as_ref().map(from_value))),
                    )
                });
            for (at, ty, given) in principal.chain(context).chain(switches) {
                let is_set = matches!(strip_optional(ty), ValueType::Set(_));
                if is_set != sets {
                    continue;
                }
                let mut at = at as usize;
                if let ValueType::Optional(_) = ty {
                    record[at] = u64::from(matches!(given, Some(Some(_))));
                    at += 1;
                }
                let Some(Some(value)) = given else { continue };
                match value {
                    Checked::Word(word) => record[at] = word,
                    Checked::Text(text) => {
                        let index = slot_index.get(&(at as u32)).copied().unwrap_or(0);
                        record[at] = strings.intern(text, index)?;
                    }
                    Checked::Ip(ip) => {
                        record[at] = (ip >> 64) as u64;
                        record[at + 1] = ip as u64;
                    }
                    Checked::Cidr(cidr) => {
                        let mask = cidr.mask();
                        record[at] = (cidr.network >> 64) as u64;
                        record[at + 1] = cidr.network as u64;
                        record[at + 2] = (mask >> 64) as u64;
                        record[at + 3] = mask as u64;
                    }
                    Checked::Strings(texts) => {
                        let count = write_string_set(
                            texts.iter().copied(),
                            &strings,
                            &mut record[at..at + string_words],
                        );
                        record[at + string_words] = count;
                    }
                    Checked::PoolStrings(values) => {
                        let texts = values.iter().filter_map(|value| match value {
                            Value::Str(text) => Some(text.as_str()),
                            _ => None,
                        });
                        let count =
                            write_string_set(texts, &strings, &mut record[at..at + string_words]);
                        record[at + string_words] = count;
                    }
                    Checked::Bits(bits) => record[at] = bits,
                }
            }
        }
        Ok(())
    }
}

/// Marks the bit of each string of a set that has an id in `words`, a
/// string-set bitset. Returns the number of distinct strings.
fn write_string_set<'x>(
    texts: impl Iterator<Item = &'x str> + Clone,
    strings: &Interner<'_>,
    words: &mut [u64],
) -> u64 {
    let mut count = 0;
    for (i, text) in texts.clone().enumerate() {
        if texts.clone().take(i).any(|earlier| earlier == text) {
            continue;
        }
        count += 1;
        if let Some(id) = strings.lookup(text) {
            if let Some(word) = words.get_mut((id / 64) as usize) {
                *word |= 1 << (id % 64);
            }
        }
    }
    count
}

fn strip_optional(ty: &ValueType) -> &ValueType {
    match ty {
        ValueType::Optional(inner) => inner,
        other => other,
    }
}

/// Fails with the first non-optional attribute of `declared` not given.
fn require_all(
    program: &Program,
    declared: &[Attribute],
    given: &[Option<Option<Checked<'_>>>],
    field: &str,
) -> Result<(), InputError> {
    for (attribute, value) in declared.iter().zip(given) {
        if value.is_none() && !matches!(attribute.ty, ValueType::Optional(_)) {
            return Err(invalid(
                format!("{field}.{}", attribute.name),
                format!(
                    "missing required attribute ({})",
                    bind::describe(program, &attribute.ty)
                ),
            ));
        }
    }
    Ok(())
}

/// Converts a switch default, which the policy validated, to its checked
/// form.
fn from_value(value: &Value) -> Checked<'_> {
    match value {
        Value::Bool(b) => Checked::Word(u64::from(*b)),
        Value::Int(v) | Value::Duration(v) | Value::Time(v) => Checked::Word(*v as u64),
        Value::Str(text) => Checked::Text(text),
        Value::Ip(ip) => Checked::Ip(*ip),
        Value::Cidr(cidr) => Checked::Cidr(*cidr),
        Value::Factor(f) => Checked::Word(u64::from(*f)),
        Value::Enum(v) => Checked::Word(u64::from(*v)),
        Value::Set(elements) if matches!(elements.first(), Some(Value::Str(_))) => {
            Checked::PoolStrings(elements)
        }
        Value::Set(elements) => Checked::Bits(elements.iter().fold(0, |bits, e| match e {
            Value::Factor(f) => bits | 1 << f,
            Value::Enum(v) => bits | 1u64 << (v % 64),
            _ => bits,
        })),
    }
}

/// Interns strings like [`bind::Strings`], in a fixed-size table.
struct Interner<'x> {
    pool: &'x std::collections::HashMap<String, u64>,
    pool_size: u64,
    dynamic: [(&'x str, u64); MAX_DYNAMIC_STRINGS],
    len: usize,
}

impl<'x> Interner<'x> {
    fn intern(&mut self, text: &'x str, slot_index: usize) -> Result<u64, InputError> {
        if let Some(id) = self.lookup(text) {
            return Ok(id);
        }
        let id = self.pool_size + slot_index as u64;
        let entry = self.dynamic.get_mut(self.len).ok_or_else(|| {
            invalid(
                "",
                format!(
                    "the request holds more than {MAX_DYNAMIC_STRINGS} distinct strings the policy \
                     never names; submit it as JSON"
                ),
            )
        })?;
        *entry = (text, id);
        self.len += 1;
        Ok(id)
    }

    fn lookup(&self, text: &str) -> Option<u64> {
        self.pool.get(text).copied().or_else(|| {
            self.dynamic[..self.len]
                .iter()
                .find(|(s, _)| *s == text)
                .map(|(_, id)| *id)
        })
    }
}

fn factor(name: &str, path: impl Fn() -> String) -> Result<Factor, InputError> {
    Factor::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Factor::ALL.iter().map(|f| f.name()).collect();
        invalid(
            path(),
            format!(
                "unknown factor `{name}` (expected one of: {})",
                names.join(", ")
            ),
        )
    })
}

fn variant(
    program: &Program,
    index: u32,
    name: &str,
    path: &dyn Fn() -> String,
) -> Result<u64, InputError> {
    let enumeration = &program.schema.enums[index as usize];
    enumeration
        .variants
        .iter()
        .position(|v| v == name)
        .map(|v| v as u64)
        .ok_or_else(|| {
            invalid(
                path(),
                format!(
                    "unknown value `{name}` for `{}` (expected one of: {})",
                    enumeration.name,
                    enumeration.variants.join(", ")
                ),
            )
        })
}

/// Validates one value against its type, like [`bind::value`]. Returns
/// `None` for an absent optional value.
fn check<'a>(
    program: &Program,
    value: Input<'a>,
    ty: &ValueType,
    path: &dyn Fn() -> String,
) -> Result<Option<Checked<'a>>, InputError> {
    if let ValueType::Optional(inner) = ty {
        if value == Input::Absent {
            return Ok(None);
        }
        return check(program, value, inner, path);
    }
    let mismatch = || {
        invalid(
            path(),
            format!(
                "expected {}, found {}",
                bind::describe(program, ty),
                value.kind()
            ),
        )
    };
    let parsed = |result: Result<u64, String>| result.map_err(|message| invalid(path(), message));
    let checked = match (ty, value) {
        (ValueType::Bool, Input::Bool(b)) => Checked::Word(u64::from(b)),
        (ValueType::Int, Input::Int(v)) => Checked::Word(v as u64),
        (ValueType::String, Input::Text(text)) => Checked::Text(text),
        (ValueType::Duration, Input::Duration(v)) => Checked::Word(v as u64),
        (ValueType::Duration, Input::Text(text)) => {
            Checked::Word(parsed(parse_duration(text).map(|v| v as u64))?)
        }
        (ValueType::Time, Input::Time(v)) if (MIN_TIME..=MAX_TIME).contains(&v) => {
            Checked::Word(v as u64)
        }
        (ValueType::Time, Input::Time(_)) => {
            return Err(invalid(
                path(),
                "the time is outside the range RFC 3339 can write",
            ))
        }
        (ValueType::Time, Input::Text(text)) => {
            Checked::Word(parsed(parse_time(text).map(|v| v as u64))?)
        }
        (ValueType::Ip, Input::Text(text)) => {
            Checked::Ip(parse_ip(text).map_err(|message| invalid(path(), message))?)
        }
        (ValueType::Cidr, Input::Text(text)) => {
            Checked::Cidr(parse_cidr(text).map_err(|message| invalid(path(), message))?)
        }
        (ValueType::Factor, Input::Text(text)) => Checked::Word(factor(text, path)? as u64),
        (ValueType::Enum(index), Input::Text(text)) => {
            Checked::Word(variant(program, *index, text, path)?)
        }
        (ValueType::Set(element), Input::Texts(items)) => {
            let mut bits = 0u64;
            for (i, item) in items.iter().enumerate() {
                let element_path = || format!("{}[{i}]", path());
                match check(program, Input::Text(item), element, &element_path)? {
                    Some(Checked::Word(word)) => match **element {
                        ValueType::Factor => bits |= 1 << word,
                        ValueType::Enum(_) => bits |= 1u64 << (word % 64),
                        _ => {}
                    },
                    Some(_) => {}
                    None => return Err(invalid(element_path(), "set elements cannot be null")),
                }
            }
            match **element {
                ValueType::String => Checked::Strings(items),
                _ => Checked::Bits(bits),
            }
        }
        _ => return Err(mismatch()),
    };
    Ok(Some(checked))
}
