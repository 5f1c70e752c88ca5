//! Lowering: the checked program to straight-line kernel code over virtual
//! registers (the IR), plus the record layout and output metadata.
//!
//! Every guard is evaluated, every step is predicated on a 0/1 register, and
//! the outcome is assembled with `select`, so the code has no branch that
//! depends on input. The invariants, per flow:
//!
//! - `undecided` is 1 until some step decides; a step takes effect only
//!   where `path & undecided` is 1 (`path`: the step's block was selected).
//!   Traces, obligations and exceptions read it.
//! - A deciding site is enabled where its path and its condition hold. The
//!   verdict and awaiting words come from the first enabled site. Sites
//!   are taken in blocks of [`SITES_PER_BLOCK`]. Each block selects over
//!   its sites from the last to the first, so that an earlier enabled site
//!   overrides the later ones, and it selects a nested block of steps as a
//!   whole under the condition that opens it (see
//!   [`FlowBuilder::select_sites`]). The first block whose choice is not
//!   the empty verdict 0 decides. The verdict and awaiting words do not
//!   read `undecided`, so the decision kernel keeps its chain of `and`s
//!   only where obligations or exceptions read it.

use std::collections::{BTreeSet, HashMap};

use authflow_runtime::factor::{self, Factor};
use authflow_runtime::program::{
    out, slot, Attribute, Decision, Emit, EnumType, Flow, Instr, Kind, Layout, Output, PolicyName,
    Program, Schema, Site, StepRole, Switch, TraceStep, ValueType, Verdict, FORMAT, FORMAT_VERSION,
};

use crate::check::{Checked, Compare, Input, Requirement, SetTest, TExpr, TKind, TStep, TStepKind};
use crate::types::{ConstValue, Type};

/// How many deciding sites one selection covers. Every site's condition
/// stays live until its block is selected, so the block size bounds the
/// registers that a long flow holds at once.
const SITES_PER_BLOCK: usize = 16;

/// A deciding site whose outcome words wait for its block's selection.
struct PendingSite {
    /// 1 where the site's block of steps runs.
    path: u32,
    condition: u32,
    /// The site's [`Verdict`] word, then its awaiting words (0 for a site
    /// that awaits no role).
    words: Vec<u32>,
}

/// One lowered flow before register allocation: code over virtual registers.
pub struct FlowIr {
    pub flow: Flow,
    /// A comment for the instruction at each index, where a step starts.
    pub comments: Vec<(usize, String)>,
}

/// Lowers every flow of a checked program. `sources` contains each file's text
/// for step descriptions in traces.
pub fn lower(checked: &Checked, sources: &[&str]) -> (Program, Vec<FlowIr>) {
    let mut lowering = Lowering::new(checked, sources);
    let flows: Vec<FlowIr> = (0..checked.flows.len())
        .map(|index| lowering.flow(index))
        .collect();
    let program = lowering.program;
    (program, flows)
}

pub fn value_type(ty: &Type) -> ValueType {
    match ty {
        Type::Bool | Type::Error => ValueType::Bool,
        // A bare `none` is an absent optional whose inner type nothing
        // fixes, so it is typed as an optional `Bool`.
        Type::NoneLiteral => ValueType::Optional(Box::new(ValueType::Bool)),
        Type::Int => ValueType::Int,
        Type::String => ValueType::String,
        Type::Duration => ValueType::Duration,
        Type::Time => ValueType::Time,
        Type::Ip => ValueType::Ip,
        Type::Cidr => ValueType::Cidr,
        Type::Factor => ValueType::Factor,
        Type::Enum(index) => ValueType::Enum(*index),
        Type::Set(element) => ValueType::Set(Box::new(value_type(element))),
        Type::EmptySet => ValueType::Set(Box::new(ValueType::String)),
        Type::Optional(inner) => ValueType::Optional(Box::new(value_type(inner))),
    }
}

/// A lowered value: its words, in registers.
type Val = Vec<u32>;

struct Lowering<'a> {
    checked: &'a Checked,
    sources: &'a [&'a str],
    /// Byte offsets of line starts, per file.
    line_starts: Vec<Vec<usize>>,
    program: Program,
    string_ids: HashMap<String, u64>,
    principal_slots: HashMap<(String, ValueType), u32>,
    context_slots: HashMap<String, u32>,
}

impl<'a> Lowering<'a> {
    fn new(checked: &'a Checked, sources: &'a [&'a str]) -> Lowering<'a> {
        let mut strings = BTreeSet::new();
        let mut roles = BTreeSet::new();
        for flow in &checked.flows {
            collect_steps(&flow.body, &mut strings, &mut roles);
        }
        let strings: Vec<String> = strings.into_iter().collect();
        let roles: Vec<String> = roles.into_iter().collect();
        let string_ids = strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u64))
            .collect();

        // Scalar string values (the principal id first) each get a dynamic
        // id, so string sets need one bit per pool string and per slot.
        let is_string = |ty: &Type| {
            matches!(ty, Type::String)
                || matches!(ty, Type::Optional(inner) if **inner == Type::String)
        };
        let mut principal_keys: Vec<(String, ValueType)> = Vec::new();
        for kind in &checked.kinds {
            for (name, ty) in &kind.attributes {
                let key = (name.clone(), value_type(ty));
                if name != "id" && name != "enrolled" && !principal_keys.contains(&key) {
                    principal_keys.push(key);
                }
            }
        }
        let string_slot_count = 1
            + principal_keys
                .iter()
                .filter(|(_, ty)| is_string_type(ty))
                .count()
            + checked
                .context
                .iter()
                .filter(|(_, ty)| is_string(ty))
                .count()
            + checked.switches.iter().filter(|s| is_string(&s.ty)).count();
        let string_set_words = ((strings.len() + string_slot_count) as u32)
            .div_ceil(64)
            .max(1);

        let mut next = slot::ROLES + slot::WORDS_PER_ROLE * roles.len() as u32;
        let mut string_slots = vec![slot::PRINCIPAL_ID];
        let mut allocate = |ty: &ValueType, string_slots: &mut Vec<u32>| {
            let at = next;
            if is_string_type(ty) {
                // An optional string's id follows its presence word.
                string_slots.push(if matches!(ty, ValueType::Optional(_)) {
                    at + 1
                } else {
                    at
                });
            }
            next += ty.words(string_set_words);
            at
        };
        let mut principal_slots = HashMap::new();
        for key in &principal_keys {
            let at = allocate(&key.1, &mut string_slots);
            principal_slots.insert(key.clone(), at);
        }
        let mut context_slots = HashMap::new();
        let mut context = Vec::new();
        for (name, ty) in &checked.context {
            let ty = value_type(ty);
            let at = allocate(&ty, &mut string_slots);
            context_slots.insert(name.clone(), at);
            context.push(Attribute {
                name: name.clone(),
                ty,
                slot: at,
            });
        }
        let enum_variants = checked.enum_variants();
        let mut switches = Vec::new();
        for switch in &checked.switches {
            let ty = value_type(&switch.ty);
            let at = allocate(&ty, &mut string_slots);
            switches.push(Switch {
                name: switch.name.clone(),
                ty,
                slot: at,
                default: switch.default.to_json(&enum_variants),
            });
        }
        let kinds = checked
            .kinds
            .iter()
            .map(|kind| Kind {
                name: kind.name.clone(),
                attributes: kind
                    .attributes
                    .iter()
                    .filter(|(name, _)| name != "id" && name != "enrolled")
                    .map(|(name, ty)| {
                        let ty = value_type(ty);
                        let at = principal_slots[&(name.clone(), ty.clone())];
                        Attribute {
                            name: name.clone(),
                            ty,
                            slot: at,
                        }
                    })
                    .collect(),
            })
            .collect();
        let schema = Schema {
            enums: checked
                .enums
                .iter()
                .map(|(name, variants)| EnumType {
                    name: name.clone(),
                    variants: variants.clone(),
                })
                .collect(),
            kinds,
            context,
            switches,
        };
        let program = Program {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            policy: checked.policy.as_ref().map(|(name, version)| PolicyName {
                name: name.clone(),
                version: version.clone(),
            }),
            schema,
            strings,
            roles,
            layout: Layout {
                words: next,
                string_set_words,
                string_slots,
            },
            flows: Vec::new(),
        };
        let line_starts = sources
            .iter()
            .map(|text| {
                std::iter::once(0)
                    .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect()
            })
            .collect();
        Lowering {
            checked,
            sources,
            line_starts,
            program,
            string_ids,
            principal_slots,
            context_slots,
        }
    }

    fn flow(&mut self, index: usize) -> FlowIr {
        let flow = &self.checked.flows[index];
        let mut builder = FlowBuilder::new(self);
        let one = builder.constant(1);
        builder.lower_block(&flow.body, one);
        builder.decide(
            one,
            one,
            Decision::Deny,
            Some("no decision".to_string()),
            Vec::new(),
            flow_line(self, flow.span),
            None,
            None,
        );
        builder.finish();
        let mut lowered = Flow {
            name: flow.name.clone(),
            kinds: flow.kinds.clone(),
            event: flow.event.clone(),
            entry: flow.entry,
            registers: builder.next_register,
            outcome_words: builder.next_out,
            role_words: builder.role_words,
            obligations: builder.obligation_offset,
            code: builder.code,
            sites: builder.sites,
            emits: builder.emits,
            exceptions: builder.exceptions,
            steps: builder.steps,
        };
        if flow.any_kind {
            lowered.kinds = (0..self.checked.kinds.len() as u32).collect();
        }
        FlowIr {
            flow: lowered,
            comments: builder.comments,
        }
    }

    /// Returns the 1-based line of a span's start.
    fn line_of(&self, span: crate::span::Span) -> u32 {
        let file = span.file.0 as usize;
        let text = self.sources.get(file).copied().unwrap_or("");
        let start = (span.start as usize).min(text.len());
        let starts = self
            .line_starts
            .get(file)
            .map(Vec::as_slice)
            .unwrap_or(&[0]);
        starts
            .partition_point(|&line_start| line_start <= start)
            .max(1) as u32
    }
}

fn flow_line(lowering: &Lowering<'_>, span: crate::span::Span) -> u32 {
    lowering.line_of(span)
}

fn is_string_type(ty: &ValueType) -> bool {
    matches!(ty, ValueType::String)
        || matches!(ty, ValueType::Optional(inner) if **inner == ValueType::String)
}

fn collect_steps(steps: &[TStep], strings: &mut BTreeSet<String>, roles: &mut BTreeSet<String>) {
    for step in steps {
        match &step.kind {
            TStepKind::Allow { attributes } | TStepKind::Emit { attributes, .. } => {
                for (_, value) in attributes {
                    collect_expr(value, strings);
                }
            }
            TStepKind::Deny { when, .. } => when.iter().for_each(|w| collect_expr(w, strings)),
            TStepKind::Require {
                within, attempts, ..
            } => within
                .iter()
                .chain(attempts.iter())
                .for_each(|e| collect_expr(e, strings)),
            TStepKind::Enroll { .. } | TStepKind::Run { .. } => {}
            TStepKind::Approve {
                roles: listed,
                within,
            } => {
                roles.extend(listed.iter().cloned());
                within.iter().for_each(|w| collect_expr(w, strings));
            }
            TStepKind::If { arms, otherwise } => {
                for (guard, body) in arms {
                    collect_expr(guard, strings);
                    collect_steps(body, strings, roles);
                }
                if let Some(body) = otherwise {
                    collect_steps(body, strings, roles);
                }
            }
            TStepKind::Exception { when, body, .. } => {
                collect_expr(when, strings);
                collect_steps(body, strings, roles);
            }
        }
    }
}

fn collect_expr(expr: &TExpr, strings: &mut BTreeSet<String>) {
    fn constant(value: &ConstValue, strings: &mut BTreeSet<String>) {
        match value {
            ConstValue::Str(text) => {
                strings.insert(text.clone());
            }
            ConstValue::Set(elements) => elements.iter().for_each(|e| constant(e, strings)),
            _ => {}
        }
    }
    match &expr.kind {
        TKind::Const(value) => constant(value, strings),
        TKind::Input(_) | TKind::Error => {}
        TKind::Not(a)
        | TKind::Neg(a)
        | TKind::IsEmpty(a)
        | TKind::Len(a)
        | TKind::Hour(a)
        | TKind::Weekday(a) => collect_expr(a, strings),
        TKind::IsNone { operand, .. } => collect_expr(operand, strings),
        TKind::And(a, b)
        | TKind::Or(a, b)
        | TKind::Compare(_, a, b)
        | TKind::Coalesce(a, b)
        | TKind::Add(a, b)
        | TKind::Sub(a, b) => {
            collect_expr(a, strings);
            collect_expr(b, strings);
        }
        TKind::Member { element, container } => {
            collect_expr(element, strings);
            collect_expr(container, strings);
        }
        TKind::SetTest { set, other, .. } => {
            collect_expr(set, strings);
            collect_expr(other, strings);
        }
    }
}

struct FlowBuilder<'l, 'a> {
    lowering: &'l Lowering<'a>,
    code: Vec<Instr>,
    comments: Vec<(usize, String)>,
    next_register: u32,
    next_out: u32,
    constants: HashMap<u64, u32>,
    /// The value of every register created by [`FlowBuilder::constant`].
    known: HashMap<u32, u64>,
    /// Registers known to hold 0 or 1.
    booleans: std::collections::HashSet<u32>,
    role_words: u32,
    obligation_offset: u32,
    sites: Vec<Site>,
    emits: Vec<Emit>,
    exceptions: Vec<String>,
    steps: Vec<TraceStep>,
    // Accumulators.
    undecided: u32,
    exception: u32,
    obligation_words: Vec<u32>,
    /// The path of the flow's body, which is always 1.
    root: u32,
    /// For the path of each nested block of steps: the path of the
    /// enclosing block and the condition that narrows it to this one.
    parents: HashMap<u32, (u32, u32)>,
    /// The sites since the last block selection, in flow order.
    pending: Vec<PendingSite>,
    /// The verdict and awaiting words that the blocks selected so far
    /// chose; `None` before the first block.
    chosen: Option<Vec<u32>>,
}

impl<'l, 'a> FlowBuilder<'l, 'a> {
    fn new(lowering: &'l Lowering<'a>) -> FlowBuilder<'l, 'a> {
        let role_words = (lowering.program.roles.len() as u32).div_ceil(64).max(1);
        let mut builder = FlowBuilder {
            lowering,
            code: Vec::new(),
            comments: Vec::new(),
            next_register: 0,
            next_out: out::AWAITING + role_words,
            constants: HashMap::new(),
            known: HashMap::new(),
            booleans: std::collections::HashSet::new(),
            role_words,
            obligation_offset: 0,
            sites: Vec::new(),
            emits: Vec::new(),
            exceptions: Vec::new(),
            steps: Vec::new(),
            undecided: 0,
            exception: 0,
            obligation_words: Vec::new(),
            root: 0,
            parents: HashMap::new(),
            pending: Vec::new(),
            chosen: None,
        };
        builder.undecided = builder.fresh_constant(1);
        builder.booleans.insert(builder.undecided);
        builder.exception = builder.fresh_constant(0);
        builder.root = builder.constant(1);
        builder
    }

    // ---- registers and instructions ----

    fn register(&mut self) -> u32 {
        self.next_register += 1;
        self.next_register - 1
    }

    fn out_words(&mut self, count: u32) -> u32 {
        self.next_out += count;
        self.next_out - count
    }

    /// Returns a register containing `value` that is never written again.
    fn constant(&mut self, value: u64) -> u32 {
        if let Some(&register) = self.constants.get(&value) {
            return register;
        }
        let register = self.fresh_constant(value);
        self.constants.insert(value, register);
        self.known.insert(register, value);
        if value <= 1 {
            self.booleans.insert(register);
        }
        register
    }

    fn boolean(&mut self, register: u32) -> u32 {
        self.booleans.insert(register);
        register
    }

    fn is_boolean(&self, register: u32) -> bool {
        self.booleans.contains(&register)
    }

    /// Folds a bitwise operation whose result the operands already fix.
    fn fold_bitwise(
        &mut self,
        op: fn(u64, u64) -> u64,
        identity: u64,
        absorbing: Option<u64>,
        a: u32,
        b: u32,
    ) -> Option<u32> {
        let (x, y) = (self.known.get(&a).copied(), self.known.get(&b).copied());
        if let (Some(x), Some(y)) = (x, y) {
            return Some(self.constant(op(x, y)));
        }
        if let Some(absorbing) = absorbing {
            if x == Some(absorbing) || y == Some(absorbing) {
                return Some(self.constant(absorbing));
            }
        }
        if x == Some(identity) {
            return Some(b);
        }
        if y == Some(identity) {
            return Some(a);
        }
        None
    }

    /// Creates a register initialized to `value`, free to be overwritten.
    fn fresh_constant(&mut self, value: u64) -> u32 {
        let dst = self.register();
        self.code.push(Instr::Const { dst, value });
        dst
    }

    fn op2(&mut self, make: fn(u32, u32, u32) -> Instr, a: u32, b: u32) -> u32 {
        let dst = self.register();
        self.code.push(make(dst, a, b));
        dst
    }

    fn and(&mut self, a: u32, b: u32) -> u32 {
        if let Some(folded) = self.fold_bitwise(|x, y| x & y, u64::MAX, Some(0), a, b) {
            return folded;
        }
        // 1 is the identity of `and` on 0/1 values.
        let both = self.is_boolean(a) && self.is_boolean(b);
        if self.known.get(&a) == Some(&1) && self.is_boolean(b) {
            return b;
        }
        if self.known.get(&b) == Some(&1) && self.is_boolean(a) {
            return a;
        }
        let dst = self.op2(|dst, a, b| Instr::And { dst, a, b }, a, b);
        if both || self.is_boolean(a) || self.is_boolean(b) {
            self.boolean(dst);
        }
        dst
    }

    fn or(&mut self, a: u32, b: u32) -> u32 {
        if let Some(folded) = self.fold_bitwise(|x, y| x | y, 0, Some(u64::MAX), a, b) {
            return folded;
        }
        let both = self.is_boolean(a) && self.is_boolean(b);
        let dst = self.op2(|dst, a, b| Instr::Or { dst, a, b }, a, b);
        if both {
            self.boolean(dst);
        }
        dst
    }

    fn xor(&mut self, a: u32, b: u32) -> u32 {
        if let Some(folded) = self.fold_bitwise(|x, y| x ^ y, 0, None, a, b) {
            return folded;
        }
        let both = self.is_boolean(a) && self.is_boolean(b);
        let dst = self.op2(|dst, a, b| Instr::Xor { dst, a, b }, a, b);
        if both {
            self.boolean(dst);
        }
        dst
    }

    fn comparison(
        &mut self,
        make: fn(u32, u32, u32) -> Instr,
        fold: fn(u64, u64) -> bool,
        a: u32,
        b: u32,
    ) -> u32 {
        if let (Some(&x), Some(&y)) = (self.known.get(&a), self.known.get(&b)) {
            return self.constant(u64::from(fold(x, y)));
        }
        let dst = self.op2(make, a, b);
        self.boolean(dst)
    }

    fn eq(&mut self, a: u32, b: u32) -> u32 {
        if a == b {
            return self.constant(1);
        }
        self.comparison(|dst, a, b| Instr::Eq { dst, a, b }, |x, y| x == y, a, b)
    }

    fn lt(&mut self, a: u32, b: u32) -> u32 {
        self.comparison(
            |dst, a, b| Instr::Lt { dst, a, b },
            |x, y| (x as i64) < (y as i64),
            a,
            b,
        )
    }

    fn le(&mut self, a: u32, b: u32) -> u32 {
        self.comparison(
            |dst, a, b| Instr::Le { dst, a, b },
            |x, y| (x as i64) <= (y as i64),
            a,
            b,
        )
    }

    fn add(&mut self, a: u32, b: u32) -> u32 {
        if self.known.get(&a) == Some(&0) {
            return b;
        }
        self.op2(|dst, a, b| Instr::Add { dst, a, b }, a, b)
    }

    fn sub(&mut self, a: u32, b: u32) -> u32 {
        self.op2(|dst, a, b| Instr::Sub { dst, a, b }, a, b)
    }

    fn shr(&mut self, a: u32, b: u32) -> u32 {
        if let (Some(&x), Some(&y)) = (self.known.get(&a), self.known.get(&b)) {
            return self.constant(x >> (y & 63));
        }
        self.op2(|dst, a, b| Instr::Shr { dst, a, b }, a, b)
    }

    fn op1(&mut self, make: fn(u32, u32) -> Instr, a: u32) -> u32 {
        let dst = self.register();
        self.code.push(make(dst, a));
        dst
    }

    fn not(&mut self, a: u32) -> u32 {
        let one = self.constant(1);
        self.xor(a, one)
    }

    fn nonzero(&mut self, a: u32) -> u32 {
        if let Some(&x) = self.known.get(&a) {
            return self.constant(u64::from(x != 0));
        }
        if self.is_boolean(a) {
            return a;
        }
        let dst = self.op1(|dst, a| Instr::Nonzero { dst, a }, a);
        self.boolean(dst)
    }

    fn mask(&mut self, a: u32) -> u32 {
        if let Some(&x) = self.known.get(&a) {
            return self.constant((x & 1).wrapping_neg());
        }
        self.op1(|dst, a| Instr::Mask { dst, a }, a)
    }

    fn select(&mut self, cond: u32, a: u32, b: u32) -> u32 {
        match self.known.get(&cond) {
            Some(1) => return a,
            Some(0) => return b,
            _ => {}
        }
        if a == b {
            return a;
        }
        let dst = self.register();
        self.code.push(Instr::Select { dst, cond, a, b });
        if self.is_boolean(a) && self.is_boolean(b) {
            self.boolean(dst);
        }
        dst
    }

    /// Overwrites the accumulator `dst` with `a` where `cond` is 1.
    fn select_into(&mut self, dst: u32, cond: u32, a: u32) {
        if self.known.get(&cond) == Some(&0) {
            return;
        }
        self.code.push(Instr::Select {
            dst,
            cond,
            a,
            b: dst,
        });
    }

    fn load(&mut self, slot: u32) -> u32 {
        let dst = self.register();
        self.code.push(Instr::Load { dst, slot });
        dst
    }

    fn store(&mut self, slot: u32, src: u32) {
        self.code.push(Instr::Store { slot, src });
    }

    /// Computes the `and` of 0/1 values, which is 1 for none.
    fn and_all(&mut self, values: &[u32]) -> u32 {
        let Some((&first, rest)) = values.split_first() else {
            return self.constant(1);
        };
        rest.iter()
            .fold(first, |result, &value| self.and(result, value))
    }

    /// Computes the `or` of 0/1 values, which is 0 for none.
    fn or_all(&mut self, values: &[u32]) -> u32 {
        let Some((&first, rest)) = values.split_first() else {
            return self.constant(0);
        };
        rest.iter()
            .fold(first, |result, &value| self.or(result, value))
    }

    fn words_of(&self, ty: &ValueType) -> u32 {
        ty.words(self.lowering.program.layout.string_set_words)
    }

    // ---- values ----

    fn string_id(&self, text: &str) -> u64 {
        self.lowering
            .string_ids
            .get(text)
            .copied()
            .unwrap_or(u64::MAX)
    }

    fn const_words(&mut self, value: &ConstValue, ty: &Type) -> Val {
        let words = self.const_raw(value, ty);
        words.into_iter().map(|w| self.constant(w)).collect()
    }

    fn const_raw(&self, value: &ConstValue, ty: &Type) -> Vec<u64> {
        if let Type::Optional(inner) = ty {
            let inner_words = self.words_of(&value_type(inner)) as usize;
            return match value {
                ConstValue::None => vec![0; inner_words + 1],
                value => {
                    let mut words = vec![1];
                    words.extend(self.const_raw(value, inner));
                    words
                }
            };
        }
        match value {
            ConstValue::Bool(b) => vec![u64::from(*b)],
            ConstValue::Int(v) | ConstValue::Duration(v) | ConstValue::Time(v) => vec![*v as u64],
            ConstValue::Str(text) => vec![self.string_id(text)],
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
            // An absent value, such as a bare `none`, is all zero words.
            ConstValue::None => vec![0; self.words_of(&value_type(ty)) as usize],
            ConstValue::Set(elements) => self.const_set_raw(elements, ty),
        }
    }

    fn const_set_raw(&self, elements: &[ConstValue], ty: &Type) -> Vec<u64> {
        let string_words = self.lowering.program.layout.string_set_words as usize;
        match ty.element() {
            Some(Type::String) | None => {
                let mut words = vec![0u64; string_words + 1];
                for element in elements {
                    if let ConstValue::Str(text) = element {
                        let id = self.string_id(text) as usize;
                        if let Some(word) = words.get_mut(id / 64) {
                            *word |= 1 << (id % 64);
                        }
                    }
                }
                words[string_words] = elements.len() as u64;
                words
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
        }
    }

    fn input(&mut self, input: &Input, ty: &Type) -> Val {
        let words = self.words_of(&value_type(ty));
        let base = match input {
            Input::Principal(name) if name == "id" => slot::PRINCIPAL_ID,
            Input::Principal(name) if name == "enrolled" => slot::ENROLLED,
            Input::Principal(name) => {
                self.lowering.principal_slots[&(name.clone(), value_type(ty))]
            }
            Input::Context(name) => self.lowering.context_slots[name],
            Input::Switch(index) => self.lowering.program.schema.switches[*index as usize].slot,
            Input::Now => slot::NOW,
            Input::SessionFactors => slot::VERIFIED,
            Input::SessionStartedAt => slot::SESSION_STARTED,
            Input::SessionLastActiveAt => slot::LAST_ACTIVE,
            Input::Failures(factor) => slot::FAILURES + *factor as u32,
            Input::SessionAal => return vec![self.assurance_level()],
            Input::SessionAge | Input::SessionIdle => {
                let now = self.load(slot::NOW);
                let from = self.load(if matches!(input, Input::SessionAge) {
                    slot::SESSION_STARTED
                } else {
                    slot::LAST_ACTIVE
                });
                return vec![self.sub(now, from)];
            }
        };
        let loaded: Val = (0..words).map(|i| self.load(base + i)).collect();
        // INVARIANT: the binder writes 0 or 1 for booleans and presence words.
        match ty {
            Type::Bool => {
                self.boolean(loaded[0]);
            }
            Type::Optional(inner) => {
                self.boolean(loaded[0]);
                if **inner == Type::Bool {
                    self.boolean(loaded[1]);
                }
            }
            _ => {}
        }
        loaded
    }

    /// Computes the 800-63B level (0 to 3) of every verified factor.
    fn assurance_level(&mut self) -> u32 {
        let verified = self.load(slot::VERIFIED);
        let mut level = self.constant(0);
        for l in 1..=3u8 {
            let reached = self.level_reached(verified, l);
            let value = self.constant(u64::from(l));
            level = self.select(reached, value, level);
        }
        level
    }

    fn level_reached(&mut self, counted: u32, level: u8) -> u32 {
        let mut hits = Vec::new();
        for &combination in factor::combinations(level) {
            let mask = self.constant(combination);
            let present = self.and(counted, mask);
            hits.push(self.eq(present, mask));
        }
        self.or_all(&hits)
    }

    fn expr(&mut self, expr: &TExpr) -> Val {
        match &expr.kind {
            TKind::Const(value) => self.const_words(value, &expr.ty),
            TKind::Input(input) => self.input(input, &expr.ty),
            TKind::Error => vec![self.constant(0)],
            TKind::Not(a) => {
                let a = self.expr(a)[0];
                vec![self.not(a)]
            }
            TKind::Neg(a) => {
                let a = self.expr(a)[0];
                let zero = self.constant(0);
                vec![self.sub(zero, a)]
            }
            TKind::And(a, b) => {
                let (a, b) = (self.expr(a)[0], self.expr(b)[0]);
                vec![self.and(a, b)]
            }
            TKind::Or(a, b) => {
                let (a, b) = (self.expr(a)[0], self.expr(b)[0]);
                vec![self.or(a, b)]
            }
            TKind::Compare(op, a, b) => vec![self.compare(*op, a, b)],
            TKind::IsNone { operand, negated } => {
                let present = self.expr(operand)[0];
                vec![if *negated { present } else { self.not(present) }]
            }
            TKind::Coalesce(a, b) => self.coalesce(a, b, &expr.ty),
            TKind::Add(a, b) => {
                let (a, b) = (self.expr(a)[0], self.expr(b)[0]);
                vec![self.add(a, b)]
            }
            TKind::Sub(a, b) => {
                let (a, b) = (self.expr(a)[0], self.expr(b)[0]);
                vec![self.sub(a, b)]
            }
            TKind::Member { element, container } => vec![self.member(element, container)],
            TKind::SetTest { test, set, other } => vec![self.set_test(*test, set, other)],
            TKind::IsEmpty(set) => {
                let length = self.length(set);
                let zero = self.constant(0);
                vec![self.eq(length, zero)]
            }
            TKind::Len(set) => vec![self.length(set)],
            TKind::Hour(a) => {
                let a = self.expr(a)[0];
                vec![self.op1(|dst, a| Instr::Hour { dst, a }, a)]
            }
            TKind::Weekday(a) => {
                let a = self.expr(a)[0];
                vec![self.op1(|dst, a| Instr::Weekday { dst, a }, a)]
            }
        }
    }

    fn compare(&mut self, op: Compare, a: &TExpr, b: &TExpr) -> u32 {
        let (a, b) = (self.expr(a), self.expr(b));
        match op {
            Compare::Eq | Compare::Ne => {
                let equal: Vec<u32> = a.iter().zip(&b).map(|(&x, &y)| self.eq(x, y)).collect();
                let all = self.and_all(&equal);
                if op == Compare::Eq {
                    all
                } else {
                    self.not(all)
                }
            }
            Compare::Lt => self.lt(a[0], b[0]),
            Compare::Le => self.le(a[0], b[0]),
            Compare::Gt => self.lt(b[0], a[0]),
            Compare::Ge => self.le(b[0], a[0]),
        }
    }

    fn coalesce(&mut self, a: &TExpr, b: &TExpr, result: &Type) -> Val {
        let optional = self.expr(a);
        let fallback = self.expr(b);
        let present = optional[0];
        let result_optional = matches!(result, Type::Optional(_));
        // A non-optional default is treated as present.
        let (fallback_present, fallback_words) = if matches!(b.ty, Type::Optional(_)) {
            (fallback[0], fallback[1..].to_vec())
        } else {
            (self.constant(1), fallback)
        };
        let mut words: Val = optional[1..]
            .iter()
            .zip(&fallback_words)
            .map(|(&x, &y)| self.select(present, x, y))
            .collect();
        if result_optional {
            let either = self.or(present, fallback_present);
            words.insert(0, either);
        }
        words
    }

    fn member(&mut self, element: &TExpr, container: &TExpr) -> u32 {
        // Constant sets of values without bitsets: compare element by element.
        if let (Some(ConstValue::Set(elements)), Some(element_ty)) =
            (container.as_const(), container.ty.element())
        {
            if !matches!(element_ty, Type::String | Type::Factor | Type::Enum(_)) {
                let value = self.expr(element);
                let mut hits = Vec::new();
                for member in elements {
                    hits.push(self.matches_member(&value, member, element_ty));
                }
                return self.or_all(&hits);
            }
        }
        if container.ty == Type::Cidr {
            let ip = self.expr(element);
            let block = self.expr(container);
            return self.in_block(&ip, &block);
        }
        let set = self.expr(container);
        match element.as_const() {
            Some(value) => {
                // A constant element tests a fixed bit.
                let set_ty = container.ty.clone();
                let mut bits = self.const_raw(&ConstValue::Set(vec![value.clone()]), &set_ty);
                if set_ty.element() == Some(&Type::String) {
                    // The last word is the element count, not membership bits.
                    bits.pop();
                }
                let mut hits = Vec::new();
                for (word, bit) in set.iter().zip(bits.iter()) {
                    if *bit != 0 {
                        let mask = self.constant(*bit);
                        let hit = self.and(*word, mask);
                        hits.push(self.nonzero(hit));
                    }
                }
                self.or_all(&hits)
            }
            None => {
                let id = self.expr(element)[0];
                self.test_bit(&set, id, container.ty.element() == Some(&Type::String))
            }
        }
    }

    fn matches_member(&mut self, value: &Val, member: &ConstValue, ty: &Type) -> u32 {
        if let ConstValue::Cidr { .. } = member {
            let block = self.const_words(member, &Type::Cidr);
            return self.in_block(value, &block);
        }
        let words = self.const_words(member, ty);
        let equal: Vec<u32> = value
            .iter()
            .zip(&words)
            .map(|(&x, &y)| self.eq(x, y))
            .collect();
        self.and_all(&equal)
    }

    /// `ip in block`, with both as words: (ip & mask) == network per word,
    /// and the address family of both the same (see `Cidr::contains`).
    fn in_block(&mut self, ip: &Val, block: &Val) -> u32 {
        let high = self.and(ip[0], block[2]);
        let low = self.and(ip[1], block[3]);
        let high_equal = self.eq(high, block[0]);
        let low_equal = self.eq(low, block[1]);
        let matched = self.and(high_equal, low_equal);
        let ip_v4 = self.is_ipv4(ip[0], ip[1]);
        let block_v4 = match (
            self.known.get(&block[0]),
            self.known.get(&block[1]),
            self.known.get(&block[3]),
        ) {
            (Some(&network_high), Some(&network_low), Some(&mask_low)) => {
                let network = (u128::from(network_high) << 64) | u128::from(network_low);
                let v4 = mask_low >> 32 == 0xffff_ffff && authflow_runtime::value::is_ipv4(network);
                self.constant(u64::from(v4))
            }
            _ => {
                // A network is IPv4 when its address is IPv4-mapped and its mask covers the 96-bit prefix.
                let mapped = self.is_ipv4(block[0], block[1]);
                let thirty_two = self.constant(32);
                let mask_top = self.shr(block[3], thirty_two);
                let all = self.constant(0xffff_ffff);
                let covers = self.eq(mask_top, all);
                self.and(mapped, covers)
            }
        };
        let same_family = self.eq(ip_v4, block_v4);
        self.and(matched, same_family)
    }

    /// Tests whether the address in words `high`, `low` is IPv4-mapped.
    fn is_ipv4(&mut self, high: u32, low: u32) -> u32 {
        let zero = self.constant(0);
        let high_zero = self.eq(high, zero);
        let thirty_two = self.constant(32);
        let top = self.shr(low, thirty_two);
        let marker = self.constant(0xffff);
        let mapped = self.eq(top, marker);
        self.and(high_zero, mapped)
    }

    /// Tests bit `id` of a bitset held in words, without indexing by `id`:
    /// every word is shifted and masked by whether it is the right one.
    fn test_bit(&mut self, set: &Val, id: u32, counted: bool) -> u32 {
        let words = if counted {
            &set[..set.len() - 1]
        } else {
            &set[..]
        };
        let six = self.constant(6);
        let word_index = self.shr(id, six);
        let one = self.constant(1);
        let mut hits = Vec::new();
        for (index, &word) in words.iter().enumerate() {
            let shifted = self.shr(word, id);
            let bit = self.and(shifted, one);
            let this = self.constant(index as u64);
            let selected = self.eq(word_index, this);
            hits.push(self.and(bit, selected));
        }
        self.or_all(&hits)
    }

    fn set_test(&mut self, test: SetTest, set: &TExpr, other: &TExpr) -> u32 {
        let counted = set.ty.element() == Some(&Type::String);
        let (a, b) = (self.expr(set), self.expr(other));
        let words = if counted { a.len() - 1 } else { a.len() };
        let mut parts = Vec::new();
        for i in 0..words {
            let common = self.and(a[i], b[i]);
            parts.push(match test {
                SetTest::ContainsAny => self.nonzero(common),
                SetTest::ContainsAll => self.eq(common, b[i]),
            });
        }
        if counted && test == SetTest::ContainsAll && other.as_const().is_none() {
            // A request string set has bits only for strings the policy can
            // name; its other elements are in no constant set. Every element
            // has a bit exactly when the bits add up to the element count.
            let mut represented = self.constant(0);
            for &word in &b[..words] {
                let ones = self.op1(|dst, a| Instr::Popcount { dst, a }, word);
                represented = self.add(represented, ones);
            }
            let complete = self.eq(represented, b[words]);
            parts.push(complete);
        }
        match test {
            SetTest::ContainsAny => self.or_all(&parts),
            SetTest::ContainsAll => self.and_all(&parts),
        }
    }

    fn length(&mut self, set: &TExpr) -> u32 {
        let words = self.expr(set);
        if set.ty.element() == Some(&Type::String) || matches!(set.ty, Type::EmptySet) {
            *words.last().unwrap_or(&0)
        } else {
            self.op1(|dst, a| Instr::Popcount { dst, a }, words[0])
        }
    }

    // ---- steps ----

    /// Records the state that the outcome record carries, once at the end.
    fn finish(&mut self) {
        self.select_block();
        let zero = self.constant(0);
        let chosen = self
            .chosen
            .clone()
            .unwrap_or_else(|| vec![zero; 1 + self.role_words as usize]);
        self.store(out::VERDICT, chosen[0]);
        self.store(out::EXCEPTION, self.exception);
        for (i, &word) in chosen[1..].iter().enumerate() {
            self.store(out::AWAITING + i as u32, word);
        }
        let emit_words = (self.emits.len() as u32).div_ceil(64);
        self.obligation_offset = self.out_words(emit_words);
        for i in 0..emit_words {
            let word = self
                .obligation_words
                .get(i as usize)
                .copied()
                .unwrap_or_else(|| self.constant(0));
            self.store(self.obligation_offset + i, word);
        }
    }

    /// Makes decision `decision` at a new site that fires where `path` and
    /// `condition` are both 1 and no earlier site has fired. Returns a
    /// register that is 1 where it fired, which the trace stores. The
    /// site's outcome words wait among the pending sites until
    /// [`FlowBuilder::select_block`] selects them.
    ///
    /// `undecided` is cleared with `path & condition`, which does not depend
    /// on `undecided`, so each site adds one `and` to the chain of
    /// `undecided` values and the rest of its work runs beside that chain.
    /// Clearing with the site's own `fire` would give the same values, since
    /// `undecided & !(undecided & x) == undecided & !x`.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        path: u32,
        condition: u32,
        decision: Decision,
        reason: Option<String>,
        attributes: Vec<Output>,
        line: u32,
        options: Option<u32>,
        awaiting: Option<Vec<u32>>,
    ) -> u32 {
        let site = self.sites.len() as u64;
        self.sites.push(Site {
            decision,
            reason,
            attributes,
            line,
        });
        let enabled = self.and(path, condition);
        // `fire` includes `undecided`, which this site then clears, so no
        // later site fires where this one did.
        let fire = self.live(enabled);
        let code = self.constant(Verdict::new(decision, site).0);
        let verdict = match options {
            Some(options) => self.or(options, code),
            None => code,
        };
        if self.known.get(&enabled) != Some(&0) {
            let zero = self.constant(0);
            let mut words = vec![verdict];
            let awaiting = awaiting.unwrap_or_default();
            words.extend(
                (0..self.role_words as usize).map(|i| awaiting.get(i).copied().unwrap_or(zero)),
            );
            self.pending.push(PendingSite {
                path,
                condition,
                words,
            });
            if self.pending.len() == SITES_PER_BLOCK {
                self.select_block();
            }
            let blocked = self.not(enabled);
            let undecided = self.undecided;
            self.code.push(Instr::And {
                dst: undecided,
                a: undecided,
                b: blocked,
            });
        }
        fire
    }

    /// Selects the verdict and awaiting words of the first enabled site
    /// among the pending ones, or 0 for each where none is enabled. The
    /// first block whose verdict is not 0 keeps its choice: a site's
    /// verdict word holds its decision code, which is never 0.
    fn select_block(&mut self) {
        let sites = std::mem::take(&mut self.pending);
        if sites.is_empty() {
            return;
        }
        let zero = self.constant(0);
        let none = vec![zero; 1 + self.role_words as usize];
        let root = self.root;
        let block = self.select_sites(&sites, root, none);
        self.chosen = Some(match self.chosen.take() {
            None => block,
            Some(previous) => {
                let undecided = self.eq(previous[0], zero);
                self.select_words(undecided, &block, &previous)
            }
        });
    }

    /// Returns the words of the first site of `sites` that is enabled, or
    /// `after` where none is, assuming that `path` holds. Every site's path
    /// is `path` or a block nested in it. The sites are taken from the last
    /// to the first. A site on `path` itself selects on its condition
    /// alone. A run of sites inside a nested block is selected as a whole,
    /// under the one condition that opens the block, so its sites' own
    /// selections need not test the path again. A site whose path was not
    /// recorded as nested selects on `path & condition`, which is always
    /// correct.
    fn select_sites(&mut self, sites: &[PendingSite], path: u32, after: Vec<u32>) -> Vec<u32> {
        let mut chosen = after;
        let mut end = sites.len();
        while let Some(site) = end.checked_sub(1).map(|last| &sites[last]) {
            if site.path == path {
                chosen = self.select_words(site.condition, &site.words, &chosen);
                end -= 1;
                continue;
            }
            let Some(child) = self.child_toward(path, site.path) else {
                let enabled = self.and(site.path, site.condition);
                chosen = self.select_words(enabled, &site.words, &chosen);
                end -= 1;
                continue;
            };
            let start = (0..end)
                .rev()
                .take_while(|&i| self.is_within(sites[i].path, child))
                .last()
                .unwrap_or(end - 1);
            let inner = self.select_sites(&sites[start..end], child, chosen.clone());
            let opens = self.parents[&child].1;
            chosen = self.select_words(opens, &inner, &chosen);
            end = start;
        }
        chosen
    }

    /// Selects `a` where `condition` is 1 and `b` elsewhere, word by word.
    fn select_words(&mut self, condition: u32, a: &[u32], b: &[u32]) -> Vec<u32> {
        a.iter()
            .zip(b)
            .map(|(&a, &b)| self.select(condition, a, b))
            .collect()
    }

    /// Returns the block directly inside `outer` that contains `path`, or
    /// `None` when `path` is not recorded as nested in `outer`.
    fn child_toward(&self, outer: u32, path: u32) -> Option<u32> {
        let mut current = path;
        // A chain of parents is at most as long as the recorded paths.
        for _ in 0..=self.parents.len() {
            let &(parent, _) = self.parents.get(&current)?;
            if parent == outer {
                return Some(current);
            }
            current = parent;
        }
        None
    }

    /// Returns whether `path` is `block` or recorded as nested in it.
    fn is_within(&self, path: u32, block: u32) -> bool {
        let mut current = path;
        for _ in 0..=self.parents.len() {
            if current == block {
                return true;
            }
            match self.parents.get(&current) {
                Some(&(parent, _)) => current = parent,
                None => return false,
            }
        }
        false
    }

    /// Returns the path of a block nested in `path` that runs where
    /// `condition` holds, and records how it narrows `path`.
    fn narrow(&mut self, path: u32, condition: u32) -> u32 {
        let inner = self.and(path, condition);
        if inner != path && !self.known.contains_key(&inner) {
            self.parents.entry(inner).or_insert((path, condition));
        }
        inner
    }

    /// `path & undecided` now, in a register of its own: `undecided` is an
    /// accumulator that later steps overwrite, so it is never returned as is.
    fn live(&mut self, path: u32) -> u32 {
        let dst = self.register();
        let undecided = self.undecided;
        if self.known.get(&path) == Some(&1) {
            self.code.push(Instr::Or {
                dst,
                a: undecided,
                b: undecided,
            });
        } else {
            self.code.push(Instr::And {
                dst,
                a: path,
                b: undecided,
            });
        }
        self.boolean(dst)
    }

    fn trace_step(
        &mut self,
        step: &TStep,
        reached: u32,
        guards: &[u32],
        arm: Option<u32>,
        decided: u32,
    ) {
        let line = self.lowering.line_of(step.span);
        let text = step.text.clone();
        let reached_at = self.out_words(1);
        self.store(reached_at, reached);
        let guard_offsets: Vec<u32> = guards
            .iter()
            .map(|&g| {
                let at = self.out_words(1);
                self.store(at, g);
                at
            })
            .collect();
        let arm_offset = arm.map(|a| {
            let at = self.out_words(1);
            self.store(at, a);
            at
        });
        let decided_at = self.out_words(1);
        self.store(decided_at, decided);
        let role = match &step.kind {
            TStepKind::If { otherwise, .. } => StepRole::Branch {
                otherwise: otherwise.is_some(),
            },
            TStepKind::Exception { .. } => StepRole::Exception,
            _ => StepRole::Step,
        };
        self.steps.push(TraceStep {
            line,
            text,
            reached: reached_at,
            guards: guard_offsets,
            arm: arm_offset,
            decided: decided_at,
            role,
        });
    }

    fn lower_block(&mut self, steps: &[TStep], path: u32) {
        for step in steps {
            let text = step.text.clone();
            self.comments.push((self.code.len(), text));
            self.lower_step(step, path);
        }
    }

    fn outputs(&mut self, attributes: &[(String, TExpr)]) -> Vec<Output> {
        let mut outputs = Vec::new();
        for (name, value) in attributes {
            let ty = value_type(&value.ty);
            // The checker accepts a value of a type without words only as
            // a constant, and `Program::verify` rejects such an output
            // without its value.
            if let (false, Some(constant)) = (ty.has_words(), value.as_const()) {
                let enums = self.lowering.checked.enum_variants();
                outputs.push(Output {
                    name: name.clone(),
                    ty,
                    offset: 0,
                    value: Some(constant.to_json(&enums)),
                });
                continue;
            }
            let words = self.expr(value);
            let offset = self.out_words(words.len() as u32);
            for (i, &word) in words.iter().enumerate() {
                self.store(offset + i as u32, word);
            }
            outputs.push(Output {
                name: name.clone(),
                ty,
                offset,
                value: None,
            });
        }
        outputs
    }

    fn lower_step(&mut self, step: &TStep, path: u32) {
        let line = self.lowering.line_of(step.span);
        match &step.kind {
            TStepKind::Allow { attributes } => {
                let live = self.live(path);
                let outputs = self.outputs(attributes);
                let always = self.constant(1);
                let fired = self.decide(
                    path,
                    always,
                    Decision::Allow,
                    None,
                    outputs,
                    line,
                    None,
                    None,
                );
                self.trace_step(step, live, &[], None, fired);
            }
            TStepKind::Deny { reason, when } => {
                let live = self.live(path);
                let condition = match when {
                    Some(when) => self.expr(when)[0],
                    None => self.constant(1),
                };
                let fired = self.decide(
                    path,
                    condition,
                    Decision::Deny,
                    Some(reason.clone()),
                    Vec::new(),
                    line,
                    None,
                    None,
                );
                let guards: Vec<u32> = if when.is_some() {
                    vec![condition]
                } else {
                    Vec::new()
                };
                self.trace_step(step, live, &guards, None, fired);
            }
            TStepKind::Require {
                requirement,
                within,
                attempts,
            } => self.require(step, path, *requirement, within.as_ref(), attempts.as_ref()),
            TStepKind::Enroll { requirement } => {
                let live = self.live(path);
                let enrolled = self.load(slot::ENROLLED);
                let (satisfied, options) = self.satisfied(*requirement, enrolled);
                let missing = self.not(satisfied);
                let fired = self.decide(
                    path,
                    missing,
                    Decision::Enroll,
                    None,
                    Vec::new(),
                    line,
                    Some(options),
                    None,
                );
                self.trace_step(step, live, &[satisfied], None, fired);
            }
            TStepKind::Approve { roles, within } => {
                self.approve(step, path, roles, within.as_ref())
            }
            TStepKind::Emit { name, attributes } => {
                let live = self.live(path);
                let index = self.emits.len();
                let outputs = self.outputs(attributes);
                self.emits.push(Emit {
                    name: name.clone(),
                    attributes: outputs,
                    line,
                });
                let word = index / 64;
                while self.obligation_words.len() <= word {
                    let fresh = self.fresh_constant(0);
                    self.obligation_words.push(fresh);
                }
                let live_mask = self.mask(live);
                let bit = self.constant(1 << (index % 64));
                let set = self.and(live_mask, bit);
                let target = self.obligation_words[word];
                self.code.push(Instr::Or {
                    dst: target,
                    a: target,
                    b: set,
                });
                let zero = self.constant(0);
                self.trace_step(step, live, &[], None, zero);
            }
            TStepKind::If { arms, otherwise } => {
                let live = self.live(path);
                let guards: Vec<u32> = arms.iter().map(|(guard, _)| self.expr(guard)[0]).collect();
                // The first true guard selects its arm: index by reverse selection.
                let mut arm = self.constant(arms.len() as u64);
                for (index, &guard) in guards.iter().enumerate().rev() {
                    let value = self.constant(index as u64);
                    arm = self.select(guard, value, arm);
                }
                let zero = self.constant(0);
                self.trace_step(step, live, &guards, Some(arm), zero);
                let mut taken = self.constant(0);
                for ((_, body), &guard) in arms.iter().zip(&guards) {
                    let not_taken = self.not(taken);
                    let first = self.and(not_taken, guard);
                    let arm_path = self.narrow(path, first);
                    self.lower_block(body, arm_path);
                    taken = self.or(taken, guard);
                }
                if let Some(body) = otherwise {
                    let not_taken = self.not(taken);
                    let arm_path = self.narrow(path, not_taken);
                    self.lower_block(body, arm_path);
                }
            }
            TStepKind::Exception { name, when, body } => {
                let live = self.live(path);
                let condition = self.expr(when)[0];
                let enter = self.and(live, condition);
                self.exceptions.push(name.clone());
                let marker = self.constant(self.exceptions.len() as u64);
                self.select_into(self.exception, enter, marker);
                let zero = self.constant(0);
                self.trace_step(step, live, &[condition], None, zero);
                let inner = self.narrow(path, condition);
                self.lower_block(body, inner);
            }
            TStepKind::Run { flow } => {
                let live = self.live(path);
                let zero = self.constant(0);
                self.trace_step(step, live, &[], None, zero);
                let body = &self.lowering.checked.flows[*flow as usize].body;
                self.lower_block(body, path);
            }
        }
    }

    /// Computes the factors that count for a requirement: verified, and
    /// within `D` of now when `within` is given.
    fn counted_factors(&mut self, candidates: u64, within: Option<&TExpr>) -> u32 {
        let verified = self.load(slot::VERIFIED);
        let Some(within) = within else {
            let mask = self.constant(candidates);
            return self.and(verified, mask);
        };
        let limit = self.expr(within)[0];
        let now = self.load(slot::NOW);
        let mut counted = self.constant(0);
        for factor in Factor::ALL {
            if candidates & factor.bit() == 0 {
                continue;
            }
            // An unverified factor's time is i64::MIN, so its age saturates
            // to i64::MAX. A `within` that saturates reaches that age too, so
            // the verified mask below keeps such a factor out.
            let at = self.load(slot::VERIFIED_AT + factor as u32);
            let age = self.sub(now, at);
            let fresh = self.le(age, limit);
            let fresh_mask = self.mask(fresh);
            let bit = self.constant(factor.bit());
            let set = self.and(fresh_mask, bit);
            counted = self.or(counted, set);
        }
        self.and(counted, verified)
    }

    /// Tests whether `counted` meets the requirement; also returns the
    /// factors to offer if not.
    fn satisfied(&mut self, requirement: Requirement, counted: u32) -> (u32, u32) {
        let (offer, satisfied) = match requirement {
            Requirement::Any(bits) => {
                let mask = self.constant(bits);
                let present = self.and(counted, mask);
                (bits, self.nonzero(present))
            }
            Requirement::All(bits) => {
                let mask = self.constant(bits);
                let present = self.and(counted, mask);
                (bits, self.eq(present, mask))
            }
            Requirement::Level(level) => (
                factor::level_factors(level),
                self.level_reached(counted, level),
            ),
        };
        let offer = self.constant(offer);
        let all = self.constant(u64::MAX);
        let inverse = self.xor(counted, all);
        let options = self.and(offer, inverse);
        (satisfied, options)
    }

    fn candidates(requirement: Requirement) -> u64 {
        match requirement {
            Requirement::Any(bits) | Requirement::All(bits) => bits,
            Requirement::Level(level) => factor::level_factors(level),
        }
    }

    fn require(
        &mut self,
        step: &TStep,
        path: u32,
        requirement: Requirement,
        within: Option<&TExpr>,
        attempts: Option<&TExpr>,
    ) {
        let line = self.lowering.line_of(step.span);
        let live = self.live(path);
        let candidates = Self::candidates(requirement);
        let counted = self.counted_factors(candidates, within);
        let (satisfied, options) = self.satisfied(requirement, counted);
        let mut guards = vec![satisfied];
        let mut fired = self.constant(0);
        if let Some(attempts) = attempts {
            let limit = self.expr(attempts)[0];
            let mut failures = self.constant(0);
            for factor in Factor::ALL {
                if candidates & factor.bit() != 0 {
                    let count = self.load(slot::FAILURES + factor as u32);
                    failures = self.add(failures, count);
                }
            }
            let locked = self.le(limit, failures);
            guards.push(locked);
            let lock = self.decide(
                path,
                locked,
                Decision::Deny,
                Some("too many failed attempts".to_string()),
                Vec::new(),
                line,
                None,
                None,
            );
            fired = self.or(fired, lock);
        }
        let missing = self.not(satisfied);
        let challenge = self.decide(
            path,
            missing,
            Decision::Challenge,
            None,
            Vec::new(),
            line,
            Some(options),
            None,
        );
        fired = self.or(fired, challenge);
        self.trace_step(step, live, &guards, None, fired);
    }

    fn approve(&mut self, step: &TStep, path: u32, roles: &[String], within: Option<&TExpr>) {
        let line = self.lowering.line_of(step.span);
        let live = self.live(path);
        let universe = &self.lowering.program.roles;
        let indexes: Vec<usize> = roles
            .iter()
            .filter_map(|r| universe.iter().position(|u| u == r))
            .collect();
        let deadline = within.map(|within| {
            let limit = self.expr(within)[0];
            let started = self.load(slot::FLOW_STARTED);
            self.add(started, limit)
        });
        let mut in_time = Vec::new();
        let mut refusals = Vec::new();
        for &index in &indexes {
            let base = slot::ROLES + slot::WORDS_PER_ROLE * index as u32;
            let granted = self.load(base);
            let granted_ok = match deadline {
                Some(deadline) => {
                    let at = self.load(base + 1);
                    let before = self.le(at, deadline);
                    self.and(granted, before)
                }
                None => granted,
            };
            in_time.push(granted_ok);
            refusals.push(self.load(base + 2));
        }
        let refused = self.or_all(&refusals);
        let approved = self.and_all(&in_time);
        let mut guards = vec![approved, refused];
        let mut fired = self.decide(
            path,
            refused,
            Decision::Deny,
            Some("approval refused".to_string()),
            Vec::new(),
            line,
            None,
            None,
        );
        if let Some(deadline) = deadline {
            let now = self.load(slot::NOW);
            let past = self.lt(deadline, now);
            guards.push(past);
            let waiting = self.not(approved);
            let expired = self.and(waiting, past);
            let expiry = self.decide(
                path,
                expired,
                Decision::Deny,
                Some("approval expired".to_string()),
                Vec::new(),
                line,
                None,
                None,
            );
            fired = self.or(fired, expiry);
        }
        // Roles still awaited, as a bitset over the role universe.
        let mut words: Vec<u32> = (0..self.role_words).map(|_| self.constant(0)).collect();
        for (&index, &ok) in indexes.iter().zip(&in_time) {
            let missing = self.not(ok);
            let missing_mask = self.mask(missing);
            let bit = self.constant(1 << (index % 64));
            let set = self.and(missing_mask, bit);
            words[index / 64] = self.or(words[index / 64], set);
        }
        let waiting = self.not(approved);
        let pending = self.decide(
            path,
            waiting,
            Decision::Pending,
            None,
            Vec::new(),
            line,
            None,
            Some(words),
        );
        fired = self.or(fired, pending);
        self.trace_step(step, live, &guards, None, fired);
    }
}
