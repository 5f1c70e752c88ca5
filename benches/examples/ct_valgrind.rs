//! Checks with Valgrind's memcheck that the decision kernels, native and
//! bytecode, and the whole bytecode with its trace stores, neither branch on
//! nor compute an address from the input record.
//!
//! The workforce login policy is compiled to native code, and several input
//! records (bound requests that take different paths, and random words) are
//! marked undefined with memcheck's `MAKE_MEM_UNDEFINED` client request
//! before each kernel runs. Memcheck reports "Conditional jump or move depends
//! on uninitialised value(s)" for a branch on such data, and "Use of
//! uninitialised value of size 8" for an address computed from it. A
//! conditional move or `setcc` on undefined data is not reported, because
//! memcheck propagates definedness through them. After the kernel returns
//! the outcome is marked defined, so reading it is no error either. Both
//! kernels must reach the same decision and site on every record.
//!
//! Run: `cargo build --release -p authflow-benches --example ct_valgrind`,
//! then `valgrind --error-exitcode=1 target/release/examples/ct_valgrind`.
//! Zero errors is a pass. With `--control` the program also runs a
//! function that branches on the undefined record, which memcheck must
//! report, so that run must fail.
//!
//! The client requests are the x86-64 sequence of Valgrind's `valgrind.h`,
//! written with inline assembly, so the program needs no Valgrind headers
//! to build. On other architectures it prints a note and exits with 0.

#![allow(unsafe_code)]

use std::hint::black_box;
use std::process::ExitCode;

use authflow_benches::{WORKFORCE_POLICY, WORKFORCE_REQUEST};
use authflow_compiler::{compile, NoImports};
use authflow_runtime::program::{out, Verdict};
use authflow_runtime::{kernel, native, Policy};

/// `VG_USERREQ__RUNNING_ON_VALGRIND` of `valgrind.h` (Valgrind 3.19).
const RUNNING_ON_VALGRIND: u64 = 0x1001;
/// `VG_USERREQ__COUNT_ERRORS` of `valgrind.h`.
const COUNT_ERRORS: u64 = 0x1201;
/// `VG_USERREQ__MAKE_MEM_UNDEFINED` of `memcheck.h`:
/// `VG_USERREQ_TOOL_BASE('M', 'C') + 1`.
const MAKE_MEM_UNDEFINED: u64 = 0x4d43_0001;
/// `VG_USERREQ__MAKE_MEM_DEFINED` of `memcheck.h`.
const MAKE_MEM_DEFINED: u64 = 0x4d43_0002;

/// Sends a client request to Valgrind and returns its result, or `default`
/// when the program runs without Valgrind.
#[cfg(target_arch = "x86_64")]
fn client_request(default: u64, request: u64, arg1: u64, arg2: u64) -> u64 {
    let args: [u64; 6] = [request, arg1, arg2, 0, 0, 0];
    let result: u64;
    // SAFETY: outside Valgrind the sequence is four rotations of `rdi` by
    // 128 bits in total, which leave it unchanged, and an exchange of `rbx`
    // with itself, so it changes only the flags. Under Valgrind it reads the
    // six words at `rax`, which point into `args`, and writes the result to
    // `rdx`. The asm block keeps the default memory and flags clobbers, so
    // the compiler stores `args` before it and assumes the flags change.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") default => result,
        );
    }
    result
}

#[cfg(target_arch = "x86_64")]
fn running_on_valgrind() -> bool {
    client_request(0, RUNNING_ON_VALGRIND, 0, 0) != 0
}

#[cfg(target_arch = "x86_64")]
fn error_count() -> u64 {
    client_request(0, COUNT_ERRORS, 0, 0)
}

#[cfg(target_arch = "x86_64")]
fn mark_undefined(words: &[u64]) {
    client_request(
        0,
        MAKE_MEM_UNDEFINED,
        words.as_ptr() as u64,
        std::mem::size_of_val(words) as u64,
    );
}

#[cfg(target_arch = "x86_64")]
fn mark_defined(words: &[u64]) {
    client_request(
        0,
        MAKE_MEM_DEFINED,
        words.as_ptr() as u64,
        std::mem::size_of_val(words) as u64,
    );
}

/// Requests for the workforce login flow that reach different decisions.
fn requests() -> Vec<(&'static str, String)> {
    let request = |roles: &str, resource: &str, risk: i64, factors: &str| {
        format!(
            r#"{{"flow": "workforce_login", "principal": {{"kind": "human", "id": "u-1", "roles": [{roles}], "employment": "employee"}}, "context": {{"resource": "{resource}", "risk": {risk}, "device_trusted": true}}, "session": {{"factors": [{factors}]}}, "now": "2026-12-04T10:00:00Z"}}"#
        )
    };
    let password_totp = r#"{"factor": "password", "at": "2026-12-04T09:59:00Z"}, {"factor": "totp", "at": "2026-12-04T09:59:10Z"}"#;
    vec![
        ("admin step-up", WORKFORCE_REQUEST.to_string()),
        ("user allow", request(r#""dev""#, "mail", 10, password_totp)),
        ("missing factors", request(r#""dev""#, "mail", 10, "")),
        (
            "high risk deny",
            request(r#""admin""#, "admin_console", 95, password_totp),
        ),
    ]
}

/// Branches on the first record word: memcheck must report this.
#[inline(never)]
fn branching_control(record: &[u64]) -> u64 {
    if black_box(record[0]) == 5 {
        black_box(1)
    } else {
        black_box(2)
    }
}

#[cfg(target_arch = "x86_64")]
fn main() -> ExitCode {
    let control = std::env::args().any(|argument| argument == "--control");
    if !running_on_valgrind() {
        eprintln!(
            "error: not running under Valgrind; run `valgrind --error-exitcode=1 {}`",
            std::env::args().next().unwrap_or_default()
        );
        return ExitCode::from(2);
    }

    let program = compile("workforce.flow", WORKFORCE_POLICY, &mut NoImports)
        .program
        .expect("the workforce policy compiles");
    let policy = Policy::new(program).expect("the program verifies");
    // The decision kernels are what `Policy::decide` runs; the whole
    // bytecode, trace stores included, is what a traced evaluation runs.
    let decision = policy.decision_program();
    let native = match native::compile(&decision) {
        Ok(native) => native,
        Err(error) => {
            eprintln!("error: native compilation failed: {error}");
            return ExitCode::from(2);
        }
    };

    let mut records = Vec::new();
    for (name, request) in requests() {
        let state = policy.start_json(&request, 0).expect("valid request");
        let facts = policy.facts(&state).expect("valid state");
        let mut scratch = policy.scratch();
        let _strings = policy.bind(&facts, &mut scratch);
        records.push((name.to_string(), facts.request.flow, scratch.record));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..4 {
        let record = (0..native.record_words())
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            })
            .collect();
        records.push((format!("random record {round}"), 0, record));
    }

    let errors_before = error_count();
    let mut scratch = policy.scratch();
    let mut outcome = std::mem::take(&mut scratch.outcome);
    let mut registers = std::mem::take(&mut scratch.registers);
    for (name, flow, record) in &records {
        mark_undefined(record);
        let result = native.run(*flow, record, &mut outcome);
        mark_defined(&outcome);
        mark_defined(record);
        if let Err(error) = result {
            eprintln!("error: {name}: the kernel did not run: {error}");
            return ExitCode::from(2);
        }
        let native_words = Verdict(outcome[out::VERDICT as usize]);

        let mut file = [0u64; kernel::FILE];
        mark_undefined(record);
        kernel::run_small(&decision.flows[*flow].code, record, &mut file, &mut outcome);
        mark_defined(&outcome);
        mark_defined(&file);
        mark_defined(record);
        let decision_words = Verdict(outcome[out::VERDICT as usize]);

        let code = &policy.program().flows[*flow];
        mark_undefined(record);
        kernel::run(&code.code, record, &mut registers, &mut outcome);
        mark_defined(&outcome);
        mark_defined(&registers);
        mark_defined(record);
        let bytecode_words = Verdict(outcome[out::VERDICT as usize]);
        if native_words != bytecode_words || decision_words != bytecode_words {
            eprintln!(
                "error: {name}: the native decision kernel decided {native_words:?}, the bytecode decision kernel {decision_words:?} and the whole bytecode {bytecode_words:?}"
            );
            return ExitCode::from(2);
        }
        println!(
            "{name}: decision {:?}, site {}",
            native_words.decision(),
            native_words.site()
        );
    }
    let kernel_errors = error_count() - errors_before;
    println!(
        "memcheck errors during {} runs each of the native and bytecode decision kernels and the whole bytecode: {kernel_errors}",
        records.len()
    );

    if control {
        let record = &records[0].2;
        mark_undefined(record);
        black_box(branching_control(record));
        mark_defined(record);
        let control_errors = error_count() - errors_before - kernel_errors;
        println!("memcheck errors in the branching control: {control_errors}");
        if control_errors == 0 {
            eprintln!("error: memcheck did not report the branching control");
            return ExitCode::from(2);
        }
    }
    if kernel_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> ExitCode {
    println!(
        "note: the client requests are written for x86-64 only; nothing was checked on {}",
        std::env::consts::ARCH
    );
    ExitCode::SUCCESS
}
