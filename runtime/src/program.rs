//! The compiled program: a versioned, serializable bytecode format with a
//! content digest.
//!
//! A program holds the request schema, the layout of the bound input record,
//! and for each flow a straight-line instruction list that reads the record
//! and writes a fixed-size outcome record. The instruction set has no jumps:
//! every evaluation of a flow executes the same instructions in the same
//! order, whatever the input.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::factor::Factor;

/// Identifies the file format.
pub const FORMAT: &str = "authflow-bytecode";
/// Incremented on every incompatible change of the format.
pub const FORMAT_VERSION: u32 = 3;

/// The type of a request attribute, switch or output value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueType {
    Bool,
    Int,
    String,
    Duration,
    Time,
    Ip,
    Cidr,
    Factor,
    Enum(u32),
    Set(Box<ValueType>),
    Optional(Box<ValueType>),
}

impl ValueType {
    /// Words the value occupies in a record, given the width of string sets.
    pub fn words(&self, string_set_words: u32) -> u32 {
        match self {
            ValueType::Ip => 2,
            ValueType::Cidr => 4,
            ValueType::Set(element) if **element == ValueType::String => string_set_words + 1,
            ValueType::Optional(inner) => 1 + inner.words(string_set_words),
            _ => 1,
        }
    }

    /// Tells whether record and outcome words can store a value of this
    /// type. Words store a set as membership bits, so only sets of strings,
    /// factors and enum values have words. Sets of other elements exist
    /// only as constants of the policy.
    pub fn has_words(&self) -> bool {
        match self {
            ValueType::Set(element) => matches!(
                **element,
                ValueType::String | ValueType::Factor | ValueType::Enum(_)
            ),
            ValueType::Optional(inner) => inner.has_words(),
            _ => true,
        }
    }

    /// Returns the first enum index of the type that `enums` does not cover.
    fn unknown_enum(&self, enums: usize) -> Option<u32> {
        match self {
            ValueType::Enum(index) if *index as usize >= enums => Some(*index),
            ValueType::Set(inner) | ValueType::Optional(inner) => inner.unknown_enum(enums),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    pub name: String,
    pub variants: Vec<String>,
}

/// A declared attribute and the first record word of its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub ty: ValueType,
    pub slot: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kind {
    pub name: String,
    /// Declared attributes; `id` and `enrolled` have fixed slots.
    pub attributes: Vec<Attribute>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub name: String,
    pub ty: ValueType,
    pub slot: u32,
    /// The default in JSON input form.
    pub default: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub enums: Vec<EnumType>,
    pub kinds: Vec<Kind>,
    pub context: Vec<Attribute>,
    pub switches: Vec<Switch>,
}

/// Fixed word offsets of the input record; declared attributes follow.
pub mod slot {
    use crate::factor::Factor;

    /// Evaluation time, microseconds since the epoch.
    pub const NOW: u32 = 0;
    /// The `now` of the request that started the flow.
    pub const FLOW_STARTED: u32 = 1;
    pub const SESSION_STARTED: u32 = 2;
    pub const LAST_ACTIVE: u32 = 3;
    /// Bitset of every verified factor.
    pub const VERIFIED: u32 = 4;
    /// Bitset of enrolled factors.
    pub const ENROLLED: u32 = 5;
    /// The principal's string id.
    pub const PRINCIPAL_ID: u32 = 6;
    /// Per factor: the latest verification time, `i64::MIN` if never.
    pub const VERIFIED_AT: u32 = 7;
    /// Per factor: the number of failed verifications.
    pub const FAILURES: u32 = VERIFIED_AT + Factor::COUNT as u32;
    /// Per approval role: granted (0 or 1), earliest grant time, refused (0 or 1).
    pub const ROLES: u32 = FAILURES + Factor::COUNT as u32;
    pub const WORDS_PER_ROLE: u32 = 3;
}

/// Fixed word offsets of the outcome record.
pub mod out {
    /// The decision, the site that made it and the factors it offers, as
    /// one [`super::Verdict`].
    pub const VERDICT: u32 = 0;
    /// One more than the index of the last exception entered; 0 for none.
    pub const EXCEPTION: u32 = 1;
    /// Role bitset words of a pending decision start here.
    pub const AWAITING: u32 = 2;
}

/// The verdict word of an outcome record. It packs what the site that
/// decided contributes, so that a kernel selects it with one operation per
/// site: the factor bitset offered by a challenge or enroll decision in
/// bits 0 to 15, the [`Decision`] code in bits 16 to 23, and the index of
/// the site from bit 24 up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict(pub u64);

impl Verdict {
    /// The width of the factor bitset.
    pub const OPTIONS_BITS: u32 = 16;
    /// The lowest bit of the decision code.
    pub const DECISION_SHIFT: u32 = 16;
    /// The lowest bit of the site index.
    pub const SITE_SHIFT: u32 = 24;

    /// Returns the verdict of decision `decision` at site `site`, offering
    /// no factor.
    pub fn new(decision: Decision, site: u64) -> Verdict {
        Verdict((decision as u64) << Self::DECISION_SHIFT | site << Self::SITE_SHIFT)
    }

    /// Returns the decision code, which [`Decision::from_code`] reads.
    pub fn code(self) -> u64 {
        (self.0 >> Self::DECISION_SHIFT) & 0xff
    }

    pub fn decision(self) -> Option<Decision> {
        Decision::from_code(self.code())
    }

    pub fn site(self) -> u64 {
        self.0 >> Self::SITE_SHIFT
    }

    /// Returns the offered factors, one bit per [`Factor`] at [`Factor::bit`].
    pub fn options(self) -> u64 {
        self.0 & ((1 << Self::OPTIONS_BITS) - 1)
    }
}

const _: () = assert!(Factor::COUNT <= Verdict::OPTIONS_BITS as usize);

/// The layout of the input record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub words: u32,
    /// Words in the bitset of a `Set<String>` value.
    pub string_set_words: u32,
    /// Record words of every scalar string value, in order. The string in
    /// slot `i` that is not in the pool gets id `strings.len() + i`.
    pub string_slots: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Decision {
    Allow = 1,
    Deny = 2,
    Challenge = 3,
    Enroll = 4,
    Pending = 5,
}

impl Decision {
    pub fn from_code(code: u64) -> Option<Decision> {
        Some(match code {
            1 => Decision::Allow,
            2 => Decision::Deny,
            3 => Decision::Challenge,
            4 => Decision::Enroll,
            5 => Decision::Pending,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Challenge => "challenge",
            Decision::Enroll => "enroll",
            Decision::Pending => "pending",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Decision::Allow | Decision::Deny)
    }
}

/// An output value: a name, its type and its first outcome word, or its
/// value when the type has no words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    pub ty: ValueType,
    /// The first outcome word; unused when `value` is given.
    pub offset: u32,
    /// The value in its JSON output form, computed at compile time. Present
    /// exactly when `ty` has no words (see [`ValueType::has_words`]), and
    /// left out of the serialized form otherwise, so that programs without
    /// such outputs keep their bytes and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// A place in a flow that can make the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub decision: Decision,
    pub reason: Option<String>,
    pub attributes: Vec<Output>,
    pub line: u32,
}

/// An `emit` step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emit {
    pub name: String,
    pub attributes: Vec<Output>,
    pub line: u32,
}

/// The outcome words in which the kernel records one step for the audit trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub line: u32,
    /// The step as written, on one line.
    pub text: String,
    /// Outcome word: 1 when evaluation reached the step undecided.
    pub reached: u32,
    /// Outcome words of the guard values (0 or 1).
    pub guards: Vec<u32>,
    /// Outcome word of the selected arm of an `if`; the arm count means none.
    pub arm: Option<u32>,
    /// Outcome word: 1 when this step made the decision.
    pub decided: u32,
    pub role: StepRole,
}

/// The role of a traced step, for coverage reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRole {
    Step,
    /// An `if` chain or `match`; `otherwise` when it has a final `else` arm.
    Branch {
        otherwise: bool,
    },
    /// The entry of an `exception` block; its guard tells whether it was entered.
    Exception,
}

/// One machine instruction of the decision kernel. Registers and slots are
/// `u32` indexes, checked against the flow's sizes when a program is loaded.
/// Boolean values are 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Instr {
    /// `dst = record[slot]`
    Load {
        dst: u32,
        slot: u32,
    },
    /// `dst = value`
    Const {
        dst: u32,
        value: u64,
    },
    /// `outcome[slot] = src`
    Store {
        slot: u32,
        src: u32,
    },
    And {
        dst: u32,
        a: u32,
        b: u32,
    },
    Or {
        dst: u32,
        a: u32,
        b: u32,
    },
    Xor {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// Logical shift right by `b & 63`.
    Shr {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// `dst = (a == b) as u64`
    Eq {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// Signed `dst = (a < b) as u64`
    Lt {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// Signed `dst = (a <= b) as u64`
    Le {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// Saturating signed addition.
    Add {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// Saturating signed subtraction.
    Sub {
        dst: u32,
        a: u32,
        b: u32,
    },
    /// `dst = if cond == 1 { a } else { b }`, without a branch.
    Select {
        dst: u32,
        cond: u32,
        a: u32,
        b: u32,
    },
    /// `dst = (a != 0) as u64`
    Nonzero {
        dst: u32,
        a: u32,
    },
    /// `dst = if a == 1 { u64::MAX } else { 0 }`: a 0/1 value as a mask.
    Mask {
        dst: u32,
        a: u32,
    },
    Popcount {
        dst: u32,
        a: u32,
    },
    /// Hour of day in UTC of a time.
    Hour {
        dst: u32,
        a: u32,
    },
    /// ISO weekday in UTC of a time.
    Weekday {
        dst: u32,
        a: u32,
    },
}

impl Instr {
    /// Returns the register the instruction writes, if it writes one.
    pub fn written(&self) -> Option<u32> {
        match *self {
            Instr::Store { .. } => None,
            Instr::Load { dst, .. }
            | Instr::Const { dst, .. }
            | Instr::And { dst, .. }
            | Instr::Or { dst, .. }
            | Instr::Xor { dst, .. }
            | Instr::Shr { dst, .. }
            | Instr::Eq { dst, .. }
            | Instr::Lt { dst, .. }
            | Instr::Le { dst, .. }
            | Instr::Add { dst, .. }
            | Instr::Sub { dst, .. }
            | Instr::Select { dst, .. }
            | Instr::Nonzero { dst, .. }
            | Instr::Mask { dst, .. }
            | Instr::Popcount { dst, .. }
            | Instr::Hour { dst, .. }
            | Instr::Weekday { dst, .. } => Some(dst),
        }
    }

    /// Returns the instruction with each register it reads replaced by
    /// `read(register)` and the register it writes replaced by
    /// `write(register)`.
    pub fn map_registers(&self, read: impl Fn(u32) -> u32, write: impl Fn(u32) -> u32) -> Instr {
        match *self {
            Instr::Load { dst, slot } => Instr::Load {
                dst: write(dst),
                slot,
            },
            Instr::Const { dst, value } => Instr::Const {
                dst: write(dst),
                value,
            },
            Instr::Store { slot, src } => Instr::Store {
                slot,
                src: read(src),
            },
            Instr::And { dst, a, b } => Instr::And {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Or { dst, a, b } => Instr::Or {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Xor { dst, a, b } => Instr::Xor {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Shr { dst, a, b } => Instr::Shr {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Eq { dst, a, b } => Instr::Eq {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Lt { dst, a, b } => Instr::Lt {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Le { dst, a, b } => Instr::Le {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Add { dst, a, b } => Instr::Add {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Sub { dst, a, b } => Instr::Sub {
                dst: write(dst),
                a: read(a),
                b: read(b),
            },
            Instr::Select { dst, cond, a, b } => Instr::Select {
                dst: write(dst),
                cond: read(cond),
                a: read(a),
                b: read(b),
            },
            Instr::Nonzero { dst, a } => Instr::Nonzero {
                dst: write(dst),
                a: read(a),
            },
            Instr::Mask { dst, a } => Instr::Mask {
                dst: write(dst),
                a: read(a),
            },
            Instr::Popcount { dst, a } => Instr::Popcount {
                dst: write(dst),
                a: read(a),
            },
            Instr::Hour { dst, a } => Instr::Hour {
                dst: write(dst),
                a: read(a),
            },
            Instr::Weekday { dst, a } => Instr::Weekday {
                dst: write(dst),
                a: read(a),
            },
        }
    }

    /// Returns the registers the instruction reads, in operand order.
    pub fn read(&self) -> impl Iterator<Item = u32> {
        let (registers, count) = match *self {
            Instr::Load { .. } | Instr::Const { .. } => ([0; 3], 0),
            Instr::Store { src, .. } => ([src, 0, 0], 1),
            Instr::And { a, b, .. }
            | Instr::Or { a, b, .. }
            | Instr::Xor { a, b, .. }
            | Instr::Shr { a, b, .. }
            | Instr::Eq { a, b, .. }
            | Instr::Lt { a, b, .. }
            | Instr::Le { a, b, .. }
            | Instr::Add { a, b, .. }
            | Instr::Sub { a, b, .. } => ([a, b, 0], 2),
            Instr::Select { cond, a, b, .. } => ([cond, a, b], 3),
            Instr::Nonzero { a, .. }
            | Instr::Mask { a, .. }
            | Instr::Popcount { a, .. }
            | Instr::Hour { a, .. }
            | Instr::Weekday { a, .. } => ([a, 0, 0], 1),
        };
        registers.into_iter().take(count)
    }

    /// Returns the opcode name, as serialized.
    pub fn opcode(&self) -> &'static str {
        match self {
            Instr::Load { .. } => "load",
            Instr::Const { .. } => "const",
            Instr::Store { .. } => "store",
            Instr::And { .. } => "and",
            Instr::Or { .. } => "or",
            Instr::Xor { .. } => "xor",
            Instr::Shr { .. } => "shr",
            Instr::Eq { .. } => "eq",
            Instr::Lt { .. } => "lt",
            Instr::Le { .. } => "le",
            Instr::Add { .. } => "add",
            Instr::Sub { .. } => "sub",
            Instr::Select { .. } => "select",
            Instr::Nonzero { .. } => "nonzero",
            Instr::Mask { .. } => "mask",
            Instr::Popcount { .. } => "popcount",
            Instr::Hour { .. } => "hour",
            Instr::Weekday { .. } => "weekday",
        }
    }
}

/// One compiled flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub name: String,
    /// Indexes of the principal kinds the flow accepts.
    pub kinds: Vec<u32>,
    pub event: Option<String>,
    /// Whether a request may name the flow: it has an event, or it is
    /// declared in the root file and no flow runs it. Other flows are
    /// building blocks, reached only with `run` after their caller's checks.
    pub entry: bool,
    pub registers: u32,
    pub outcome_words: u32,
    /// Words of the role bitset at [`out::AWAITING`].
    pub role_words: u32,
    /// First outcome word of the obligation bitset (one bit per emit).
    pub obligations: u32,
    pub code: Vec<Instr>,
    pub sites: Vec<Site>,
    pub emits: Vec<Emit>,
    pub exceptions: Vec<String>,
    pub steps: Vec<TraceStep>,
}

impl Flow {
    /// Returns the outcome words that contain the trace: each step's reached,
    /// guard, arm and decided words.
    pub fn trace_words(&self) -> impl Iterator<Item = u32> + '_ {
        self.steps.iter().flat_map(|step| {
            step.guards
                .iter()
                .chain(step.arm.iter())
                .chain([&step.reached, &step.decided])
                .copied()
        })
    }

    /// Returns the flow's code without the stores of trace words and
    /// without every instruction whose value only those stores used. The
    /// result writes the same decision, site, option, role, attribute and
    /// obligation words as `code` and leaves the trace words unwritten. It
    /// is still straight-line, so the executed sequence stays the same for
    /// every input.
    pub fn untraced_code(&self) -> Vec<Instr> {
        let mut trace = vec![false; self.outcome_words as usize];
        for word in self.trace_words() {
            if let Some(flag) = trace.get_mut(word as usize) {
                *flag = true;
            }
        }
        // A backward pass over straight-line code: a register is live when
        // a kept instruction after this point reads it before any write.
        let mut live = vec![false; self.registers as usize];
        let mut kept = Vec::with_capacity(self.code.len());
        for instr in self.code.iter().rev() {
            let needed = match (instr, instr.written()) {
                (Instr::Store { slot, .. }, _) => {
                    !trace.get(*slot as usize).copied().unwrap_or(false)
                }
                (_, Some(dst)) => live.get(dst as usize).copied().unwrap_or(true),
                (_, None) => true,
            };
            if !needed {
                continue;
            }
            if let Some(flag) = instr.written().and_then(|dst| live.get_mut(dst as usize)) {
                *flag = false;
            }
            for register in instr.read() {
                if let Some(flag) = live.get_mut(register as usize) {
                    *flag = true;
                }
            }
            kept.push(*instr);
        }
        kept.reverse();
        kept
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyName {
    pub name: String,
    pub version: Option<String>,
}

/// A whole compiled policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub format: String,
    pub version: u32,
    pub policy: Option<PolicyName>,
    pub schema: Schema,
    /// The string pool: every string literal of the policy, sorted; a
    /// string's id is its index.
    pub strings: Vec<String>,
    /// Every role named by an `approve` step, sorted.
    pub roles: Vec<String>,
    pub layout: Layout,
    pub flows: Vec<Flow>,
}

impl Program {
    /// Computes the policy digest: the SHA-256, in hex, of the canonical JSON
    /// form with source line numbers cleared, so that reformatting a policy
    /// keeps its digest while traces still point at the lines of its source.
    pub fn digest(&self) -> String {
        let mut layout_free = self.clone();
        for flow in &mut layout_free.flows {
            flow.sites.iter_mut().for_each(|site| site.line = 0);
            flow.emits.iter_mut().for_each(|emit| emit.line = 0);
            flow.steps.iter_mut().for_each(|step| step.line = 0);
        }
        let bytes = serde_json::to_vec(&layout_free).unwrap_or_default();
        let hash = Sha256::digest(&bytes);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn flow(&self, name: &str) -> Option<(usize, &Flow)> {
        self.flows
            .iter()
            .enumerate()
            .find(|(_, flow)| flow.name == name)
    }

    /// Checks every index in the program against the sizes it declares, so
    /// the kernel can run without a failed bounds check. Returns the first
    /// problem found.
    pub fn verify(&self) -> Result<(), String> {
        if self.format != FORMAT || self.version != FORMAT_VERSION {
            return Err(format!(
                "unsupported bytecode format `{}` version {} (this runtime reads `{FORMAT}` version {FORMAT_VERSION})",
                self.format, self.version
            ));
        }
        let minimum = slot::ROLES + slot::WORDS_PER_ROLE * self.roles.len() as u32;
        if self.layout.words < minimum {
            return Err(format!(
                "record of {} words is smaller than its fixed part",
                self.layout.words
            ));
        }
        let enums = self.schema.enums.len();
        let attributes = self
            .schema
            .kinds
            .iter()
            .flat_map(|kind| &kind.attributes)
            .chain(&self.schema.context)
            .map(|attribute| (&attribute.name, &attribute.ty))
            .chain(self.schema.switches.iter().map(|s| (&s.name, &s.ty)));
        for (name, ty) in attributes {
            if let Some(index) = ty.unknown_enum(enums) {
                return Err(format!(
                    "attribute `{name}` names enum {index}, but the schema declares {enums} enums"
                ));
            }
        }
        // Binding writes each attribute's words and each string slot
        // without a bounds check of its own.
        let words = self.layout.words;
        let slots = self
            .schema
            .kinds
            .iter()
            .flat_map(|kind| &kind.attributes)
            .chain(&self.schema.context)
            .map(|attribute| (&attribute.name, attribute.slot, &attribute.ty))
            .chain(
                self.schema
                    .switches
                    .iter()
                    .map(|s| (&s.name, s.slot, &s.ty)),
            );
        for (name, slot, ty) in slots {
            let end = u64::from(slot) + u64::from(ty.words(self.layout.string_set_words));
            if slot < minimum || end > u64::from(words) {
                return Err(format!(
                    "attribute `{name}` occupies record words {slot}..{end}, outside the {words}-word record's attribute part"
                ));
            }
        }
        if let Some(slot) = self.layout.string_slots.iter().find(|&&slot| slot >= words) {
            return Err(format!(
                "string slot {slot} is out of range (limit {words})"
            ));
        }
        let kinds = self.schema.kinds.len();
        for flow in &self.flows {
            if let Some(kind) = flow.kinds.iter().find(|&&kind| kind as usize >= kinds) {
                return Err(format!(
                    "flow `{}` accepts principal kind {kind}, but the schema declares {kinds} kinds",
                    flow.name
                ));
            }
        }
        for flow in &self.flows {
            verify_flow(flow, &self.layout, enums)
                .map_err(|message| format!("flow `{}`: {message}", flow.name))?;
        }
        Ok(())
    }
}

fn verify_flow(flow: &Flow, layout: &Layout, enums: usize) -> Result<(), String> {
    let registers = flow.registers;
    let record_words = layout.words;
    let check = |value: u32, limit: u32, what: &str| {
        if value < limit {
            Ok(())
        } else {
            Err(format!("{what} {value} is out of range (limit {limit})"))
        }
    };
    if flow.outcome_words < out::AWAITING + flow.role_words {
        return Err("outcome record is too small".to_string());
    }
    for (index, instr) in flow.code.iter().enumerate() {
        let result = match *instr {
            Instr::Load { dst, slot } => {
                check(dst, registers, "register").and(check(slot, record_words, "record slot"))
            }
            Instr::Const { dst, .. } => check(dst, registers, "register"),
            Instr::Store { slot, src } => check(src, registers, "register").and(check(
                slot,
                flow.outcome_words,
                "outcome slot",
            )),
            Instr::And { dst, a, b }
            | Instr::Or { dst, a, b }
            | Instr::Xor { dst, a, b }
            | Instr::Shr { dst, a, b }
            | Instr::Eq { dst, a, b }
            | Instr::Lt { dst, a, b }
            | Instr::Le { dst, a, b }
            | Instr::Add { dst, a, b }
            | Instr::Sub { dst, a, b } => check(dst, registers, "register")
                .and(check(a, registers, "register"))
                .and(check(b, registers, "register")),
            Instr::Select { dst, cond, a, b } => check(dst, registers, "register")
                .and(check(cond, registers, "register"))
                .and(check(a, registers, "register"))
                .and(check(b, registers, "register")),
            Instr::Nonzero { dst, a }
            | Instr::Mask { dst, a }
            | Instr::Popcount { dst, a }
            | Instr::Hour { dst, a }
            | Instr::Weekday { dst, a } => {
                check(dst, registers, "register").and(check(a, registers, "register"))
            }
        };
        result.map_err(|message| format!("instruction {index}: {message}"))?;
    }
    let outputs = flow
        .sites
        .iter()
        .flat_map(|s| &s.attributes)
        .chain(flow.emits.iter().flat_map(|e| &e.attributes));
    for output in outputs {
        if let Some(index) = output.ty.unknown_enum(enums) {
            return Err(format!(
                "output `{}` names enum {index}, but the schema declares {enums} enums",
                output.name
            ));
        }
        match (output.ty.has_words(), &output.value) {
            (true, None) => {
                let end = output
                    .offset
                    .saturating_add(output.ty.words(layout.string_set_words));
                check(end, flow.outcome_words + 1, "output end")?;
            }
            (false, Some(_)) => {}
            (true, Some(_)) => {
                return Err(format!(
                    "output `{}` gives a constant value, but its type is held in outcome words",
                    output.name
                ))
            }
            (false, None) => {
                return Err(format!(
                    "output `{}` has no constant value, and outcome words cannot hold its type; \
                     rebuild the policy with this version of the compiler",
                    output.name
                ))
            }
        }
    }
    for step in &flow.steps {
        for offset in step
            .guards
            .iter()
            .chain(step.arm.iter())
            .chain([&step.reached, &step.decided])
        {
            check(*offset, flow.outcome_words, "trace offset")?;
        }
    }
    let obligation_words = (flow.emits.len() as u32).div_ceil(64);
    check(
        flow.obligations + obligation_words,
        flow.outcome_words + 1,
        "obligation offset",
    )?;
    Ok(())
}

/// Factor names by bit, for rendering.
pub fn factor_name(index: usize) -> &'static str {
    Factor::from_index(index).map(Factor::name).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_size_is_pinned() {
        assert_eq!(std::mem::size_of::<Instr>(), 24);
    }
}
