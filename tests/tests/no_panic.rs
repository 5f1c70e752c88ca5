//! The compiler and the input binder never panic: every prefix of every
//! policy in the repository, mutated policies and random bytes all end in
//! a result (a checked program or diagnostics), and malformed requests end
//! in an input error, never in a decision.

use std::path::{Path, PathBuf};

use authflow_compiler::{check_source, compile, NoImports};
use authflow_runtime::Policy;
use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn flow_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && name != "target" && name != "corpus" && !name.starts_with('.') {
            flow_files(&path, out);
        } else if name.ends_with(".flow") {
            out.push(path);
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, limit: usize) -> usize {
        (self.next() % limit.max(1) as u64) as usize
    }
}

fn check_does_not_panic(text: &str) {
    let compilation = check_source("input.flow", text, &mut NoImports);
    // Either a checked program or at least one error: never both, never neither.
    assert_eq!(
        compilation.checked.is_some(),
        !compilation.has_errors(),
        "inconsistent result for {text:?}"
    );
}

#[test]
fn every_prefix_of_every_policy_checks() {
    let mut files = Vec::new();
    flow_files(&repository(), &mut files);
    assert!(files.len() >= 20, "found only {} policies", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read policy");
        if text.len() > 20_000 {
            // Only the nesting-limit file is this large; its prefixes are all the same shape.
            check_does_not_panic(&text);
            continue;
        }
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for end in boundaries {
            check_does_not_panic(&text[..end]);
        }
    }
}

#[test]
fn mutated_policies_check() {
    let mut files = Vec::new();
    flow_files(&repository().join("tests/scenarios"), &mut files);
    flow_files(&repository().join("examples"), &mut files);
    let fragments = [
        "{",
        "}",
        "(",
        ")",
        "\"",
        "??",
        "not",
        "require",
        "allow",
        "0",
        "-",
        "in",
        ".",
        ",",
        "/*",
        "\\u{",
        "99999999999999999999",
    ];
    let mut random = Random(0x5eed);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read policy");
        if text.len() > 20_000 {
            continue;
        }
        for _ in 0..150 {
            let mut bytes = text.clone().into_bytes();
            for _ in 0..1 + random.below(3) {
                let at = random.below(bytes.len());
                match random.below(3) {
                    0 => {
                        let end = (at + random.below(12)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    1 => {
                        let fragment = fragments[random.below(fragments.len())];
                        bytes.splice(at..at, fragment.bytes());
                    }
                    _ => {
                        if at < bytes.len() {
                            bytes[at] = random.next() as u8;
                        }
                    }
                }
            }
            check_does_not_panic(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn random_bytes_check() {
    let mut random = Random(42);
    for _ in 0..3000 {
        let length = random.below(200);
        let bytes: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
        check_does_not_panic(&String::from_utf8_lossy(&bytes));
        let ascii: String = bytes.iter().map(|b| (b % 95 + 32) as char).collect();
        check_does_not_panic(&ascii);
    }
}

#[test]
fn malformed_requests_never_decide() {
    let source = std::fs::read_to_string(
        repository().join("tests/scenarios/01-workforce-login/policy.flow"),
    )
    .expect("policy");
    let policy = Policy::new(
        compile("policy.flow", &source, &mut NoImports)
            .program
            .expect("compiles"),
    )
    .expect("verified");
    let valid: Value = serde_json::json!({
        "flow": "workforce_login",
        "principal": {"kind": "human", "id": "u-1", "roles": ["admin"], "employment": "employee"},
        "context": {"resource": "mail", "risk": 10, "device_trusted": true},
        "now": "2026-12-04T10:00:00Z"
    });
    assert!(policy.start(&valid, 0).is_ok());
    let mut empty_id = valid.clone();
    empty_id["principal"]["id"] = Value::from("");
    assert!(
        policy.start(&empty_id, 0).is_err(),
        "an empty principal id was accepted"
    );
    let replacements = [
        Value::Null,
        Value::from(1.5),
        Value::from(u64::MAX),
        Value::from(-1),
        Value::from(""),
        Value::from("2026-13-40T99:00:00Z"),
        Value::from(vec![Value::Null]),
        serde_json::json!({}),
        Value::Bool(true),
    ];
    let paths: [&[&str]; 10] = [
        &["flow"],
        &["principal"],
        &["principal", "kind"],
        &["principal", "id"],
        &["principal", "roles"],
        &["principal", "employment"],
        &["context"],
        &["context", "risk"],
        &["context", "device_trusted"],
        &["now"],
    ];
    for path in paths {
        for replacement in &replacements {
            let mut request = valid.clone();
            let mut target = &mut request;
            for key in &path[..path.len() - 1] {
                target = &mut target[*key];
            }
            let original = target[path[path.len() - 1]].clone();
            if original == *replacement {
                continue;
            }
            // A value of the original's JSON type may be valid (another id, another score).
            let same_type = matches!(
                (&original, replacement),
                (Value::Bool(_), Value::Bool(_)) | (Value::String(_), Value::String(_))
            ) || (original.is_i64() && replacement.is_i64());
            target[path[path.len() - 1]] = replacement.clone();
            let result = policy.start(&request, 0);
            if !same_type {
                assert!(result.is_err(), "{path:?} = {replacement} was accepted");
            }
        }
    }
}
