//! Runs the acceptance scenarios in `tests/scenarios` against the real
//! binary. Each folder has a policy and `cases.json` (request, events,
//! expected outcomes matched as subsets, or an expected exit status), or a
//! `check.json` of policies that `authflow check` accepts or rejects at a
//! given line.

mod common;

use std::path::Path;

use serde_json::Value;

/// Describes the first way `expected` is not a subset of `actual`.
fn subset_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match expected {
        Value::Object(fields) => {
            let Value::Object(actual_fields) = actual else {
                return Some(format!("{path}: expected an object, got {actual}"));
            };
            fields
                .iter()
                .find_map(|(key, value)| match actual_fields.get(key) {
                    None => Some(format!("{path}.{key}: missing (expected {value})")),
                    Some(found) => subset_mismatch(value, found, &format!("{path}.{key}")),
                })
        }
        _ => (expected != actual).then(|| format!("{path}: expected {expected}, got {actual}")),
    }
}

fn run_eval_case(folder: &Path, case: &Value, scratch: &Path, backend: &str) -> Option<String> {
    let request = scratch.join("request.json");
    match &case["request"] {
        Value::String(raw) => std::fs::write(&request, raw),
        other => std::fs::write(&request, other.to_string()),
    }
    .expect("write request");
    let policy = folder.join("policy.flow");
    let mut args = vec![
        "eval".to_string(),
        policy.display().to_string(),
        "--input".into(),
        request.display().to_string(),
    ];
    for (i, event) in case["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = scratch.join(format!("event{i}.json"));
        std::fs::write(&path, event.to_string()).expect("write event");
        args.push("--event".into());
        args.push(path.display().to_string());
    }
    args.push("--backend".into());
    args.push(backend.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = common::authflow(&args);
    let status = output.status.code().unwrap_or(-1);
    let stderr = common::stderr(&output);
    if let Some(expected_exit) = case.get("exit").and_then(Value::as_i64) {
        if i64::from(status) != expected_exit {
            return Some(format!(
                "exit status {status}, expected {expected_exit}; stderr: {stderr}"
            ));
        }
        if expected_exit != 0 && stderr.trim().is_empty() {
            return Some("failed without an error message".into());
        }
        if !common::stdout(&output).trim().is_empty() && expected_exit != 0 {
            return Some("printed an outcome for invalid input".into());
        }
        for needle in case["stderr_contains"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let needle = needle.as_str().unwrap_or_default().to_lowercase();
            if !stderr.to_lowercase().contains(&needle) {
                return Some(format!("stderr lacks {needle:?}: {stderr}"));
            }
        }
        return None;
    }
    if status != 0 {
        return Some(format!("exit status {status}; stderr: {stderr}"));
    }
    let stdout = common::stdout(&output);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let expected = case["expect"].as_array().cloned().unwrap_or_default();
    if lines.len() != expected.len() {
        return Some(format!(
            "{} outcomes printed, expected {}: {stdout}",
            lines.len(),
            expected.len()
        ));
    }
    for (step, (line, want)) in lines.iter().zip(&expected).enumerate() {
        let outcome: Value = match serde_json::from_str(line) {
            Ok(outcome) => outcome,
            Err(error) => {
                return Some(format!("step {step}: output is not JSON ({error}): {line}"))
            }
        };
        if let Some(problem) = subset_mismatch(want, &outcome, "$") {
            return Some(format!("step {step}: {problem}"));
        }
    }
    None
}

fn run_check_case(folder: &Path, case: &Value) -> Option<String> {
    let file = folder.join(case["file"].as_str().unwrap_or_default());
    let output = common::authflow(&["check", &file.display().to_string()]);
    let status = output.status.code().unwrap_or(-1);
    let stderr = common::stderr(&output);
    let expected_exit = case["exit"].as_i64().unwrap_or(0);
    if i64::from(status) != expected_exit {
        return Some(format!(
            "exit status {status}, expected {expected_exit}; stderr: {stderr}"
        ));
    }
    if let Some(lines) = case.get("line") {
        let lines: Vec<i64> = match lines {
            Value::Array(items) => items.iter().filter_map(Value::as_i64).collect(),
            other => other.as_i64().into_iter().collect(),
        };
        let points = lines.iter().any(|line| {
            stderr
                .match_indices(&format!(":{line}:"))
                .any(|(at, text)| {
                    stderr[at + text.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit())
                })
        });
        if !points {
            return Some(format!("no diagnostic points at line {lines:?}: {stderr}"));
        }
    }
    for needle in case["stderr_contains"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let needle = needle.as_str().unwrap_or_default().to_lowercase();
        if !stderr.to_lowercase().contains(&needle) {
            return Some(format!("output lacks {needle:?}: {stderr}"));
        }
    }
    None
}

fn case_folders(relative: &str) -> Vec<std::path::PathBuf> {
    let mut folders: Vec<_> = std::fs::read_dir(common::root().join(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    folders
}

#[test]
fn every_scenario_case_passes() {
    let folders = case_folders("tests/scenarios");
    assert!(
        folders.len() >= 11,
        "expected the scenario folders, found {}",
        folders.len()
    );
    run_folders(&folders, 100);
}

/// The project's own decision cases beyond the acceptance scenarios.
#[test]
fn every_project_case_passes() {
    let folders = case_folders("tests/cases");
    assert!(!folders.is_empty());
    run_folders(&folders, folders.len());
}

fn run_folders(folders: &[std::path::PathBuf], minimum: usize) {
    for backend in ["native", "bytecode"] {
        run_folders_with(folders, minimum, backend);
    }
}

/// Runs every case of `folders` with one decision kernel.
fn run_folders_with(folders: &[std::path::PathBuf], minimum: usize, backend: &str) {
    let parent = folders
        .first()
        .and_then(|f| f.parent())
        .and_then(|p| p.file_name())
        .unwrap_or_default()
        .to_string_lossy();
    let scratch = std::env::temp_dir().join(format!(
        "authflow-{parent}-{backend}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let mut failures = Vec::new();
    let mut passed = 0;
    for folder in folders {
        let name = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let check = folder.join("check.json");
        let spec_path = if check.exists() {
            check.clone()
        } else {
            folder.join("cases.json")
        };
        let spec: Value =
            serde_json::from_str(&std::fs::read_to_string(&spec_path).expect("read cases"))
                .expect("cases are JSON");
        for case in spec["cases"].as_array().cloned().unwrap_or_default() {
            let problem = if check.exists() {
                run_check_case(folder, &case)
            } else {
                run_eval_case(folder, &case, &scratch, backend)
            };
            let label = case
                .get("name")
                .or(case.get("file"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            match problem {
                Some(problem) => failures.push(format!("{name} / {label} ({backend}): {problem}")),
                None => passed += 1,
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        failures.is_empty(),
        "{passed} passed, {} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= minimum, "only {passed} cases ran");
}
