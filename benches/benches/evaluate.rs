//! Evaluation speed: the bytecode decision kernel on a bound input record, and end to
//! end from request JSON to outcome, for the workforce login flow and for a
//! generated flow of 100 guards. Heap allocations per evaluation are counted
//! with a counting allocator and printed once per input.

use authflow_benches::{policy_with_guards, GUARDED_REQUEST, WORKFORCE_POLICY, WORKFORCE_REQUEST};
use authflow_compiler::{compile, NoImports};
use authflow_runtime::Policy;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Heap blocks allocated while `f` runs.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

fn load(source: &str) -> Policy {
    let program = compile("bench.flow", source, &mut NoImports)
        .program
        .expect("policy compiles");
    Policy::new(program).expect("program verifies")
}

fn bench_policy(c: &mut Criterion, name: &str, source: &str, request: &str) {
    let policy = load(source);
    let profiler = dhat::Profiler::builder().testing().build();
    let state = policy.start_json(request, 0).expect("valid request");
    let facts = policy.facts(&state).expect("valid state");
    let flow = facts.request.flow;
    let mut scratch = policy.scratch();
    let _strings = policy.bind(&facts, &mut scratch);

    let kernel_allocations = allocations_during(|| policy.decide(flow, &mut scratch));
    let end_to_end_allocations = allocations_during(|| {
        let state = policy.start_json(request, 0).expect("valid request");
        black_box(policy.evaluate(&state, false).expect("outcome"));
    });
    println!(
        "{name}: {} instructions, {} in the decision kernel, heap allocations per evaluation: kernel {kernel_allocations}, end to end {end_to_end_allocations}",
        policy.program().flows[flow].code.len(),
        policy.decision_program().flows[flow].code.len()
    );
    drop(profiler);

    let mut group = c.benchmark_group(name);
    group.bench_function("kernel", |b| {
        b.iter(|| policy.decide(black_box(flow), &mut scratch))
    });
    group.bench_function("bind_and_kernel", |b| {
        b.iter(|| {
            let _strings = policy.bind(black_box(&facts), &mut scratch);
            policy.decide(flow, &mut scratch);
        })
    });
    group.bench_function("end_to_end_json", |b| {
        b.iter(|| {
            let state = policy
                .start_json(black_box(request), 0)
                .expect("valid request");
            policy.evaluate(&state, false).expect("outcome")
        })
    });
    group.finish();
}

fn evaluation(c: &mut Criterion) {
    bench_policy(c, "workforce_login", WORKFORCE_POLICY, WORKFORCE_REQUEST);
    bench_policy(c, "guards_100", &policy_with_guards(100), GUARDED_REQUEST);
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
