//! Governance tools on the workforce login example: proving its invariants
//! over all inputs, and the semantic diff against a copy with a lower risk
//! threshold.

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
    group.bench_function("prove_workforce_invariants", |b| b.iter(|| prove::check_invariants(&checked, &program)));
    group.bench_function("diff_risk_threshold", |b| {
        b.iter(|| prove::diff(&old, &new, "workforce_login").expect("same schema"))
    });
    group.finish();
}

criterion_group!(benches, governance);
criterion_main!(benches);
