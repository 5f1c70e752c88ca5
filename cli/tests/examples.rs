//! Runs every command shown in an example's README and compares the output
//! with the block that follows it, so the documentation cannot drift.

mod common;

/// Pairs of (command, expected output) from a README: a fenced block whose
/// first line starts with `authflow ` followed by a fenced output block.
fn documented_runs(readme: &str) -> Vec<(Vec<String>, String)> {
    let blocks: Vec<&str> = readme.split("```").skip(1).step_by(2).collect();
    let mut runs = Vec::new();
    for pair in blocks.windows(2) {
        let command = pair[0]
            .trim_start_matches(|c: char| c.is_alphanumeric())
            .trim();
        if !command.starts_with("authflow ") {
            continue;
        }
        let joined = command.replace("\\\n", " ");
        let words: Vec<String> = joined
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect();
        runs.push((words, pair[1].trim().to_string()));
    }
    runs
}

#[test]
fn example_readmes_match_real_output() {
    let examples = common::root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples)
        .expect("examples exist")
        .filter_map(Result::ok)
    {
        let readme = entry.path().join("README.md");
        let Ok(text) = std::fs::read_to_string(&readme) else {
            continue;
        };
        for (args, expected) in documented_runs(&text) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = common::authflow(&args);
            let actual = common::stdout(&output);
            assert_eq!(
                actual.trim(),
                expected,
                "{}: `authflow {}` printed something else; stderr: {}",
                readme.display(),
                args.join(" "),
                common::stderr(&output)
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} documented runs found");
}

#[test]
fn example_policies_check_clean() {
    let examples = common::root().join("examples");
    for entry in std::fs::read_dir(&examples)
        .expect("examples exist")
        .filter_map(Result::ok)
    {
        let policy = entry.path().join("policy.flow");
        if !policy.exists() {
            continue;
        }
        let output = common::authflow(&["check", &policy.display().to_string()]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            policy.display(),
            common::stderr(&output)
        );
    }
}
