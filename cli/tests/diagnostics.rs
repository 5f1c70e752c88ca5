//! Golden tests of diagnostics as users see them: each
//! `tests/diagnostics/NAME.flow` is checked by the real binary and its
//! rendered output compared with `NAME.stderr`. Run with `BLESS=1` to
//! rewrite the expected files after an intended change, then review the diff.

mod common;

#[test]
fn diagnostics_match_golden_files() {
    let dir = common::root().join("tests/diagnostics");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/diagnostics exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "found only {} diagnostic cases",
        files.len()
    );
    let bless = std::env::var_os("BLESS").is_some();
    let mut mismatches = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let relative = format!("tests/diagnostics/{name}");
        let output = common::authflow(&["check", &relative]);
        let rendered = format!(
            "exit status: {}\n{}",
            output.status.code().unwrap_or(-1),
            common::stderr(&output)
        );
        let expected_path = file.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &rendered).expect("write golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            mismatches.push(format!(
                "{relative}:\n--- expected\n{expected}\n--- actual\n{rendered}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden files differ (BLESS=1 rewrites them):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn json_diagnostics_carry_location_and_help() {
    let output = common::authflow(&[
        "check",
        "tests/diagnostics/undefined_attribute.flow",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value =
        serde_json::from_str(&common::stdout(&output)).expect("JSON document");
    assert_eq!(document["errors"], 1);
    let first = &document["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["location"]["line"], 10);
    assert_eq!(first["location"]["column"], 33);
    assert_eq!(first["help"], "did you mean `roles`?");
}

#[test]
fn warnings_alone_pass_the_check() {
    let output = common::authflow(&["check", "tests/diagnostics/warnings.flow"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    assert!(common::stderr(&output).contains("warning"));
}
