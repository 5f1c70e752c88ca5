//! The symbolic final evaluation: every fact a valid request and its events
//! can produce at the last evaluation, as words of literals, and the input
//! record that one program's kernel reads for those facts.
//!
//! Strings are represented by text index rather than by record id, because
//! two programs (or a program and an invariant) know different literals. A
//! text index below `universe.texts.len()` names that text. Index
//! `universe.texts.len() + q` names a text outside the universe that first
//! occurs in string slot `q` (in the binder's interning order); a later slot
//! with the same text carries the same index. String sets have one bit per
//! text index and the element count.

use authflow_runtime::bind;
use authflow_runtime::bind::{Facts, Value};
use authflow_runtime::factor::Factor;
use authflow_runtime::program::{slot, Program, Schema, ValueType};
use authflow_runtime::value::{MAX_TIME, MIN_TIME};
use batsat::Lit;

use super::circuit::{Circuit, Word};

/// Failure counts at or above this bound are not considered; the runtime
/// rejects a flow state with this many events.
pub const MAX_FAILURES: u64 = bind::MAX_EVENTS as u64 + 1;
/// String set element counts at or above this bound are not considered; the
/// runtime rejects a set that lists this many elements.
pub const MAX_SET_LEN: u64 = bind::MAX_SET_ELEMENTS as u64 + 1;

/// Where a request value comes from, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Principal(String),
    Context(String),
    Switch(String),
}

/// Every text that a policy or an invariant names, sorted.
pub struct Universe {
    pub texts: Vec<String>,
}

impl Universe {
    pub fn index(&self, text: &str) -> Option<usize> {
        self.texts.binary_search_by(|t| t.as_str().cmp(text)).ok()
    }
}

/// One scalar string of the request, in the binder's interning order.
pub struct StringSlot {
    /// `None` for the principal id.
    pub key: Option<Key>,
    pub present: Lit,
    /// The text index, 0 when absent.
    pub text: Word,
}

pub struct Attribute {
    pub key: Key,
    pub ty: ValueType,
    /// The value in text-index form; value words are 0 when absent.
    pub words: Vec<Word>,
    pub string_slot: Option<usize>,
}

pub struct Role {
    pub name: String,
    pub granted: Lit,
    pub granted_at: Word,
    pub refused: Lit,
}

/// The facts of one final evaluation, for one principal kind.
pub struct Request {
    pub kind: String,
    pub now: Word,
    pub flow_started: Word,
    pub session_started: Word,
    pub last_active: Word,
    pub verified: Word,
    pub enrolled: Word,
    pub verified_at: Vec<Word>,
    pub failures: Vec<Word>,
    pub roles: Vec<Role>,
    pub strings: Vec<StringSlot>,
    pub attributes: Vec<Attribute>,
    /// Words of a string set's bits, before its count word.
    pub set_words: usize,
    /// Number of text indexes: the universe and one per string slot.
    pub text_count: usize,
}

impl Request {
    pub fn attribute(&self, key: &Key) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.key == *key)
    }
}

fn is_string(ty: &ValueType) -> bool {
    match ty {
        ValueType::String => true,
        ValueType::Optional(inner) => **inner == ValueType::String,
        _ => false,
    }
}

/// The request values of a kind in the binder's order: kind attributes,
/// context, switches.
pub fn keyed_values(schema: &Schema, kind: usize) -> Vec<(Key, ValueType)> {
    let mut values = Vec::new();
    for attribute in &schema.kinds[kind].attributes {
        values.push((Key::Principal(attribute.name.clone()), attribute.ty.clone()));
    }
    for attribute in &schema.context {
        values.push((Key::Context(attribute.name.clone()), attribute.ty.clone()));
    }
    for switch in &schema.switches {
        values.push((Key::Switch(switch.name.clone()), switch.ty.clone()));
    }
    values
}

fn string_slot_count(schema: &Schema, kind: usize) -> usize {
    1 + keyed_values(schema, kind)
        .iter()
        .filter(|(_, ty)| is_string(ty))
        .count()
}

fn bits_for(count: usize) -> usize {
    (usize::BITS - count.leading_zeros()) as usize
}

/// Builds the unconstrained-but-valid symbolic facts and asserts every
/// validity constraint on them.
pub fn symbolic(
    c: &mut Circuit,
    schema: &Schema,
    kind: usize,
    universe: &Universe,
    roles: &[String],
) -> Result<Request, String> {
    let slots = string_slot_count(schema, kind);
    let text_count = universe.texts.len() + slots;
    let set_words = text_count.div_ceil(64);
    let min_time = c.word(MIN_TIME as u64);
    let max_time = c.word(MAX_TIME as u64);

    let session_started = c.input_word(64);
    let last_active = c.input_word(64);
    let flow_started = c.input_word(64);
    let now = c.input_word(64);
    let order = [
        &min_time,
        &session_started,
        &last_active,
        &flow_started,
        &now,
        &max_time,
    ];
    for pair in order.windows(2) {
        let ok = c.sle(pair[0], pair[1]);
        c.assert(ok);
    }

    let verified = c.input_word(Factor::COUNT);
    let enrolled = c.input_word(Factor::COUNT);
    let never = c.word(i64::MIN as u64);
    let mut verified_at = Vec::new();
    let mut failures = Vec::new();
    for &is_verified in verified.iter().take(Factor::COUNT) {
        // A session factor lies between the session's start and `now`, and
        // an event's factor after the flow's start, which is later.
        let at = c.input_word(64);
        let after_start = c.sle(&session_started, &at);
        let before_now = c.sle(&at, &now);
        let in_range = c.and(after_start, before_now);
        let is_never = c.eq(&at, &never);
        let ok = c.mux(is_verified, in_range, is_never);
        c.assert(ok);
        verified_at.push(at);
        failures.push(c.input_word(bits_for(MAX_FAILURES as usize - 1)));
    }

    let zero = c.word(0);
    let mut role_facts = Vec::new();
    for name in roles {
        let granted = c.input();
        let refused = c.input();
        let granted_at = c.input_word(64);
        let after_start = c.sle(&flow_started, &granted_at);
        let before_now = c.sle(&granted_at, &now);
        let in_range = c.and(after_start, before_now);
        let unset = c.eq(&granted_at, &zero);
        let ok = c.mux(granted, in_range, unset);
        c.assert(ok);
        role_facts.push(Role {
            name: name.clone(),
            granted,
            granted_at,
            refused,
        });
    }

    let text_width = bits_for(text_count);
    let mut strings: Vec<StringSlot> = Vec::new();
    let always = c.constant(true);
    add_string(c, &mut strings, universe, text_width, None, always);
    if let Some(empty) = universe.index("") {
        // A principal id must not be empty.
        let empty = c.word(empty as u64);
        let is_empty = c.eq(&strings[0].text, &empty);
        c.assert(!is_empty);
    }

    let mut attributes = Vec::new();
    // Scalar strings first, so that string sets can refer to their slots.
    let mut pending_sets = Vec::new();
    for (key, ty) in keyed_values(schema, kind) {
        let (inner, optional) = match &ty {
            ValueType::Optional(inner) => (inner.as_ref().clone(), true),
            other => (other.clone(), false),
        };
        let present = if optional { c.input() } else { always };
        if matches!(inner, ValueType::Set(_)) {
            pending_sets.push((key, ty, inner, present, optional));
            continue;
        }
        let mut string_slot = None;
        let words = if inner == ValueType::String {
            let q = add_string(
                c,
                &mut strings,
                universe,
                text_width,
                Some(key.clone()),
                present,
            );
            string_slot = Some(q);
            vec![strings[q].text]
        } else {
            scalar(c, &inner, schema)?
        };
        let words = presence(c, present, optional, words);
        attributes.push(Attribute {
            key,
            ty,
            words,
            string_slot,
        });
    }
    for (key, ty, inner, present, optional) in pending_sets {
        let words = set(c, &inner, schema, universe, &strings, set_words)?;
        let words = presence(c, present, optional, words);
        attributes.push(Attribute {
            key,
            ty,
            words,
            string_slot: None,
        });
    }

    Ok(Request {
        kind: schema.kinds[kind].name.clone(),
        now,
        flow_started,
        session_started,
        last_active,
        verified,
        enrolled,
        verified_at,
        failures,
        roles: role_facts,
        strings,
        attributes,
        set_words,
        text_count,
    })
}

/// Adds string slot `q = strings.len()`: its text is a universe text, its
/// own fresh text, or the fresh text of an earlier present slot.
fn add_string(
    c: &mut Circuit,
    strings: &mut Vec<StringSlot>,
    universe: &Universe,
    width: usize,
    key: Option<Key>,
    present: Lit,
) -> usize {
    let q = strings.len();
    let base = universe.texts.len();
    let raw = c.input_word(width);
    let limit = c.word(base as u64);
    let mut allowed = vec![c.ult(&raw, &limit)];
    let own = c.word((base + q) as u64);
    allowed.push(c.eq(&raw, &own));
    for (k, earlier) in strings.iter().enumerate() {
        let first = c.word((base + k) as u64);
        let fresh = c.eq(&earlier.text, &first);
        let same = c.eq(&raw, &earlier.text);
        let reused = c.and_all(&[earlier.present, fresh, same]);
        allowed.push(reused);
    }
    let valid = c.or_all(&allowed);
    c.assert(valid);
    let zero = c.word(0);
    let text = c.select(present, &raw, &zero);
    strings.push(StringSlot { key, present, text });
    q
}

/// Puts the presence word in front of an optional value and zeroes the
/// value words when it is absent.
fn presence(c: &mut Circuit, present: Lit, optional: bool, words: Vec<Word>) -> Vec<Word> {
    if !optional {
        return words;
    }
    let zero = c.word(0);
    let mut out = vec![c.bit_word(present)];
    for word in &words {
        out.push(c.select(present, word, &zero));
    }
    out
}

fn enum_count(schema: &Schema, index: u32) -> usize {
    schema
        .enums
        .get(index as usize)
        .map(|e| e.variants.len())
        .unwrap_or(0)
}

/// A fresh scalar value of a type other than `String`, with its range.
fn scalar(c: &mut Circuit, ty: &ValueType, schema: &Schema) -> Result<Vec<Word>, String> {
    Ok(match ty {
        ValueType::Bool => vec![c.input_word(1)],
        ValueType::Int => vec![c.input_word(64)],
        ValueType::Duration => {
            // `-9223372036854775808us` does not parse, so i64::MIN is no duration.
            let word = c.input_word(64);
            let min = c.word(i64::MIN as u64);
            let is_min = c.eq(&word, &min);
            c.assert(!is_min);
            vec![word]
        }
        ValueType::Time => {
            let word = c.input_word(64);
            let (min, max) = (c.word(MIN_TIME as u64), c.word(MAX_TIME as u64));
            let after = c.sle(&min, &word);
            let before = c.sle(&word, &max);
            c.assert(after);
            c.assert(before);
            vec![word]
        }
        ValueType::Ip => vec![c.input_word(64), c.input_word(64)],
        ValueType::Cidr => {
            let words: Vec<Word> = (0..4).map(|_| c.input_word(64)).collect();
            // The mask is a prefix mask: each set bit has every higher bit set.
            let mask: Vec<Lit> = words[3].iter().chain(words[2].iter()).copied().collect();
            let network: Vec<Lit> = words[1].iter().chain(words[0].iter()).copied().collect();
            for i in 0..127 {
                let ok = c.or(!mask[i], mask[i + 1]);
                c.assert(ok);
            }
            for i in 0..128 {
                let ok = c.or(mask[i], !network[i]);
                c.assert(ok);
            }
            words
        }
        ValueType::Factor => {
            let word = c.input_word(4);
            let limit = c.word(Factor::COUNT as u64);
            let ok = c.ult(&word, &limit);
            c.assert(ok);
            vec![word]
        }
        ValueType::Enum(index) => {
            let count = enum_count(schema, *index);
            let word = c.input_word(bits_for(count));
            let limit = c.word(count as u64);
            let ok = c.ult(&word, &limit);
            c.assert(ok);
            vec![word]
        }
        other => {
            return Err(format!(
                "request values of type {other:?} are not supported"
            ))
        }
    })
}

/// A fresh set value: one bitset word for factors and enums; for strings,
/// one bit per text index and the element count.
fn set(
    c: &mut Circuit,
    ty: &ValueType,
    schema: &Schema,
    universe: &Universe,
    strings: &[StringSlot],
    set_words: usize,
) -> Result<Vec<Word>, String> {
    let ValueType::Set(element) = ty else {
        return Err(format!("expected a set type, found {ty:?}"));
    };
    Ok(match element.as_ref() {
        ValueType::Factor => vec![c.input_word(Factor::COUNT)],
        ValueType::Enum(index) => vec![c.input_word(enum_count(schema, *index).min(64))],
        ValueType::String => {
            let base = universe.texts.len();
            let mut words = Vec::new();
            let mut bits = Vec::new();
            for w in 0..set_words {
                let mut word = c.word(0);
                for (i, bit) in word.iter_mut().enumerate() {
                    let index = w * 64 + i;
                    if index < base {
                        *bit = c.input();
                    } else if let Some(slot) = strings.get(index - base) {
                        // A fresh text is an element only if its slot holds it.
                        let raw = c.input();
                        let own = c.word(index as u64);
                        let holds = c.eq(&slot.text, &own);
                        let allowed = c.and(slot.present, holds);
                        *bit = c.and(raw, allowed);
                    }
                    bits.push(*bit);
                }
                words.push(word);
            }
            let count = c.input_word(bits_for(MAX_SET_LEN as usize - 1));
            let mut represented = c.word(0);
            for word in &words {
                let ones = c.popcount(word);
                represented = c.add(&represented, &ones);
            }
            let enough = c.sle(&represented, &count);
            c.assert(enough);
            words.push(count);
            words
        }
        other => return Err(format!("sets of {other:?} in requests are not supported")),
    })
}

/// Position of a record word in the program's string slot list.
fn slot_index(program: &Program, word: u32) -> u64 {
    program
        .layout
        .string_slots
        .iter()
        .position(|&s| s == word)
        .unwrap_or(0) as u64
}

/// The record word holding a value, and its type, in `program`.
fn record_slot(program: &Program, kind: usize, key: &Key) -> Option<u32> {
    let schema = &program.schema;
    match key {
        Key::Principal(name) => schema.kinds[kind]
            .attributes
            .iter()
            .find(|a| a.name == *name)
            .map(|a| a.slot),
        Key::Context(name) => schema
            .context
            .iter()
            .find(|a| a.name == *name)
            .map(|a| a.slot),
        Key::Switch(name) => schema
            .switches
            .iter()
            .find(|s| s.name == *name)
            .map(|s| s.slot),
    }
}

/// Builds the input record that `program` binds for the facts: the words
/// of `runtime::bind::bind`, with string ids from `program`'s pool.
pub fn record(
    c: &mut Circuit,
    request: &Request,
    program: &Program,
    universe: &Universe,
) -> Result<Vec<Word>, String> {
    let kind = program
        .schema
        .kinds
        .iter()
        .position(|k| k.name == request.kind)
        .ok_or_else(|| format!("principal kind `{}` is not declared", request.kind))?;
    let mut record = vec![c.word(0); program.layout.words as usize];
    record[slot::NOW as usize] = request.now;
    record[slot::FLOW_STARTED as usize] = request.flow_started;
    record[slot::SESSION_STARTED as usize] = request.session_started;
    record[slot::LAST_ACTIVE as usize] = request.last_active;
    record[slot::VERIFIED as usize] = request.verified;
    record[slot::ENROLLED as usize] = request.enrolled;
    for f in 0..Factor::COUNT {
        record[slot::VERIFIED_AT as usize + f] = request.verified_at[f];
        record[slot::FAILURES as usize + f] = request.failures[f];
    }
    for (i, name) in program.roles.iter().enumerate() {
        let role = request
            .roles
            .iter()
            .find(|r| r.name == *name)
            .ok_or_else(|| format!("role `{name}` is missing from the role universe"))?;
        let base = (slot::ROLES + slot::WORDS_PER_ROLE * i as u32) as usize;
        record[base] = c.bit_word(role.granted);
        record[base + 1] = role.granted_at;
        record[base + 2] = c.bit_word(role.refused);
    }

    // Per string slot: its record id and whether it is the first slot with its text.
    let pool_size = program.strings.len() as u64;
    let pool_ids: Vec<Option<u64>> = universe
        .texts
        .iter()
        .map(|t| program.strings.binary_search(t).ok().map(|i| i as u64))
        .collect();
    let string_words: Vec<u32> = request
        .strings
        .iter()
        .map(|s| match &s.key {
            None => Ok(slot::PRINCIPAL_ID),
            Some(key) => {
                let at = record_slot(program, kind, key)
                    .ok_or_else(|| format!("request value {key:?} has no record slot"))?;
                let optional = request
                    .attribute(key)
                    .map(|a| matches!(a.ty, ValueType::Optional(_)))
                    .unwrap_or(false);
                Ok(if optional { at + 1 } else { at })
            }
        })
        .collect::<Result<_, String>>()?;
    let mut ids = Vec::new();
    let mut firsts = Vec::new();
    let mut in_pools = Vec::new();
    for (q, slot) in request.strings.iter().enumerate() {
        let mut in_pool = c.constant(false);
        let mut pool_value = c.word(0);
        for (text, id) in pool_ids.iter().enumerate() {
            if let Some(id) = id {
                let constant = c.word(text as u64);
                let hit = c.eq(&slot.text, &constant);
                in_pool = c.or(in_pool, hit);
                let value = c.word(*id);
                pool_value = c.select(hit, &value, &pool_value);
            }
        }
        let mut dynamic = c.word(pool_size + slot_index(program, string_words[q]));
        let mut earlier_hits = Vec::new();
        for k in (0..q).rev() {
            let same = c.eq(&request.strings[k].text, &slot.text);
            let hit = c.and(request.strings[k].present, same);
            earlier_hits.push(hit);
            let value = c.word(pool_size + slot_index(program, string_words[k]));
            dynamic = c.select(hit, &value, &dynamic);
        }
        let earlier = c.or_all(&earlier_hits);
        let id = c.select(in_pool, &pool_value, &dynamic);
        let zero = c.word(0);
        ids.push(c.select(slot.present, &id, &zero));
        firsts.push(!earlier);
        in_pools.push(in_pool);
    }
    for (q, word) in string_words.iter().enumerate() {
        record[*word as usize] = ids[q];
    }

    let pool_positions: Vec<Option<usize>> =
        program.strings.iter().map(|t| universe.index(t)).collect();
    for attribute in &request.attributes {
        let at = record_slot(program, kind, &attribute.key)
            .ok_or_else(|| format!("request value {:?} has no record slot", attribute.key))?
            as usize;
        let is_string_set = match &attribute.ty {
            ValueType::Set(e) => **e == ValueType::String,
            ValueType::Optional(inner) => {
                matches!(inner.as_ref(), ValueType::Set(e) if **e == ValueType::String)
            }
            _ => false,
        };
        if !is_string_set {
            if attribute.string_slot.is_some() {
                if let ValueType::Optional(_) = attribute.ty {
                    record[at] = attribute.words[0];
                }
                continue;
            }
            for (i, word) in attribute.words.iter().enumerate() {
                record[at + i] = *word;
            }
            continue;
        }
        let optional = matches!(attribute.ty, ValueType::Optional(_));
        let (offset, words) = if optional {
            record[at] = attribute.words[0];
            (at + 1, &attribute.words[1..])
        } else {
            (at, &attribute.words[..])
        };
        let bits: Vec<Lit> = words[..words.len() - 1]
            .iter()
            .flat_map(|w| w.iter().copied())
            .collect();
        let count = words[words.len() - 1];
        let record_words = program.layout.string_set_words as usize;
        let mut out = vec![c.word(0); record_words];
        for (id, position) in pool_positions.iter().enumerate() {
            if let Some(position) = position {
                out[id / 64][id % 64] = bits[*position];
            }
        }
        for (q, slot) in request.strings.iter().enumerate() {
            // A text outside the pool has the id of its first slot.
            let mut member = Vec::new();
            for (text, bit) in bits.iter().enumerate().take(request.text_count) {
                if c.known(*bit) == Some(false) {
                    continue;
                }
                let constant = c.word(text as u64);
                let hit = c.eq(&slot.text, &constant);
                member.push(c.and(hit, *bit));
            }
            let member = c.or_all(&member);
            let bit = c.and_all(&[slot.present, firsts[q], !in_pools[q], member]);
            let id = (pool_size + slot_index(program, string_words[q])) as usize;
            if id / 64 < record_words {
                out[id / 64][id % 64] = bit;
            }
        }
        for (i, word) in out.into_iter().enumerate() {
            record[offset + i] = word;
        }
        record[offset + record_words] = count;
    }
    Ok(record)
}

/// The facts of a concrete evaluation in the same form, as constant words.
pub fn concrete(
    c: &mut Circuit,
    program: &Program,
    facts: &Facts,
    universe: &Universe,
    roles: &[String],
) -> Request {
    let kind = facts.request.kind as usize;
    let schema = &program.schema;
    let slots = string_slot_count(schema, kind);
    let text_count = universe.texts.len() + slots;
    let set_words = text_count.div_ceil(64);
    let base = universe.texts.len();

    let mut texts: Vec<(Option<String>, u64)> = Vec::new();
    let intern = |text: Option<&str>, texts: &mut Vec<(Option<String>, u64)>| -> u64 {
        let q = texts.len();
        let index = match text {
            None => 0,
            Some(text) => match universe.index(text) {
                Some(index) => index as u64,
                None => texts
                    .iter()
                    .find(|(t, _)| t.as_deref() == Some(text))
                    .map(|(_, i)| *i)
                    .unwrap_or((base + q) as u64),
            },
        };
        texts.push((text.map(str::to_string), index));
        index
    };
    intern(Some(&facts.request.id), &mut texts);

    let mut values: Vec<(Key, ValueType, Option<&Value>)> = Vec::new();
    for (attribute, value) in schema.kinds[kind]
        .attributes
        .iter()
        .zip(&facts.request.principal)
    {
        values.push((
            Key::Principal(attribute.name.clone()),
            attribute.ty.clone(),
            value.as_ref(),
        ));
    }
    for (attribute, value) in schema.context.iter().zip(&facts.request.context) {
        values.push((
            Key::Context(attribute.name.clone()),
            attribute.ty.clone(),
            value.as_ref(),
        ));
    }
    for (switch, value) in schema.switches.iter().zip(&facts.request.switches) {
        values.push((
            Key::Switch(switch.name.clone()),
            switch.ty.clone(),
            value.as_ref(),
        ));
    }

    let mut attributes = Vec::new();
    let mut string_slots = Vec::new();
    for (key, ty, value) in &values {
        if is_string(ty) {
            let text = match value {
                Some(Value::Str(text)) => Some(text.as_str()),
                _ => None,
            };
            let q = texts.len();
            let index = intern(text, &mut texts);
            string_slots.push((key.clone(), q, index, text.is_some()));
        }
    }
    let text_index = |text: &str, texts: &[(Option<String>, u64)]| -> Option<u64> {
        universe.index(text).map(|i| i as u64).or_else(|| {
            texts
                .iter()
                .find(|(t, _)| t.as_deref() == Some(text))
                .map(|(_, i)| *i)
        })
    };
    for (key, ty, value) in &values {
        let (inner, optional) = match ty {
            ValueType::Optional(inner) => (inner.as_ref().clone(), true),
            other => (other.clone(), false),
        };
        let mut string_slot = None;
        let raw: Vec<u64> = match (&inner, value) {
            (_, None) => {
                let words = match &inner {
                    ValueType::Set(e) if **e == ValueType::String => set_words + 1,
                    other => other.words(0) as usize,
                };
                vec![0; words]
            }
            (ValueType::String, Some(_)) => {
                let (_, q, index, _) = string_slots
                    .iter()
                    .find(|(k, ..)| k == key)
                    .cloned()
                    .unwrap_or((key.clone(), 0, 0, false));
                string_slot = Some(q);
                vec![index]
            }
            (ValueType::Set(element), Some(Value::Set(elements)))
                if **element == ValueType::String =>
            {
                let mut words = vec![0u64; set_words + 1];
                for element in elements {
                    if let Value::Str(text) = element {
                        if let Some(index) = text_index(text, &texts) {
                            let index = index as usize;
                            words[index / 64] |= 1 << (index % 64);
                        }
                    }
                }
                words[set_words] = elements.len() as u64;
                words
            }
            (_, Some(value)) => scalar_words(value),
        };
        if inner == ValueType::String && value.is_none() {
            string_slot = string_slots.iter().find(|(k, ..)| k == key).map(|s| s.1);
        }
        let mut words: Vec<Word> = raw.iter().map(|&w| c.word(w)).collect();
        if optional {
            words.insert(0, c.word(u64::from(value.is_some())));
        }
        attributes.push(Attribute {
            key: key.clone(),
            ty: ty.clone(),
            words,
            string_slot,
        });
    }
    let strings = texts
        .iter()
        .enumerate()
        .map(|(q, (text, index))| {
            let key = if q == 0 {
                None
            } else {
                string_slots.iter().find(|s| s.1 == q).map(|s| s.0.clone())
            };
            StringSlot {
                key,
                present: c.constant(text.is_some()),
                text: c.word(if text.is_some() { *index } else { 0 }),
            }
        })
        .collect();
    let role_facts = roles
        .iter()
        .map(|name| {
            let state = program
                .roles
                .iter()
                .position(|r| r == name)
                .map(|i| facts.roles[i])
                .unwrap_or_default();
            Role {
                name: name.clone(),
                granted: c.constant(state.granted),
                granted_at: c.word(state.granted_at as u64),
                refused: c.constant(state.refused),
            }
        })
        .collect();
    Request {
        kind: schema.kinds[kind].name.clone(),
        now: c.word(facts.now as u64),
        flow_started: c.word(facts.flow_started as u64),
        session_started: c.word(facts.request.session_started as u64),
        last_active: c.word(facts.request.last_active as u64),
        verified: c.word(facts.verified),
        enrolled: c.word(facts.enrolled),
        verified_at: facts
            .verified_at
            .iter()
            .map(|&t| c.word(t as u64))
            .collect(),
        failures: facts.failures.iter().map(|&n| c.word(n)).collect(),
        roles: role_facts,
        strings,
        attributes,
        set_words,
        text_count,
    }
}

/// Record words of a bound scalar or factor/enum set value.
fn scalar_words(value: &Value) -> Vec<u64> {
    match value {
        Value::Bool(b) => vec![u64::from(*b)],
        Value::Int(v) | Value::Duration(v) | Value::Time(v) => vec![*v as u64],
        Value::Str(_) => vec![0],
        Value::Ip(ip) => vec![(*ip >> 64) as u64, *ip as u64],
        Value::Cidr(cidr) => {
            let mask = cidr.mask();
            vec![
                (cidr.network >> 64) as u64,
                cidr.network as u64,
                (mask >> 64) as u64,
                mask as u64,
            ]
        }
        Value::Factor(f) => vec![u64::from(*f)],
        Value::Enum(v) => vec![u64::from(*v)],
        Value::Set(elements) => {
            let mut bits = 0u64;
            for element in elements {
                match element {
                    Value::Factor(f) => bits |= 1 << f,
                    Value::Enum(v) => bits |= 1u64 << (v % 64),
                    _ => {}
                }
            }
            vec![bits]
        }
    }
}
