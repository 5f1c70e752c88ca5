//! Native code for the decision kernel.
//!
//! [`compile`] translates each flow's straight-line bytecode into one
//! Cranelift function `extern "C" fn(record: *const u64, outcome: *mut u64)`
//! and maps it into executable memory with `cranelift-jit`. Registers become
//! SSA values. Compares produce 0 or 1, `Select` becomes a conditional move,
//! saturation uses bit masks, and `Hour` and `Weekday` divide by constants
//! with a multiply by a reciprocal, so no instruction chooses a path by data
//! and no instruction divides. [`NativeProgram::run`] computes the same outcome words as
//! [`crate::kernel::run`].
//!
//! [`compile`] returns an error on hosts other than x86-64 and AArch64, so the
//! caller can fall back to the interpreter. It also checks its own output and
//! returns an error when a function's machine code has more than one basic
//! block, has a relocation, or needs a stack probe loop for its frame.

// The JIT returns code addresses as raw pointers. Turning one into a function
// pointer, calling it, sharing the module between threads and freeing its
// memory need `unsafe`, and each use states why it is sound. No other module
// of the crate uses `unsafe`.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fmt;

mod schedule;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::Signature;
use cranelift_codegen::ir::{
    AbiParam, AliasRegionData, InstBuilder, MemFlagsData, SourceLoc, Value,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_codegen::{Final, MachSrcLoc};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Module};

use crate::program::{Flow, Instr, Program};

/// The signature of a compiled flow. `record` must point to at least
/// `layout.words` words and `outcome` to at least the flow's `outcome_words`.
type Kernel = unsafe extern "C" fn(record: *const u64, outcome: *mut u64);

/// Microseconds in an hour, the divisor of [`Instr::Hour`].
const HOUR: u64 = 3_600_000_000;
/// Microseconds in a day, the divisor of [`Instr::Hour`] and [`Instr::Weekday`].
const DAY: u64 = 86_400_000_000;
/// ISO weekday of 1970-01-01, a Thursday, counted from 0 for Monday.
const EPOCH_WEEKDAY: i64 = 3;

/// A multiplier and shift that divide without a division instruction:
/// `floor(t / divisor) == umulhi(t, multiplier) >> shift` for every
/// `t < 2^63`.
#[derive(Clone, Copy)]
struct Reciprocal {
    multiplier: u64,
    shift: u32,
}

/// Computes the [`Reciprocal`] of `divisor`, which must be at least 2.
///
/// With `shift = ceil(log2(divisor)) - 1` and `multiplier =
/// ceil(2^(64 + shift) / divisor)`, the rounding error `e = multiplier *
/// divisor - 2^(64 + shift)` is below `divisor <= 2^(shift + 1)`. For `t <
/// 2^63` that gives `t * e < 2^(64 + shift)`, so `t * multiplier / 2^(64 +
/// shift)` exceeds `t / divisor` by less than `1 / divisor` and both round
/// down to the same integer.
const fn reciprocal(divisor: u64) -> Reciprocal {
    assert!(divisor >= 2);
    let shift = 64 - (divisor - 1).leading_zeros() - 1;
    let numerator = 1u128 << (64 + shift);
    let multiplier = numerator.div_ceil(divisor as u128);
    assert!(multiplier <= u64::MAX as u128);
    Reciprocal {
        multiplier: multiplier as u64,
        shift,
    }
}

const HOUR_RECIPROCAL: Reciprocal = reciprocal(HOUR);
const DAY_RECIPROCAL: Reciprocal = reciprocal(DAY);
const WEEK_RECIPROCAL: Reciprocal = reciprocal(7);

/// Why [`NativeProgram::run`] did not call a flow's code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The flow index is not below the number of flows.
    UnknownFlow { flow: usize, flows: usize },
    /// The record has fewer words than the program's layout.
    RecordTooShort { len: usize, words: usize },
    /// The outcome buffer has fewer words than the flow writes.
    OutcomeTooShort { len: usize, words: usize },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::UnknownFlow { flow, flows } => {
                write!(
                    f,
                    "flow index {flow} is out of range: the program has {flows} flows"
                )
            }
            RunError::RecordTooShort { len, words } => write!(
                f,
                "record of {len} words is too short: the program's layout has {words} words"
            ),
            RunError::OutcomeTooShort { len, words } => write!(
                f,
                "outcome buffer of {len} words is too short: the flow writes {words} words"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// One flow compiled to machine code.
pub struct NativeFlow {
    kernel: Kernel,
    outcome_words: usize,
    code: Vec<u8>,
    instructions_len: usize,
    listing: Option<String>,
}

impl NativeFlow {
    /// Returns the function's bytes as mapped into executable memory: the
    /// instructions, then the constant pool. The function has no
    /// relocations, so these bytes are exactly the bytes that run.
    pub fn code(&self) -> &[u8] {
        &self.code
    }

    /// Returns the instructions at the start of [`NativeFlow::code`], from
    /// the entry to the end of the return instruction, for disassembly.
    pub fn instructions(&self) -> &[u8] {
        &self.code[..self.instructions_len]
    }

    /// Returns the constant pool after the instructions: 64-bit constants
    /// that the instructions load relative to the instruction pointer.
    pub fn constants(&self) -> &[u8] {
        &self.code[self.instructions_len..]
    }

    /// Returns Cranelift's listing of the machine instructions after
    /// register allocation, for reading and for structural checks, when the
    /// program was compiled with [`compile_with_listing`].
    pub fn listing(&self) -> Option<&str> {
        self.listing.as_deref()
    }

    /// Returns the size of the outcome record that the flow writes, in words.
    pub fn outcome_words(&self) -> usize {
        self.outcome_words
    }
}

impl fmt::Debug for NativeFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeFlow")
            .field("outcome_words", &self.outcome_words)
            .field("code_bytes", &self.code.len())
            .finish_non_exhaustive()
    }
}

/// The executable memory of a [`NativeProgram`], freed when it is dropped.
struct JitMemory(Option<JITModule>);

impl JitMemory {
    fn module(&mut self) -> &mut JITModule {
        self.0
            .as_mut()
            .expect("the module is present until the memory is dropped")
    }
}

impl Drop for JitMemory {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: the only pointers into this memory are the `kernel`
            // function pointers of the `NativeFlow`s of the `NativeProgram`
            // that owns this `JitMemory`. They are private and never copied
            // out, and `NativeProgram::run` borrows the program for the whole
            // call, so no call is executing when the program, and with it this
            // memory, is dropped, and none can start afterwards.
            unsafe { module.free_memory() };
        }
    }
}

// SAFETY: the module contains raw pointers into memory that it mapped itself
// and a symbol cache in a `RefCell`. None of it is tied to the thread that
// created it, so freeing the mapping from another thread is sound. After
// `compile` returns, only `Drop` touches the module, with exclusive access.
unsafe impl Send for JitMemory {}
// SAFETY: no method reads or writes the module through a shared reference.
// `NativeProgram::run` only calls the finalized code, which is read-only and
// executable, and the function keeps no state between calls.
unsafe impl Sync for JitMemory {}

/// Every flow of a program compiled to machine code.
pub struct NativeProgram {
    flows: Vec<NativeFlow>,
    record_words: usize,
    // Declared last, so the flows' function pointers are dropped first.
    _memory: JitMemory,
}

impl fmt::Debug for NativeProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeProgram")
            .field("flows", &self.flows)
            .field("record_words", &self.record_words)
            .finish_non_exhaustive()
    }
}

impl NativeProgram {
    /// Runs flow `flow` over `record`, writing its outcome words into the
    /// front of `outcome`, after checking both lengths. Like the interpreter,
    /// the code writes only the outcome words that the flow stores.
    #[inline]
    pub fn run(&self, flow: usize, record: &[u64], outcome: &mut [u64]) -> Result<(), RunError> {
        let Some(native) = self.flows.get(flow) else {
            return Err(RunError::UnknownFlow {
                flow,
                flows: self.flows.len(),
            });
        };
        if record.len() < self.record_words {
            return Err(RunError::RecordTooShort {
                len: record.len(),
                words: self.record_words,
            });
        }
        if outcome.len() < native.outcome_words {
            return Err(RunError::OutcomeTooShort {
                len: outcome.len(),
                words: native.outcome_words,
            });
        }
        // SAFETY: `compile` generated this function with the `Kernel`
        // signature. It checked that the code loads only record words below
        // `self.record_words` and stores only outcome words below
        // `native.outcome_words`, and both slices were just checked to be that
        // long. They cannot overlap because one is borrowed mutably. The code
        // touches no other memory besides its stack frame, and the code's own
        // memory lives as long as `self`.
        unsafe { (native.kernel)(record.as_ptr(), outcome.as_mut_ptr()) };
        Ok(())
    }

    /// Returns the compiled flows, in the program's order.
    pub fn flows(&self) -> &[NativeFlow] {
        &self.flows
    }

    /// Returns the machine code of flow `flow`, as [`NativeFlow::code`] does.
    pub fn code(&self, flow: usize) -> Option<&[u8]> {
        self.flows.get(flow).map(NativeFlow::code)
    }

    /// Returns the size of the input record that the flows read, in words.
    pub fn record_words(&self) -> usize {
        self.record_words
    }
}

/// Compiles every flow of a program to machine code for this host.
///
/// Returns an error when the program does not verify or the host is not
/// x86-64 or AArch64. A flow's code that fails a structural check is also an
/// error: a register read before any instruction writes it, more than one
/// basic block, a relocation, or a stack probe loop. The caller then keeps
/// the interpreter. Flows are compiled on up to one thread per core.
pub fn compile(program: &Program) -> Result<NativeProgram, String> {
    compile_flows(program, Listing::Omit)
}

/// Like [`compile`], and keeps Cranelift's listing of each flow's machine
/// instructions for [`NativeFlow::listing`]. Producing the listing adds to
/// the compile time.
pub fn compile_with_listing(program: &Program) -> Result<NativeProgram, String> {
    compile_flows(program, Listing::Keep)
}

/// Whether [`define_flow`] keeps the listing of the machine instructions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    Omit,
    Keep,
}

fn compile_flows(program: &Program, listing: Listing) -> Result<NativeProgram, String> {
    program.verify()?;
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        // Cranelift 0.135's RISC-V backend, for one, lowers `popcnt` without
        // the Zbb extension to a loop.
        // NOTE: a test generates AArch64 code on every host and checks it
        // for branches and divisions, but no test has executed it.
        return Err(format!(
            "native code is only generated for x86-64 and AArch64, not for {}",
            std::env::consts::ARCH
        ));
    }

    let isa = new_isa()?;
    let record_words = program.layout.words as usize;
    let compiled = compile_in_parallel(&program.flows, |flow, context, builder_context| {
        define_flow(&*isa, context, builder_context, flow, record_words, listing)
            .map_err(|message| format!("flow `{}`: {message}", flow.name))
    })?;

    let mut memory = JitMemory(Some(JITModule::new(JITBuilder::with_isa(
        isa.clone(),
        default_libcall_names(),
    ))));
    let module = memory.module();
    let signature = kernel_signature(&*isa);
    let mut ids = Vec::with_capacity(compiled.len());
    for (flow, code) in program.flows.iter().zip(&compiled) {
        let define = |module: &mut JITModule| {
            let id = module.declare_anonymous_function(&signature)?;
            module.define_function_bytes(id, code.alignment, &code.code, &[])?;
            Ok::<_, Box<cranelift_module::ModuleError>>(id)
        };
        let id = define(module).map_err(|error| {
            format!(
                "flow `{}`: failed to define the function: {error}",
                flow.name
            )
        })?;
        ids.push(id);
    }
    module
        .finalize_definitions()
        .map_err(|error| format!("failed to map the native code into memory: {error}"))?;

    let flows = compiled
        .into_iter()
        .zip(ids)
        .zip(&program.flows)
        .map(|((compiled, id), flow)| {
            let address = module.get_finalized_function(id);
            // SAFETY: `address` is the entry of a finalized function whose
            // bytes `define_flow` compiled for the signature of
            // `kernel_signature`: two pointer parameters, no results and the
            // host's default calling convention, which is the C calling
            // convention that `Kernel` names.
            let kernel = unsafe { std::mem::transmute::<*const u8, Kernel>(address) };
            NativeFlow {
                kernel,
                outcome_words: flow.outcome_words as usize,
                code: compiled.code,
                instructions_len: compiled.instructions_len,
                listing: compiled.listing,
            }
        })
        .collect();

    Ok(NativeProgram {
        flows,
        record_words,
        _memory: memory,
    })
}

/// Runs `compile` on every flow, spread over up to one thread per core, and
/// returns the results in the flows' order, or the error of the first flow
/// that failed.
fn compile_in_parallel<F>(flows: &[Flow], compile: F) -> Result<Vec<Compiled>, String>
where
    F: Fn(&Flow, &mut Context, &mut FunctionBuilderContext) -> Result<Compiled, String> + Sync,
{
    // A thread costs tens of microseconds to start, about as much as a small
    // flow costs to compile, so each thread gets at least a few flows.
    const FLOWS_PER_THREAD: usize = 4;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(flows.len().div_ceil(FLOWS_PER_THREAD)).max(1);
    let compile_share = |first: usize| {
        let mut context = Context::new();
        let mut builder_context = FunctionBuilderContext::new();
        flows
            .iter()
            .enumerate()
            .skip(first)
            .step_by(threads)
            .map(|(index, flow)| {
                compile(flow, &mut context, &mut builder_context).map(|code| (index, code))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let shares = if threads == 1 {
        vec![compile_share(0)]
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (1..threads)
                .map(|first| scope.spawn(move || compile_share(first)))
                .collect();
            let mut shares = vec![compile_share(0)];
            for worker in workers {
                shares.push(
                    worker
                        .join()
                        .unwrap_or_else(|_| Err("a compiler thread panicked".to_string())),
                );
            }
            shares
        })
    };
    let mut compiled: Vec<Option<Compiled>> = (0..flows.len()).map(|_| None).collect();
    let mut first_error: Option<(usize, String)> = None;
    for share in shares {
        match share {
            Ok(codes) => {
                for (index, code) in codes {
                    compiled[index] = Some(code);
                }
            }
            Err(message) => {
                let index = flows
                    .iter()
                    .position(|flow| message.starts_with(&format!("flow `{}`:", flow.name)))
                    .unwrap_or(usize::MAX);
                if first_error.as_ref().is_none_or(|(first, _)| index < *first) {
                    first_error = Some((index, message));
                }
            }
        }
    }
    if let Some((_, message)) = first_error {
        return Err(message);
    }
    compiled
        .into_iter()
        .map(|code| code.ok_or_else(|| "a flow was not compiled".to_string()))
        .collect()
}

/// Configures Cranelift for the host with the flags the kernel needs.
fn new_isa() -> Result<OwnedTargetIsa, String> {
    cranelift_native::builder()
        .map_err(|message| format!("native code is not available on this host: {message}"))?
        .finish(flags()?)
        .map_err(|error| format!("failed to configure Cranelift for this host: {error}"))
}

/// Compiles every flow for the target named by `triple` (for example
/// `aarch64-unknown-linux-gnu`) without loading the code, and returns each
/// flow's listing. The flows pass the same structural checks as in
/// [`compile`]. Only the targets built into Cranelift here are available:
/// the host's, and AArch64 when the `cranelift-codegen` feature `arm64` is
/// on.
pub fn listings_for_target(program: &Program, triple: &str) -> Result<Vec<String>, String> {
    program.verify()?;
    let isa = cranelift_codegen::isa::lookup_by_name(triple)
        .map_err(|error| format!("no Cranelift backend for `{triple}`: {error}"))?
        .finish(flags()?)
        .map_err(|error| format!("failed to configure Cranelift for `{triple}`: {error}"))?;
    let record_words = program.layout.words as usize;
    let mut context = Context::new();
    let mut builder_context = FunctionBuilderContext::new();
    program
        .flows
        .iter()
        .map(|flow| {
            let compiled = define_flow(
                &*isa,
                &mut context,
                &mut builder_context,
                flow,
                record_words,
                Listing::Keep,
            )
            .map_err(|message| format!("flow `{}`: {message}", flow.name))?;
            Ok(compiled.listing.unwrap_or_default())
        })
        .collect()
}

/// Returns the Cranelift flags the kernel needs on every target.
fn flags() -> Result<settings::Flags, String> {
    let mut flags = settings::builder();
    let verifier = if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    };
    let settings = [
        // The translation emits each record word, constant and mask once and
        // folds the bitwise identities itself, which leaves Cranelift's
        // e-graph pass little to find: skipping it about halves the compile
        // time.
        ("opt_level", "none"),
        // The translation emits one block of plain integer operations over
        // checked offsets; debug builds still run Cranelift's IR verifier.
        ("enable_verifier", verifier),
        // `cranelift-jit` requires both.
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
        // Block offsets and edges of the machine code, for the check that a
        // function is a single basic block.
        ("machine_code_cfg_info", "true"),
        // Frames larger than a guard page get inline probes, so a deep stack
        // faults at its guard page instead of writing past it.
        ("enable_probestack", "true"),
        ("probestack_strategy", "inline"),
    ];
    for (name, value) in settings {
        flags
            .set(name, value)
            .map_err(|error| format!("invalid Cranelift setting {name}={value}: {error}"))?;
    }
    Ok(settings::Flags::new(flags))
}

/// Returns the signature of [`Kernel`] in Cranelift's terms.
fn kernel_signature(isa: &dyn TargetIsa) -> Signature {
    let mut signature = Signature::new(isa.default_call_conv());
    signature.params.push(AbiParam::new(isa.pointer_type()));
    signature.params.push(AbiParam::new(isa.pointer_type()));
    signature
}

/// The largest frame, in bytes, that Cranelift's inline stack probes cover
/// without a loop: x86-64 unrolls up to four probes of one 4 KiB guard page.
const LOOP_FREE_FRAME: usize = 4 * 4096;

/// Translates, compiles and checks one flow. Returns its machine code, and
/// its listing when `listing` is [`Listing::Keep`].
fn define_flow(
    isa: &dyn TargetIsa,
    context: &mut Context,
    builder_context: &mut FunctionBuilderContext,
    flow: &Flow,
    record_words: usize,
    listing: Listing,
) -> Result<Compiled, String> {
    context.clear();
    context.func.signature = kernel_signature(isa);

    // The record and the outcome are disjoint slices, and the record is not
    // written during the call, so record loads are read-only and never alias
    // outcome stores.
    let record_region = context.func.dfg.alias_regions.insert(AliasRegionData {
        user_id: 0,
        description: "record".into(),
    });
    let outcome_region = context.func.dfg.alias_regions.insert(AliasRegionData {
        user_id: 1,
        description: "outcome".into(),
    });
    let load_flags = MemFlagsData::trusted()
        .with_readonly()
        .with_alias_region(Some(record_region));
    let store_flags = MemFlagsData::trusted().with_alias_region(Some(outcome_region));

    let mut builder = FunctionBuilder::new(&mut context.func, builder_context);
    let block = builder.create_block();
    builder.append_block_params_for_function_params(block);
    builder.switch_to_block(block);
    builder.seal_block(block);
    let record = builder.block_params(block)[0];
    let outcome = builder.block_params(block)[1];
    let (code, registers) = schedule::schedule(&flow.code, flow.registers)?;
    let mut translator = Translator {
        builder: &mut builder,
        record,
        outcome,
        record_words,
        outcome_words: flow.outcome_words as usize,
        load_flags,
        store_flags,
        registers: vec![None; registers as usize],
        booleans: vec![false; registers as usize],
        loads: HashMap::new(),
        constants: HashMap::new(),
        masks: HashMap::new(),
        numbers: HashMap::new(),
        complements: HashMap::new(),
        nonzero_operands: HashMap::new(),
        conjunctions: HashMap::new(),
    };
    for (index, instr) in code.iter().enumerate() {
        // Source locations map machine code back to bytecode indexes; their
        // ranges also mark where the instructions end.
        translator.builder.set_srcloc(SourceLoc::new(index as u32));
        translator
            .translate(instr)
            .map_err(|message| format!("instruction {index}: {message}"))?;
    }
    builder.set_srcloc(SourceLoc::new(code.len() as u32));
    builder.ins().return_(&[]);
    builder.finalize(isa.frontend_config());

    // Every spill slot contains one SSA value, so a function with few values
    // has a frame that inline probes cover without a loop. Larger ones are
    // checked in the listing.
    let frame_bound = 8 * context.func.dfg.num_values() + 1024;
    let keep_listing = listing == Listing::Keep || frame_bound >= LOOP_FREE_FRAME;
    context.set_disasm(keep_listing);
    let compiled = context
        .compile(isa, &mut ControlPlane::default())
        .map_err(|error| {
            format!(
                "Cranelift failed to compile the function: {:?}",
                error.inner
            )
        })?;
    if compiled.bb_starts.len() != 1 || !compiled.bb_edges.is_empty() {
        return Err(format!(
            "the machine code has {} basic blocks and {} edges; a flow must compile to a single block",
            compiled.bb_starts.len(),
            compiled.bb_edges.len()
        ));
    }
    if !compiled.buffer.relocs().is_empty() {
        return Err(format!(
            "the machine code has {} relocations; a flow must call nothing and refer to no data",
            compiled.buffer.relocs().len()
        ));
    }
    let text = compiled.vcode.clone().unwrap_or_default();
    if text.contains("stack_probe_loop") {
        return Err(
            "the stack frame is large enough to need a stack probe loop, which is a branch"
                .to_string(),
        );
    }
    let instructions_len = instructions_len(compiled.buffer.get_srclocs_sorted())
        .filter(|&len| len <= compiled.code_buffer().len())
        .ok_or("the source locations of the machine code do not cover it from its start")?;
    let alignment = u64::from(compiled.buffer.alignment)
        .max(u64::from(isa.function_alignment().minimum))
        .max(isa.symbol_alignment());
    Ok(Compiled {
        code: compiled.code_buffer().to_vec(),
        alignment,
        instructions_len,
        listing: (listing == Listing::Keep).then_some(text),
    })
}

/// The machine code of one flow as `define_flow` returns it.
struct Compiled {
    code: Vec<u8>,
    alignment: u64,
    instructions_len: usize,
    listing: Option<String>,
}

/// Returns the length of the instructions at the start of a function's code,
/// before its constant pool. That is the end of the last source location
/// range, provided the ranges follow each other from offset 0 without a gap.
fn instructions_len(ranges: &[MachSrcLoc<Final>]) -> Option<usize> {
    let mut end = 0;
    for range in ranges {
        if range.start != end || range.end < range.start {
            return None;
        }
        end = range.end;
    }
    usize::try_from(end).ok().filter(|&len| len > 0)
}

/// The bitwise operations that [`Translator::fold`] simplifies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bitwise {
    And,
    Or,
    Xor,
}

/// Emits the Cranelift instructions of one flow into a single block.
struct Translator<'a, 'b> {
    builder: &'a mut FunctionBuilder<'b>,
    record: Value,
    outcome: Value,
    record_words: usize,
    outcome_words: usize,
    load_flags: MemFlagsData,
    store_flags: MemFlagsData,
    /// The current SSA value of each register; `None` before the first write.
    registers: Vec<Option<Value>>,
    /// Whether each register's current value is known to be 0 or 1, so
    /// turning it into a mask needs no `& 1`.
    booleans: Vec<bool>,
    /// The value of each record word and constant already emitted, and the
    /// mask of each condition, so each is emitted once.
    loads: HashMap<u32, Value>,
    constants: HashMap<u64, Value>,
    masks: HashMap<Value, Value>,
    /// The number that defines each constant value.
    numbers: HashMap<Value, u64>,
    /// For a value that is `x ^ -1`, or `x ^ 1` with `x` 0 or 1, that `x`:
    /// an `and` with the value, where the other operand is 0 or 1 in the
    /// second case, is `band_not` of `x`.
    complements: HashMap<Value, Complement>,
    /// For a value that is `x != 0` as 0 or 1, that `x`: a `select` on the
    /// value can test `x` itself.
    nonzero_operands: HashMap<Value, Value>,
    /// The operands of each `band` emitted, so that `c & !(x & c)` can be
    /// emitted as `c & !x`.
    conjunctions: HashMap<Value, (Value, Value)>,
}

/// The operand of a complement, as [`Translator::complements`] records it
/// for a value that is `!of` or `!of & 1`.
#[derive(Clone, Copy)]
struct Complement {
    of: Value,
    /// Whether only bit 0 was flipped, so the value is `!of & 1`.
    bit_only: bool,
}

impl Translator<'_, '_> {
    fn translate(&mut self, instr: &Instr) -> Result<(), String> {
        let boolean = self.writes_boolean(instr);
        self.emit(instr)?;
        if let Some(flag) = instr
            .written()
            .and_then(|dst| self.booleans.get_mut(dst as usize))
        {
            *flag = boolean;
        }
        Ok(())
    }

    /// Returns whether `instr` writes 0 or 1 whatever its operands hold:
    /// compares do, and bitwise operations on values that are 0 or 1 do.
    fn writes_boolean(&self, instr: &Instr) -> bool {
        let known = |register: u32| self.booleans.get(register as usize) == Some(&true);
        match *instr {
            Instr::Eq { .. } | Instr::Lt { .. } | Instr::Le { .. } | Instr::Nonzero { .. } => true,
            Instr::Const { value, .. } => value <= 1,
            Instr::And { a, b, .. } => known(a) || known(b),
            Instr::Or { a, b, .. } | Instr::Xor { a, b, .. } => known(a) && known(b),
            Instr::Select { a, b, .. } => known(a) && known(b),
            _ => false,
        }
    }

    /// Emits `-(x & 1)`: all ones where bit 0 of `x` is set, else zero. The
    /// `& 1` is left out when `register`, which contains `x`, is known to be 0
    /// or 1.
    fn mask_of(&mut self, register: u32, x: Value) -> Value {
        if let Some(&mask) = self.masks.get(&x) {
            return mask;
        }
        let bit = if self.booleans.get(register as usize) == Some(&true) {
            x
        } else {
            self.builder.ins().band_imm_u(x, 1)
        };
        let mask = self.builder.ins().ineg(bit);
        self.masks.insert(x, mask);
        mask
    }

    fn emit(&mut self, instr: &Instr) -> Result<(), String> {
        match *instr {
            Instr::Load { dst, slot } => {
                let offset = word_offset(slot, self.record_words, "record slot")?;
                let value = match self.loads.get(&slot) {
                    Some(&value) => value,
                    None => {
                        let value =
                            self.builder
                                .ins()
                                .load(I64, self.load_flags, self.record, offset);
                        self.loads.insert(slot, value);
                        value
                    }
                };
                self.write(dst, value)
            }
            Instr::Const { dst, value } => {
                let value = self.constant(value);
                self.write(dst, value)
            }
            Instr::Store { slot, src } => {
                let offset = word_offset(slot, self.outcome_words, "outcome slot")?;
                let value = self.read(src)?;
                self.builder
                    .ins()
                    .store(self.store_flags, value, self.outcome, offset);
                Ok(())
            }
            Instr::And { dst, a, b } => {
                let value = self.bitwise(Bitwise::And, a, b)?;
                self.write(dst, value)
            }
            Instr::Or { dst, a, b } => {
                let value = self.bitwise(Bitwise::Or, a, b)?;
                self.write(dst, value)
            }
            Instr::Xor { dst, a, b } => {
                let value = self.bitwise(Bitwise::Xor, a, b)?;
                self.note_complement(value, a, b)?;
                self.write(dst, value)
            }
            Instr::Shr { dst, a, b } => {
                let (x, y) = (self.read(a)?, self.read(b)?);
                let value = match self.constant_of(y) {
                    Some(amount) => self.builder.ins().ushr_imm_u(x, (amount & 63) as i64),
                    None => {
                        let amount = self.builder.ins().band_imm_u(y, 63);
                        self.builder.ins().ushr(x, amount)
                    }
                };
                self.write(dst, value)
            }
            Instr::Eq { dst, a, b } => {
                self.binary(dst, a, b, |b, x, y| compare(b, IntCC::Equal, x, y))
            }
            Instr::Lt { dst, a, b } => {
                self.binary(dst, a, b, |b, x, y| compare(b, IntCC::SignedLessThan, x, y))
            }
            Instr::Le { dst, a, b } => self.binary(dst, a, b, |b, x, y| {
                compare(b, IntCC::SignedLessThanOrEqual, x, y)
            }),
            Instr::Add { dst, a, b } => self.binary(dst, a, b, saturating_add),
            Instr::Sub { dst, a, b } => self.binary(dst, a, b, saturating_sub),
            Instr::Select { dst, cond, a, b } => {
                let mut condition = self.read(cond)?;
                let (mut a, mut b) = (self.read(a)?, self.read(b)?);
                if self.booleans.get(cond as usize) == Some(&true) {
                    // Selecting on `!x` for a 0/1 `x` is selecting on `x`
                    // with the operands swapped, and selecting on `x != 0`
                    // tests `x` itself.
                    while let Some(complement) = self
                        .complements
                        .get(&condition)
                        .filter(|complement| complement.bit_only)
                    {
                        condition = complement.of;
                        std::mem::swap(&mut a, &mut b);
                    }
                    if let Some(&x) = self.nonzero_operands.get(&condition) {
                        condition = x;
                    }
                } else {
                    condition = self.builder.ins().band_imm_u(condition, 1);
                }
                // A conditional move (`cmov`, `csel`), which selects on a
                // nonzero condition in a time that does not depend on it.
                let value = self.builder.ins().select(condition, a, b);
                self.write(dst, value)
            }
            Instr::Nonzero { dst, a } => {
                let x = self.read(a)?;
                let zero = self.builder.ins().iconst(I64, 0);
                let value = compare(self.builder, IntCC::NotEqual, x, zero);
                self.nonzero_operands.insert(value, x);
                self.write(dst, value)
            }
            Instr::Mask { dst, a } => {
                let x = self.read(a)?;
                let mask = self.mask_of(a, x);
                self.write(dst, mask)
            }
            Instr::Popcount { dst, a } => self.unary(dst, a, |b, x| b.ins().popcnt(x)),
            Instr::Hour { dst, a } => self.unary(dst, a, hour),
            Instr::Weekday { dst, a } => self.unary(dst, a, weekday),
        }
    }

    /// Emits a bitwise operation on two registers, or reuses an operand
    /// when the result is known without it: `x & x`, `x | x`, and every
    /// case of [`Translator::fold`]. An `and` with a complement becomes one
    /// `band_not` of the complemented value.
    fn bitwise(&mut self, operation: Bitwise, a: u32, b: u32) -> Result<Value, String> {
        let (x, y) = (self.read(a)?, self.read(b)?);
        if x == y && operation != Bitwise::Xor {
            return Ok(x);
        }
        // `x & 1` is `x` when `x` is 0 or 1.
        let boolean = |register: u32| self.booleans.get(register as usize) == Some(&true);
        if operation == Bitwise::And {
            if self.constant_of(y) == Some(1) && boolean(a) {
                return Ok(x);
            }
            if self.constant_of(x) == Some(1) && boolean(b) {
                return Ok(y);
            }
            // `(x & y) & y` is `x & y`.
            for (conjunction, other) in [(x, y), (y, x)] {
                if let Some(&(p, q)) = self.conjunctions.get(&conjunction) {
                    if p == other || q == other {
                        return Ok(conjunction);
                    }
                }
            }
            for (kept, kept_register, other) in [(x, a, y), (y, b, x)] {
                let Some(complement) = self.complements.get(&other).copied() else {
                    continue;
                };
                if self.constant_of(kept).is_some() && self.constant_of(complement.of).is_some() {
                    continue;
                }
                if !complement.bit_only || boolean(kept_register) {
                    // `kept & !(x & kept)` is `kept & !x`.
                    let complemented = match self.conjunctions.get(&complement.of) {
                        Some(&(x, y)) if y == kept => x,
                        Some(&(x, y)) if x == kept => y,
                        _ => complement.of,
                    };
                    return Ok(self.builder.ins().band_not(kept, complemented));
                }
            }
        }
        Ok(self.fold(operation, x, y))
    }

    /// Records `value = x ^ y` in [`Translator::complements`] when one
    /// operand is all ones, or 1 with the other operand 0 or 1.
    fn note_complement(&mut self, value: Value, a: u32, b: u32) -> Result<(), String> {
        let (x, y) = (self.read(a)?, self.read(b)?);
        let boolean = |register: u32| self.booleans.get(register as usize) == Some(&true);
        for (of, of_register, other) in [(x, a, y), (y, b, x)] {
            let bit_only = match self.constant_of(other) {
                Some(u64::MAX) => false,
                Some(1) if boolean(of_register) => true,
                _ => continue,
            };
            if value != of && self.constant_of(of).is_none() {
                self.complements.insert(value, Complement { of, bit_only });
                return Ok(());
            }
        }
        Ok(())
    }

    /// Emits `x op y`, folding it when an operand is a constant that decides
    /// the result: 0 for every operation, and all ones for `and`.
    fn fold(&mut self, operation: Bitwise, x: Value, y: Value) -> Value {
        for (known, other) in [(x, y), (y, x)] {
            match (operation, self.constant_of(known)) {
                (Bitwise::And, Some(0)) => return known,
                (Bitwise::And, Some(u64::MAX)) => return other,
                (Bitwise::Or | Bitwise::Xor, Some(0)) => return other,
                _ => {}
            }
        }
        match operation {
            Bitwise::And => {
                let value = self.builder.ins().band(x, y);
                self.conjunctions.insert(value, (x, y));
                value
            }
            Bitwise::Or => self.builder.ins().bor(x, y),
            Bitwise::Xor => self.builder.ins().bxor(x, y),
        }
    }

    /// Returns the value of constant `number`, emitting its `iconst` once.
    fn constant(&mut self, number: u64) -> Value {
        if let Some(&constant) = self.constants.get(&number) {
            return constant;
        }
        let constant = self.builder.ins().iconst(I64, number as i64);
        self.constants.insert(number, constant);
        self.numbers.insert(constant, number);
        constant
    }

    /// Returns the constant `value` holds, when an `iconst` defined it.
    fn constant_of(&self, value: Value) -> Option<u64> {
        self.numbers.get(&value).copied()
    }

    fn read(&self, register: u32) -> Result<Value, String> {
        match self.registers.get(register as usize) {
            Some(Some(value)) => Ok(*value),
            // The interpreter would read whatever the caller's register
            // buffer contains, so no compiled value can match it.
            Some(None) => Err(format!(
                "register {register} is read before any instruction writes it"
            )),
            None => Err(format!(
                "register {register} is out of range (limit {})",
                self.registers.len()
            )),
        }
    }

    fn write(&mut self, register: u32, value: Value) -> Result<(), String> {
        let limit = self.registers.len();
        let slot = self
            .registers
            .get_mut(register as usize)
            .ok_or_else(|| format!("register {register} is out of range (limit {limit})"))?;
        *slot = Some(value);
        Ok(())
    }

    fn unary(
        &mut self,
        dst: u32,
        a: u32,
        emit: impl FnOnce(&mut FunctionBuilder, Value) -> Value,
    ) -> Result<(), String> {
        let a = self.read(a)?;
        let value = emit(self.builder, a);
        self.write(dst, value)
    }

    fn binary(
        &mut self,
        dst: u32,
        a: u32,
        b: u32,
        emit: impl FnOnce(&mut FunctionBuilder, Value, Value) -> Value,
    ) -> Result<(), String> {
        let (a, b) = (self.read(a)?, self.read(b)?);
        let value = emit(self.builder, a, b);
        self.write(dst, value)
    }
}

/// Returns the byte offset of word `slot` in a buffer of `words` words, after
/// checking it against that length, because the generated code does no
/// bounds check of its own.
fn word_offset(slot: u32, words: usize, what: &str) -> Result<i32, String> {
    if slot as usize >= words {
        return Err(format!("{what} {slot} is out of range (limit {words})"));
    }
    i32::try_from(u64::from(slot) * 8)
        .map_err(|_| format!("{what} {slot} is too far from the start of its buffer"))
}

/// Emits `(x cc y)` as 0 or 1, which is a `setcc` and a zero extension on
/// x86-64 and a `cset` on AArch64.
fn compare(builder: &mut FunctionBuilder, cc: IntCC, x: Value, y: Value) -> Value {
    let flag = builder.ins().icmp(cc, x, y);
    builder.ins().uextend(I64, flag)
}

/// Emits the value that a signed overflow saturates to, given an operand `a`
/// with the sign of the true result: `i64::MAX` for `a >= 0` and `i64::MIN`
/// for `a < 0`.
fn saturation_bound(builder: &mut FunctionBuilder, a: Value) -> Value {
    let sign = builder.ins().sshr_imm_u(a, 63);
    builder.ins().bxor_imm_s(sign, i64::MAX)
}

/// Emits `wrapped`, replaced by `bound` when the sign bit of `overflow` is
/// set, with a mask instead of a branch.
fn saturate(builder: &mut FunctionBuilder, wrapped: Value, bound: Value, overflow: Value) -> Value {
    let mask = builder.ins().sshr_imm_u(overflow, 63);
    let difference = builder.ins().bxor(wrapped, bound);
    let chosen = builder.ins().band(difference, mask);
    builder.ins().bxor(wrapped, chosen)
}

/// Emits signed `a + b` saturating at `i64::MIN` and `i64::MAX`. The wrapped sum
/// overflowed exactly when `a` and `b` share a sign that the sum lacks.
fn saturating_add(builder: &mut FunctionBuilder, a: Value, b: Value) -> Value {
    let sum = builder.ins().iadd(a, b);
    let a_changed = builder.ins().bxor(a, sum);
    let b_changed = builder.ins().bxor(b, sum);
    let overflow = builder.ins().band(a_changed, b_changed);
    let bound = saturation_bound(builder, a);
    saturate(builder, sum, bound, overflow)
}

/// Emits signed `a - b` saturating at `i64::MIN` and `i64::MAX`. The wrapped
/// difference overflowed exactly when `a` and `b` differ in sign and the
/// difference's sign differs from `a`'s.
fn saturating_sub(builder: &mut FunctionBuilder, a: Value, b: Value) -> Value {
    let difference = builder.ins().isub(a, b);
    let signs_differ = builder.ins().bxor(a, b);
    let a_changed = builder.ins().bxor(a, difference);
    let overflow = builder.ins().band(signs_differ, a_changed);
    let bound = saturation_bound(builder, a);
    saturate(builder, difference, bound, overflow)
}

/// Emits `floor(t / divisor)` for `0 <= t < 2^63` as a multiply-high and a
/// shift.
fn divide_unsigned(builder: &mut FunctionBuilder, t: Value, divisor: Reciprocal) -> Value {
    let multiplier = builder.ins().iconst(I64, divisor.multiplier as i64);
    let high = builder.ins().umulhi(t, multiplier);
    builder.ins().ushr_imm_u(high, i64::from(divisor.shift))
}

/// Emits `x.div_euclid(d)` for any `x` and a positive `d`, which is floor
/// division.
///
/// With `s = x >> 63` (all ones for negative `x`, else zero), `x ^ s` is `x`
/// for `x >= 0` and `-x - 1` for `x < 0`, so it lies in `[0, 2^63)`. For
/// negative `x`, `floor(x / d) = -floor((-x - 1) / d) - 1`, which is the
/// bitwise complement of `floor((-x - 1) / d)`. So `floor(x / d) =
/// floor((x ^ s) / d) ^ s` in both cases, with no branch and no select.
fn divide_floor(builder: &mut FunctionBuilder, x: Value, divisor: Reciprocal) -> Value {
    let sign = builder.ins().sshr_imm_u(x, 63);
    let folded = builder.ins().bxor(x, sign);
    let quotient = divide_unsigned(builder, folded, divisor);
    builder.ins().bxor(quotient, sign)
}

/// Emits `x - quotient * divisor` in wrapping arithmetic. For the floor quotient
/// the true remainder is in `[0, divisor)`, so the wrapped result equals it
/// even where `quotient * divisor` itself does not fit in 64 bits.
fn remainder(builder: &mut FunctionBuilder, x: Value, quotient: Value, divisor: u64) -> Value {
    let product = builder.ins().imul_imm_u(quotient, divisor as i64);
    builder.ins().isub(x, product)
}

/// Emits [`crate::value::hour_of`], `floor(x / HOUR) mod 24`, as the time of
/// day `x mod DAY`, which is below 2^63, divided by `HOUR`.
fn hour(builder: &mut FunctionBuilder, x: Value) -> Value {
    let days = divide_floor(builder, x, DAY_RECIPROCAL);
    let time_of_day = remainder(builder, x, days, DAY);
    divide_unsigned(builder, time_of_day, HOUR_RECIPROCAL)
}

/// Emits [`crate::value::weekday_of`], `(floor(x / DAY) + 3) mod 7 + 1`. The
/// day count is at most 106,751,992 in magnitude, so adding 3 cannot overflow.
fn weekday(builder: &mut FunctionBuilder, x: Value) -> Value {
    let days = divide_floor(builder, x, DAY_RECIPROCAL);
    let shifted = builder.ins().iadd_imm_s(days, EPOCH_WEEKDAY);
    let weeks = divide_floor(builder, shifted, WEEK_RECIPROCAL);
    let day_of_week = remainder(builder, shifted, weeks, 7);
    builder.ins().iadd_imm_s(day_of_week, 1)
}
