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

use crate::bind::{self, InputError, SessionTimes, Value};
use crate::engine::Policy;
use crate::factor::Factor;
use crate::program::{slot, Attribute, Program, ValueType};
use crate::value::{parse_cidr, parse_duration, parse_ip, parse_time, Cidr, MAX_TIME, MIN_TIME};

/// The maximum number of attributes that one principal kind, the context
/// or the switches may declare for the builder to bind them. The builder
/// rejects every request of a policy that declares more, which JSON binds.
pub const MAX_ATTRIBUTES: usize = 64;

/// The maximum number of scalar string attributes, and separately of
/// string-set attributes, that one request may give, switch defaults
/// included. A request with more is rejected and can be submitted as JSON.
pub const MAX_STRING_ATTRIBUTES: usize = 8;

/// The maximum number of distinct strings outside the policy's string pool
/// in the scalar string fields of one request, the principal id included.
const MAX_DYNAMIC_STRINGS: usize = MAX_STRING_ATTRIBUTES + 1;

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

/// A scalar string attribute, interned when the request is finished.
#[derive(Clone, Copy)]
struct Text<'a> {
    /// The attribute's place in the order [`bind::bind`] interns strings:
    /// principal attributes, context attributes, then switches.
    order: u32,
    at: u32,
    text: &'a str,
}

/// A string-set attribute, written when the request is finished, after
/// every scalar string has its id.
#[derive(Clone, Copy)]
struct Set<'a> {
    at: u32,
    elements: Elements<'a>,
}

/// The strings of a string-set attribute.
#[derive(Clone, Copy)]
enum Elements<'a> {
    Given(&'a [&'a str]),
    Default(&'a [Value]),
}

/// Validates and binds one request; see the module documentation.
pub struct RequestBuilder<'p: 'a, 's, 'a> {
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
    /// The index and time of the earliest session factor, and the time of
    /// the latest.
    earliest_factor: Option<(usize, i64)>,
    latest_factor: Option<i64>,
    /// One bit per attribute given, for the principal's kind, the context
    /// and the switches.
    given: [u64; 3],
    texts: [Text<'a>; MAX_STRING_ATTRIBUTES],
    texts_len: usize,
    sets: [Set<'a>; MAX_STRING_ATTRIBUTES],
    sets_len: usize,
    error: Option<InputError>,
}

/// The index of each attribute scope in [`RequestBuilder::given`].
const PRINCIPAL: usize = 0;
const CONTEXT: usize = 1;
const SWITCHES: usize = 2;
const SCOPES: [&str; 3] = ["principal", "context", "switches"];

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        message: message.into(),
    }
}

impl<'p: 'a, 's, 'a> RequestBuilder<'p, 's, 'a> {
    /// Starts a request evaluated at `now` (microseconds since the epoch),
    /// bound into `record`. Use [`Policy::request`].
    #[inline]
    pub(crate) fn new(policy: &'p Policy, record: &'s mut [u64], now: i64) -> Self {
        // Values are written as they are given, so the record starts empty.
        record.fill(0);
        let widest = policy.widest_attributes();
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
            earliest_factor: None,
            latest_factor: None,
            given: [0; 3],
            texts: [Text {
                order: 0,
                at: 0,
                text: "",
            }; MAX_STRING_ATTRIBUTES],
            texts_len: 0,
            sets: [Set {
                at: 0,
                elements: Elements::Given(&[]),
            }; MAX_STRING_ATTRIBUTES],
            sets_len: 0,
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
    #[inline]
    pub fn flow(&mut self, name: &'a str) -> &mut Self {
        self.route = Some(Route::Flow(name));
        self.routes_given += 1;
        self
    }

    /// Routes the request to the flow that handles lifecycle event `name`
    /// for the principal's kind, like `"event"` in JSON.
    #[inline]
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
        if self.kind.is_some() {
            self.fail(invalid("principal", "the principal is given twice"));
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
        if let Err(error) = bind::check_identifier(id, "principal.id") {
            self.fail(error);
        }
        self.id = id;
        self
    }

    /// Lists the factors the principal has enrolled.
    pub fn enrolled(&mut self, factors: &[&str]) -> &mut Self {
        for (i, name) in factors.iter().enumerate() {
            match bind::factor_named(name, || format!("principal.enrolled[{i}]")) {
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
        self.attribute(
            declared,
            PRINCIPAL,
            &["kind", "id", "enrolled"],
            name,
            value,
        );
        self
    }

    /// Sets context attribute `name`.
    pub fn context(&mut self, name: &str, value: Input<'a>) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let declared = &self.program().schema.context;
        self.attribute(declared, CONTEXT, &[], name, value);
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
        let switch = &switches[index];
        match check(self.program(), value, &switch.ty, &|| {
            format!("switches.{name}")
        }) {
            Ok(checked) => self.store(
                SWITCHES,
                index,
                &switch.name,
                switch.slot,
                &switch.ty,
                checked,
            ),
            Err(error) => self.fail(error),
        }
        self
    }

    /// Sets when the session started; by default, at `now`.
    #[inline]
    pub fn session_started(&mut self, at: i64) -> &mut Self {
        self.session_started = Some(at);
        self
    }

    /// Sets when the session was last active; by default, when it started.
    #[inline]
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
        let factor = match bind::factor_named(name, || format!("{}.factor", path())) {
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
            if self
                .earliest_factor
                .is_none_or(|(_, earliest)| at < earliest)
            {
                self.earliest_factor = Some((index, at));
            }
            self.latest_factor = Some(self.latest_factor.map_or(at, |latest| latest.max(at)));
        }
        self
    }

    /// Looks up, validates and stores one attribute, or records an error.
    fn attribute(
        &mut self,
        declared: &'p [Attribute],
        scope: usize,
        reserved: &[&str],
        name: &str,
        value: Input<'a>,
    ) {
        let field = SCOPES[scope];
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
            return;
        };
        let attribute = &declared[index];
        match check(self.program(), value, &attribute.ty, &|| {
            format!("{field}.{name}")
        }) {
            Ok(checked) => self.store(
                scope,
                index,
                &attribute.name,
                attribute.slot,
                &attribute.ty,
                checked,
            ),
            Err(error) => self.fail(error),
        }
    }

    /// Writes a validated value of attribute `name` of type `ty` at record
    /// word `slot`, or keeps it for [`RequestBuilder::finish`] when it is a
    /// string or a string set. `None` is an absent optional value.
    fn store(
        &mut self,
        scope: usize,
        index: usize,
        name: &str,
        slot: u32,
        ty: &ValueType,
        value: Option<Checked<'a>>,
    ) {
        let bit = 1u64 << index;
        if self.given[scope] & bit != 0 {
            self.fail(invalid(
                format!("{}.{name}", SCOPES[scope]),
                "the attribute is given twice",
            ));
            return;
        }
        self.given[scope] |= bit;
        let mut at = slot as usize;
        if let ValueType::Optional(_) = ty {
            self.record[at] = u64::from(value.is_some());
            at += 1;
        }
        let Some(value) = value else { return };
        let record = &mut *self.record;
        match value {
            Checked::Word(word) | Checked::Bits(word) => record[at] = word,
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
            Checked::Text(text) => {
                let Some(entry) = self.texts.get_mut(self.texts_len) else {
                    self.fail(too_many_strings());
                    return;
                };
                *entry = Text {
                    order: (scope * MAX_ATTRIBUTES + index) as u32,
                    at: at as u32,
                    text,
                };
                self.texts_len += 1;
            }
            Checked::Strings(texts) => self.defer_set(at, Elements::Given(texts)),
            Checked::PoolStrings(values) => self.defer_set(at, Elements::Default(values)),
        }
    }

    /// Keeps a string set for [`RequestBuilder::finish`].
    fn defer_set(&mut self, at: usize, elements: Elements<'a>) {
        match self.sets.get_mut(self.sets_len) {
            Some(entry) => {
                *entry = Set {
                    at: at as u32,
                    elements,
                };
                self.sets_len += 1;
            }
            None => self.fail(too_many_strings()),
        }
    }
}

fn too_many_strings() -> InputError {
    invalid(
        "",
        format!(
            "the request gives more than {MAX_STRING_ATTRIBUTES} string or string-set attributes; \
             submit it as JSON"
        ),
    )
}

impl<'p: 'a, 'a> RequestBuilder<'p, '_, 'a> {
    /// Validates the whole request and writes its record. Returns the index
    /// of the flow to decide, or the first error found. After an error the
    /// record is cleared and there is no flow to decide.
    pub fn finish(&mut self) -> Result<usize, InputError> {
        let result = self.complete();
        if result.is_err() {
            self.record.fill(0);
        }
        result
    }

    fn complete(&mut self) -> Result<usize, InputError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let program = self.program();
        let kind = self
            .kind
            .ok_or_else(|| invalid("principal", "missing required field"))?;
        let declared = &program.schema.kinds[kind as usize].attributes;
        require_all(program, declared, self.given[PRINCIPAL], "principal")?;
        let flow = self.route(kind)?;
        require_all(
            program,
            &program.schema.context,
            self.given[CONTEXT],
            "context",
        )?;

        let now = self.now;
        for (time, field) in [
            (self.session_started, "session.started_at"),
            (self.last_active, "session.last_active_at"),
        ] {
            if time.is_some_and(|t| !(MIN_TIME..=MAX_TIME).contains(&t)) {
                return Err(invalid(
                    field,
                    "the time is outside the range RFC 3339 can write",
                ));
            }
        }
        let SessionTimes {
            started,
            last_active,
        } = SessionTimes::new(
            self.session_started,
            self.last_active,
            now,
            self.earliest_factor,
            self.latest_factor,
        )?;

        let defaults = self.policy.switch_defaults();
        for (index, (switch, default)) in program.schema.switches.iter().zip(defaults).enumerate() {
            if self.given[SWITCHES] & (1 << index) == 0 {
                let value = default.as_ref().map(from_value);
                self.store(
                    SWITCHES,
                    index,
                    &switch.name,
                    switch.slot,
                    &switch.ty,
                    value,
                );
            }
        }
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.write(started, last_active)?;
        Ok(flow)
    }

    fn route(&self, kind: u32) -> Result<usize, InputError> {
        let program = self.program();
        if self.routes_given > 1 {
            return Err(invalid("event", "give either `flow` or `event`, not both"));
        }
        match self.route {
            None => Err(invalid(
                "flow",
                "missing: give `flow` (a flow name) or `event` (a lifecycle event)",
            )),
            Some(Route::Flow(name)) => bind::flow_named(program, name, kind, self.policy.routes()),
            Some(Route::Event(name)) => bind::flow_for_event(program, name, kind),
        }
    }

    /// Writes the words that do not come from attributes, interns the
    /// strings in the order [`bind::bind`] does, and writes the string sets.
    fn write(&mut self, started: i64, last_active: i64) -> Result<(), InputError> {
        let policy = self.policy;
        let record = &mut *self.record;
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
            policy,
            dynamic: [("", 0); MAX_DYNAMIC_STRINGS],
            len: 0,
        };
        record[slot::PRINCIPAL_ID as usize] = strings.intern(self.id, 0)?;
        let texts = &mut self.texts[..self.texts_len];
        texts.sort_unstable_by_key(|text| text.order);
        for text in texts.iter() {
            let index = policy.string_slot_index(text.at);
            record[text.at as usize] = strings.intern(text.text, index)?;
        }
        let string_words = policy.program().layout.string_set_words as usize;
        for set in &self.sets[..self.sets_len] {
            let at = set.at as usize;
            let words = &mut record[at..at + string_words];
            let count = match set.elements {
                Elements::Given(texts) => write_string_set(texts.iter().copied(), &strings, words),
                Elements::Default(values) => {
                    let texts = values.iter().filter_map(|value| match value {
                        Value::Str(text) => Some(text.as_str()),
                        _ => None,
                    });
                    write_string_set(texts, &strings, words)
                }
            };
            record[at + string_words] = count;
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

/// Fails with the first non-optional attribute of `declared` whose bit in
/// `given` is clear.
fn require_all(
    program: &Program,
    declared: &[Attribute],
    given: u64,
    field: &str,
) -> Result<(), InputError> {
    for (index, attribute) in declared.iter().enumerate() {
        if given & (1 << index) == 0 && !matches!(attribute.ty, ValueType::Optional(_)) {
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

/// Interns strings like [`bind::Strings`], in a fixed-size table. A pool
/// string's id is its index in the sorted pool.
struct Interner<'x> {
    policy: &'x Policy,
    dynamic: [(&'x str, u64); MAX_DYNAMIC_STRINGS],
    len: usize,
}

impl<'x> Interner<'x> {
    fn intern(&mut self, text: &'x str, slot_index: usize) -> Result<u64, InputError> {
        if let Some(id) = self.lookup(text) {
            return Ok(id);
        }
        let id = self.policy.program().strings.len() as u64 + slot_index as u64;
        let entry = self
            .dynamic
            .get_mut(self.len)
            .ok_or_else(too_many_strings)?;
        *entry = (text, id);
        self.len += 1;
        Ok(id)
    }

    fn lookup(&self, text: &str) -> Option<u64> {
        self.policy.pool_index(text).or_else(|| {
            self.dynamic[..self.len]
                .iter()
                .find(|(s, _)| *s == text)
                .map(|(_, id)| *id)
        })
    }
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
        (ValueType::Factor, Input::Text(text)) => {
            Checked::Word(bind::factor_named(text, path)? as u64)
        }
        (ValueType::Enum(index), Input::Text(text)) => {
            Checked::Word(u64::from(bind::variant_named(program, *index, text, path)?))
        }
        (ValueType::Set(element), Input::Texts(items)) => {
            bind::check_set_len(items.len(), path)?;
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
