//! The decision kernel executes the same instruction sequence for every
//! input of a flow. For each scenario policy, every request and event of its
//! cases is evaluated while recording the executed opcodes, and so are random
//! records. All recordings of one flow must be identical, although the inputs
//! take different paths (they reach different deciding sites).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use authflow_compiler::{compile, NoImports};
use authflow_runtime::program::{out, Verdict};
use authflow_runtime::{kernel, FlowState, Policy};
use serde_json::Value;

fn scenarios() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut folders: Vec<_> = std::fs::read_dir(root)
        .expect("tests/scenarios exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("cases.json").exists())
        .collect();
    folders.sort();
    folders
}

/// Every state a case goes through that is valid input.
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

#[test]
fn opcode_sequence_is_identical_across_paths() {
    let mut flows_checked = 0;
    for folder in scenarios() {
        let source = std::fs::read_to_string(folder.join("policy.flow")).expect("policy");
        let compilation = compile("policy.flow", &source, &mut NoImports);
        let policy =
            Policy::new(compilation.program.expect("scenario policies compile")).expect("verified");
        let cases: Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("cases.json")).expect("cases"),
        )
        .expect("JSON");
        let mut sequences: BTreeMap<usize, Vec<Vec<&'static str>>> = BTreeMap::new();
        let mut sites: BTreeMap<usize, BTreeSet<(u64, u64)>> = BTreeMap::new();
        for case in cases["cases"].as_array().expect("cases") {
            for state in states(&policy, case) {
                let facts = policy.facts(&state).expect("valid state");
                let flow_index = facts.request.flow;
                let mut scratch = policy.scratch();
                let _strings = policy.bind(&facts, &mut scratch);
                let flow = &policy.program().flows[flow_index];
                let mut opcodes = Vec::new();
                let registers = &mut scratch.registers[..flow.registers as usize];
                let outcome = &mut scratch.outcome[..flow.outcome_words as usize];
                kernel::run_recording(
                    &flow.code,
                    &scratch.record,
                    registers,
                    outcome,
                    &mut opcodes,
                );
                sites
                    .entry(flow_index)
                    .or_default()
                    .insert(decision_and_site(outcome));
                sequences.entry(flow_index).or_default().push(opcodes);
            }
        }
        // Random records reach paths the cases do not; the sequence must not change.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for (flow_index, flow) in policy.program().flows.iter().enumerate() {
            let mut scratch = policy.scratch();
            for _ in 0..200 {
                for word in scratch.record.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *word = match seed % 4 {
                        0 => seed & 1,
                        1 => seed % 200,
                        2 => seed,
                        _ => 0,
                    };
                }
                let mut opcodes = Vec::new();
                let registers = &mut scratch.registers[..flow.registers as usize];
                let outcome = &mut scratch.outcome[..flow.outcome_words as usize];
                kernel::run_recording(
                    &flow.code,
                    &scratch.record,
                    registers,
                    outcome,
                    &mut opcodes,
                );
                sites
                    .entry(flow_index)
                    .or_default()
                    .insert(decision_and_site(outcome));
                sequences.entry(flow_index).or_default().push(opcodes);
            }
        }
        for (flow_index, recorded) in &sequences {
            let name = &policy.program().flows[*flow_index].name;
            let first = &recorded[0];
            assert_eq!(first.len(), policy.program().flows[*flow_index].code.len());
            for (i, other) in recorded.iter().enumerate() {
                assert_eq!(
                    first,
                    other,
                    "{}: flow `{name}` evaluation {i} executed another opcode sequence",
                    folder.display()
                );
            }
            flows_checked += 1;
        }
        let multi_path = sites.values().filter(|s| s.len() > 1).count();
        assert!(
            multi_path > 0,
            "{}: the cases never take different paths",
            folder.display()
        );
    }
    assert!(
        flows_checked >= 12,
        "only {flows_checked} flows were checked"
    );
}

/// Returns the decision code and the site of an outcome record.
fn decision_and_site(outcome: &[u64]) -> (u64, u64) {
    let verdict = Verdict(outcome[out::VERDICT as usize]);
    (verdict.code(), verdict.site())
}
