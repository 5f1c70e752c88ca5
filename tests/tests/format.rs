//! The canonical formatter: formatting is idempotent, keeps the AST and the
//! bytecode apart from line numbers and step text, and keeps every comment.
//!
//! The sources are every `.flow` file in the repository that parses, the
//! golden pair in tests/format, generated expressions, and policies with
//! comments inserted at random token boundaries.

use std::fs;
use std::path::{Path, PathBuf};

use authflow_compiler::format::format_source;
use authflow_compiler::lex::lex;
use authflow_compiler::testing::run_tests;
use authflow_compiler::{compile, parse_file, FileId, NoImports};
use authflow_runtime::program::Program;
use authflow_runtime::Policy;
use serde_json::Value;

/// Larger files are skipped. Only the nesting-limit scenario is that large.
const MAX_FILE_BYTES: u64 = 20_000;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// Lists the `.flow` files under `dir`, sorted, skipping build output, fuzz
/// corpora, hidden folders and files over [`MAX_FILE_BYTES`].
fn flow_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir:?}: {e}"));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.ends_with("target") || path.ends_with("fuzz/corpus") || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".flow") {
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX);
                if size <= MAX_FILE_BYTES {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

/// A repository file that parses, with its formatted text.
struct Formatted {
    name: String,
    original: String,
    formatted: String,
}

fn formatted_repository_files() -> Vec<Formatted> {
    let root = repository_root();
    let mut formatted_files = Vec::new();
    for path in flow_files(&root) {
        let original =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let (_, diagnostics) = parse_file(&original);
        let result = format_source(&original);
        assert_eq!(
            result.is_ok(),
            diagnostics.is_empty(),
            "{name}: the formatter and the parser disagree on whether the file parses"
        );
        if let Ok(formatted) = result {
            formatted_files.push(Formatted {
                name,
                original,
                formatted,
            });
        }
    }
    assert!(
        formatted_files.len() >= 80,
        "expected the repository's policies, found {} that parse",
        formatted_files.len()
    );
    formatted_files
}

fn format(source: &str) -> String {
    match format_source(source) {
        Ok(formatted) => formatted,
        Err(diagnostics) => {
            let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
            panic!("formatting failed with {messages:?} on:\n{source}")
        }
    }
}

/// Replaces every span in a serialized AST with `null`: the `span` fields
/// and the bare span of `for any`.
fn clear_spans(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_span = map.len() == 3
                && map.contains_key("file")
                && map.contains_key("start")
                && map.contains_key("end");
            if is_span {
                *value = Value::Null;
                return;
            }
            for (key, field) in map.iter_mut() {
                if key == "span" {
                    *field = Value::Null;
                } else {
                    clear_spans(field);
                }
            }
        }
        Value::Array(elements) => elements.iter_mut().for_each(clear_spans),
        _ => {}
    }
}

fn ast_without_spans(source: &str) -> Value {
    let (file, diagnostics) = parse_file(source);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let mut value = serde_json::to_value(&file).expect("the AST serializes");
    clear_spans(&mut value);
    value
}

/// Clears the fields of a program that depend on the source layout: the
/// line of every decision site, emit and traced step. Step text is the
/// canonical rendering of the step, so it must not change.
fn without_layout(mut program: Program) -> Program {
    for flow in &mut program.flows {
        for site in &mut flow.sites {
            site.line = 0;
        }
        for emit in &mut flow.emits {
            emit.line = 0;
        }
        for step in &mut flow.steps {
            step.line = 0;
        }
    }
    program
}

fn digest(program: Program) -> String {
    Policy::new(program)
        .expect("the compiled program verifies")
        .digest()
        .to_string()
}

/// Collects the comments of a source without the compiler's lexer: `//` and
/// `/* */` outside strings. Line comments lose trailing whitespace.
fn comments(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            // A string ends at an unescaped quote or, unterminated, at the line end.
            let mut end = rest.len();
            let mut escaped = false;
            for (at, c) in rest.char_indices().skip(1) {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = at + 1;
                        break;
                    }
                    '\n' => {
                        end = at;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            rest = &rest[end..];
        } else if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            found.push(rest[..end].trim_end().to_string());
            rest = &rest[end..];
        } else if rest.starts_with("/*") {
            let end = rest[2..].find("*/").map_or(rest.len(), |close| close + 4);
            found.push(rest[..end].to_string());
            rest = &rest[end..];
        } else {
            rest = &rest[c.len_utf8()..];
        }
    }
    found
}

#[test]
fn repository_files_format_idempotently() {
    for file in formatted_repository_files() {
        let twice = format(&file.formatted);
        assert!(
            twice == file.formatted,
            "{}: formatting twice changed the output\n--- once\n{}\n--- twice\n{}",
            file.name,
            file.formatted,
            twice
        );
        let once = compile(&file.name, &file.formatted, &mut NoImports).program;
        let again = compile(&file.name, &twice, &mut NoImports).program;
        assert_eq!(
            once.map(digest),
            again.map(digest),
            "{}: the digest changed on the second formatting",
            file.name
        );
    }
}

#[test]
fn repository_files_keep_their_ast() {
    for file in formatted_repository_files() {
        assert!(
            ast_without_spans(&file.original) == ast_without_spans(&file.formatted),
            "{}: the formatted file parses differently\n{}",
            file.name,
            file.formatted
        );
    }
}

#[test]
fn repository_files_keep_their_bytecode() {
    let mut compiled = 0;
    for file in formatted_repository_files() {
        let original = compile(&file.name, &file.original, &mut NoImports);
        let formatted = compile(&file.name, &file.formatted, &mut NoImports);
        assert_eq!(
            original.program.is_some(),
            formatted.program.is_some(),
            "{}: only one of the original and the formatted file compiles: {:?} {:?}",
            file.name,
            original.diagnostics,
            formatted.diagnostics
        );
        let (Some(original_program), Some(formatted_program)) =
            (original.program.clone(), formatted.program.clone())
        else {
            continue;
        };
        compiled += 1;
        assert_eq!(
            digest(original_program.clone()),
            digest(formatted_program.clone()),
            "{}: formatting changed the compiled digest",
            file.name
        );
        let original_program = without_layout(original_program);
        let formatted_program = without_layout(formatted_program);
        assert!(
            original_program == formatted_program,
            "{}: the bytecode differs in more than lines and step text",
            file.name
        );
        assert_eq!(
            digest(original_program),
            digest(formatted_program),
            "{}: the digests without layout differ",
            file.name
        );
        // The file's own tests pass or fail alike before and after formatting.
        let outcomes = |compilation: &authflow_compiler::Compilation| {
            let checked = compilation.checked.as_ref().expect("checked");
            let program = compilation.program.clone().expect("compiled");
            let policy = Policy::new(program).expect("the compiled program verifies");
            let (results, _) = run_tests(checked, &policy);
            results
                .into_iter()
                .map(|result| (result.name, result.failure.map(|(_, message)| message)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            outcomes(&original),
            outcomes(&formatted),
            "{}: the file's tests give other results after formatting",
            file.name
        );
    }
    assert!(
        compiled >= 25,
        "expected most policies to compile, {compiled} did"
    );
}

#[test]
fn repository_files_keep_every_comment() {
    let mut total = 0;
    for file in formatted_repository_files() {
        let before = comments(&file.original);
        let after = comments(&file.formatted);
        assert_eq!(
            before.len(),
            after.len(),
            "{}: the comment count changed\n{}",
            file.name,
            file.formatted
        );
        assert_eq!(before, after, "{}: a comment changed", file.name);
        total += before.len();
    }
    assert!(
        total >= 50,
        "expected commented policies, found {total} comments"
    );
}

#[test]
fn messy_file_matches_golden_output() {
    let folder = repository_root().join("tests/format");
    let input = fs::read_to_string(folder.join("messy.flow")).expect("read the input");
    let expected =
        fs::read_to_string(folder.join("messy.formatted.flow")).expect("read the output");
    let formatted = format(&input);
    assert!(
        formatted == expected,
        "the output differs from tests/format/messy.formatted.flow:\n{formatted}"
    );
    assert_eq!(
        format(&expected),
        expected,
        "the golden output is not canonical"
    );
    assert_eq!(comments(&input), comments(&formatted));
    let compilation = compile("messy.flow", &input, &mut NoImports);
    assert!(
        compilation.program.is_some(),
        "the golden input does not compile: {:?}",
        compilation.diagnostics
    );
}

#[test]
fn syntax_error_returns_the_parser_diagnostics() {
    let sources = [
        "flow f for human on login {\n  deny when x\n  allow\n}\n",
        "const = 5",
        "const s = \"unterminated\nflow f for any { allow }",
        "/* unterminated comment",
        "flow f for any { allow",
    ];
    for source in sources {
        let (_, expected) = parse_file(source);
        assert!(!expected.is_empty(), "{source:?} parses");
        let diagnostics = format_source(source).expect_err("a file with errors was formatted");
        assert_eq!(diagnostics, expected, "{source:?}");
    }
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(format(""), "");
    assert_eq!(format("\n\n  \n"), "");
    assert_eq!(format("// a\n\n\n/* b */"), "// a\n\n/* b */\n");
    assert_eq!(format("\u{feff}const a = 1"), "const a = 1\n");
}

/// Formats `const x = SOURCE` and returns the expression part.
fn format_expr(source: &str) -> String {
    let formatted = format(&format!("const x = {source}"));
    formatted
        .strip_prefix("const x = ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected layout {formatted:?}"))
        .to_string()
}

#[test]
fn expressions_get_minimal_parentheses() {
    let cases = [
        ("(a or b) and c", "(a or b) and c"),
        ("a or (b and c)", "a or b and c"),
        ("((a))", "a"),
        ("not (a == b)", "not (a == b)"),
        ("not a == b", "not (a == b)"),
        ("(not a) == b", "(not a) == b"),
        ("a == (not b)", "a == (not b)"),
        ("not (a and b)", "not (a and b)"),
        ("not (not a)", "not not a"),
        ("a and (not b)", "a and not b"),
        ("(a and not b) or c", "a and not b or c"),
        ("(not a) ?? b", "not a ?? b"),
        ("a ?? (b ?? c)", "a ?? b ?? c"),
        ("(a ?? b) ?? c", "(a ?? b) ?? c"),
        ("(a or b) ?? c", "a or b ?? c"),
        ("a or (b ?? c)", "a or (b ?? c)"),
        ("(a - b) - c", "a - b - c"),
        ("a - (b - c)", "a - (b - c)"),
        ("a - (-b)", "a - -b"),
        ("-(a + b)", "-(a + b)"),
        ("-(-a)", "--a"),
        ("(-a).b", "(-a).b"),
        ("-(a.b)", "-a.b"),
        ("(a + b).c(d, (e))", "(a + b).c(d, e)"),
        ("(a < b) == (c < d)", "(a < b) == (c < d)"),
        ("(a + 1) < (b - 2)", "a + 1 < b - 2"),
        ("(x) in {1, (2 + 3)}", "x in {1, 2 + 3}"),
        ("(not a) + 1", "(not a) + 1"),
        ("f((a ?? b), )", "f(a ?? b)"),
    ];
    for (source, expected) in cases {
        assert_eq!(format_expr(source), expected, "formatting `{source}`");
    }
}

#[test]
fn literals_print_canonically() {
    let cases = [
        ("90m", "90m"),
        ("60m", "1h"),
        ("1440m", "1d"),
        ("1000ms", "1s"),
        ("1500ms", "1500ms"),
        ("0h", "0s"),
        ("007", "7"),
        ("{ }", "{}"),
        (r#""a\"b\\c\nd\te""#, r#""a\"b\\c\nd\te""#),
        ("\"raw\ttab\"", r#""raw\ttab""#),
        (r#""\u{1}\u{7f}\u{E9}""#, "\"\\u{1}\\u{7f}\u{e9}\""),
        (r#""// /* */""#, r#""// /* */""#),
    ];
    for (source, expected) in cases {
        assert_eq!(format_expr(source), expected, "formatting `{source}`");
    }
}

#[test]
fn comments_stay_with_their_lines() {
    let source = "\
flow f for any on login { // opens
  deny \"a\" when x // after a step
  /* before a step */ allow with { a: 1, // inside a record
    b: 2 }
  if x { allow
    // end of the arm
  } // after the brace
  else { allow }
  // end of the flow
}
// end of the file
";
    let expected = "\
flow f for any on login { // opens
  deny \"a\" when x // after a step
  /* before a step */
  // inside a record
  allow with { a: 1, b: 2 }
  if x {
    allow
    // end of the arm
    // after the brace
  } else {
    allow
  }
  // end of the flow
}

// end of the file
";
    assert_eq!(format(source), expected);
    assert_eq!(format(expected), expected);
}

#[test]
fn blank_lines_follow_the_layout_rules() {
    let source = "\
const a = 1
const b = 2



flow f for any on login {

  deny \"a\" when x
  deny \"b\" when y


  // a comment after two blank lines

  allow

}
";
    let expected = "\
const a = 1

const b = 2

flow f for any on login {
  deny \"a\" when x
  deny \"b\" when y

  // a comment after two blank lines

  allow
}
";
    assert_eq!(format(source), expected);
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

/// Writes a random expression with every operation in parentheses, so any
/// tree shape parses.
fn random_expr(random: &mut Random, depth: usize) -> String {
    const ATOMS: [&str; 8] = ["a", "b", "7", "5m", "\"s\"", "true", "none", "principal.x"];
    const OPERATORS: [&str; 12] = [
        "??", "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-",
    ];
    if depth == 0 || random.below(4) == 0 {
        return ATOMS[random.below(ATOMS.len())].to_string();
    }
    let shape = random.below(8);
    let operator = OPERATORS[random.below(OPERATORS.len())];
    let mut operand = || random_expr(random, depth - 1);
    match shape {
        0 => format!("(not {})", operand()),
        1 => format!("(-{})", operand()),
        2 => format!("({}).f", operand()),
        3 => format!("({}).m({})", operand(), operand()),
        4 => format!("g({}, {})", operand(), operand()),
        5 => format!("{{{}, {}}}", operand(), operand()),
        _ => {
            let left = operand();
            let right = operand();
            format!("({left} {operator} {right})")
        }
    }
}

#[test]
fn random_expressions_keep_their_ast() {
    let mut random = Random(0xf0f0_1234);
    for _ in 0..3000 {
        let source = format!("const x = {}\n", random_expr(&mut random, 6));
        let formatted = format(&source);
        assert!(
            ast_without_spans(&source) == ast_without_spans(&formatted),
            "`{source}` parses differently once formatted as `{formatted}`"
        );
        assert_eq!(format(&formatted), formatted, "formatting `{source}` twice");
    }
}

#[test]
fn comments_inserted_anywhere_survive() {
    let root = repository_root();
    let mut files = flow_files(&root.join("examples"));
    files.extend(flow_files(&root.join("tests/grammar/valid")));
    let insertions = [
        " /* b{} */ ",
        " // l{}\n",
        "\n/* m{}\n   over lines */\n",
        "\n\n// o{}\n",
    ];
    let mut random = Random(0xc0ff_ee00);
    for path in files {
        let original = fs::read_to_string(&path).expect("read policy");
        let (_, diagnostics) = parse_file(&original);
        if !diagnostics.is_empty() {
            continue;
        }
        let tokens = lex(FileId(0), &original, &mut Vec::new());
        for round in 0..20 {
            // Insert at token boundaries, from the end so earlier offsets stay valid.
            let mut offsets: Vec<usize> = (0..1 + random.below(6))
                .map(|_| tokens[random.below(tokens.len())].span.start as usize)
                .collect();
            offsets.sort_unstable_by(|a, b| b.cmp(a));
            let mut source = original.clone();
            for (index, offset) in offsets.iter().enumerate() {
                let template = insertions[random.below(insertions.len())];
                let comment = template.replace("{}", &format!("{round}_{index}"));
                source.insert_str(*offset, &comment);
            }
            let formatted = format(&source);
            let name = path.display();
            assert_eq!(
                comments(&source),
                comments(&formatted),
                "{name}: comments changed in\n{source}\n--- formatted\n{formatted}"
            );
            assert!(
                ast_without_spans(&source) == ast_without_spans(&formatted),
                "{name}: the AST changed in\n{source}"
            );
            assert_eq!(
                format(&formatted),
                formatted,
                "{name}: formatting twice changed\n{source}"
            );
        }
    }
}

#[test]
fn crlf_line_endings_format_like_lf() {
    let input = fs::read_to_string(repository_root().join("tests/format/messy.flow"))
        .expect("read the input");
    let crlf = input.replace('\n', "\r\n");
    assert_eq!(format(&crlf), format(&input));
}
