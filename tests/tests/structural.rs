//! Structural check of the native decision kernel's machine code.
//!
//! Every scenario and example policy, and generated policies of 100 flows
//! and of 100 guards, are compiled to native code, and each flow's
//! instructions are disassembled. The check fails on any instruction whose
//! duration or path can depend on data:
//!
//! - any jump, call or return other than the final `ret`, direct or
//!   indirect, conditional or not (`cmovcc` and `setcc` are allowed);
//! - integer, SSE, AVX and x87 division and square root, whose latency
//!   depends on the operands on most x86-64 cores;
//! - `rep`-prefixed string instructions, which loop on `rcx`;
//! - a memory operand with an index register, or whose base register does
//!   not hold one of the two pointer arguments or a stack address.
//!
//! The last point keeps every address independent of the record's values,
//! so the cache lines touched are the same for every input.
//!
//! The bytecode side is covered by a second test: the interpreter's
//! instruction list has no jumps, so the number of executed instructions
//! equals the code length for every record.
//!
//! The disassembler is `iced-x86`, a pure-Rust x86-64 decoder. It needs no C
//! toolchain, unlike `capstone`, and reports flow control, register access
//! and memory operands directly. On hosts other than x86-64 the native test
//! prints a note and checks nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use authflow_benches::{policy_with_flows, policy_with_guards};
use authflow_compiler::{build_program, check_source, NoImports};
use authflow_runtime::kernel;
use authflow_runtime::program::Program;
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Formatter, Instruction, InstructionInfoFactory,
    IntelFormatter, Mnemonic, OpAccess, OpKind, Register,
};

/// Returns the policy files of the scenarios and the examples, sorted.
fn policy_files() -> Vec<PathBuf> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for root in [tests.join("scenarios"), tests.join("../examples")] {
        let entries = std::fs::read_dir(&root)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", root.display()));
        for entry in entries.filter_map(Result::ok) {
            let file = entry.path().join("policy.flow");
            if file.exists() {
                files.push(file);
            }
        }
    }
    files.sort();
    files
}

fn program(name: &str, source: &str) -> Program {
    let compilation = check_source(name, source, &mut NoImports);
    let errors: Vec<String> = compilation
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{d:?}"))
        .collect();
    assert!(errors.is_empty(), "{name} does not compile: {errors:?}");
    build_program(&compilation).unwrap_or_else(|| panic!("{name}: no program was built"))
}

/// Returns every policy of the check as (name, program).
fn programs() -> Vec<(String, Program)> {
    let mut all = Vec::new();
    for file in policy_files() {
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        let name = file.display().to_string();
        let program = program(&name, &source);
        all.push((name, program));
    }
    all.push((
        "generated 100 flows".to_string(),
        program("flows.flow", &policy_with_flows(100)),
    ));
    all.push((
        "generated 100 guards".to_string(),
        program("guards.flow", &policy_with_guards(100)),
    ));
    // Each flow's decision kernel too: the code the native backend runs.
    let decision_kernels: Vec<(String, Program)> = all
        .iter()
        .map(|(name, program)| {
            let mut untraced = program.clone();
            for flow in &mut untraced.flows {
                flow.code = flow.untraced_code();
            }
            (format!("{name}, decision kernels"), untraced)
        })
        .collect();
    all.extend(decision_kernels);
    all
}

/// Returns whether `mnemonic` divides or takes a square root. These run
/// for a number of cycles that depends on the operands on most x86-64
/// cores.
fn is_division(mnemonic: Mnemonic) -> bool {
    matches!(
        mnemonic,
        Mnemonic::Div
            | Mnemonic::Idiv
            | Mnemonic::Divss
            | Mnemonic::Divsd
            | Mnemonic::Divps
            | Mnemonic::Divpd
            | Mnemonic::Vdivss
            | Mnemonic::Vdivsd
            | Mnemonic::Vdivps
            | Mnemonic::Vdivpd
            | Mnemonic::Sqrtss
            | Mnemonic::Sqrtsd
            | Mnemonic::Sqrtps
            | Mnemonic::Sqrtpd
            | Mnemonic::Vsqrtss
            | Mnemonic::Vsqrtsd
            | Mnemonic::Vsqrtps
            | Mnemonic::Vsqrtpd
            | Mnemonic::Fdiv
            | Mnemonic::Fdivp
            | Mnemonic::Fdivr
            | Mnemonic::Fdivrp
            | Mnemonic::Fidiv
            | Mnemonic::Fidivr
            | Mnemonic::Fsqrt
    )
}

/// The registers and stack slots that contain an address not derived from
/// data. At entry these are the System V pointer arguments (`rdi` is the
/// record, `rsi` the outcome) and the stack pointer. A plain `mov` or `lea`
/// from one of them adds its destination.
struct Addresses {
    registers: BTreeSet<Register>,
    /// Displacements from `rsp` of spill slots that hold an address.
    stack_slots: BTreeSet<u64>,
}

impl Addresses {
    fn at_entry() -> Addresses {
        Addresses {
            registers: [Register::RDI, Register::RSI, Register::RSP, Register::RBP]
                .into_iter()
                .collect(),
            stack_slots: BTreeSet::new(),
        }
    }

    fn is_address(&self, register: Register) -> bool {
        register == Register::RIP
            || register == Register::RSP
            || self.registers.contains(&register.full_register())
    }

    /// Returns the `rsp` displacement of a spill slot operand without index.
    fn stack_slot(instruction: &Instruction) -> Option<u64> {
        (instruction.memory_base() == Register::RSP && instruction.memory_index() == Register::None)
            .then(|| instruction.memory_displacement64())
    }

    /// Updates the sets after `instruction`, given the registers it writes.
    fn update(&mut self, instruction: &Instruction, written: &[Register]) {
        let is_move = instruction.mnemonic() == Mnemonic::Mov && instruction.op_count() == 2;
        let destination = instruction.op0_kind();
        let source = instruction.op1_kind();
        let mut carried = None;
        if is_move && destination == OpKind::Register && source == OpKind::Register {
            carried = Some(self.is_address(instruction.op1_register()));
        } else if is_move && destination == OpKind::Register && source == OpKind::Memory {
            carried = Some(
                Addresses::stack_slot(instruction)
                    .is_some_and(|slot| self.stack_slots.contains(&slot)),
            );
        } else if instruction.mnemonic() == Mnemonic::Lea {
            carried = Some(
                self.is_address(instruction.memory_base())
                    && instruction.memory_index() == Register::None,
            );
        }
        for register in written {
            let full = register.full_register();
            if full != Register::RSP {
                self.registers.remove(&full);
            }
        }
        if let Some(true) = carried {
            self.registers
                .insert(instruction.op0_register().full_register());
        }
        if destination == OpKind::Memory {
            if let Some(slot) = Addresses::stack_slot(instruction) {
                let stores_address = is_move
                    && source == OpKind::Register
                    && self.is_address(instruction.op1_register());
                if stores_address {
                    self.stack_slots.insert(slot);
                } else {
                    self.stack_slots.remove(&slot);
                }
            }
        }
    }
}

/// Disassembles `code` and returns one message per instruction that can
/// make the time or the memory addresses depend on data. An empty result
/// means the code passed.
fn violations(code: &[u8]) -> Vec<String> {
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut info_factory = InstructionInfoFactory::new();
    let mut addresses = Addresses::at_entry();
    let mut found = Vec::new();
    let mut instruction = Instruction::default();
    let mut returned = false;
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let mut text = String::new();
        formatter.format(&instruction, &mut text);
        let at = format!("{:#06x} `{text}`", instruction.ip());
        if returned {
            found.push(format!("{at}: instruction after the final `ret`"));
        }
        if instruction.is_invalid() {
            found.push(format!("{at}: invalid instruction bytes"));
            continue;
        }
        match instruction.flow_control() {
            FlowControl::Next => {}
            FlowControl::Return if decoder.position() == code.len() => returned = true,
            other => found.push(format!("{at}: flow control {other:?}")),
        }
        if is_division(instruction.mnemonic()) {
            found.push(format!("{at}: division or square root"));
        }
        if instruction.has_rep_prefix() || instruction.has_repne_prefix() {
            found.push(format!("{at}: `rep` prefix"));
        }
        let has_memory_operand =
            (0..instruction.op_count()).any(|i| instruction.op_kind(i) == OpKind::Memory);
        if has_memory_operand && instruction.mnemonic() != Mnemonic::Lea {
            if instruction.memory_index() != Register::None {
                found.push(format!("{at}: memory operand with an index register"));
            }
            if !addresses.is_address(instruction.memory_base()) {
                found.push(format!(
                    "{at}: memory operand based on a register that may hold data"
                ));
            }
        }
        let info = info_factory.info(&instruction);
        let written: Vec<Register> = info
            .used_registers()
            .iter()
            .filter(|used| {
                matches!(
                    used.access(),
                    OpAccess::Write
                        | OpAccess::CondWrite
                        | OpAccess::ReadWrite
                        | OpAccess::ReadCondWrite
                )
            })
            .map(|used| used.register())
            .collect();
        addresses.update(&instruction, &written);
    }
    if !returned {
        found.push("the instructions do not end with `ret`".to_string());
    }
    found
}

#[test]
fn native_code_has_no_data_dependent_instructions() {
    if !cfg!(target_arch = "x86_64") {
        println!(
            "note: the structural check disassembles x86-64 only; skipped on {}",
            std::env::consts::ARCH
        );
        return;
    }
    let mut flows_checked = 0;
    let mut bytes_checked = 0;
    for (name, program) in programs() {
        let native = authflow_runtime::native::compile(&program)
            .unwrap_or_else(|error| panic!("{name}: native compilation failed: {error}"));
        assert_eq!(native.flows().len(), program.flows.len(), "{name}");
        for (flow, compiled) in program.flows.iter().zip(native.flows()) {
            let found = violations(compiled.instructions());
            assert!(
                found.is_empty(),
                "{name}: flow `{}` has data-dependent instructions:\n{}",
                flow.name,
                found.join("\n")
            );
            flows_checked += 1;
            bytes_checked += compiled.instructions().len();
        }
    }
    println!("checked {flows_checked} flows, {bytes_checked} bytes of machine code");
    assert!(
        flows_checked >= 120,
        "only {flows_checked} flows were checked"
    );
}

#[test]
fn checker_rejects_branches_division_and_indexing() {
    // Each case is hand-assembled x86-64 followed by `ret` (0xc3).
    let cases: [(&str, &[u8]); 8] = [
        ("je +0", &[0x74, 0x00, 0xc3]),
        ("jmp +0", &[0xeb, 0x00, 0xc3]),
        ("call rax", &[0xff, 0xd0, 0xc3]),
        ("jmp rax", &[0xff, 0xe0, 0xc3]),
        ("div rcx", &[0x48, 0xf7, 0xf1, 0xc3]),
        ("idiv rcx", &[0x48, 0xf7, 0xf9, 0xc3]),
        ("mov rax, [rdi + rcx*8]", &[0x48, 0x8b, 0x04, 0xcf, 0xc3]),
        // Loads a record word into rax, then dereferences it.
        (
            "mov rax, [rdi]; mov rax, [rax]",
            &[0x48, 0x8b, 0x07, 0x48, 0x8b, 0x00, 0xc3],
        ),
    ];
    for (text, code) in cases {
        assert!(!violations(code).is_empty(), "`{text}` was accepted");
    }
}

#[test]
fn checker_accepts_cmov_setcc_and_spilled_pointers() {
    let code = [
        0x48, 0x39, 0xc8, // cmp rax, rcx
        0x48, 0x0f, 0x44, 0xc1, // cmove rax, rcx
        0x0f, 0x94, 0xc0, // sete al
        0x48, 0x89, 0x3c, 0x24, // mov [rsp], rdi
        0x48, 0x8b, 0x04, 0x24, // mov rax, [rsp]
        0x48, 0x8b, 0x40, 0x08, // mov rax, [rax + 8]
        0xc3, // ret
    ];
    assert_eq!(violations(&code), Vec::<String>::new());
}

#[test]
fn checker_requires_final_ret() {
    assert!(!violations(&[0x90]).is_empty());
    assert!(!violations(&[0xc3, 0x90]).is_empty());
}

#[test]
fn bytecode_runs_every_instruction_once() {
    for (name, program) in programs() {
        for flow in &program.flows {
            let mut record = vec![0u64; program.layout.words as usize];
            let mut registers = vec![0u64; flow.registers as usize];
            let mut outcome = vec![0u64; flow.outcome_words as usize];
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            for round in 0..4 {
                for word in record.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *word = if round == 0 { 0 } else { seed };
                }
                let mut opcodes = Vec::new();
                kernel::run_recording(
                    &flow.code,
                    &record,
                    &mut registers,
                    &mut outcome,
                    &mut opcodes,
                );
                assert_eq!(
                    opcodes.len(),
                    flow.code.len(),
                    "{name}: flow `{}` executed {} of {} instructions",
                    flow.name,
                    opcodes.len(),
                    flow.code.len()
                );
            }
        }
    }
}
