//! A dudect-style timing test of the decision kernels: Welch's t-test
//! between the execution times of two classes of input.
//!
//! Each pair of classes is two bound records of the workforce login flow
//! that take different paths through the policy. The pairs are a privileged
//! user on the admin console against an ordinary user, verified factors
//! against none, and a deny against an allow. Three kernels are measured:
//! the native and the bytecode decision kernel, and the whole bytecode with
//! its trace stores. Each measurement times one kernel call with
//! `rdtsc` between `lfence`s, and the class of each call is drawn at random,
//! so drift over the run affects both classes alike.
//!
//! As in dudect, the t statistic is computed over all measurements and over
//! the measurements below several percentiles of the pair's times, which
//! removes interrupts and other outliers, and the maximum |t| is reported.
//! |t| above 10 is taken as a timing difference, and below 4.5 as none
//! detected at this sample size.
//!
//! The same run measures an early-exit byte comparison on inputs that differ
//! in the first byte against equal inputs. Its |t| must be above 10, or the
//! measurement could not see a difference of a few cycles and the run is
//! inconclusive, which the program reports with exit code 2.
//!
//! Run: `cargo run --release -p authflow-benches --example dudect [N]`,
//! with N measurements per class (default 1,000,000).

#![allow(unsafe_code)]

use std::hint::black_box;
use std::process::ExitCode;

use authflow_benches::WORKFORCE_POLICY;
use authflow_compiler::{compile, NoImports};
use authflow_runtime::program::{out, Program, Verdict};
use authflow_runtime::{kernel, native, Policy};

/// |t| above which two classes differ in time.
const LEAK_THRESHOLD: f64 = 10.0;
/// |t| below which no difference was detected.
const PASS_THRESHOLD: f64 = 4.5;
/// Percentiles of the pair's times below which measurements are kept, for
/// the cropped t-tests; 100 keeps every measurement.
const CROP_PERCENTILES: [f64; 6] = [100.0, 99.0, 95.0, 90.0, 75.0, 50.0];

/// Reads the time-stamp counter between load fences, so the read is not
/// reordered with the measured code.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn cycles() -> u64 {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: `lfence` needs SSE2 and `rdtsc` the TSC, which every x86-64
    // processor has. Neither touches memory.
    #[allow(unused_unsafe)]
    unsafe {
        _mm_lfence();
        let value = _rdtsc();
        _mm_lfence();
        value
    }
}

/// A fast xorshift generator for the class draws, seeded by a constant so
/// runs are repeatable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Running mean and variance by Welford's method.
#[derive(Default)]
struct Moments {
    count: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.count += 1.0;
        let delta = x - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (x - self.mean);
    }

    fn variance(&self) -> f64 {
        self.m2 / (self.count - 1.0)
    }
}

/// Returns Welch's t statistic of two samples.
fn welch_t(a: &Moments, b: &Moments) -> f64 {
    (a.mean - b.mean) / (a.variance() / a.count + b.variance() / b.count).sqrt()
}

/// The outcome of one class pair.
struct PairResult {
    max_t: f64,
    /// Medians of the two classes, in cycles.
    medians: [u64; 2],
}

/// Times `run` `per_class` times on each of the two inputs, in random order,
/// and returns the maximum |t| over the crop percentiles. Before each call
/// the input is copied into one buffer outside the timed region, so both
/// classes are read from the same addresses.
fn measure_pair<T: Clone>(
    per_class: usize,
    seed: u64,
    inputs: &[T; 2],
    mut run: impl FnMut(&T),
) -> PairResult {
    let mut random = XorShift(seed);
    let mut samples: [Vec<u64>; 2] = [Vec::with_capacity(per_class), Vec::with_capacity(per_class)];
    let mut buffer = inputs[0].clone();
    // Warm-up: caches, branch predictors and the frequency governor.
    for i in 0..10_000 {
        buffer.clone_from(&inputs[i % 2]);
        run(&buffer);
    }
    while samples[0].len() < per_class || samples[1].len() < per_class {
        let class = (random.next() & 1) as usize;
        if samples[class].len() == per_class {
            continue;
        }
        buffer.clone_from(&inputs[class]);
        let start = cycles();
        run(black_box(&buffer));
        let end = cycles();
        samples[class].push(end - start);
    }

    let mut all: Vec<u64> = samples.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut max_t: f64 = 0.0;
    for percentile in CROP_PERCENTILES {
        let index = ((all.len() - 1) as f64 * percentile / 100.0) as usize;
        let limit = all[index];
        let mut moments = [Moments::default(), Moments::default()];
        for (class, times) in samples.iter().enumerate() {
            for &time in times.iter().filter(|&&time| time <= limit) {
                moments[class].push(time as f64);
            }
        }
        let t = welch_t(&moments[0], &moments[1]);
        if t.is_finite() {
            max_t = max_t.max(t.abs());
        }
    }
    let medians = samples.map(|mut times| {
        times.sort_unstable();
        times[times.len() / 2]
    });
    PairResult { max_t, medians }
}

/// Returns whether `a` equals `b`, stopping at the first differing byte.
#[inline(never)]
fn early_exit_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return false;
        }
    }
    true
}

/// Requests for the workforce login flow, in pairs that take different
/// paths: (name, class 0, class 1).
fn request_pairs() -> Vec<(&'static str, String, String)> {
    let request = |roles: &str, resource: &str, risk: i64, factors: &str| {
        format!(
            r#"{{"flow": "workforce_login", "principal": {{"kind": "human", "id": "u-1", "roles": [{roles}], "employment": "employee"}}, "context": {{"resource": "{resource}", "risk": {risk}, "device_trusted": true}}, "session": {{"factors": [{factors}]}}, "now": "2026-12-04T10:00:00Z"}}"#
        )
    };
    let password_totp = r#"{"factor": "password", "at": "2026-12-04T09:59:00Z"}, {"factor": "totp", "at": "2026-12-04T09:59:10Z"}"#;
    vec![
        (
            "privileged vs not",
            request(r#""admin""#, "admin_console", 10, password_totp),
            request(r#""dev""#, "mail", 10, password_totp),
        ),
        (
            "factors present vs missing",
            request(r#""dev""#, "mail", 10, password_totp),
            request(r#""dev""#, "mail", 10, ""),
        ),
        (
            "deny vs allow",
            request(r#""dev""#, "mail", 95, password_totp),
            request(r#""dev""#, "mail", 10, password_totp),
        ),
    ]
}

/// Binds `request` and returns its flow and record, with its decision.
fn bind(policy: &Policy, request: &str) -> (usize, Vec<u64>, u64) {
    let state = policy.start_json(request, 0).expect("valid request");
    let facts = policy.facts(&state).expect("valid state");
    let mut scratch = policy.scratch();
    let _strings = policy.bind(&facts, &mut scratch);
    let flow = facts.request.flow;
    policy.decide(flow, &mut scratch);
    let decision = Verdict(scratch.outcome[out::VERDICT as usize]).code();
    (flow, scratch.record, decision)
}

fn report(name: &str, result: &PairResult) {
    let verdict = if result.max_t > LEAK_THRESHOLD {
        "timing difference"
    } else if result.max_t < PASS_THRESHOLD {
        "no difference detected"
    } else {
        "undecided"
    };
    println!(
        "{name:<44} max |t| {:8.2}  medians {:>4} / {:>4} cycles  {verdict}",
        result.max_t, result.medians[0], result.medians[1]
    );
}

#[cfg(target_arch = "x86_64")]
fn main() -> ExitCode {
    let per_class = match std::env::args().nth(1) {
        None => 1_000_000,
        Some(text) => {
            match text.parse::<usize>() {
                Ok(count) if count >= 2 => count,
                _ => {
                    eprintln!("error: invalid count `{text}`: expected measurements per class, at least 2");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let program: Program = compile("workforce.flow", WORKFORCE_POLICY, &mut NoImports)
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
    println!("{per_class} measurements per class, times in rdtsc cycles");

    let mut kernel_max_t: f64 = 0.0;
    let mut seed = 0x2545_f491_4f6c_dd1d;
    for (name, request_0, request_1) in request_pairs() {
        let (flow, record_0, decision_0) = bind(&policy, &request_0);
        let (flow_1, record_1, decision_1) = bind(&policy, &request_1);
        assert_eq!(flow, flow_1, "{name}: both classes must run the same flow");
        println!("{name}: decision codes {decision_0} / {decision_1}");
        let records = [record_0, record_1];
        let code = &policy.program().flows[flow];
        let decision_code = &decision.flows[flow].code;
        let mut outcome = vec![0u64; code.outcome_words as usize];
        let mut registers = vec![0u64; code.registers as usize];
        let mut file = [0u64; kernel::FILE];

        seed += 1;
        let result = measure_pair(per_class, seed, &records, |record| {
            let result = native.run(flow, record, &mut outcome);
            black_box(result.is_ok());
        });
        report(&format!("native kernel, {name}"), &result);
        kernel_max_t = kernel_max_t.max(result.max_t);

        seed += 1;
        let result = measure_pair(per_class, seed, &records, |record| {
            kernel::run_small(decision_code, record, &mut file, &mut outcome);
            black_box(&outcome);
        });
        report(&format!("bytecode kernel, {name}"), &result);
        kernel_max_t = kernel_max_t.max(result.max_t);

        seed += 1;
        let result = measure_pair(per_class, seed, &records, |record| {
            kernel::run(&code.code, record, &mut registers, &mut outcome);
            black_box(&outcome);
        });
        report(&format!("traced bytecode, {name}"), &result);
        kernel_max_t = kernel_max_t.max(result.max_t);
    }

    let secret = [0x5au8; 64];
    let mut differs_first = secret;
    differs_first[0] ^= 1;
    let inputs = [differs_first, secret];
    seed += 1;
    let control = measure_pair(per_class, seed, &inputs, |input| {
        black_box(early_exit_equal(input, black_box(&secret)));
    });
    report("control: early-exit compare of 64 bytes", &control);

    println!(
        "kernels: max |t| {kernel_max_t:.2}; control: max |t| {:.2}",
        control.max_t
    );
    if control.max_t <= LEAK_THRESHOLD {
        println!("inconclusive: the control's |t| is not above {LEAK_THRESHOLD}");
        return ExitCode::from(2);
    }
    if kernel_max_t > LEAK_THRESHOLD {
        println!("fail: a kernel's time depends on its input class");
        return ExitCode::FAILURE;
    }
    println!("pass: no kernel's |t| is above {LEAK_THRESHOLD}");
    ExitCode::SUCCESS
}

#[cfg(not(target_arch = "x86_64"))]
fn main() -> ExitCode {
    println!(
        "note: the timer is x86-64's rdtsc; nothing was measured on {}",
        std::env::consts::ARCH
    );
    ExitCode::SUCCESS
}
