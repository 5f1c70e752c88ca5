//! Governance tools: proving invariants over all inputs and the semantic
//! diff, on the workforce login example and on a generated policy of ten
//! flows with 20 guards each.

use authflow_benches::policy_with_guarded_flows;
use authflow_compiler::{build_program, check_source, prove, NoImports};
use criterion::{criterion_group, criterion_main, Criterion};

const WORKFORCE: &str = include_str!("../../examples/workforce-login/policy.flow");
const SCENARIO: &str = include_str!("../../tests/scenarios/01-workforce-login/policy.flow");

fn governance(c: &mut Criterion) {
    let compilation = check_source("workforce.flow", WORKFORCE, &mut NoImports);
    let checked = compilation.checked.clone().expect("the example checks");
    let program = build_program(&compilation).expect("the example compiles");
    let old = build_program(&check_source("old.flow", SCENARIO, &mut NoImports)).expect("compiles");
    let lowered = SCENARIO.replace(">= 90", ">= 80");
    let new = build_program(&check_source("new.flow", &lowered, &mut NoImports)).expect("compiles");

    let mut group = c.benchmark_group("governance");
    group.sample_size(10);
    group.bench_function("prove_workforce_invariants", |b| {
        b.iter(|| prove::check_invariants(&checked, &program))
    });
    group.bench_function("diff_risk_threshold", |b| {
        b.iter(|| prove::diff(&old, &new, "workforce_login").expect("same schema"))
    });
    let generated = policy_with_guarded_flows(10, 20);
    let compilation = check_source("generated.flow", &generated, &mut NoImports);
    let generated_checked = compilation
        .checked
        .clone()
        .expect("the generated policy checks");
    let generated_program = build_program(&compilation).expect("the generated policy compiles");
    let changed = generated.replace("context.risk == 1005", "context.risk == 1006");
    let changed_program =
        build_program(&check_source("changed.flow", &changed, &mut NoImports)).expect("compiles");
    group.bench_function("prove_10_flows_of_20_guards", |b| {
        b.iter(|| prove::check_invariants(&generated_checked, &generated_program))
    });
    group.bench_function("diff_flow_of_20_guards", |b| {
        b.iter(|| {
            prove::diff(&generated_program, &changed_program, "guarded_0").expect("same schema")
        })
    });
    group.finish();
}

criterion_group!(benches, governance);
criterion_main!(benches);
