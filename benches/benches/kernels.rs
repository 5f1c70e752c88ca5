//! Decision kernels on a bound input record: the native kernel, the bytecode
//! kernel, and a hand-written Rust function of the same decision over the
//! same inputs, interned as ids and bitsets. Two policies are measured: the
//! workforce login flow of the scenarios and the step-up decision in
//! `benches/policies/stepup.flow`, each on several inputs that end in
//! different decisions. Also measured: native compilation of one flow and
//! of a generated 100-flow policy, and loading that policy with each backend.
//!
//! Before criterion runs, a table of medians and ratios is printed from a
//! simpler timing loop (batches of calls timed with `Instant`). Criterion's
//! `--test` mode skips the table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use authflow_benches::{policy_with_flows, WORKFORCE_POLICY, WORKFORCE_REQUEST};
use authflow_compiler::{compile, NoImports};
use authflow_runtime::program::{out, Decision, Program, Verdict};
use authflow_runtime::{native, Backend, Policy, Scratch};
use criterion::{criterion_group, criterion_main, Criterion};

const STEPUP_POLICY: &str = include_str!("../policies/stepup.flow");

/// A request for the workforce login flow from a user without a
/// privileged role, with password and TOTP, which is allowed.
const WORKFORCE_USER_REQUEST: &str = r#"{"flow": "workforce_login", "principal": {"kind": "human", "id": "u-200", "roles": ["dev"], "employment": "employee"}, "context": {"resource": "mail", "risk": 10, "device_trusted": true}, "session": {"factors": [{"factor": "password", "at": "2026-12-04T09:00:00Z"}, {"factor": "totp", "at": "2026-12-04T09:00:05Z"}]}, "now": "2026-12-04T10:00:00Z"}"#;

// Factor bits of the hand-written functions. Any fixed numbering works,
// because the hand-written functions only test these bits.
const PASSWORD: u64 = 1 << 0;
const TOTP: u64 = 1 << 1;
const WEBAUTHN: u64 = 1 << 2;
const PASSKEY: u64 = 1 << 3;
const SECURITY_KEY: u64 = 1 << 4;
const PIV: u64 = 1 << 5;
const HARDWARE_OTP: u64 = 1 << 6;
const RECOVERY_CODE: u64 = 1 << 7;
const SMS: u64 = 1 << 8;
const PUSH: u64 = 1 << 9;

// Interned strings of the hand-written functions.
const ROLE_ADMIN: u64 = 1 << 0;
const ROLE_SRE: u64 = 1 << 1;
const ROLE_DEV: u64 = 1 << 2;
const RESOURCE_ADMIN_CONSOLE: u32 = 0;
const RESOURCE_OTHER: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Human,
    Service,
    Agent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    Internal,
    Partner,
}

/// The inputs of the step-up decision, interned.
#[derive(Clone, Copy, Debug)]
struct StepUpInput {
    kind: Kind,
    roles: u64,
    zone: Zone,
    resource: u32,
    risk: i64,
    factors: u64,
}

/// Decides the step-up policy by hand, with ordinary branches.
#[inline(never)]
fn decide_stepup(input: &StepUpInput) -> Decision {
    if input.risk >= 90 {
        return Decision::Deny;
    }
    if input.resource == RESOURCE_ADMIN_CONSOLE {
        return match input.kind {
            Kind::Agent => Decision::Deny,
            Kind::Service if input.zone == Zone::Internal => Decision::Allow,
            Kind::Service => Decision::Deny,
            Kind::Human if input.roles & ROLE_ADMIN == 0 => Decision::Deny,
            Kind::Human => {
                let second = if input.risk >= 60 {
                    WEBAUTHN
                } else {
                    TOTP | WEBAUTHN
                };
                if input.factors & PASSWORD != 0 && input.factors & second != 0 {
                    Decision::Allow
                } else {
                    Decision::Challenge
                }
            }
        };
    }
    if input.factors & PASSWORD != 0 {
        Decision::Allow
    } else {
        Decision::Challenge
    }
}

/// The inputs of the workforce login flow, interned.
#[derive(Clone, Copy, Debug)]
struct WorkforceInput {
    roles: u64,
    resource: u32,
    risk: i64,
    factors: u64,
    failed_passwords: u32,
    elevated_risk: bool,
}

/// Returns the NIST SP 800-63B revision 3 assurance level of a factor set,
/// by the combination table of the language reference.
fn assurance_level(factors: u64) -> u8 {
    let has = |bits: u64| factors & bits == bits;
    let single_factor_devices = RECOVERY_CODE | SMS | PUSH | TOTP | HARDWARE_OTP | WEBAUTHN;
    if has(SECURITY_KEY) || has(PIV) || has(PASSWORD | WEBAUTHN) || has(HARDWARE_OTP | PASSKEY) {
        3
    } else if has(PASSKEY) || (has(PASSWORD) && factors & single_factor_devices != 0) {
        2
    } else if factors != 0 {
        1
    } else {
        0
    }
}

/// Decides the workforce login flow by hand, with ordinary branches.
#[inline(never)]
fn decide_workforce(input: &WorkforceInput) -> Decision {
    if input.risk >= 90 {
        return Decision::Deny;
    }
    if input.failed_passwords >= 5 {
        return Decision::Deny;
    }
    if input.factors & PASSWORD == 0 {
        return Decision::Challenge;
    }
    let privileged = input.roles & (ROLE_ADMIN | ROLE_SRE) != 0;
    let satisfied = if privileged && input.resource == RESOURCE_ADMIN_CONSOLE {
        assurance_level(input.factors) >= 3
    } else if input.elevated_risk {
        input.factors & (PASSKEY | SECURITY_KEY | WEBAUTHN) != 0
    } else {
        assurance_level(input.factors) >= 2
    };
    if satisfied {
        Decision::Allow
    } else {
        Decision::Challenge
    }
}

/// One input of a benchmark: the request, its interned form for the
/// hand-written function, and the decision all three kernels must reach.
struct Case<I> {
    name: &'static str,
    request: String,
    input: I,
    expected: Decision,
}

fn stepup_request(principal: &str, resource: &str, risk: i64, factors: &[&str]) -> String {
    let factors: Vec<String> = factors
        .iter()
        .map(|f| format!(r#"{{"factor": "{f}", "at": "2026-12-04T09:59:00Z"}}"#))
        .collect();
    format!(
        r#"{{"event": "login", "principal": {principal}, "context": {{"resource": "{resource}", "risk": {risk}}}, "session": {{"factors": [{}]}}, "now": "2026-12-04T10:00:00Z"}}"#,
        factors.join(", ")
    )
}

fn stepup_cases() -> Vec<Case<StepUpInput>> {
    let admin = r#"{"kind": "human", "id": "u-1", "roles": ["admin"]}"#;
    let developer = r#"{"kind": "human", "id": "u-2", "roles": ["dev"]}"#;
    let service = r#"{"kind": "service", "id": "svc-1", "zone": "internal"}"#;
    let agent = r#"{"kind": "agent", "id": "agent-1"}"#;
    let human = |roles, resource, risk, factors| StepUpInput {
        kind: Kind::Human,
        roles,
        zone: Zone::Partner,
        resource,
        risk,
        factors,
    };
    vec![
        Case {
            name: "admin_allow",
            request: stepup_request(admin, "admin_console", 10, &["password", "totp"]),
            input: human(ROLE_ADMIN, RESOURCE_ADMIN_CONSOLE, 10, PASSWORD | TOTP),
            expected: Decision::Allow,
        },
        Case {
            name: "admin_step_up",
            request: stepup_request(admin, "admin_console", 70, &["password", "totp"]),
            input: human(ROLE_ADMIN, RESOURCE_ADMIN_CONSOLE, 70, PASSWORD | TOTP),
            expected: Decision::Challenge,
        },
        Case {
            name: "non_admin_deny",
            request: stepup_request(developer, "admin_console", 10, &["password", "totp"]),
            input: human(ROLE_DEV, RESOURCE_ADMIN_CONSOLE, 10, PASSWORD | TOTP),
            expected: Decision::Deny,
        },
        Case {
            name: "service_allow",
            request: stepup_request(service, "admin_console", 10, &[]),
            input: StepUpInput {
                kind: Kind::Service,
                roles: 0,
                zone: Zone::Internal,
                resource: RESOURCE_ADMIN_CONSOLE,
                risk: 10,
                factors: 0,
            },
            expected: Decision::Allow,
        },
        Case {
            name: "agent_deny",
            request: stepup_request(agent, "admin_console", 10, &["password"]),
            input: StepUpInput {
                kind: Kind::Agent,
                roles: 0,
                zone: Zone::Partner,
                resource: RESOURCE_ADMIN_CONSOLE,
                risk: 10,
                factors: PASSWORD,
            },
            expected: Decision::Deny,
        },
        Case {
            name: "other_resource_step_up",
            request: stepup_request(developer, "mail", 10, &[]),
            input: human(ROLE_DEV, RESOURCE_OTHER, 10, 0),
            expected: Decision::Challenge,
        },
    ]
}

fn workforce_cases() -> Vec<Case<WorkforceInput>> {
    vec![
        Case {
            name: "admin_step_up",
            request: WORKFORCE_REQUEST.to_string(),
            input: WorkforceInput {
                roles: ROLE_ADMIN | ROLE_DEV,
                resource: RESOURCE_ADMIN_CONSOLE,
                risk: 10,
                factors: PASSWORD | TOTP,
                failed_passwords: 0,
                elevated_risk: false,
            },
            expected: Decision::Challenge,
        },
        Case {
            name: "user_allow",
            request: WORKFORCE_USER_REQUEST.to_string(),
            input: WorkforceInput {
                roles: ROLE_DEV,
                resource: RESOURCE_OTHER,
                risk: 10,
                factors: PASSWORD | TOTP,
                failed_passwords: 0,
                elevated_risk: false,
            },
            expected: Decision::Allow,
        },
    ]
}

fn program(name: &str, source: &str) -> Program {
    compile(name, source, &mut NoImports)
        .program
        .unwrap_or_else(|| panic!("{name} does not compile"))
}

/// A policy loaded with one backend, with one request bound into its record.
struct Bound {
    policy: Policy,
    flow: usize,
    scratch: Scratch,
}

impl Bound {
    fn new(program: &Program, backend: Backend, request: &str) -> Bound {
        let policy = Policy::with_backend(program.clone(), backend).expect("program verifies");
        assert_eq!(policy.backend(), backend, "the backend is not available");
        let state = policy.start_json(request, 0).expect("valid request");
        let facts = policy.facts(&state).expect("valid state");
        let mut scratch = policy.scratch();
        let _strings = policy.bind(&facts, &mut scratch);
        Bound {
            flow: facts.request.flow,
            policy,
            scratch,
        }
    }

    fn decide(&mut self) -> Decision {
        self.policy.decide(black_box(self.flow), &mut self.scratch);
        Verdict(self.scratch.outcome[out::VERDICT as usize])
            .decision()
            .expect("decision code")
    }
}

/// Returns the median time of one call of `f` in nanoseconds, over 51
/// batches of `batch` calls each, after one batch of warm-up.
fn median_per_call(batch: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch {
        f();
    }
    let mut samples: Vec<f64> = (0..51)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn geometric_mean(values: &[f64]) -> f64 {
    let log_sum: f64 = values.iter().map(|v| v.ln()).sum();
    (log_sum / values.len() as f64).exp()
}

/// Measures one policy's cases with the three kernels, prints a row per
/// case and returns the medians in nanoseconds as (native, bytecode, Rust).
fn print_ratio_rows<I>(
    label: &str,
    program: &Program,
    cases: &[Case<I>],
    hand_written: fn(&I) -> Decision,
) -> Vec<(f64, f64, f64)> {
    let mut rows = Vec::new();
    for case in cases {
        let mut native = Bound::new(program, Backend::Native, &case.request);
        let mut bytecode = Bound::new(program, Backend::Bytecode, &case.request);
        let native_ns = median_per_call(100_000, || {
            black_box(native.decide());
        });
        let bytecode_ns = median_per_call(100_000, || {
            black_box(bytecode.decide());
        });
        let rust_ns = median_per_call(100_000, || {
            black_box(hand_written(black_box(&case.input)));
        });
        println!(
            "{label}/{:<24} native {native_ns:7.2} ns  bytecode {bytecode_ns:7.2} ns  hand-written {rust_ns:6.2} ns  bytecode/native {:5.2}  native/hand-written {:6.2}",
            case.name,
            bytecode_ns / native_ns,
            native_ns / rust_ns,
        );
        rows.push((native_ns, bytecode_ns, rust_ns));
    }
    rows
}

fn print_geometric_means(label: &str, rows: &[(f64, f64, f64)]) {
    let native = geometric_mean(&rows.iter().map(|r| r.0).collect::<Vec<_>>());
    let bytecode = geometric_mean(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let rust = geometric_mean(&rows.iter().map(|r| r.2).collect::<Vec<_>>());
    println!(
        "{label} geometric mean: native {native:.2} ns  bytecode {bytecode:.2} ns  hand-written {rust:.2} ns  bytecode/native {:.2}  native/hand-written {:.2}",
        bytecode / native,
        native / rust
    );
}

/// Checks that the three kernels reach each case's expected decision.
fn check_cases<I>(program: &Program, cases: &[Case<I>], hand_written: fn(&I) -> Decision) {
    for case in cases {
        for backend in [Backend::Native, Backend::Bytecode] {
            let decision = Bound::new(program, backend, &case.request).decide();
            assert_eq!(decision, case.expected, "{} with {backend:?}", case.name);
        }
        assert_eq!(
            hand_written(&case.input),
            case.expected,
            "{} hand-written",
            case.name
        );
    }
}

fn print_ratios(workforce: &Program, stepup: &Program, generated: &Program) {
    println!("medians of 51 batches of 100,000 calls, timed with Instant:");
    let rows = print_ratio_rows("workforce", workforce, &workforce_cases(), decide_workforce);
    print_geometric_means("workforce", &rows);
    let rows = print_ratio_rows("stepup", stepup, &stepup_cases(), decide_stepup);
    print_geometric_means("stepup", &rows);

    let flows = generated.flows.len();
    let compile_one = median_per_call(20, || {
        black_box(native::compile(workforce).expect("native code"));
    });
    let compile_all = median_per_call(3, || {
        black_box(native::compile(generated).expect("native code"));
    });
    let load_native = median_per_call(3, || {
        black_box(Policy::with_backend(generated.clone(), Backend::Native).expect("loads"));
    });
    let load_bytecode = median_per_call(3, || {
        black_box(Policy::new(generated.clone()).expect("loads"));
    });
    println!(
        "native compile: workforce (1 flow) {:.1} us, generated {flows} flows {:.2} ms = {:.1} us per flow",
        compile_one / 1e3,
        compile_all / 1e6,
        compile_all / flows as f64 / 1e3,
    );
    println!(
        "load {flows} flows: native {:.2} ms, bytecode {:.2} ms, native/bytecode {:.1}",
        load_native / 1e6,
        load_bytecode / 1e6,
        load_native / load_bytecode,
    );
}

fn bench_kernels<I>(
    c: &mut Criterion,
    label: &str,
    program: &Program,
    cases: &[Case<I>],
    hand_written: fn(&I) -> Decision,
) {
    let mut group = c.benchmark_group(label);
    for case in cases {
        let mut native = Bound::new(program, Backend::Native, &case.request);
        let mut bytecode = Bound::new(program, Backend::Bytecode, &case.request);
        group.bench_function(format!("{}/native", case.name), |b| {
            b.iter(|| native.decide())
        });
        group.bench_function(format!("{}/bytecode", case.name), |b| {
            b.iter(|| bytecode.decide())
        });
        group.bench_function(format!("{}/hand_written", case.name), |b| {
            b.iter(|| hand_written(black_box(&case.input)))
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    let workforce = program("workforce.flow", WORKFORCE_POLICY);
    let stepup = program("stepup.flow", STEPUP_POLICY);
    let generated = program("generated.flow", &policy_with_flows(100));
    check_cases(&workforce, &workforce_cases(), decide_workforce);
    check_cases(&stepup, &stepup_cases(), decide_stepup);
    if !std::env::args().any(|argument| argument == "--test") {
        print_ratios(&workforce, &stepup, &generated);
    }

    bench_kernels(
        c,
        "workforce",
        &workforce,
        &workforce_cases(),
        decide_workforce,
    );
    bench_kernels(c, "stepup", &stepup, &stepup_cases(), decide_stepup);

    let mut group = c.benchmark_group("native_compile");
    group.sample_size(10);
    group.bench_function("workforce_1_flow", |b| {
        b.iter(|| native::compile(&workforce).expect("native code"))
    });
    group.bench_function("generated_100_flows", |b| {
        b.iter(|| native::compile(&generated).expect("native code"))
    });
    group.finish();

    let mut group = c.benchmark_group("load_100_flows");
    group.sample_size(10);
    group.bench_function("native", |b| {
        b.iter(|| Policy::with_backend(generated.clone(), Backend::Native).expect("loads"))
    });
    group.bench_function("bytecode", |b| {
        b.iter(|| Policy::new(generated.clone()).expect("loads"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = kernels
}
criterion_main!(benches);
