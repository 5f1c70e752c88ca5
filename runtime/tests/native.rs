//! The native kernel against the interpreter: every instruction in
//! isolation, random straight-line programs, and every flow of the
//! repository's policies on records bound from their cases, on mutations of
//! those records and on random records. Both backends must write the same
//! outcome words and leave the same words untouched.

use std::path::{Path, PathBuf};

use authflow_compiler::{compile, NoImports};
use authflow_runtime::native::{self, NativeProgram, RunError};
use authflow_runtime::program::{
    out, slot, Flow, Instr, Layout, Program, Schema, Verdict, FORMAT, FORMAT_VERSION,
};
use authflow_runtime::value::{hour_of, weekday_of};
use authflow_runtime::{kernel, FlowState, Policy};
use serde_json::Value;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 86_400_000_000;
/// Fills the outcome buffers before a run, so words a flow does not store
/// are compared too.
const UNTOUCHED: u64 = 0x5a5a_5a5a_5a5a_5a5a;
/// Fills the interpreter's registers before a run. The native compiler
/// rejects a read of a register before its first write, so stale register
/// contents must not change an outcome.
const STALE: u64 = 0xdead_beef_dead_beef;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, limit: usize) -> usize {
        (self.next() % limit.max(1) as u64) as usize
    }

    /// Returns a word that is often an edge value for signed arithmetic,
    /// shifts and time functions, and otherwise random.
    fn interesting(&mut self) -> u64 {
        let edges = edge_values();
        match self.below(4) {
            0 => edges[self.below(edges.len())],
            1 => (self.below(41) as i64 - 20) as u64,
            2 => {
                let base = edges[self.below(edges.len())];
                base.wrapping_add((self.below(5) as u64).wrapping_sub(2))
            }
            _ => self.next(),
        }
    }
}

/// Signed and unsigned boundaries, shift amounts around 64, powers of two
/// and hour and day boundaries near zero and near the ends of `i64`.
fn edge_values() -> Vec<u64> {
    let mut values = vec![
        0,
        1,
        2,
        3,
        7,
        62,
        63,
        64,
        65,
        127,
        128,
        255,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX - 63,
        i64::MIN as u64,
        (i64::MIN + 1) as u64,
        i64::MAX as u64,
        (i64::MAX - 1) as u64,
        HOUR as u64,
        DAY as u64,
        (-HOUR) as u64,
        (-DAY) as u64,
        (i64::MIN / DAY * DAY) as u64,
        (i64::MAX / DAY * DAY) as u64,
        (i64::MIN / HOUR * HOUR) as u64,
        (i64::MAX / HOUR * HOUR) as u64,
        // 2026-12-04T10:00:00Z, a Friday.
        1_796_378_400_000_000,
    ];
    for shift in [1, 31, 32, 33, 62] {
        values.push(1 << shift);
        values.push((1u64 << shift) - 1);
        values.push((1u64 << shift).wrapping_neg());
    }
    values
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Finds every `policy.flow` of the scenarios, the test cases and the
/// examples, with the `cases.json` beside it when there is one.
fn policy_files() -> Vec<(PathBuf, Option<PathBuf>)> {
    let mut files = Vec::new();
    for folder in ["tests/scenarios", "tests/cases", "examples"] {
        let Ok(entries) = std::fs::read_dir(repository().join(folder)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let policy = entry.path().join("policy.flow");
            let cases = entry.path().join("cases.json");
            if policy.exists() {
                files.push((policy, cases.exists().then_some(cases)));
            }
        }
    }
    files.sort();
    files
}

fn compile_policy(path: &Path) -> Program {
    let text = std::fs::read_to_string(path).expect("read policy");
    let compilation = compile("policy.flow", &text, &mut NoImports);
    compilation
        .program
        .unwrap_or_else(|| panic!("{} does not compile", path.display()))
}

/// Returns every state a case goes through that is valid input.
fn states(policy: &Policy, case: &Value) -> Vec<FlowState> {
    let Some(request) = case.get("request").filter(|r| r.is_object()) else {
        return Vec::new();
    };
    let Ok(mut state) = policy.start(request, 0) else {
        return Vec::new();
    };
    let mut all = vec![state.clone()];
    for event in case["events"].as_array().cloned().unwrap_or_default() {
        match policy.resume(&state, &event) {
            Ok(next) => state = next,
            Err(_) => break,
        }
        all.push(state.clone());
    }
    all
}

/// Binds a record from every valid state of every case in `cases`.
fn case_records(policy: &Policy, cases: &Path) -> Vec<Vec<u64>> {
    let text = std::fs::read_to_string(cases).expect("read cases");
    let cases: Value = serde_json::from_str(&text).expect("cases are JSON");
    let mut records = Vec::new();
    for case in cases["cases"].as_array().expect("a list of cases") {
        for state in states(policy, case) {
            let facts = policy.facts(&state).expect("valid state");
            let mut scratch = policy.scratch();
            let _strings = policy.bind(&facts, &mut scratch);
            records.push(scratch.record);
        }
    }
    records
}

fn interpret(flow: &Flow, record: &[u64]) -> Vec<u64> {
    let mut registers = vec![STALE; flow.registers as usize];
    let mut outcome = vec![UNTOUCHED; flow.outcome_words as usize + 1];
    kernel::run(
        &flow.code,
        record,
        &mut registers,
        &mut outcome[..flow.outcome_words as usize],
    );
    outcome
}

fn run_native(native: &NativeProgram, flow: usize, words: u32, record: &[u64]) -> Vec<u64> {
    let mut outcome = vec![UNTOUCHED; words as usize + 1];
    native
        .run(flow, record, &mut outcome)
        .expect("buffers are long enough");
    outcome
}

/// Runs every flow of `program` on `record` with both backends and panics
/// with the differing words if the outcome buffers differ.
fn compare_all_flows(program: &Program, native: &NativeProgram, record: &[u64], what: &str) {
    for (index, flow) in program.flows.iter().enumerate() {
        let expected = interpret(flow, record);
        if flow.registers as usize <= kernel::FILE {
            let mut file = [STALE; kernel::FILE];
            let mut outcome = vec![UNTOUCHED; flow.outcome_words as usize + 1];
            let words = flow.outcome_words as usize;
            kernel::run_small(&flow.code, record, &mut file, &mut outcome[..words]);
            assert_eq!(
                expected, outcome,
                "{what}: flow `{}`: fixed register file",
                flow.name
            );
        }
        let actual = run_native(native, index, flow.outcome_words, record);
        if expected != actual {
            let words: Vec<String> = expected
                .iter()
                .zip(&actual)
                .enumerate()
                .filter(|(_, (e, a))| e != a)
                .map(|(i, (e, a))| format!("word {i}: interpreter {e:#x}, native {a:#x}"))
                .collect();
            panic!(
                "{what}: flow `{}` differs on record {record:x?}:\n{}",
                flow.name,
                words.join("\n")
            );
        }
    }
}

/// Checks each flow's decision kernel, interpreted and compiled, against
/// its whole code: every word but the trace words is equal, and the decision
/// kernel writes no trace word.
fn compare_untraced(program: &Program, records: &[Vec<u64>], what: &str) {
    let mut untraced = program.clone();
    for flow in &mut untraced.flows {
        flow.code = flow.untraced_code();
    }
    let native = native::compile(&untraced).unwrap_or_else(|error| panic!("{what}: {error}"));
    for (index, (flow, decision)) in program.flows.iter().zip(&untraced.flows).enumerate() {
        assert!(
            decision.code.len() < flow.code.len(),
            "{what}: flow `{}` has no trace store to remove",
            flow.name
        );
        let trace: Vec<u32> = flow.trace_words().collect();
        for record in records {
            let full = interpret(flow, record);
            let interpreted = interpret(decision, record);
            let compiled = run_native(&native, index, flow.outcome_words, record);
            for word in 0..full.len() {
                let expected = if trace.contains(&(word as u32)) {
                    UNTOUCHED
                } else {
                    full[word]
                };
                assert_eq!(
                    (interpreted[word], compiled[word]),
                    (expected, expected),
                    "{what}: flow `{}` word {word} on record {record:x?}",
                    flow.name
                );
            }
        }
    }
}

#[test]
fn policies_match_interpreter() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut programs = 0;
    let mut scenarios = 0;
    let mut records_checked = 0;
    for (path, cases) in policy_files() {
        let program = compile_policy(&path);
        let native =
            native::compile(&program).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let policy = Policy::new(program.clone()).expect("verified");
        let what = path.display().to_string();
        let words = program.layout.words as usize;

        let bound = cases
            .as_deref()
            .map(|cases| case_records(&policy, cases))
            .unwrap_or_default();
        if what.contains("scenarios") {
            scenarios += 1;
            assert!(!bound.is_empty(), "{what}: no case binds a record");
        }
        let mut records = bound.clone();
        for record in &bound {
            for _ in 0..40 {
                let mut mutated = record.clone();
                for _ in 0..=random.below(3) {
                    let word = random.below(words);
                    mutated[word] = match random.below(3) {
                        0 => random.interesting(),
                        1 => mutated[word] ^ (1 << random.below(64)),
                        _ => mutated[word].wrapping_add(random.interesting()),
                    };
                }
                records.push(mutated);
            }
        }
        for _ in 0..1_000 {
            records.push((0..words).map(|_| random.next()).collect());
            records.push((0..words).map(|_| random.interesting()).collect());
        }
        for record in &records {
            compare_all_flows(&program, &native, record, &what);
        }
        compare_untraced(
            &program,
            &records[..records.len().min(bound.len() * 41 + 200)],
            &what,
        );
        records_checked += records.len();
        programs += 1;
    }
    assert!(scenarios >= 10, "only {scenarios} scenario policies found");
    assert!(programs >= 13, "only {programs} policies found");
    assert!(records_checked > 20_000, "only {records_checked} records");
}

/// The case records of every scenario must reach more than one deciding
/// site of some flow natively, so the comparison above covers more than one
/// path through each scenario policy.
#[test]
fn case_records_reach_several_sites() {
    for (path, cases) in policy_files() {
        if !path.to_string_lossy().contains("scenarios") {
            continue;
        }
        let cases = cases.expect("every scenario has cases");
        let program = compile_policy(&path);
        let native = native::compile(&program).expect("compiles");
        let policy = Policy::new(program.clone()).expect("verified");
        let mut sites = vec![std::collections::BTreeSet::new(); program.flows.len()];
        for record in case_records(&policy, &cases) {
            for (index, flow) in program.flows.iter().enumerate() {
                let outcome = run_native(&native, index, flow.outcome_words, &record);
                sites[index].insert(decision_and_site(&outcome));
            }
        }
        let multi_path = sites.iter().filter(|s| s.len() > 1).count();
        assert!(
            multi_path > 0,
            "{}: the case records reach one site per flow",
            path.display()
        );
    }
}

/// Builds a one-flow program around `code`, with a record of the minimum
/// size.
fn probe_program(code: Vec<Instr>, registers: u32, outcome_words: u32) -> Program {
    let mut program = probe_program_with_record(code, registers, outcome_words);
    program.layout.words = slot::ROLES;
    program
}

/// Builds a one-flow program around `code` whose record has the words its
/// loads need, and at least the fixed part.
fn probe_program_with_record(code: Vec<Instr>, registers: u32, outcome_words: u32) -> Program {
    let loaded = code
        .iter()
        .filter_map(|instr| match instr {
            Instr::Load { slot, .. } => Some(slot + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Program {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        policy: None,
        schema: Schema {
            enums: Vec::new(),
            kinds: Vec::new(),
            context: Vec::new(),
            switches: Vec::new(),
        },
        strings: Vec::new(),
        roles: Vec::new(),
        layout: Layout {
            words: loaded.max(slot::ROLES),
            string_set_words: 1,
            string_slots: Vec::new(),
        },
        flows: vec![Flow {
            name: "probe".to_string(),
            kinds: Vec::new(),
            event: None,
            entry: true,
            registers,
            outcome_words,
            role_words: 0,
            obligations: 0,
            code,
            sites: Vec::new(),
            emits: Vec::new(),
            exceptions: Vec::new(),
            steps: Vec::new(),
        }],
    }
}

/// An instruction with operands in registers 0, 1 and 2 and its result in
/// register 3, with the reference result computed in Rust.
struct Case {
    name: &'static str,
    operands: usize,
    instr: Instr,
    expected: fn(&[u64]) -> u64,
}

fn instruction_cases() -> Vec<Case> {
    vec![
        Case {
            name: "and",
            operands: 2,
            instr: Instr::And { dst: 3, a: 0, b: 1 },
            expected: |v| v[0] & v[1],
        },
        Case {
            name: "or",
            operands: 2,
            instr: Instr::Or { dst: 3, a: 0, b: 1 },
            expected: |v| v[0] | v[1],
        },
        Case {
            name: "xor",
            operands: 2,
            instr: Instr::Xor { dst: 3, a: 0, b: 1 },
            expected: |v| v[0] ^ v[1],
        },
        Case {
            name: "shr",
            operands: 2,
            instr: Instr::Shr { dst: 3, a: 0, b: 1 },
            expected: |v| v[0] >> (v[1] % 64),
        },
        Case {
            name: "eq",
            operands: 2,
            instr: Instr::Eq { dst: 3, a: 0, b: 1 },
            expected: |v| u64::from(v[0] == v[1]),
        },
        Case {
            name: "lt",
            operands: 2,
            instr: Instr::Lt { dst: 3, a: 0, b: 1 },
            expected: |v| u64::from((v[0] as i64) < (v[1] as i64)),
        },
        Case {
            name: "le",
            operands: 2,
            instr: Instr::Le { dst: 3, a: 0, b: 1 },
            expected: |v| u64::from((v[0] as i64) <= (v[1] as i64)),
        },
        Case {
            name: "add",
            operands: 2,
            instr: Instr::Add { dst: 3, a: 0, b: 1 },
            expected: |v| (v[0] as i64).saturating_add(v[1] as i64) as u64,
        },
        Case {
            name: "sub",
            operands: 2,
            instr: Instr::Sub { dst: 3, a: 0, b: 1 },
            expected: |v| (v[0] as i64).saturating_sub(v[1] as i64) as u64,
        },
        Case {
            name: "select",
            operands: 3,
            instr: Instr::Select {
                dst: 3,
                cond: 0,
                a: 1,
                b: 2,
            },
            expected: |v| if v[0] & 1 == 1 { v[1] } else { v[2] },
        },
        Case {
            name: "nonzero",
            operands: 1,
            instr: Instr::Nonzero { dst: 3, a: 0 },
            expected: |v| u64::from(v[0] != 0),
        },
        Case {
            name: "mask",
            operands: 1,
            instr: Instr::Mask { dst: 3, a: 0 },
            expected: |v| if v[0] & 1 == 1 { u64::MAX } else { 0 },
        },
        Case {
            name: "popcount",
            operands: 1,
            instr: Instr::Popcount { dst: 3, a: 0 },
            expected: |v| u64::from(v[0].count_ones()),
        },
        Case {
            name: "hour",
            operands: 1,
            instr: Instr::Hour { dst: 3, a: 0 },
            expected: |v| hour_of(v[0] as i64) as u64,
        },
        Case {
            name: "weekday",
            operands: 1,
            instr: Instr::Weekday { dst: 3, a: 0 },
            expected: |v| weekday_of(v[0] as i64) as u64,
        },
    ]
}

/// Returns operand tuples for one instruction: every combination of edge
/// values (for up to two operands), then random and mixed tuples.
fn operand_tuples(operands: usize, random: &mut Random) -> Vec<Vec<u64>> {
    let edges = edge_values();
    let mut tuples = Vec::new();
    match operands {
        1 => tuples.extend(edges.iter().map(|&x| vec![x])),
        2 => {
            for &x in &edges {
                tuples.extend(edges.iter().map(|&y| vec![x, y]));
            }
        }
        _ => {
            for &cond in &[0, 1, 2, 3, u64::MAX, i64::MIN as u64] {
                for &x in &edges {
                    let mut tuple = vec![cond, x, !x];
                    tuple.resize(operands, x.rotate_left(17));
                    tuples.push(tuple);
                }
            }
        }
    }
    for _ in 0..20_000 {
        tuples.push((0..operands).map(|_| random.next()).collect());
        tuples.push((0..operands).map(|_| random.interesting()).collect());
    }
    tuples
}

fn time_values(random: &mut Random) -> Vec<u64> {
    let mut times = Vec::new();
    for unit in [HOUR, DAY] {
        for k in -100..100 {
            for delta in [-1, 0, 1] {
                times.push((k * unit + delta) as u64);
            }
        }
        for base in [i64::MIN / unit, i64::MAX / unit] {
            for k in -3..=3 {
                for delta in [-1, 0, 1] {
                    let time = (base + k).saturating_mul(unit).saturating_add(delta);
                    times.push(time as u64);
                }
            }
        }
    }
    for _ in 0..100_000 {
        times.push(random.next());
        // Times within 200 years of 1970, where real requests fall.
        let span = 6_311_390_400_000_000i64;
        times.push((random.next() % (2 * span as u64)).wrapping_sub(span as u64));
    }
    times
}

#[test]
fn each_instruction_matches_interpreter() {
    let mut random = Random(0x0123_4567_89ab_cdef);
    for case in instruction_cases() {
        let mut code: Vec<Instr> = (0..case.operands as u32)
            .map(|i| Instr::Load { dst: i, slot: i })
            .collect();
        code.push(case.instr);
        code.push(Instr::Store {
            slot: out::AWAITING,
            src: 3,
        });
        let program = probe_program(code, 4, out::AWAITING + 1);
        let native =
            native::compile(&program).unwrap_or_else(|error| panic!("{}: {error}", case.name));
        let mut tuples = operand_tuples(case.operands, &mut random);
        if case.name == "hour" || case.name == "weekday" {
            tuples.extend(time_values(&mut random).into_iter().map(|t| vec![t]));
        }
        let mut record = vec![0; slot::ROLES as usize];
        for operands in tuples {
            record[..operands.len()].copy_from_slice(&operands);
            let flow = &program.flows[0];
            let interpreted = interpret(flow, &record);
            let compiled = run_native(&native, 0, flow.outcome_words, &record);
            let expected = (case.expected)(&operands);
            let word = out::AWAITING as usize;
            assert_eq!(
                interpreted[word], expected,
                "{}: interpreter on {operands:x?}",
                case.name
            );
            assert_eq!(
                compiled[word], expected,
                "{}: native code on {operands:x?}",
                case.name
            );
            assert_eq!(compiled, interpreted, "{}: untouched words", case.name);
        }
    }
}

/// The same instructions with one operand a constant, so Cranelift can fold
/// it into an immediate or specialize the operation.
#[test]
fn each_instruction_with_constant_operand() {
    let mut random = Random(0xfeed_f00d_1234_5678);
    let mut constants = edge_values();
    constants.extend((0..40).map(|_| random.interesting()));
    for case in instruction_cases() {
        let last = case.operands as u32 - 1;
        // Per constant: registers 0..last from the record, register `last`
        // the constant, result in register 3, stored at its own word.
        let mut code = Vec::new();
        for (k, &value) in constants.iter().enumerate() {
            code.extend((0..last).map(|i| Instr::Load { dst: i, slot: i }));
            code.push(Instr::Const { dst: last, value });
            code.push(case.instr);
            code.push(Instr::Store {
                slot: out::AWAITING + k as u32,
                src: 3,
            });
        }
        let words = out::AWAITING + constants.len() as u32;
        let program = probe_program(code, 4, words);
        let native =
            native::compile(&program).unwrap_or_else(|error| panic!("{}: {error}", case.name));
        let flow = &program.flows[0];
        let mut record = vec![0; slot::ROLES as usize];
        let mut inputs = edge_values();
        inputs.extend((0..500).map(|_| random.interesting()));
        for &x in &inputs {
            for &y in &[x, !x, 0, 1] {
                record[0] = x;
                record[1] = y;
                let interpreted = interpret(flow, &record);
                let compiled = run_native(&native, 0, words, &record);
                for (k, &value) in constants.iter().enumerate() {
                    let mut operands = record[..last as usize].to_vec();
                    operands.push(value);
                    let word = out::AWAITING as usize + k;
                    let expected = (case.expected)(&operands);
                    assert_eq!(
                        interpreted[word], expected,
                        "{}: interpreter on {operands:x?}",
                        case.name
                    );
                    assert_eq!(
                        compiled[word], expected,
                        "{}: native code on {operands:x?}",
                        case.name
                    );
                }
                assert_eq!(compiled, interpreted, "{}: all words", case.name);
            }
        }
    }
}

/// Generates a random straight-line program. It loads or sets every register
/// first, then runs random instructions, where a destination may equal an
/// operand and a word may be stored twice, and then stores every register.
fn random_program(random: &mut Random, registers: u32, length: usize, words: u32) -> Vec<Instr> {
    let mut code = Vec::new();
    for dst in 0..registers {
        if random.below(4) == 0 {
            code.push(Instr::Const {
                dst,
                value: random.interesting(),
            });
        } else {
            code.push(Instr::Load {
                dst,
                slot: random.below(slot::ROLES as usize) as u32,
            });
        }
    }
    let register = |random: &mut Random| random.below(registers as usize) as u32;
    for _ in 0..length {
        let (dst, a, b, c) = (
            register(random),
            register(random),
            register(random),
            register(random),
        );
        let instr = match random.below(19) {
            0 => Instr::And { dst, a, b },
            1 => Instr::Or { dst, a, b },
            2 => Instr::Xor { dst, a, b },
            3 => Instr::Shr { dst, a, b },
            4 => Instr::Eq { dst, a, b },
            5 => Instr::Lt { dst, a, b },
            6 => Instr::Le { dst, a, b },
            7 => Instr::Add { dst, a, b },
            8 => Instr::Sub { dst, a, b },
            9 => Instr::Select { dst, cond: c, a, b },
            17 => Instr::Select {
                dst,
                cond: c,
                a,
                b: dst,
            },
            10 => Instr::Nonzero { dst, a },
            11 => Instr::Mask { dst, a },
            12 => Instr::Popcount { dst, a },
            13 => Instr::Hour { dst, a },
            14 => Instr::Weekday { dst, a },
            15 => Instr::Const {
                dst,
                value: random.interesting(),
            },
            16 => Instr::Load {
                dst,
                slot: random.below(slot::ROLES as usize) as u32,
            },
            _ => Instr::Store {
                slot: random.below(words as usize) as u32,
                src: a,
            },
        };
        code.push(instr);
    }
    for src in 0..registers {
        code.push(Instr::Store {
            slot: src % words,
            src,
        });
    }
    code
}

#[test]
fn random_programs_match_interpreter() {
    let mut random = Random(0x5151_2727_8383_9191);
    for round in 0..300 {
        let registers = 1 + random.below(40) as u32;
        let length = random.below(300);
        let words = out::AWAITING + 1 + random.below(40) as u32;
        let code = random_program(&mut random, registers, length, words);
        let program = probe_program(code, registers, words);
        let native = native::compile(&program)
            .unwrap_or_else(|error| panic!("random program {round}: {error}"));
        for _ in 0..50 {
            let record: Vec<u64> = (0..slot::ROLES).map(|_| random.interesting()).collect();
            compare_all_flows(
                &program,
                &native,
                &record,
                &format!("random program {round}"),
            );
        }
    }
}

/// A chain of 1,000 saturating adds. Each overwrites its first operand and
/// reads another register, which is either still loaded or already added to.
#[test]
fn chained_adds_match_interpreter() {
    let mut random = Random(0x7777_0000_1111_2222);
    let registers = 1_000;
    let mut code: Vec<Instr> = (0..registers)
        .map(|dst| Instr::Load {
            dst,
            slot: dst % slot::ROLES,
        })
        .collect();
    for dst in 0..registers {
        code.push(Instr::Add {
            dst,
            a: dst,
            b: (dst * 7 + 3) % registers,
        });
    }
    code.extend((0..registers).map(|src| Instr::Store {
        slot: out::AWAITING + src,
        src,
    }));
    let program = probe_program(code, registers, out::AWAITING + registers);
    let native = native::compile(&program).expect("compiles");
    for _ in 0..200 {
        let record: Vec<u64> = (0..slot::ROLES).map(|_| random.interesting()).collect();
        compare_all_flows(&program, &native, &record, "chained adds");
    }
}

/// Builds a flow with `count` values live at once: it stores every word of
/// a record of `count` words in order, then again in reverse order. Each
/// load is scheduled before its first store and stays live until its
/// second one, because the translation does not load a word twice.
fn many_live_values(count: u32) -> Program {
    let mut code: Vec<Instr> = (0..count)
        .map(|dst| Instr::Load { dst, slot: dst })
        .collect();
    code.extend((0..count).map(|k| Instr::Store {
        slot: out::AWAITING + k,
        src: k,
    }));
    code.extend((0..count).map(|k| Instr::Store {
        slot: out::AWAITING + count + k,
        src: count - 1 - k,
    }));
    probe_program_with_record(code, count, out::AWAITING + 2 * count)
}

#[test]
fn large_frame_matches_interpreter() {
    // 1,500 live values spill to a frame of about three pages, which gets
    // unrolled stack probes and stays a single block.
    let program = many_live_values(1_500);
    let native = native::compile_with_listing(&program).expect("compiles");
    if cfg!(target_arch = "x86_64") {
        // Each probe moves the stack pointer down by a page and writes there.
        let listing = native.flows()[0].listing().expect("listing kept");
        assert!(
            listing.contains("subq $0x1000, %rsp"),
            "no probe in\n{listing}"
        );
    }
    let mut random = Random(0x4242_4242_1717_1717);
    for _ in 0..50 {
        let words = program.layout.words;
        let record: Vec<u64> = (0..words).map(|_| random.interesting()).collect();
        compare_all_flows(&program, &native, &record, "large frame");
    }
}

#[test]
fn huge_frame_is_rejected() {
    // 3,000 live values need a frame of about 24 KiB. Cranelift unrolls the
    // stack probes of at most four pages and emits a loop for more, so
    // compilation fails and the engine keeps the interpreter.
    let error = native::compile(&many_live_values(3_000)).expect_err("a probe loop");
    assert!(error.contains("stack probe loop"), "{error}");
}

#[test]
fn compile_rejects_read_before_write() {
    let code = vec![
        Instr::Const { dst: 0, value: 1 },
        Instr::Add { dst: 2, a: 0, b: 1 },
        Instr::Store {
            slot: out::AWAITING,
            src: 2,
        },
    ];
    let error = native::compile(&probe_program(code, 3, out::AWAITING + 1))
        .expect_err("register 1 is never written");
    assert!(error.contains("instruction 1"), "{error}");
    assert!(error.contains("register 1 is read before"), "{error}");
}

#[test]
fn compile_rejects_unverified_program() {
    let code = vec![
        Instr::Load {
            dst: 0,
            slot: slot::ROLES,
        },
        Instr::Store {
            slot: out::AWAITING,
            src: 0,
        },
    ];
    let error = native::compile(&probe_program(code, 1, out::AWAITING + 1))
        .expect_err("the load is out of range");
    assert!(error.contains("record slot"), "{error}");
}

#[test]
fn run_checks_buffer_lengths() {
    let code = vec![
        Instr::Load { dst: 0, slot: 0 },
        Instr::Store {
            slot: out::AWAITING,
            src: 0,
        },
    ];
    let program = probe_program(code, 1, out::AWAITING + 1);
    let native = native::compile(&program).expect("compiles");
    let words = slot::ROLES as usize;
    let outcome_words = out::AWAITING as usize + 1;
    let record = vec![7; words];
    let mut outcome = vec![0; outcome_words];

    assert_eq!(
        native.run(1, &record, &mut outcome),
        Err(RunError::UnknownFlow { flow: 1, flows: 1 })
    );
    assert_eq!(
        native.run(0, &record[..words - 1], &mut outcome),
        Err(RunError::RecordTooShort {
            len: words - 1,
            words
        })
    );
    assert_eq!(
        native.run(0, &record, &mut outcome[..outcome_words - 1]),
        Err(RunError::OutcomeTooShort {
            len: outcome_words - 1,
            words: outcome_words
        })
    );
    assert_eq!(
        outcome,
        vec![0; outcome_words],
        "a failed run writes nothing"
    );

    let mut longer = vec![1; outcome_words + 3];
    native
        .run(0, &record, &mut longer)
        .expect("longer buffers are fine");
    assert_eq!(longer[out::AWAITING as usize], 7);
    assert_eq!(&longer[outcome_words..], &[1, 1, 1]);
}

#[test]
fn native_program_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NativeProgram>();

    let (path, cases) = policy_files()
        .into_iter()
        .find(|(path, _)| path.to_string_lossy().contains("01-workforce-login"))
        .expect("the workforce scenario");
    let program = compile_policy(&path);
    let native = native::compile(&program).expect("compiles");
    let policy = Policy::new(program.clone()).expect("verified");
    let records = case_records(&policy, &cases.expect("cases"));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for record in &records {
                    compare_all_flows(&program, &native, record, "thread");
                }
            });
        }
    });
}

/// Tells by its mnemonic whether an instruction of Cranelift's listing
/// branches, calls, traps or divides.
/// NOTE: the AArch64 list was written from the instruction set and has not
/// run on an AArch64 host.
fn is_forbidden(mnemonic: &str) -> bool {
    if cfg!(target_arch = "x86_64") {
        is_forbidden_x86(mnemonic)
    } else {
        is_forbidden_aarch64(mnemonic)
    }
}

fn is_forbidden_x86(mnemonic: &str) -> bool {
    let prefixes = ["j", "call", "div", "idiv", "loop", "ud2", "stack_probe"];
    prefixes.iter().any(|prefix| mnemonic.starts_with(prefix))
}

/// Branches, calls, divisions and traps in Cranelift's AArch64 listing.
fn is_forbidden_aarch64(mnemonic: &str) -> bool {
    let exact = [
        "b", "bl", "br", "blr", "cbz", "cbnz", "tbz", "tbnz", "udiv", "sdiv", "udf",
    ];
    exact.contains(&mnemonic) || mnemonic.starts_with("b.") || mnemonic.starts_with("stack_probe")
}

fn forbidden_lines(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter(|line| is_forbidden(line.split_whitespace().next().unwrap_or("")))
        .collect()
}

#[test]
fn policy_code_is_one_block_without_branches() {
    for (path, _) in policy_files() {
        let traced = compile_policy(&path);
        let mut untraced = traced.clone();
        for flow in &mut untraced.flows {
            flow.code = flow.untraced_code();
        }
        for (variant, program) in [("traced", traced), ("untraced", untraced)] {
            let native = native::compile_with_listing(&program).expect("compiles");
            for (index, flow) in native.flows().iter().enumerate() {
                let name = format!(
                    "{}: {variant} flow `{}`",
                    path.display(),
                    program.flows[index].name
                );
                let listing = flow.listing().expect("listing kept");
                let blocks = listing
                    .lines()
                    .filter(|line| line.trim_end().ends_with(':'))
                    .count();
                assert_eq!(blocks, 1, "{name}: blocks in\n{listing}");
                let forbidden = forbidden_lines(listing);
                assert!(forbidden.is_empty(), "{name}: {forbidden:?}");
                assert!(!flow.instructions().is_empty(), "{name}: no instructions");
                assert_eq!(
                    flow.instructions().len() + flow.constants().len(),
                    flow.code().len(),
                    "{name}: instructions and constants"
                );
                if cfg!(target_arch = "x86_64") {
                    assert_eq!(
                        flow.instructions().last(),
                        Some(&0xc3),
                        "{name}: the instructions end with `ret`"
                    );
                }
            }
        }
    }
}

#[test]
fn time_instructions_have_no_division() {
    let code = vec![
        Instr::Load { dst: 0, slot: 0 },
        Instr::Hour { dst: 1, a: 0 },
        Instr::Weekday { dst: 2, a: 0 },
        Instr::Store {
            slot: out::AWAITING,
            src: 1,
        },
        Instr::Store {
            slot: out::AWAITING + 1,
            src: 2,
        },
    ];
    let native =
        native::compile_with_listing(&probe_program(code, 3, out::AWAITING + 2)).expect("compiles");
    let listing = native.flows()[0].listing().expect("listing kept");
    let forbidden = forbidden_lines(listing);
    assert!(forbidden.is_empty(), "{forbidden:?} in\n{listing}");
    if cfg!(target_arch = "x86_64") {
        assert!(
            listing.contains("mul"),
            "the divisions are multiplies:\n{listing}"
        );
    }
}

/// Measures the median nanoseconds per call of `evaluate` over `batches`
/// batches.
fn median_nanos(batches: usize, batch: usize, mut evaluate: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..batches)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..batch {
                evaluate();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Prints the time per evaluation of the workforce flow with each backend.
/// Run with `cargo test --release -p authflow-runtime --test native --
/// --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release mode"]
fn workforce_timing() {
    let (path, cases) = policy_files()
        .into_iter()
        .find(|(path, _)| path.to_string_lossy().contains("01-workforce-login"))
        .expect("the workforce scenario");
    let program = compile_policy(&path);
    let policy = Policy::new(program.clone()).expect("verified");
    let compile_start = std::time::Instant::now();
    let native = native::compile(&program).expect("compiles");
    let compile_time = compile_start.elapsed();
    let records = case_records(&policy, &cases.expect("cases"));
    let (index, flow) = program.flow("workforce_login").expect("the workforce flow");
    let mut scratch = policy.scratch();
    scratch.record.copy_from_slice(&records[0]);

    let batches = 100;
    let batch = 10_000;
    let interpreter = median_nanos(batches, batch, || {
        policy.decide(std::hint::black_box(index), &mut scratch);
        std::hint::black_box(&scratch.outcome);
    });
    let compiled = median_nanos(batches, batch, || {
        let result = native.run(
            std::hint::black_box(index),
            &scratch.record,
            &mut scratch.outcome,
        );
        assert!(result.is_ok());
        std::hint::black_box(&scratch.outcome);
    });
    println!(
        "workforce_login: {} instructions, {} bytes of machine code, compiled in {:?}",
        flow.code.len(),
        native.flows()[index].code().len(),
        compile_time
    );
    println!(
        "median per evaluation over {batches} batches of {batch}: interpreter {interpreter:.1} ns, native {compiled:.1} ns"
    );
}

#[test]
fn verify_rejects_slots_and_kinds_out_of_range() {
    let path = repository().join("tests/scenarios/01-workforce-login/policy.flow");
    let program = compile_policy(&path);
    assert!(program.verify().is_ok());

    let mut moved = program.clone();
    moved.schema.context[0].slot = moved.layout.words;
    let error = moved.verify().expect_err("attribute outside the record");
    assert!(error.contains("occupies record words"), "{error}");

    let mut slots = program.clone();
    slots.layout.string_slots.push(slots.layout.words);
    let error = slots.verify().expect_err("string slot outside the record");
    assert!(error.contains("string slot"), "{error}");

    let mut kinds = program.clone();
    kinds.flows[0].kinds.push(99);
    let error = kinds.verify().expect_err("unknown principal kind");
    assert!(error.contains("principal kind 99"), "{error}");
}

#[test]
fn aarch64_code_is_one_block_without_branches() {
    let mut flows = 0;
    for (path, _) in policy_files() {
        let traced = compile_policy(&path);
        let mut untraced = traced.clone();
        for flow in &mut untraced.flows {
            flow.code = flow.untraced_code();
        }
        for program in [traced, untraced] {
            let listings = native::listings_for_target(&program, "aarch64-unknown-linux-gnu")
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            for (flow, listing) in program.flows.iter().zip(&listings) {
                let name = format!("{}: flow `{}`", path.display(), flow.name);
                let forbidden: Vec<&str> = listing
                    .lines()
                    .filter(|line| {
                        is_forbidden_aarch64(line.split_whitespace().next().unwrap_or(""))
                    })
                    .collect();
                assert!(forbidden.is_empty(), "{name}: {forbidden:?} in\n{listing}");
                let last = listing.lines().rev().find(|line| !line.trim().is_empty());
                assert_eq!(last.map(str::trim), Some("ret"), "{name}: ends with `ret`");
                flows += 1;
            }
        }
    }
    assert!(flows > 40, "only {flows} flows compiled for AArch64");
}

/// Returns the decision code and the site of an outcome record.
fn decision_and_site(outcome: &[u64]) -> (u64, u64) {
    let verdict = Verdict(outcome[out::VERDICT as usize]);
    (verdict.code(), verdict.site())
}
