//! Compile speed on a generated policy of 1,000 flows: lexing, parsing,
//! resolving and checking, and the whole pipeline to bytecode.

use authflow_benches::policy_with_flows;
use authflow_compiler::{check, compile, lex, parse, resolve, FileId, NoImports};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn compile_stages(c: &mut Criterion) {
    let source = policy_with_flows(1000);
    let mut group = c.benchmark_group("compile_1000_flows");
    group.throughput(Throughput::Bytes(source.len() as u64));
    group.sample_size(20);

    group.bench_function("lex", |b| {
        b.iter(|| {
            let mut diagnostics = Vec::new();
            lex::lex(FileId(0), &source, &mut diagnostics)
        })
    });

    let mut diagnostics = Vec::new();
    let tokens = lex::lex(FileId(0), &source, &mut diagnostics);
    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut diagnostics = Vec::new();
            parse::parse(&tokens, &mut diagnostics)
        })
    });

    let file = parse::parse(&tokens, &mut diagnostics);
    assert!(
        diagnostics.is_empty(),
        "generated policy has syntax errors: {diagnostics:?}"
    );
    group.bench_function("resolve_and_check", |b| {
        b.iter(|| {
            let mut diagnostics = Vec::new();
            let scope = resolve::resolve(&[&file], &mut diagnostics);
            let checked = check::check(&scope, &[source.as_str()], &mut diagnostics);
            assert!(!diagnostics.iter().any(|d| d.is_error()));
            checked
        })
    });

    group.bench_function("front_end", |b| {
        b.iter(|| authflow_compiler::check_source("generated.flow", &source, &mut NoImports))
    });
    group.bench_function("to_bytecode", |b| {
        b.iter(|| compile("generated.flow", &source, &mut NoImports))
    });
    group.finish();
}

criterion_group!(benches, compile_stages);
criterion_main!(benches);
