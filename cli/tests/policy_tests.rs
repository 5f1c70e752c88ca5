//! `authflow test` on the policies that carry test blocks: every test passes
//! and, for the acceptance scenarios and examples, covers every step, arm
//! and exception path.

mod common;

fn policies(relative: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(common::root().join(relative))
        .expect("folder exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("policy.flow"))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    found.sort();
    found
}

#[test]
fn scenario_and_example_tests_cover_everything() {
    let mut checked = 0;
    for policy in policies("tests/scenarios")
        .into_iter()
        .chain(policies("examples"))
    {
        let output = common::authflow(&["test", &policy, "--coverage"]);
        let stdout = common::stdout(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{policy}: {stdout}{}",
            common::stderr(&output)
        );
        assert!(
            stdout.contains("every step, arm and exception path was reached"),
            "{policy}: {stdout}"
        );
        assert!(
            stdout
                .lines()
                .last()
                .is_some_and(|l| l.ends_with(" 0 failed")),
            "{policy}: {stdout}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} policies with tests");
}

#[test]
fn failing_test_reports_statement_and_outcome() {
    let dir = std::env::temp_dir().join(format!("authflow-policy-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let policy = dir.join("policy.flow");
    std::fs::write(
        &policy,
        "principal human {}\ncontext { risk: Int }\n\
         flow login for human on login {\n  deny \"risky\" when context.risk > 50\n  allow\n}\n\
         test \"low risk is allowed\" {\n  flow login\n  principal human { id: \"u\" }\n  context { risk: 10 }\n  expect allow\n}\n\
         test \"high risk expectation is wrong\" {\n  flow login\n  principal human { id: \"u\" }\n  context { risk: 90 }\n  expect allow\n}\n",
    )
    .expect("write policy");
    let output = common::authflow(&["test", &policy.display().to_string()]);
    let stdout = common::stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok   low risk is allowed"), "{stdout}");
    assert!(
        stdout.contains("FAIL high risk expectation is wrong"),
        "{stdout}"
    );
    assert!(
        stdout.contains(":17:3: expected allow, got deny \"risky\""),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}
