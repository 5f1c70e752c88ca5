//! The embedding API: load a compiled policy, start a flow from a request,
//! resume it with events, and read outcomes and traces.
//!
//! A [`FlowState`] is plain data: the policy digest, the flow, and the
//! canonical request and events so far. The host stores it between steps;
//! every evaluation validates it again and re-evaluates the flow from the
//! top, so the engine keeps no hidden state.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::bind::{self, Facts, InputError, Routes, Strings};
use crate::kernel;
use crate::outcome::{self, Outcome, Trace};
use crate::program::{Instr, Program};
use crate::typed::RequestBuilder;
use crate::value::format_time;

/// The reason an evaluation produced no outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// The request or an event is invalid.
    Input(InputError),
    /// The state was started under another policy version.
    PolicyMismatch { state: String, policy: String },
    /// The native kernel and the bytecode kernel computed different outcome
    /// words for the same input, so neither result is trusted.
    KernelMismatch { flow: String },
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Input(error) => error.fmt(f),
            EvalError::PolicyMismatch { state, policy } => write!(
                f,
                "the flow state was started under another policy version ({state}); the loaded policy is \
                 {policy}; re-evaluate the state under the new version explicitly to continue"
            ),
            EvalError::KernelMismatch { flow } => write!(
                f,
                "the native and bytecode kernels computed different outcomes for flow `{flow}`; \
                 no decision is made"
            ),
        }
    }
}

impl std::error::Error for EvalError {}

impl From<InputError> for EvalError {
    fn from(error: InputError) -> EvalError {
        EvalError::Input(error)
    }
}

/// The serializable state of one flow instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowState {
    /// Digest of the policy the flow was started under.
    pub policy: String,
    pub flow: String,
    /// A stable id: a hash of the canonical request.
    pub instance: String,
    /// The request as validated, with `now` filled in.
    pub request: Json,
    /// Events applied so far, in order.
    pub events: Vec<Json>,
}

impl FlowState {
    /// Reads a stored state, which must be a JSON object with exactly the
    /// keys of [`FlowState`]. An array of the same values is rejected.
    pub fn from_json(json: Json) -> Result<FlowState, InputError> {
        if !json.is_object() {
            return Err(InputError {
                field: String::new(),
                message: format!(
                    "a flow state is a JSON object, found {}",
                    bind::kind_of(&json)
                ),
            });
        }
        serde_json::from_value(json).map_err(|error| InputError {
            field: String::new(),
            message: error.to_string(),
        })
    }
}

/// The on-disk form of a compiled policy: the program and its digest.
#[derive(Serialize, Deserialize)]
struct Bytecode {
    digest: String,
    program: Program,
}

/// Reusable buffers for the kernel, sized for the largest flow of a policy.
pub struct Scratch {
    pub record: Vec<u64>,
    pub registers: Vec<u64>,
    pub outcome: Vec<u64>,
    /// The native kernel's outcome during a traced evaluation, compared
    /// with the bytecode kernel's.
    pub check: Vec<u64>,
}

/// A loaded, verified policy.
pub struct Policy {
    program: Program,
    digest: String,
    pool: HashMap<String, u64>,
    slot_index: HashMap<u32, usize>,
    /// Each flow's decision kernel: its code without the trace stores
    /// ([`crate::program::Flow::untraced_code`]).
    untraced: Vec<Vec<Instr>>,
    /// The outcome words each decision kernel stores, sorted.
    decision_words: Vec<Vec<u32>>,
    /// The decision kernels compiled to machine code; `None` runs the
    /// bytecode kernel.
    native: Option<crate::native::NativeProgram>,
    /// Each switch's default, validated when the policy is loaded.
    switch_defaults: Vec<Option<bind::Value>>,
    /// Each string slot's record word and index, sorted by word.
    string_slots: Vec<(u32, usize)>,
    /// The pool's indexes ordered by string length, then by the strings, so
    /// a lookup compares bytes only with strings of its own length.
    pool_by_length: Vec<u32>,
    /// The maximum number of attributes that one principal kind, the context
    /// or the switches declare.
    widest_attributes: usize,
    /// The flows a request may name.
    routes: Routes,
}

/// Orders strings by length, then bytewise: comparing two strings of
/// different lengths reads no bytes.
fn by_length(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The kernel that evaluates flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The bytecode interpreter: runs everywhere.
    Bytecode,
    /// Machine code compiled with Cranelift when the policy is loaded.
    Native,
}

/// Runs verified bytecode that uses `registers` registers, with the fixed
/// register file of [`kernel::run_small`] when they fit in it.
fn run_bytecode(
    code: &[Instr],
    registers: usize,
    record: &[u64],
    buffer: &mut [u64],
    outcome: &mut [u64],
) {
    match buffer.first_chunk_mut::<{ kernel::FILE }>() {
        Some(file) if registers <= kernel::FILE => kernel::run_small(code, record, file, outcome),
        _ => kernel::run(code, record, &mut buffer[..registers], outcome),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Computes the flow instance id: a hash of the canonical request, so it
/// survives a policy migration and a request changed by mistake no longer
/// matches it. Anyone can recompute it, so it is not a signature: a host
/// that lets clients carry the state must authenticate the state itself.
fn instance_id(request: &Json) -> String {
    let hash = Sha256::digest(serde_json::to_vec(request).unwrap_or_default());
    hex(&hash[..8])
}

/// Rejects a state with more than [`bind::MAX_EVENTS`] events.
fn check_event_count(state: &FlowState) -> Result<(), InputError> {
    if state.events.len() > bind::MAX_EVENTS {
        return Err(InputError {
            field: "events".into(),
            message: format!(
                "a flow state holds at most {} events, found {}",
                bind::MAX_EVENTS,
                state.events.len()
            ),
        });
    }
    Ok(())
}

impl Policy {
    /// Verifies a program and prepares it for evaluation.
    pub fn new(program: Program) -> Result<Policy, String> {
        program.verify()?;
        let digest = program.digest();
        let pool = program
            .strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u64))
            .collect();
        let slot_index: HashMap<u32, usize> = program
            .layout
            .string_slots
            .iter()
            .enumerate()
            .map(|(i, &slot)| (slot, i))
            .collect();
        let untraced: Vec<Vec<Instr>> = program.flows.iter().map(|f| f.untraced_code()).collect();
        let decision_words = untraced
            .iter()
            .map(|code| {
                let mut words: Vec<u32> = code
                    .iter()
                    .filter_map(|instr| match *instr {
                        Instr::Store { slot, .. } => Some(slot),
                        _ => None,
                    })
                    .collect();
                words.sort_unstable();
                words.dedup();
                words
            })
            .collect();
        let switch_defaults = program
            .schema
            .switches
            .iter()
            .map(|s| bind::value(&program, &s.default, &s.ty, &format!("switches.{}", s.name)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("invalid switch default: {error}"))?;
        if program.strings.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err("the string pool is not sorted without duplicates".to_string());
        }
        let mut string_slots: Vec<(u32, usize)> =
            slot_index.iter().map(|(&s, &i)| (s, i)).collect();
        string_slots.sort_unstable();
        let mut pool_by_length: Vec<u32> = (0..program.strings.len() as u32).collect();
        pool_by_length.sort_unstable_by(|&a, &b| {
            by_length(&program.strings[a as usize], &program.strings[b as usize])
        });
        let schema = &program.schema;
        let widest_attributes = schema
            .kinds
            .iter()
            .map(|kind| kind.attributes.len())
            .chain([schema.context.len(), schema.switches.len()])
            .max()
            .unwrap_or(0);
        Ok(Policy {
            program,
            digest,
            pool,
            slot_index,
            untraced,
            decision_words,
            native: None,
            switch_defaults,
            string_slots,
            pool_by_length,
            widest_attributes,
            routes: Routes::Entries,
        })
    }

    /// Lets requests name every flow, including the building blocks that
    /// other flows `run` and the flows of imported files. Test runners and
    /// proofs use it to exercise such a flow on its own. A host that serves
    /// requests keeps the default, under which a request names only an entry
    /// flow ([`crate::program::Flow::entry`]).
    pub fn reach_all_flows(&mut self) {
        self.routes = Routes::All;
    }

    /// Returns which flows a request may name.
    pub fn routes(&self) -> Routes {
        self.routes
    }

    /// Verifies a program and prepares it for evaluation with `backend`. With
    /// [`Backend::Native`] on a target Cranelift cannot compile for, the
    /// policy falls back to the bytecode kernel, which [`Policy::backend`] reports.
    pub fn with_backend(program: Program, backend: Backend) -> Result<Policy, String> {
        let mut policy = Policy::new(program)?;
        if backend == Backend::Native {
            policy.native = crate::native::compile(&policy.decision_program()).ok();
        }
        Ok(policy)
    }

    /// Returns the kernel that evaluates this policy's flows.
    pub fn backend(&self) -> Backend {
        if self.native.is_some() {
            Backend::Native
        } else {
            Backend::Bytecode
        }
    }

    /// Returns the native code of the decision kernels, when the backend is
    /// native.
    pub fn native(&self) -> Option<&crate::native::NativeProgram> {
        self.native.as_ref()
    }

    /// Returns the program with each flow's code replaced by its decision
    /// kernel, which is what the native backend compiles.
    pub fn decision_program(&self) -> Program {
        let mut program = self.program.clone();
        for (flow, code) in program.flows.iter_mut().zip(&self.untraced) {
            flow.code.clone_from(code);
        }
        program
    }

    /// Loads bytecode written by [`Policy::to_bytecode`]; a changed program
    /// no longer matches its digest and is rejected.
    pub fn load(bytecode: &str) -> Result<Policy, String> {
        Policy::load_with_backend(bytecode, Backend::Bytecode)
    }

    /// Like [`Policy::load`], evaluating with `backend`.
    pub fn load_with_backend(bytecode: &str, backend: Backend) -> Result<Policy, String> {
        let parsed: Bytecode =
            serde_json::from_str(bytecode).map_err(|error| format!("invalid bytecode: {error}"))?;
        let policy = Policy::with_backend(parsed.program, backend)?;
        if policy.digest != parsed.digest {
            return Err(format!(
                "bytecode digest mismatch: the file says {}, the program hashes to {}",
                parsed.digest, policy.digest
            ));
        }
        Ok(policy)
    }

    pub fn to_bytecode(&self) -> String {
        let bytecode = Bytecode {
            digest: self.digest.clone(),
            program: self.program.clone(),
        };
        serde_json::to_string(&bytecode).unwrap_or_default()
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Buffers large enough for every flow of this policy.
    pub fn scratch(&self) -> Scratch {
        let registers = self
            .program
            .flows
            .iter()
            .map(|f| f.registers as usize)
            .max()
            .unwrap_or(0)
            .max(kernel::FILE);
        let outcome = self
            .program
            .flows
            .iter()
            .map(|f| f.outcome_words)
            .max()
            .unwrap_or(0) as usize;
        Scratch {
            record: vec![0; self.program.layout.words as usize],
            registers: vec![0; registers],
            outcome: vec![0; outcome],
            check: vec![0; if self.native.is_some() { outcome } else { 0 }],
        }
    }

    /// Validates a request and starts a flow. `default_now` (microseconds
    /// since the epoch) is the time when the request gives no `now`.
    pub fn start(&self, request: &Json, default_now: i64) -> Result<FlowState, InputError> {
        let validated = bind::request_with(&self.program, request, default_now, self.routes)?;
        let mut canonical = request.clone();
        if let Some(map) = canonical.as_object_mut() {
            map.entry("now")
                .or_insert_with(|| Json::from(format_time(default_now)));
        }
        let flow = self.program.flows[validated.flow].name.clone();
        let instance = instance_id(&canonical);
        Ok(FlowState {
            policy: self.digest.clone(),
            flow,
            instance,
            request: canonical,
            events: Vec::new(),
        })
    }

    /// Like [`Policy::start`], from JSON text (duplicate keys are rejected).
    pub fn start_json(&self, text: &str, default_now: i64) -> Result<FlowState, InputError> {
        let json = crate::json::parse(text).map_err(|message| InputError {
            field: String::new(),
            message,
        })?;
        self.start(&json, default_now)
    }

    /// Starts a flow from any serializable request type.
    pub fn start_typed<T: Serialize>(
        &self,
        request: &T,
        default_now: i64,
    ) -> Result<FlowState, InputError> {
        let json = serde_json::to_value(request).map_err(|error| InputError {
            field: String::new(),
            message: error.to_string(),
        })?;
        self.start(&json, default_now)
    }

    /// Appends an event to a state after validating the whole input again.
    pub fn resume(&self, state: &FlowState, event: &Json) -> Result<FlowState, EvalError> {
        let mut next = state.clone();
        next.events.push(event.clone());
        self.facts(&next)?;
        Ok(next)
    }

    /// Adopts a state started under another policy version: the whole input
    /// is validated under this policy, and the state then carries its digest.
    pub fn migrate(&self, state: &FlowState) -> Result<FlowState, EvalError> {
        let mut next = state.clone();
        next.policy = self.digest.clone();
        // The request may route to another flow under this policy.
        let request = bind::request_with(&self.program, &next.request, 0, self.routes)?;
        next.flow = self.program.flows[request.flow].name.clone();
        self.facts(&next)?;
        Ok(next)
    }

    /// Validates the state and folds its events into facts.
    pub fn facts(&self, state: &FlowState) -> Result<Facts, EvalError> {
        if state.policy != self.digest {
            return Err(EvalError::PolicyMismatch {
                state: state.policy.clone(),
                policy: self.digest.clone(),
            });
        }
        let request = bind::request_with(&self.program, &state.request, 0, self.routes)?;
        if state.request.get("now").is_none() {
            return Err(InputError {
                field: "now".into(),
                message: "a stored flow state must record `now`".into(),
            }
            .into());
        }
        if instance_id(&state.request) != state.instance {
            return Err(InputError {
                field: "instance".into(),
                message: "the flow state's instance id does not match its request: the request changed after the flow started"
                    .into(),
            }
            .into());
        }
        if self.program.flows[request.flow].name != state.flow {
            return Err(InputError {
                field: "flow".into(),
                message: format!("the request routes to another flow than `{}`", state.flow),
            }
            .into());
        }
        check_event_count(state)?;
        let mut validated = Vec::with_capacity(state.events.len());
        for (i, json) in state.events.iter().enumerate() {
            validated.push(bind::event(
                &self.program,
                &request,
                json,
                &format!("events[{i}]"),
            )?);
        }
        let mut facts = Facts::new(&self.program, request);
        for (i, event) in validated.iter().enumerate() {
            facts.apply(&self.program, event, &format!("events[{i}]"))?;
        }
        Ok(facts)
    }

    /// Evaluates the flow on the state's current facts.
    pub fn evaluate(&self, state: &FlowState, with_trace: bool) -> Result<Outcome, EvalError> {
        let facts = self.facts(state)?;
        let mut scratch = self.scratch();
        self.evaluate_facts(&facts, state, state.events.len(), with_trace, &mut scratch)
    }

    /// Evaluates the flow after the request and after each event of the
    /// state, in order. The whole state is validated before the first
    /// evaluation, and the facts grow one event at a time, so the cost is
    /// linear in the number of events.
    pub fn evaluate_all(
        &self,
        state: &FlowState,
        with_trace: bool,
    ) -> Result<Vec<Outcome>, EvalError> {
        let mut facts = self.facts(&FlowState {
            events: Vec::new(),
            ..state.clone()
        })?;
        check_event_count(state)?;
        let mut validated = Vec::with_capacity(state.events.len());
        for (i, json) in state.events.iter().enumerate() {
            validated.push(bind::event(
                &self.program,
                &facts.request,
                json,
                &format!("events[{i}]"),
            )?);
        }
        let mut snapshots = Vec::with_capacity(validated.len() + 1);
        snapshots.push(facts.clone());
        for (i, event) in validated.iter().enumerate() {
            facts.apply(&self.program, event, &format!("events[{i}]"))?;
            snapshots.push(facts.clone());
        }
        let mut scratch = self.scratch();
        snapshots
            .iter()
            .enumerate()
            .map(|(applied, facts)| {
                self.evaluate_facts(facts, state, applied, with_trace, &mut scratch)
            })
            .collect()
    }

    /// Binds, decides and renders. The trace input contains the request and the
    /// first `applied` events of the state.
    fn evaluate_facts(
        &self,
        facts: &Facts,
        state: &FlowState,
        applied: usize,
        with_trace: bool,
        scratch: &mut Scratch,
    ) -> Result<Outcome, EvalError> {
        let mut strings = Strings::new(&self.pool);
        bind::bind(
            &self.program,
            facts,
            &self.slot_index,
            &mut strings,
            &mut scratch.record,
        );
        let flow = &self.program.flows[facts.request.flow];
        if with_trace {
            self.decide_traced(facts.request.flow, scratch)?;
        } else {
            self.decide(facts.request.flow, scratch);
        }
        let words = &scratch.outcome[..flow.outcome_words as usize];
        let mut outcome = outcome::render(&self.program, flow, words, &strings);
        if with_trace {
            let events = &state.events[..applied.min(state.events.len())];
            outcome.trace = Some(Trace {
                policy: self.digest.clone(),
                flow: flow.name.clone(),
                instance: state.instance.clone(),
                input: serde_json::json!({ "request": state.request, "events": events }),
                steps: outcome::trace_steps(flow, words, outcome.decision),
            });
        }
        Ok(outcome)
    }

    /// Starts a request given as borrowed values, evaluated at `now`
    /// (microseconds since the epoch). [`RequestBuilder::finish`] validates
    /// it and binds it into `scratch.record` without allocating; then
    /// [`Policy::decide`] decides it.
    #[inline]
    pub fn request<'p, 's, 'a>(
        &'p self,
        scratch: &'s mut Scratch,
        now: i64,
    ) -> RequestBuilder<'p, 's, 'a> {
        RequestBuilder::new(self, &mut scratch.record, now)
    }

    /// Returns the index of the string slot at record word `at`, or 0 when
    /// no string slot is there.
    pub(crate) fn string_slot_index(&self, at: u32) -> usize {
        self.string_slots
            .binary_search_by_key(&at, |&(slot, _)| slot)
            .map_or(0, |found| self.string_slots[found].1)
    }

    /// Returns the index of `text` in the string pool, if it is there.
    #[inline]
    pub(crate) fn pool_index(&self, text: &str) -> Option<u64> {
        let strings = &self.program.strings;
        self.pool_by_length
            .binary_search_by(|&index| by_length(&strings[index as usize], text))
            .ok()
            .map(|found| u64::from(self.pool_by_length[found]))
    }

    /// Returns the most attributes one principal kind, the context or the
    /// switches declare.
    pub(crate) fn widest_attributes(&self) -> usize {
        self.widest_attributes
    }

    /// Returns each switch's default value.
    pub(crate) fn switch_defaults(&self) -> &[Option<bind::Value>] {
        &self.switch_defaults
    }

    /// Binds facts into `scratch.record`; returns the string table for rendering.
    pub fn bind<'p>(&'p self, facts: &Facts, scratch: &mut Scratch) -> Strings<'p> {
        let mut strings = Strings::new(&self.pool);
        bind::bind(
            &self.program,
            facts,
            &self.slot_index,
            &mut strings,
            &mut scratch.record,
        );
        strings
    }

    /// Runs flow `flow`'s decision kernel over `scratch.record` into
    /// `scratch.outcome`: every outcome word except the trace words, which
    /// keep whatever they held. Allocates nothing.
    #[inline]
    pub fn decide(&self, flow: usize, scratch: &mut Scratch) {
        if let Some(native) = &self.native {
            // The scratch buffers are sized from this policy, so the call cannot
            // fail its length checks; if it ever did, the interpreter decides.
            if native
                .run(flow, &scratch.record, &mut scratch.outcome)
                .is_ok()
            {
                return;
            }
        }
        self.decide_bytecode(flow, scratch);
    }

    /// Runs flow `flow`'s decision kernel in the interpreter.
    fn decide_bytecode(&self, flow: usize, scratch: &mut Scratch) {
        let words = self.program.flows[flow].outcome_words as usize;
        let outcome = &mut scratch.outcome[..words];
        let code = &self.untraced[flow];
        let registers = self.program.flows[flow].registers as usize;
        run_bytecode(
            code,
            registers,
            &scratch.record,
            &mut scratch.registers,
            outcome,
        );
    }

    /// Runs flow `flow`'s whole bytecode, trace stores included, over
    /// `scratch.record` into `scratch.outcome`. With the native backend, the
    /// native decision kernel also runs, and every word it stores must equal
    /// the bytecode kernel's, or the evaluation fails closed. Allocates
    /// nothing.
    pub fn decide_traced(&self, flow: usize, scratch: &mut Scratch) -> Result<(), EvalError> {
        let code = &self.program.flows[flow];
        let words = code.outcome_words as usize;
        run_bytecode(
            &code.code,
            code.registers as usize,
            &scratch.record,
            &mut scratch.registers,
            &mut scratch.outcome[..words],
        );
        let Some(native) = &self.native else {
            return Ok(());
        };
        let mismatch = || EvalError::KernelMismatch {
            flow: code.name.clone(),
        };
        let check = scratch.check.get_mut(..words).ok_or_else(mismatch)?;
        native
            .run(flow, &scratch.record, check)
            .map_err(|_| mismatch())?;
        let agree = self.decision_words[flow]
            .iter()
            .all(|&word| check[word as usize] == scratch.outcome[word as usize]);
        if agree {
            Ok(())
        } else {
            Err(mismatch())
        }
    }
}
