//! Conformance of the production lexer and parser to the normative grammar in
//! grammar/flow.pest: both must accept exactly the same files.
//!
//! The sources are every `.flow` file in the repository, the corner cases in
//! tests/grammar/valid and tests/grammar/invalid, generated literals at their
//! limits, and mutations of the valid files.

use std::fs;
use std::path::{Path, PathBuf};

use authflow_compiler::lex::{lex, Keyword};
use authflow_compiler::parse::MAX_NESTING;
use authflow_compiler::{parse_file, FileId};
use pest::Parser;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "../grammar/flow.pest"]
struct FlowGrammar;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Rejected,
}

/// Runs the production lexer and parser and returns their verdict and messages.
fn parser_verdict(source: &str) -> (Verdict, Vec<String>) {
    let (_, diagnostics) = parse_file(source);
    let messages: Vec<String> = diagnostics.into_iter().map(|d| d.message).collect();
    let verdict = if messages.is_empty() {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    };
    (verdict, messages)
}

/// Runs the pest grammar and returns its verdict and error message.
///
/// Panics when pest stops for lack of stack, because that rejection is not
/// the grammar's: pest 2.9 reports "stack limit reached" when less than 64 KiB
/// of stack remain.
fn grammar_verdict(source: &str) -> (Verdict, Option<String>) {
    match FlowGrammar::parse(Rule::file, source) {
        Ok(_) => (Verdict::Accepted, None),
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains("stack limit reached"),
                "pest ran out of stack: {message}"
            );
            (Verdict::Rejected, Some(message))
        }
    }
}

/// Tells whether the parser rejected the source only for nesting deeper than
/// its limit. The grammar states no depth limit, so such files are not given
/// to pest: it would accept them, and a deep file could overflow its stack.
fn rejected_only_for_nesting(messages: &[String]) -> bool {
    !messages.is_empty()
        && messages
            .iter()
            .all(|message| message.contains("nesting is deeper"))
}

/// Compares both verdicts on one source. Returns a description of the
/// disagreement, or `None` when they agree or the source is skipped.
fn disagreement(name: &str, source: &str) -> Option<String> {
    let (parser, messages) = parser_verdict(source);
    if rejected_only_for_nesting(&messages) {
        return None;
    }
    let (grammar, grammar_error) = grammar_verdict(source);
    if parser == grammar {
        return None;
    }
    Some(format!(
        "{name}: parser {parser:?} {messages:?}, grammar {grammar:?}\n{}",
        grammar_error.unwrap_or_default()
    ))
}

fn repository_root() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grammar")
        .join(kind)
}

/// Lists the `.flow` files under `dir`, sorted, skipping build output and fuzz
/// corpora, which hold generated inputs.
fn flow_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir:?}: {e}"));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let skipped = path.ends_with("target")
                || path.ends_with("fuzz/corpus")
                || path.file_name().is_some_and(|name| name == ".git");
            if skipped {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "flow") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"))
}

#[test]
fn repository_files_agree() {
    let files = flow_files(&repository_root());
    let scenarios = files
        .iter()
        .filter(|path| path.to_string_lossy().contains("scenarios"))
        .count();
    assert!(
        scenarios >= 20,
        "expected the scenario policies, found {scenarios} files"
    );

    let mut failures = Vec::new();
    for path in &files {
        if let Some(message) = disagreement(&path.display().to_string(), &read(path)) {
            failures.push(message);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn deep_nesting_scenario_hits_limit() {
    let path = repository_root().join("tests/scenarios/10-compile-errors/deep_nesting.flow");
    let (verdict, messages) = parser_verdict(&read(&path));
    assert_eq!(verdict, Verdict::Rejected);
    assert!(rejected_only_for_nesting(&messages), "{messages:?}");
}

#[test]
fn scenario_syntax_error_is_rejected() {
    let path = repository_root().join("tests/scenarios/10-compile-errors/syntax_error.flow");
    let source = read(&path);
    assert_eq!(parser_verdict(&source).0, Verdict::Rejected);
    assert_eq!(grammar_verdict(&source).0, Verdict::Rejected);
}

#[test]
fn valid_corpus_is_accepted() {
    let files = flow_files(&corpus_dir("valid"));
    assert!(
        files.len() >= 20,
        "expected at least 20 valid files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let source = read(path);
        let (grammar, error) = grammar_verdict(&source);
        if grammar != Verdict::Accepted {
            failures.push(format!(
                "{}: grammar rejects it\n{}",
                path.display(),
                error.unwrap_or_default()
            ));
        }
        let (parser, messages) = parser_verdict(&source);
        if parser != Verdict::Accepted {
            failures.push(format!(
                "{}: parser rejects it: {messages:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_corpus_is_rejected() {
    let files = flow_files(&corpus_dir("invalid"));
    assert!(
        files.len() >= 30,
        "expected at least 30 invalid files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let source = read(path);
        if grammar_verdict(&source).0 != Verdict::Rejected {
            failures.push(format!("{}: grammar accepts it", path.display()));
        }
        let (parser, messages) = parser_verdict(&source);
        if parser != Verdict::Rejected {
            failures.push(format!("{}: parser accepts it", path.display()));
        }
        if rejected_only_for_nesting(&messages) {
            failures.push(format!(
                "{}: rejected for nesting, not for syntax",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lists the keywords that grammar/flow.pest reserves: the words of its
/// `kw_NAME = @{ "NAME" ~ !ident_char }` rules.
fn grammar_keywords() -> Vec<String> {
    let grammar = read(&repository_root().join("grammar/flow.pest"));
    let mut keywords: Vec<String> = grammar
        .lines()
        .filter(|line| line.starts_with("kw_"))
        .filter_map(|line| line.split('"').nth(1))
        .map(str::to_string)
        .collect();
    keywords.sort();
    keywords
}

#[test]
fn keywords_match_lexer() {
    let mut lexer_keywords: Vec<String> = Keyword::ALL
        .iter()
        .map(|keyword| keyword.text().to_string())
        .collect();
    lexer_keywords.sort();
    assert_eq!(grammar_keywords(), lexer_keywords);

    for keyword in &lexer_keywords {
        let as_name = format!("const {keyword} = 1");
        assert_eq!(parser_verdict(&as_name).0, Verdict::Rejected, "{as_name}");
        assert_eq!(grammar_verdict(&as_name).0, Verdict::Rejected, "{as_name}");
        assert!(
            FlowGrammar::parse(Rule::keyword, keyword).is_ok(),
            "{keyword} is not a keyword"
        );

        let longer_name = format!("const {keyword}_x = {keyword}1");
        assert_eq!(disagreement(&longer_name, &longer_name), None);
    }
}

/// Returns the decimal digits of `value + 1`, which may exceed `u64`.
fn successor(value: u64) -> String {
    (u128::from(value) + 1).to_string()
}

#[test]
fn numeric_limits_agree() {
    let max = i64::MAX as u64;
    let mut cases = vec![
        (max.to_string(), Verdict::Accepted),
        (format!("000{max}"), Verdict::Accepted),
        (successor(max), Verdict::Rejected),
        (format!("0{}", successor(max)), Verdict::Rejected),
        ("99999999999999999999999".to_string(), Verdict::Rejected),
        ("0".to_string(), Verdict::Accepted),
        ("00000000000000000000000000".to_string(), Verdict::Accepted),
    ];
    for (unit, micros) in [
        ("ms", 1_000),
        ("s", 1_000_000),
        ("m", 60_000_000),
        ("h", 3_600_000_000),
        ("d", 86_400_000_000),
    ] {
        let largest = max / micros;
        cases.push((format!("{largest}{unit}"), Verdict::Accepted));
        cases.push((format!("0000{largest}{unit}"), Verdict::Accepted));
        cases.push((format!("{}{unit}", largest - 1), Verdict::Accepted));
        cases.push((format!("{}{unit}", successor(largest)), Verdict::Rejected));
        cases.push((format!("{}{unit}", largest * 10), Verdict::Rejected));
        cases.push((format!("0{unit}"), Verdict::Accepted));
        cases.push((format!("1{unit}x"), Verdict::Rejected));
    }
    for (literal, expected) in cases {
        let source = format!("const a = {literal}");
        assert_eq!(parser_verdict(&source).0, expected, "parser on {literal}");
        assert_eq!(grammar_verdict(&source).0, expected, "grammar on {literal}");
    }
}

#[test]
fn unicode_escapes_agree() {
    let cases = [
        ("0", Verdict::Accepted),
        ("41", Verdict::Accepted),
        ("00e9", Verdict::Accepted),
        ("D7FF", Verdict::Accepted),
        ("d7ff", Verdict::Accepted),
        ("D800", Verdict::Rejected),
        ("dbff", Verdict::Rejected),
        ("DC00", Verdict::Rejected),
        ("DFFF", Verdict::Rejected),
        ("0DFFF", Verdict::Rejected),
        ("E000", Verdict::Accepted),
        ("FFFF", Verdict::Accepted),
        ("10000", Verdict::Accepted),
        ("FFFFF", Verdict::Accepted),
        ("10FFFF", Verdict::Accepted),
        ("110000", Verdict::Rejected),
        ("200000", Verdict::Rejected),
        ("000041", Verdict::Accepted),
        ("0000041", Verdict::Rejected),
        ("", Verdict::Rejected),
        ("G", Verdict::Rejected),
        ("4 1", Verdict::Rejected),
    ];
    for (hex, expected) in cases {
        let source = format!("const a = \"x\\u{{{hex}}}y\"");
        assert_eq!(
            parser_verdict(&source).0,
            expected,
            "parser on \\u{{{hex}}}"
        );
        assert_eq!(
            grammar_verdict(&source).0,
            expected,
            "grammar on \\u{{{hex}}}"
        );
    }
}

/// Wraps `1` in `depth` parentheses as the value of a constant.
fn nested_constant(depth: usize) -> String {
    format!("const x = {}1{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn nesting_limit_is_parser_only() {
    // The constant's expression takes one nesting level and each parenthesis one more.
    let deepest = nested_constant(MAX_NESTING - 1);
    let too_deep = nested_constant(MAX_NESTING);

    assert_eq!(parser_verdict(&deepest).0, Verdict::Accepted);
    let (verdict, messages) = parser_verdict(&too_deep);
    assert_eq!(verdict, Verdict::Rejected);
    assert!(rejected_only_for_nesting(&messages), "{messages:?}");

    // In a debug build, pest runs out of the default 2 MiB test thread stack
    // before 255 parentheses, so it gets a larger one.
    let grammar = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || (grammar_verdict(&deepest).0, grammar_verdict(&too_deep).0))
        .expect("spawn thread")
        .join()
        .expect("grammar thread");
    assert_eq!(grammar, (Verdict::Accepted, Verdict::Accepted));
}

/// Token texts inserted by [`mutations`]: punctuation, keywords, contextual
/// words and literals at the edges of the lexer.
const INSERTED_TOKENS: &[&str] = &[
    ",",
    "{",
    "}",
    "(",
    ")",
    ".",
    ":",
    "=",
    "=>",
    "?",
    "??",
    "<",
    ">=",
    "==",
    "-",
    "+",
    "not",
    "in",
    "and",
    "principal",
    "context",
    "else",
    "when",
    "within",
    "attempts",
    "by",
    "with",
    "any",
    "allow",
    "version",
    "implies",
    "x",
    "5",
    "5w",
    "\"s\"",
    "/*",
    "\\",
];

/// The number of [`INSERTED_TOKENS`] inserted before each token. The choice
/// rotates from token to token, so every inserted token appears in many
/// contexts while the test stays fast in a debug build.
const INSERTIONS_PER_TOKEN: usize = 3;

/// Returns sources that differ from `source` by one token (deleted,
/// duplicated, swapped with the next, or preceded by an inserted token) or
/// by one deleted character.
fn mutations(source: &str) -> Vec<String> {
    let mut diagnostics = Vec::new();
    let tokens = lex(FileId(0), source, &mut diagnostics);
    let spans: Vec<(usize, usize)> = tokens
        .iter()
        .map(|token| (token.span.start as usize, token.span.end as usize))
        .filter(|(start, end)| start < end)
        .collect();
    let mut sources = Vec::new();
    for (index, &(start, end)) in spans.iter().enumerate() {
        let (before, text, after) = (&source[..start], &source[start..end], &source[end..]);
        sources.push(format!("{before}{after}"));
        sources.push(format!("{before}{text} {text}{after}"));
        if let Some(&(next_start, next_end)) = spans.get(index + 1) {
            let between = &source[end..next_start];
            let next = &source[next_start..next_end];
            sources.push(format!(
                "{before}{next}{between}{text}{}",
                &source[next_end..]
            ));
        }
        for offset in 0..INSERTIONS_PER_TOKEN {
            let choice = (index * INSERTIONS_PER_TOKEN + offset) % INSERTED_TOKENS.len();
            sources.push(format!(
                "{before} {} {text}{after}",
                INSERTED_TOKENS[choice]
            ));
        }
        // Glued to the token, a letter can turn a number into a duration and
        // a keyword into an identifier.
        sources.push(format!("{before}{text}s{after}"));
    }
    for (at, character) in source.char_indices() {
        let end = at + character.len_utf8();
        sources.push(format!("{}{}", &source[..at], &source[end..]));
    }
    sources
}

#[test]
fn mutated_sources_agree() {
    let files = flow_files(&corpus_dir("valid"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in &files {
        let source = read(path);
        for (index, mutated) in mutations(&source).iter().enumerate() {
            checked += 1;
            let name = format!("{} mutation {index}", path.display());
            if let Some(message) = disagreement(&name, mutated) {
                failures.push(format!("{message}\nsource:\n{mutated}\n"));
            }
        }
    }
    assert!(checked > 10_000, "only {checked} mutations");
    assert!(
        failures.is_empty(),
        "{} of {checked} mutations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
