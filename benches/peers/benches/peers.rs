//! Benchmarks the step-up decision in authflow, hand-written Rust, CEL, Rego
//! and Cedar. Each engine decides once with its input prebuilt and once with
//! the input built in the loop from the same borrowed request. A scaling
//! group compares authflow and Cedar on policies of 10, 100 and 1,000 guards.
//!
//! Before criterion runs, tables of medians, ratios to authflow native and
//! heap allocations per decision are printed from a simpler timing loop
//! (batches of calls timed with `Instant`). Criterion's `--test` mode skips
//! the tables.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authflow_benches::{policy_with_guards, GUARDED_REQUEST};
use authflow_peers::{
    benchmark_cases, cedar_policies, cedar_policies_with_guards, cedar_schema, compile_flow,
    decide_interned, decide_strings, guarded_request, intern, owned_input, rego_input,
    rego_program, Authflow, Case, Cedar, Cel, Outcome, RegoInterpreter, RegoVm, Request,
    CEDAR_ONE_QUERY, CEDAR_SCHEMA, CEDAR_TWO_QUERIES, CEL_EXPRESSION, STEPUP_FLOW,
};
use authflow_runtime::program::{out, Decision, Verdict};
use authflow_runtime::{Backend, Policy};
use criterion::{criterion_group, criterion_main, Criterion};

/// Counts heap allocations of the whole process. The benchmark runs on one
/// thread, so the count between two reads is that thread's.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout)
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(pointer, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The engines, in the order of the printed table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    AuthflowNative,
    AuthflowBytecode,
    RustInterned,
    RustStrings,
    Cel,
    RegoVm,
    CedarOneQuery,
    CedarTwoQueries,
    RegoInterpreter,
}

const ENGINES: [Engine; 9] = [
    Engine::AuthflowNative,
    Engine::AuthflowBytecode,
    Engine::RustInterned,
    Engine::RustStrings,
    Engine::Cel,
    Engine::RegoVm,
    Engine::CedarOneQuery,
    Engine::CedarTwoQueries,
    Engine::RegoInterpreter,
];

impl Engine {
    fn label(self) -> &'static str {
        match self {
            Engine::AuthflowNative => "authflow native",
            Engine::AuthflowBytecode => "authflow bytecode",
            Engine::RustInterned => "Rust, interned bitsets",
            Engine::RustStrings => "Rust, owned strings",
            Engine::Cel => "CEL (cel-interpreter)",
            Engine::RegoVm => "Rego (regorus RVM)",
            Engine::CedarOneQuery => "Cedar (one query)",
            Engine::CedarTwoQueries => "Cedar (two queries)",
            Engine::RegoInterpreter => "Rego (regorus interpreter)",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Engine::AuthflowNative => "authflow_native",
            Engine::AuthflowBytecode => "authflow_bytecode",
            Engine::RustInterned => "rust_interned",
            Engine::RustStrings => "rust_strings",
            Engine::Cel => "cel",
            Engine::RegoVm => "rego_vm",
            Engine::CedarOneQuery => "cedar_one_query",
            Engine::CedarTwoQueries => "cedar_two_queries",
            Engine::RegoInterpreter => "rego_interpreter",
        }
    }
}

/// Every engine, prepared once, outside every timed loop.
struct Peers {
    native: Authflow,
    bytecode: Authflow,
    cedar: Cedar,
    rego_interpreter: RegoInterpreter,
    rego_vm: RegoVm,
    cel: Cel,
}

impl Peers {
    fn new() -> Peers {
        Peers {
            native: Authflow::new(Backend::Native),
            bytecode: Authflow::new(Backend::Bytecode),
            cedar: Cedar::new(),
            rego_interpreter: RegoInterpreter::new(),
            rego_vm: RegoVm::new(),
            cel: Cel::new(),
        }
    }

    /// Hands `runner` one decision of `engine` on `request` as a closure.
    /// With `built_in_loop`, the closure also builds the engine's input from
    /// the request; otherwise the input is built once, before the runner is
    /// called.
    fn with_decision<R: Runner>(
        &mut self,
        engine: Engine,
        request: &Request,
        built_in_loop: bool,
        runner: &mut R,
    ) {
        let request = *request;
        match (engine, built_in_loop) {
            (Engine::AuthflowNative | Engine::AuthflowBytecode, false) => {
                let authflow = self.authflow(engine);
                let mut input = authflow.input(&request);
                runner.run(|| authflow.decide(&mut input));
            }
            (Engine::AuthflowNative | Engine::AuthflowBytecode, true) => {
                // The scratch buffers are reused across requests, as a
                // server would reuse them per thread.
                let authflow = self.authflow(engine);
                let mut input = authflow.input(&request);
                runner.run(|| {
                    input.flow = authflow.bind(black_box(&request), &mut input.scratch);
                    authflow.decide(&mut input)
                });
            }
            (Engine::RustInterned, false) => {
                let input = intern(&request);
                runner.run(|| decide_interned(black_box(&input)));
            }
            (Engine::RustInterned, true) => {
                runner.run(|| decide_interned(&intern(black_box(&request))));
            }
            (Engine::RustStrings, false) => {
                let input = owned_input(&request);
                runner.run(|| decide_strings(black_box(&input)));
            }
            (Engine::RustStrings, true) => {
                runner.run(|| decide_strings(&owned_input(black_box(&request))));
            }
            (Engine::Cel, false) => {
                let cel = &self.cel;
                let input = cel.input(&request);
                runner.run(|| cel.decide(black_box(&input)));
            }
            (Engine::Cel, true) => {
                let cel = &self.cel;
                runner.run(|| cel.decide(&cel.input(black_box(&request))));
            }
            (Engine::RegoVm, false) => {
                let vm = &mut self.rego_vm;
                let input = rego_input(&request);
                runner.run(|| vm.decide(black_box(&input)));
            }
            (Engine::RegoVm, true) => {
                let vm = &mut self.rego_vm;
                runner.run(|| vm.decide(&rego_input(black_box(&request))));
            }
            (Engine::RegoInterpreter, false) => {
                let interpreter = &mut self.rego_interpreter;
                let input = rego_input(&request);
                runner.run(|| interpreter.decide(black_box(&input)));
            }
            (Engine::RegoInterpreter, true) => {
                let interpreter = &mut self.rego_interpreter;
                runner.run(|| interpreter.decide(&rego_input(black_box(&request))));
            }
            (Engine::CedarOneQuery, false) => {
                let cedar = &self.cedar;
                let input = cedar.input(&request);
                runner.run(|| cedar.decide_one_query(black_box(&input)));
            }
            (Engine::CedarOneQuery, true) => {
                // NOTE: `Cedar::input` also builds the `step_up` request,
                // which the one-query encoding never reads, so this row
                // overstates Cedar's one-query input cost by one request.
                let cedar = &self.cedar;
                runner.run(|| cedar.decide_one_query(&cedar.input(black_box(&request))));
            }
            (Engine::CedarTwoQueries, false) => {
                let cedar = &self.cedar;
                let input = cedar.input(&request);
                runner.run(|| cedar.decide_two_queries(black_box(&input)));
            }
            (Engine::CedarTwoQueries, true) => {
                let cedar = &self.cedar;
                runner.run(|| cedar.decide_two_queries(&cedar.input(black_box(&request))));
            }
        }
    }

    fn authflow(&self, engine: Engine) -> &Authflow {
        if engine == Engine::AuthflowNative {
            &self.native
        } else {
            &self.bytecode
        }
    }
}

/// A consumer of one engine's decision closure. The closure's type is a
/// generic parameter, so timing loops call it directly: an indirect call
/// through `dyn FnMut` costs about 2 ns, as much as the fastest decisions
/// here take in all.
trait Runner {
    fn run(&mut self, decide: impl FnMut() -> Outcome);
}

/// Checks a decision against the expected outcome (when given), then
/// records its median time and its heap allocations.
struct Measure<'a> {
    expected: Option<(Outcome, String)>,
    times: &'a mut Vec<f64>,
    allocations: &'a mut Vec<u64>,
}

impl Runner for Measure<'_> {
    fn run(&mut self, mut decide: impl FnMut() -> Outcome) {
        if let Some((expected, label)) = &self.expected {
            assert_eq!(decide(), *expected, "{label}");
        }
        self.times.push(median_per_call(&mut decide));
        self.allocations.push(allocations_per_call(&mut decide));
    }
}

/// Hands a decision to criterion under one benchmark name.
struct Bench<'g, 'c> {
    group: &'g mut criterion::BenchmarkGroup<'c, criterion::measurement::WallTime>,
    name: String,
}

impl Runner for Bench<'_, '_> {
    fn run(&mut self, mut decide: impl FnMut() -> Outcome) {
        self.group
            .bench_function(&self.name, |b| b.iter(&mut decide));
    }
}

/// Returns the median time of one call of `f` in nanoseconds, over 31
/// batches sized so that one batch takes about 2 ms, after one warm-up batch.
fn median_per_call(f: &mut impl FnMut() -> Outcome) -> f64 {
    let mut batch: u32 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        if start.elapsed() >= Duration::from_millis(2) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut samples: Vec<f64> = (0..31)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(f());
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Returns the heap allocations of one call of `f`, after one warm-up call
/// that fills any cache.
fn allocations_per_call(f: &mut impl FnMut() -> Outcome) -> u64 {
    black_box(f());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    black_box(f());
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn geometric_mean(values: &[f64]) -> f64 {
    let log_sum: f64 = values.iter().map(|v| v.ln()).sum();
    (log_sum / values.len() as f64).exp()
}

fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The measurements of one engine over all cases.
struct Row {
    engine: Engine,
    prebuilt: Vec<f64>,
    built: Vec<f64>,
    allocations: Vec<u64>,
    built_allocations: Vec<u64>,
}

fn measure_rows(peers: &mut Peers, cases: &[Case]) -> Vec<Row> {
    let mut rows = Vec::new();
    for engine in ENGINES {
        let mut row = Row {
            engine,
            prebuilt: Vec::new(),
            built: Vec::new(),
            allocations: Vec::new(),
            built_allocations: Vec::new(),
        };
        for case in cases {
            let label = format!("{} on {}", engine.label(), case.name);
            let mut prebuilt = Measure {
                expected: Some((case.expected, label)),
                times: &mut row.prebuilt,
                allocations: &mut row.allocations,
            };
            peers.with_decision(engine, &case.request, false, &mut prebuilt);
            let mut built = Measure {
                expected: None,
                times: &mut row.built,
                allocations: &mut row.built_allocations,
            };
            peers.with_decision(engine, &case.request, true, &mut built);
        }
        rows.push(row);
    }
    rows
}

fn print_tables(peers: &mut Peers) {
    let cases = benchmark_cases();
    let rows = measure_rows(peers, &cases);
    let native = geometric_mean(&rows[0].prebuilt);
    let native_built = geometric_mean(&rows[0].built);

    println!("per decision, input prebuilt: median of 31 batches of about 2 ms, in ns");
    print!("{:<28}", "engine");
    for case in &cases {
        print!(" {:>22}", case.name);
    }
    println!();
    for row in &rows {
        print!("{:<28}", row.engine.label());
        for ns in &row.prebuilt {
            print!(" {ns:>22.1}");
        }
        println!();
    }

    println!();
    println!(
        "per decision, geometric mean over the {} cases:",
        cases.len()
    );
    println!(
        "| engine | input prebuilt | ratio to authflow native | input built in the loop | ratio to authflow native | heap allocations per decision (prebuilt) | heap allocations per decision (built in the loop) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        let prebuilt = geometric_mean(&row.prebuilt);
        let built = geometric_mean(&row.built);
        let allocations = allocation_range(&row.allocations);
        let built_allocations = allocation_range(&row.built_allocations);
        println!(
            "| {} | {} | {:.2} | {} | {:.2} | {allocations} | {built_allocations} |",
            row.engine.label(),
            format_ns(prebuilt),
            prebuilt / native,
            format_ns(built),
            built / native_built,
        );
    }
    let owned = rows
        .iter()
        .find(|row| row.engine == Engine::RustStrings)
        .map(|row| geometric_mean(&row.built));
    if let Some(owned) = owned {
        println!();
        println!(
            "input built in the loop: authflow native / Rust, owned strings = {:.2}",
            native_built / owned
        );
    }
    println!();
}

/// Formats the fewest and the most allocations of a row, or one number
/// when they are equal.
fn allocation_range(allocations: &[u64]) -> String {
    let fewest = allocations.iter().min().copied().unwrap_or(0);
    let most = allocations.iter().max().copied().unwrap_or(0);
    if fewest == most {
        fewest.to_string()
    } else {
        format!("{fewest}-{most}")
    }
}

/// Times one call of `f` as the median of `runs` runs.
fn median_time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e9
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Returns the authflow and Cedar texts of a policy with `guards` guards.
fn scaling_policies(guards: usize) -> (String, String) {
    (
        policy_with_guards(guards),
        cedar_policies_with_guards(guards),
    )
}

fn print_scaling() {
    println!(
        "scaling: one flow of N guards in authflow, N forbid policies plus one permit in Cedar"
    );
    println!(
        "| N | authflow compile to bytecode | authflow native load | Cedar parse and validate | authflow native decision | authflow bytecode decision | Cedar decision | Cedar / authflow native |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let schema = cedar_schema(CEDAR_SCHEMA);
    for guards in [10, 100, 1000] {
        let (flow_text, cedar_text) = scaling_policies(guards);
        let runs = if guards >= 1000 { 5 } else { 21 };
        let compile = median_time(runs, || {
            black_box(compile_flow("guarded.flow", &flow_text));
        });
        let program = compile_flow("guarded.flow", &flow_text);
        let load = median_time(runs, || {
            black_box(Policy::with_backend(program.clone(), Backend::Native).expect("loads"));
        });
        let cedar_prepare = median_time(runs, || {
            black_box(cedar_policies(&schema, &cedar_text));
        });

        let mut decide_ns = Vec::new();
        for backend in [Backend::Native, Backend::Bytecode] {
            let policy = Policy::with_backend(program.clone(), backend).expect("loads");
            let state = policy
                .start_json(GUARDED_REQUEST, 0)
                .expect("valid request");
            let facts = policy.facts(&state).expect("valid state");
            let mut scratch = policy.scratch();
            let _strings = policy.bind(&facts, &mut scratch);
            let flow = facts.request.flow;
            decide_ns.push(median_per_call(&mut || {
                policy.decide(black_box(flow), &mut scratch);
                match Verdict(scratch.outcome[out::VERDICT as usize]).decision() {
                    Some(Decision::Allow) => Outcome::Allow,
                    other => panic!("the guarded policy decided {other:?}"),
                }
            }));
        }

        let cedar = Cedar::new();
        let policies = cedar_policies(&schema, &cedar_text);
        let input = cedar.input(&guarded_request());
        let authorizer = cedar_policy::Authorizer::new();
        let cedar_ns = median_per_call(&mut || {
            let response = authorizer.is_authorized(&input.access, &policies, &input.entities);
            assert_eq!(response.decision(), cedar_policy::Decision::Allow);
            Outcome::Allow
        });
        println!(
            "| {guards} | {} | {} | {} | {} | {} | {} | {:.0} |",
            format_ns(compile),
            format_ns(load),
            format_ns(cedar_prepare),
            format_ns(decide_ns[0]),
            format_ns(decide_ns[1]),
            format_ns(cedar_ns),
            cedar_ns / decide_ns[0],
        );
    }
    println!();
}

fn print_preparation() {
    let schema_and_policies = median_time(21, || {
        let schema = cedar_schema(CEDAR_SCHEMA);
        black_box(cedar_policies(&schema, CEDAR_ONE_QUERY));
        black_box(cedar_policies(&schema, CEDAR_TWO_QUERIES));
    });
    let rego = median_time(21, || {
        black_box(rego_program());
    });
    let cel = median_time(21, || {
        black_box(cel_interpreter::Program::compile(CEL_EXPRESSION).expect("parses"));
    });
    let authflow = median_time(21, || {
        black_box(compile_flow("stepup.flow", STEPUP_FLOW));
    });
    let program = compile_flow("stepup.flow", STEPUP_FLOW);
    let native = median_time(21, || {
        black_box(Policy::with_backend(program.clone(), Backend::Native).expect("loads"));
    });
    println!(
        "preparation of the step-up policy, median of 21: authflow compile {} and native load {}, \
         Cedar schema and both policy sets with strict validation {}, Rego to RVM bytecode {}, CEL parse {}",
        format_ns(authflow),
        format_ns(native),
        format_ns(schema_and_policies),
        format_ns(rego),
        format_ns(cel),
    );
    println!();
}

fn peers(c: &mut Criterion) {
    let mut peers = Peers::new();
    if !std::env::args().any(|argument| argument == "--test") {
        print_tables(&mut peers);
        print_preparation();
        print_scaling();
    }

    for (mode, built_in_loop) in [("prebuilt", false), ("built_in_loop", true)] {
        let mut group = c.benchmark_group(format!("stepup_{mode}"));
        for case in benchmark_cases() {
            for engine in ENGINES {
                let mut bench = Bench {
                    group: &mut group,
                    name: format!("{}/{}", case.name, engine.id()),
                };
                peers.with_decision(engine, &case.request, built_in_loop, &mut bench);
            }
        }
        group.finish();
    }

    let schema = cedar_schema(CEDAR_SCHEMA);
    let mut group = c.benchmark_group("scaling");
    group.sample_size(10);
    for guards in [10, 100, 1000] {
        let (flow_text, cedar_text) = scaling_policies(guards);
        group.bench_function(format!("authflow_compile/{guards}"), |b| {
            b.iter(|| compile_flow("guarded.flow", &flow_text))
        });
        group.bench_function(format!("cedar_parse_validate/{guards}"), |b| {
            b.iter(|| cedar_policies(&schema, &cedar_text))
        });
        let program = compile_flow("guarded.flow", &flow_text);
        let policy = Policy::with_backend(program, Backend::Native).expect("loads");
        let state = policy
            .start_json(GUARDED_REQUEST, 0)
            .expect("valid request");
        let facts = policy.facts(&state).expect("valid state");
        let mut scratch = policy.scratch();
        let _strings = policy.bind(&facts, &mut scratch);
        let flow = facts.request.flow;
        group.bench_function(format!("authflow_native_decide/{guards}"), |b| {
            b.iter(|| policy.decide(black_box(flow), &mut scratch))
        });
        let cedar = Cedar::new();
        let policies = cedar_policies(&schema, &cedar_text);
        let input = cedar.input(&guarded_request());
        let authorizer = cedar_policy::Authorizer::new();
        group.bench_function(format!("cedar_decide/{guards}"), |b| {
            b.iter(|| authorizer.is_authorized(&input.access, &policies, &input.entities))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = peers
}
criterion_main!(benches);
