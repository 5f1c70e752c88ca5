//! Invariant conditions as circuits over the symbolic facts. The value
//! forms follow lowering, except that strings are text indexes (see
//! `request`), so a literal that no flow uses still compares correctly.

use authflow_runtime::factor;
use batsat::Lit;

use super::circuit::{Circuit, Word};
use super::request::{Key, Request, Universe};
use crate::check::{Compare, Input, SetTest, TExpr, TKind};
use crate::types::{ConstValue, Type};

type Val = Vec<Word>;

pub struct Condition<'a> {
    pub request: &'a Request,
    pub universe: &'a Universe,
    /// Switch names by index.
    pub switches: &'a [String],
}

impl Condition<'_> {
    /// Lowers a `Bool` expression to one literal.
    pub fn truth(&self, c: &mut Circuit, expr: &TExpr) -> Result<Lit, String> {
        Ok(self.expr(c, expr)?[0][0])
    }

    fn const_words(&self, c: &mut Circuit, value: &ConstValue, ty: &Type) -> Result<Val, String> {
        if let Type::Optional(inner) = ty {
            return Ok(match value {
                ConstValue::None => {
                    let words = self.const_words(c, &default_of(inner), inner)?.len();
                    vec![c.word(0); words + 1]
                }
                value => {
                    let mut words = vec![c.word(1)];
                    words.extend(self.const_words(c, value, inner)?);
                    words
                }
            });
        }
        let raw: Vec<u64> = match value {
            ConstValue::Bool(b) => vec![u64::from(*b)],
            ConstValue::Int(v) | ConstValue::Duration(v) | ConstValue::Time(v) => vec![*v as u64],
            ConstValue::Str(text) => vec![self.text(text)? as u64],
            ConstValue::Ip(ip) => vec![(*ip >> 64) as u64, *ip as u64],
            ConstValue::Cidr { network, prefix } => {
                let mask = authflow_runtime::value::Cidr {
                    network: *network,
                    prefix: *prefix,
                }
                .mask();
                vec![
                    (*network >> 64) as u64,
                    *network as u64,
                    (mask >> 64) as u64,
                    mask as u64,
                ]
            }
            ConstValue::Factor(f) => vec![u64::from(*f)],
            ConstValue::Enum { variant, .. } => vec![u64::from(*variant)],
            ConstValue::None => vec![0],
            ConstValue::Set(elements) => match ty.element() {
                Some(Type::String) | None => {
                    let words = self.request.set_words;
                    let mut raw = vec![0u64; words + 1];
                    for element in elements {
                        if let ConstValue::Str(text) = element {
                            let index = self.text(text)?;
                            raw[index / 64] |= 1 << (index % 64);
                        }
                    }
                    raw[words] = elements.len() as u64;
                    raw
                }
                _ => {
                    let mut bits = 0u64;
                    for element in elements {
                        match element {
                            ConstValue::Factor(f) => bits |= 1 << f,
                            ConstValue::Enum { variant, .. } => bits |= 1u64 << (variant % 64),
                            _ => {}
                        }
                    }
                    vec![bits]
                }
            },
        };
        Ok(raw.into_iter().map(|w| c.word(w)).collect())
    }

    fn text(&self, text: &str) -> Result<usize, String> {
        self.universe
            .index(text)
            .ok_or_else(|| format!("string `{text}` is missing from the text universe"))
    }

    fn input(&self, c: &mut Circuit, input: &Input) -> Result<Val, String> {
        let r = self.request;
        let attribute = |key: Key| -> Result<Val, String> {
            r.attribute(&key).map(|a| a.words.clone()).ok_or_else(|| {
                format!(
                    "request value {key:?} is not declared for kind `{}`",
                    r.kind
                )
            })
        };
        Ok(match input {
            Input::Principal(name) if name == "id" => vec![r.strings[0].text],
            Input::Principal(name) if name == "enrolled" => vec![r.enrolled],
            Input::Principal(name) => attribute(Key::Principal(name.clone()))?,
            Input::Context(name) => attribute(Key::Context(name.clone()))?,
            Input::Switch(index) => {
                let name = self
                    .switches
                    .get(*index as usize)
                    .ok_or_else(|| format!("switch {index} is not declared"))?;
                attribute(Key::Switch(name.clone()))?
            }
            Input::Now => vec![r.now],
            Input::SessionFactors => vec![r.verified],
            Input::SessionStartedAt => vec![r.session_started],
            Input::SessionLastActiveAt => vec![r.last_active],
            Input::Failures(f) => vec![r.failures[*f as usize]],
            Input::SessionAge => vec![c.sub(&r.now, &r.session_started)],
            Input::SessionIdle => vec![c.sub(&r.now, &r.last_active)],
            Input::SessionAal => {
                let mut level = c.word(0);
                for l in 1..=3u8 {
                    let mut hits = Vec::new();
                    for &combination in factor::combinations(l) {
                        let mask = c.word(combination);
                        let present = c.bitwise(&r.verified, &mask, Circuit::and);
                        hits.push(c.eq(&present, &mask));
                    }
                    let reached = c.or_all(&hits);
                    let value = c.word(u64::from(l));
                    level = c.select(reached, &value, &level);
                }
                vec![level]
            }
        })
    }

    fn expr(&self, c: &mut Circuit, expr: &TExpr) -> Result<Val, String> {
        Ok(match &expr.kind {
            TKind::Const(value) => self.const_words(c, value, &expr.ty)?,
            TKind::Input(input) => self.input(c, input)?,
            TKind::Error => return Err("the invariant has a type error".to_string()),
            TKind::Not(a) => {
                let a = self.truth(c, a)?;
                vec![c.bit_word(!a)]
            }
            TKind::Neg(a) => {
                let a = self.expr(c, a)?[0];
                let zero = c.word(0);
                vec![c.sub(&zero, &a)]
            }
            TKind::And(a, b) => {
                let (a, b) = (self.truth(c, a)?, self.truth(c, b)?);
                let both = c.and(a, b);
                vec![c.bit_word(both)]
            }
            TKind::Or(a, b) => {
                let (a, b) = (self.truth(c, a)?, self.truth(c, b)?);
                let either = c.or(a, b);
                vec![c.bit_word(either)]
            }
            TKind::Compare(op, a, b) => {
                let result = self.compare(c, *op, a, b)?;
                vec![c.bit_word(result)]
            }
            TKind::IsNone { operand, negated } => {
                let present = self.expr(c, operand)?[0][0];
                vec![c.bit_word(if *negated { present } else { !present })]
            }
            TKind::Coalesce(a, b) => self.coalesce(c, a, b, &expr.ty)?,
            TKind::Add(a, b) => {
                let (a, b) = (self.expr(c, a)?[0], self.expr(c, b)?[0]);
                vec![c.add(&a, &b)]
            }
            TKind::Sub(a, b) => {
                let (a, b) = (self.expr(c, a)?[0], self.expr(c, b)?[0]);
                vec![c.sub(&a, &b)]
            }
            TKind::Member { element, container } => {
                let result = self.member(c, element, container)?;
                vec![c.bit_word(result)]
            }
            TKind::SetTest { test, set, other } => {
                let result = self.set_test(c, *test, set, other)?;
                vec![c.bit_word(result)]
            }
            TKind::IsEmpty(set) => {
                let length = self.length(c, set)?;
                let zero = c.word(0);
                let empty = c.eq(&length, &zero);
                vec![c.bit_word(empty)]
            }
            TKind::Len(set) => vec![self.length(c, set)?],
            TKind::Hour(_) | TKind::Weekday(_) => {
                return Err(
                    "cannot prove invariants whose conditions use hour() or weekday()".to_string(),
                )
            }
        })
    }

    fn compare(&self, c: &mut Circuit, op: Compare, a: &TExpr, b: &TExpr) -> Result<Lit, String> {
        let (a, b) = (self.expr(c, a)?, self.expr(c, b)?);
        Ok(match op {
            Compare::Eq | Compare::Ne => {
                let mut equal = Vec::new();
                for (x, y) in a.iter().zip(&b) {
                    equal.push(c.eq(x, y));
                }
                let all = c.and_all(&equal);
                if op == Compare::Eq {
                    all
                } else {
                    !all
                }
            }
            Compare::Lt => c.slt(&a[0], &b[0]),
            Compare::Le => c.sle(&a[0], &b[0]),
            Compare::Gt => c.slt(&b[0], &a[0]),
            Compare::Ge => c.sle(&b[0], &a[0]),
        })
    }

    fn coalesce(
        &self,
        c: &mut Circuit,
        a: &TExpr,
        b: &TExpr,
        result: &Type,
    ) -> Result<Val, String> {
        let optional = self.expr(c, a)?;
        let fallback = self.expr(c, b)?;
        let present = optional[0][0];
        let (fallback_present, fallback_words) = if matches!(b.ty, Type::Optional(_)) {
            (fallback[0][0], fallback[1..].to_vec())
        } else {
            (c.constant(true), fallback)
        };
        let mut words = Vec::new();
        for (x, y) in optional[1..].iter().zip(&fallback_words) {
            words.push(c.select(present, x, y));
        }
        if matches!(result, Type::Optional(_)) {
            let either = c.or(present, fallback_present);
            words.insert(0, c.bit_word(either));
        }
        Ok(words)
    }

    fn member(&self, c: &mut Circuit, element: &TExpr, container: &TExpr) -> Result<Lit, String> {
        if let (Some(ConstValue::Set(elements)), Some(element_ty)) =
            (container.as_const(), container.ty.element())
        {
            if !matches!(element_ty, Type::String | Type::Factor | Type::Enum(_)) {
                let value = self.expr(c, element)?;
                let mut hits = Vec::new();
                for member in elements {
                    let words = self.const_words(c, member, element_ty)?;
                    hits.push(if let ConstValue::Cidr { .. } = member {
                        in_block(c, &value, &words)
                    } else {
                        let mut equal = Vec::new();
                        for (x, y) in value.iter().zip(&words) {
                            equal.push(c.eq(x, y));
                        }
                        c.and_all(&equal)
                    });
                }
                return Ok(c.or_all(&hits));
            }
        }
        if container.ty == Type::Cidr {
            let ip = self.expr(c, element)?;
            let block = self.expr(c, container)?;
            return Ok(in_block(c, &ip, &block));
        }
        let set = self.expr(c, container)?;
        let id = self.expr(c, element)?[0];
        if container.ty.element() == Some(&Type::String) {
            let bits: Vec<Lit> = set[..set.len() - 1]
                .iter()
                .flat_map(|w| w.iter().copied())
                .collect();
            let mut hits = Vec::new();
            for (text, bit) in bits.iter().enumerate().take(self.request.text_count) {
                if c.known(*bit) == Some(false) {
                    continue;
                }
                let constant = c.word(text as u64);
                let hit = c.eq(&id, &constant);
                hits.push(c.and(hit, *bit));
            }
            return Ok(c.or_all(&hits));
        }
        let shifted = c.shr(&set[0], &id);
        Ok(shifted[0])
    }

    fn set_test(
        &self,
        c: &mut Circuit,
        test: SetTest,
        set: &TExpr,
        other: &TExpr,
    ) -> Result<Lit, String> {
        let counted = set.ty.element() == Some(&Type::String);
        let (a, b) = (self.expr(c, set)?, self.expr(c, other)?);
        let words = if counted { a.len() - 1 } else { a.len() };
        let mut parts = Vec::new();
        for i in 0..words.min(b.len()) {
            let common = c.bitwise(&a[i], &b[i], Circuit::and);
            parts.push(match test {
                SetTest::ContainsAny => c.nonzero(&common),
                SetTest::ContainsAll => c.eq(&common, &b[i]),
            });
        }
        if counted && test == SetTest::ContainsAll && other.as_const().is_none() {
            // Every element of `other` has a bit exactly when its bits add
            // up to its element count.
            let mut represented = c.word(0);
            for word in &b[..words] {
                let ones = c.popcount(word);
                represented = c.add(&represented, &ones);
            }
            parts.push(c.eq(&represented, &b[words]));
        }
        Ok(match test {
            SetTest::ContainsAny => c.or_all(&parts),
            SetTest::ContainsAll => c.and_all(&parts),
        })
    }

    fn length(&self, c: &mut Circuit, set: &TExpr) -> Result<Word, String> {
        let words = self.expr(c, set)?;
        Ok(
            if set.ty.element() == Some(&Type::String) || matches!(set.ty, Type::EmptySet) {
                words[words.len() - 1]
            } else {
                c.popcount(&words[0])
            },
        )
    }
}

/// A placeholder value of a type, to size `none`.
fn default_of(ty: &Type) -> ConstValue {
    match ty {
        Type::Ip => ConstValue::Ip(0),
        Type::Cidr => ConstValue::Cidr {
            network: 0,
            prefix: 0,
        },
        Type::Set(_) => ConstValue::Set(Vec::new()),
        _ => ConstValue::Int(0),
    }
}

/// `ip in block`, as lowering computes it: the masked address equals the
/// network, and both are of the same address family.
fn in_block(c: &mut Circuit, ip: &[Word], block: &[Word]) -> Lit {
    let high = c.bitwise(&ip[0], &block[2], Circuit::and);
    let low = c.bitwise(&ip[1], &block[3], Circuit::and);
    let high_equal = c.eq(&high, &block[0]);
    let low_equal = c.eq(&low, &block[1]);
    let matched = c.and(high_equal, low_equal);
    let ip_v4 = is_ipv4(c, &ip[0], &ip[1]);
    let mapped = is_ipv4(c, &block[0], &block[1]);
    let thirty_two = c.word(32);
    let mask_top = c.shr(&block[3], &thirty_two);
    let all = c.word(0xffff_ffff);
    let covers = c.eq(&mask_top, &all);
    let block_v4 = c.and(mapped, covers);
    let same_family = !c.xor(ip_v4, block_v4);
    c.and(matched, same_family)
}

fn is_ipv4(c: &mut Circuit, high: &Word, low: &Word) -> Lit {
    let zero = c.word(0);
    let high_zero = c.eq(high, &zero);
    let thirty_two = c.word(32);
    let top = c.shr(low, &thirty_two);
    let marker = c.word(0xffff);
    let mapped = c.eq(&top, &marker);
    c.and(high_zero, mapped)
}
