//! `import "path.flow"` and `import std.NAME` through the real binary.

mod common;

#[test]
fn imports_resolve_relative_to_the_importer() {
    let output = common::authflow(&["check", "tests/imports/main.flow"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
}

#[test]
fn imported_flow_runs_with_imported_constants() {
    let dir = std::env::temp_dir().join(format!("authflow-imports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let request = dir.join("request.json");
    std::fs::write(
        &request,
        r#"{"event": "login", "principal": {"kind": "human", "id": "u-1", "locked": false},
            "session": {"started_at": "2026-12-04T09:00:00Z", "factors": [{"factor": "password", "at": "2026-12-04T09:00:00Z"}, {"factor": "totp", "at": "2026-12-04T09:00:10Z"}]},
            "now": "2026-12-04T10:00:00Z"}"#,
    )
    .expect("write request");
    let output = common::authflow(&[
        "eval",
        "tests/imports/main.flow",
        "--input",
        &request.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    assert_eq!(
        common::stdout(&output).trim(),
        r#"{"decision":"allow","attributes":{"idle_timeout":"30m"}}"#
    );
}

#[test]
fn missing_import_points_at_the_import() {
    let output = common::authflow(&["check", "tests/imports/missing.flow"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("cannot import `shared/nowhere.flow`"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.flow:1:1"), "{stderr}");
}
