//! The `authflow` command: check, build, evaluate and replay policies.
//!
//! All file, clock and console I/O of the project happens here; the compiler
//! and runtime crates are pure.

mod render;

/// Unwraps `Ok`, or returns the exit status an `Err` carries from the
/// enclosing command function.
macro_rules! try_status {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(status) => return status,
        }
    };
}

/// Prints a formatted line on standard output with [`print_line`].
macro_rules! out {
    ($($arg:tt)*) => {
        print_line(&format!($($arg)*))
    };
}

/// Prints a formatted line on standard error. Errors writing it (a closed
/// pipe, say) are ignored, so the exit status still reports the outcome.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Like [`err!`], without the line break.
macro_rules! err_text {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use authflow_compiler::{compile, Compilation, Loaded, Loader};
use authflow_runtime::{Backend, EvalError, FlowState, Policy};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value as Json;

/// Exit status when every evaluation produced a decision, or a check passed.
const EXIT_OK: u8 = 0;
/// Exit status for compile errors and failed checks.
const EXIT_COMPILE: u8 = 1;
/// Exit status for usage errors (clap uses it too) and unreadable files.
const EXIT_USAGE: u8 = 2;
/// Exit status for invalid input: no decision was made.
const EXIT_INPUT: u8 = 3;
/// Exit status when the two kernels disagreed: no decision was made.
const EXIT_INTERNAL: u8 = 4;

#[derive(Parser)]
#[command(
    name = "authflow",
    version,
    about = "Compile, check and evaluate authentication flow policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The decision kernel: `native` compiles flows to machine code when the
    /// policy is loaded (falling back to `bytecode` where it cannot).
    #[arg(long, global = true, value_enum, default_value = "native")]
    backend: BackendArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Bytecode,
    Native,
}

impl BackendArg {
    fn backend(self) -> Backend {
        match self {
            BackendArg::Bytecode => Backend::Bytecode,
            BackendArg::Native => Backend::Native,
        }
    }
}

/// The backend chosen on the command line; set once in `main`.
static BACKEND: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy and print its diagnostics (warnings do not fail the check).
    Check {
        policy: PathBuf,
        /// Output format of diagnostics.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Compile a policy to bytecode, or print one compiler stage.
    Build {
        policy: PathBuf,
        /// The bytecode output path (default: the policy path with `.flowc`).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print a compiler stage to standard output instead of writing bytecode.
        #[arg(long, value_enum)]
        emit: Option<Stage>,
    },
    /// Evaluate a flow on a request and events; prints one outcome per line.
    Eval {
        /// A `.flow` source file or `.flowc` bytecode.
        policy: PathBuf,
        /// The request JSON file.
        #[arg(long)]
        input: PathBuf,
        /// An event JSON file, applied in the order given; repeatable.
        #[arg(long = "event")]
        events: Vec<PathBuf>,
        /// Add the audit trace to each outcome.
        #[arg(long)]
        trace: bool,
        /// Write the flow state after the last event to this file.
        #[arg(long)]
        state_out: Option<PathBuf>,
    },
    /// Resume a stored flow state with more events.
    Resume {
        policy: PathBuf,
        /// A flow state written by `eval --state-out` or `resume --state-out`.
        #[arg(long)]
        state: PathBuf,
        #[arg(long = "event")]
        events: Vec<PathBuf>,
        #[arg(long)]
        trace: bool,
        /// Re-evaluate a state started under another policy version.
        #[arg(long)]
        migrate: bool,
        #[arg(long)]
        state_out: Option<PathBuf>,
    },
    /// Report the inputs on which two versions of a policy decide differently.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Compare only this flow (default: every flow both versions have).
        #[arg(long)]
        flow: Option<String>,
    },
    /// Rewrite policies in the canonical layout, keeping comments.
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing; list the files that are not formatted and exit 1 if any.
        #[arg(long)]
        check: bool,
    },
    /// Run the policy's `test` blocks; prints one line per test and a summary.
    Test {
        policy: PathBuf,
        /// Also list the steps, arms and exception paths no test reached.
        #[arg(long)]
        coverage: bool,
    },
    /// Re-evaluate recorded traces and confirm them, or print the first difference.
    /// Explain recorded outcomes: the chain of steps and guard values that
    /// produced each, and what would change a deny, challenge, enroll or pending.
    Explain {
        policy: PathBuf,
        /// Outcome lines with traces, as printed by `eval --trace`.
        trace: PathBuf,
    },
    /// With `--candidate NEW.flow TRACES`, re-evaluates recorded inputs under a
    /// candidate policy and summarises which decisions would change.
    Replay {
        /// `POLICY TRACES`, or only `TRACES` with `--candidate`. The traces are
        /// outcome lines with traces, as printed by `eval --trace`.
        #[arg(num_args = 1..=2, required = true)]
        files: Vec<PathBuf>,
        /// A candidate policy to compare the recorded decisions with.
        #[arg(long)]
        candidate: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Stage {
    Ast,
    Ir,
    Bytecode,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = BACKEND.set(cli.backend.backend());
    let status = match cli.command {
        Command::Check { policy, format } => check(&policy, format),
        Command::Build {
            policy,
            output,
            emit,
        } => build(&policy, output, emit),
        Command::Eval {
            policy,
            input,
            events,
            trace,
            state_out,
        } => eval(&policy, &input, &events, trace, state_out),
        Command::Resume {
            policy,
            state,
            events,
            trace,
            migrate,
            state_out,
        } => resume(&policy, &state, &events, trace, migrate, state_out),
        Command::Explain { policy, trace } => explain(&policy, &trace),
        Command::Fmt { files, check } => format_files(&files, check),
        Command::Diff { old, new, flow } => diff(&old, &new, flow.as_deref()),
        Command::Replay { files, candidate } => match (files.as_slice(), candidate) {
            ([policy, trace], None) => replay(policy, trace),
            ([trace], Some(candidate)) => what_if(&candidate, trace),
            _ => {
                err!("error: give `replay POLICY TRACES`, or `replay --candidate NEW.flow TRACES`");
                EXIT_USAGE
            }
        },
        Command::Test { policy, coverage } => test(&policy, coverage),
    };
    ExitCode::from(status)
}

/// Reads imported files relative to the importing file's folder.
struct FileLoader;

impl Loader for FileLoader {
    fn load(&mut self, importer: &str, path: &str) -> Result<Loaded, String> {
        let relative = Path::new(path);
        if relative.is_absolute() {
            return Err(format!(
                "cannot import `{path}`: imports are relative to the importing file"
            ));
        }
        if relative.extension().is_none_or(|e| e != "flow") {
            return Err(format!(
                "cannot import `{path}`: only `.flow` files can be imported"
            ));
        }
        let base = Path::new(importer).parent().unwrap_or(Path::new("."));
        let full = base.join(relative);
        let canonical = full
            .canonicalize()
            .map_err(|error| format!("cannot import `{path}`: {error}"))?;
        let text =
            read_source(&canonical).map_err(|error| format!("cannot import `{path}`: {error}"))?;
        Ok(Loaded {
            key: canonical.display().to_string(),
            name: full.display().to_string(),
            text,
        })
    }

    fn root_key(&mut self, name: &str) -> String {
        Path::new(name)
            .canonicalize()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| name.to_string())
    }
}

/// The largest policy or input file read, in bytes.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a regular file of at most [`MAX_FILE_BYTES`] as UTF-8.
fn read_source(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let metadata = file.metadata().map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_string());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} MiB",
            MAX_FILE_BYTES / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

fn read_policy(path: &Path) -> Result<String, u8> {
    read_source(path).map_err(|error| {
        err!("error: cannot read `{}`: {error}", path.display());
        EXIT_USAGE
    })
}

/// Compiles a policy to bytecode, which also proves its invariants.
fn front_end(path: &Path) -> Result<Compilation, u8> {
    let text = read_policy(path)?;
    Ok(compile(&path.display().to_string(), &text, &mut FileLoader))
}

fn print_diagnostics(compilation: &Compilation) {
    if compilation.diagnostics.is_empty() {
        return;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    err_text!(
        "{}",
        render::to_text(&compilation.sources, &compilation.diagnostics, color)
    );
}

fn check(path: &Path, format: Format) -> u8 {
    let compilation = try_status!(front_end(path));
    match format {
        Format::Text => print_diagnostics(&compilation),
        Format::Json => {
            let document = render::to_json(&compilation.sources, &compilation.diagnostics);
            out!("{document}");
        }
    }
    if compilation.has_errors() {
        let errors = compilation
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .count();
        if matches!(format, Format::Text) {
            err!(
                "error: `{}` has {errors} error{}",
                path.display(),
                if errors == 1 { "" } else { "s" }
            );
        }
        EXIT_COMPILE
    } else {
        EXIT_OK
    }
}

/// Loads a policy from source (compiling it) or from bytecode.
fn load_policy(path: &Path) -> Result<Policy, u8> {
    let text = read_policy(path)?;
    if path.extension().is_some_and(|e| e == "flowc") {
        return Policy::load_with_backend(&text, backend()).map_err(|message| {
            err!("error: cannot load `{}`: {message}", path.display());
            EXIT_COMPILE
        });
    }
    let compilation = compile(&path.display().to_string(), &text, &mut FileLoader);
    if compilation.has_errors() {
        print_diagnostics(&compilation);
        return Err(EXIT_COMPILE);
    }
    let program = compilation.program.ok_or(EXIT_COMPILE)?;
    Policy::with_backend(program, backend()).map_err(|message| {
        err!("error: internal compiler error: the program failed verification: {message}");
        EXIT_COMPILE
    })
}

fn backend() -> Backend {
    BACKEND.get().copied().unwrap_or(Backend::Native)
}

fn build(path: &Path, output: Option<PathBuf>, emit: Option<Stage>) -> u8 {
    let text = try_status!(read_policy(path));
    if let Some(Stage::Ast) = emit {
        let (file, diagnostics) = authflow_compiler::parse_file(&text);
        if !diagnostics.is_empty() {
            let sources = [authflow_compiler::SourceFile {
                name: path.display().to_string(),
                text,
            }];
            err_text!("{}", render::to_text(&sources, &diagnostics, false));
            return EXIT_COMPILE;
        }
        out!(
            "{}",
            serde_json::to_string_pretty(&file).unwrap_or_default()
        );
        return EXIT_OK;
    }
    let compilation = compile(&path.display().to_string(), &text, &mut FileLoader);
    print_diagnostics(&compilation);
    if compilation.has_errors() {
        return EXIT_COMPILE;
    }
    let Some(program) = compilation.program.clone() else {
        return EXIT_COMPILE;
    };
    let policy = match Policy::new(program) {
        Ok(policy) => policy,
        Err(message) => {
            err!("error: internal compiler error: the program failed verification: {message}");
            return EXIT_COMPILE;
        }
    };
    match emit {
        Some(Stage::Ir) => {
            let ir = authflow_compiler::render_ir(&compilation).unwrap_or_default();
            out!("{}", ir.strip_suffix('\n').unwrap_or(&ir));
            EXIT_OK
        }
        Some(Stage::Bytecode) => {
            out!(
                "{}",
                serde_json::to_string_pretty(policy.program()).unwrap_or_default()
            );
            out!("digest {}", policy.digest());
            EXIT_OK
        }
        Some(Stage::Ast) | None => {
            let target = output.unwrap_or_else(|| path.with_extension("flowc"));
            match std::fs::write(&target, policy.to_bytecode()) {
                Ok(()) => {
                    err!("wrote {} (policy {})", target.display(), policy.digest());
                    EXIT_OK
                }
                Err(error) => {
                    err!("error: cannot write `{}`: {error}", target.display());
                    EXIT_USAGE
                }
            }
        }
    }
}

/// Reads and parses a JSON input file; malformed JSON is invalid input.
fn read_json(path: &Path) -> Result<Json, u8> {
    let text = read_source(path).map_err(|error| {
        err!("error: cannot read `{}`: {error}", path.display());
        // A file that opens but is too large or not UTF-8 is invalid input.
        if path.is_file() {
            EXIT_INPUT
        } else {
            EXIT_USAGE
        }
    })?;
    authflow_runtime::json::parse(&text).map_err(|message| {
        err!("error: invalid input in `{}`: {message}", path.display());
        EXIT_INPUT
    })
}

fn now_micros() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
}

fn report_eval_error(error: &EvalError, file: &Path) -> u8 {
    match error {
        EvalError::Input(_) => {
            err!("error: {error} (in `{}`)", file.display());
            EXIT_INPUT
        }
        EvalError::PolicyMismatch { .. } => {
            err!("error: {error}");
            err!(
                "help: `authflow resume --migrate` re-evaluates the state under the loaded policy"
            );
            EXIT_INPUT
        }
        EvalError::KernelMismatch { .. } => {
            err!("error: {error}");
            EXIT_INTERNAL
        }
    }
}

/// Appends the events to the state, validates everything, and evaluates
/// after the request and after each event. Invalid input prints no outcome,
/// and the state file is written before any outcome is printed. With
/// `from_stored` (a resumed state), only the outcomes of the new events are
/// printed, or the current one when there are none.
fn run_events(
    policy: &Policy,
    mut state: FlowState,
    events: &[PathBuf],
    trace: bool,
    from_stored: bool,
    state_out: Option<PathBuf>,
) -> u8 {
    let stored = state.events.len();
    for path in events {
        match read_json(path) {
            Ok(event) => state.events.push(event),
            Err(status) => return status,
        }
    }
    let outcomes = match policy.evaluate_all(&state, trace) {
        Ok(outcomes) => outcomes,
        Err(error) => {
            let file = event_file(&error, stored, events);
            return report_eval_error(&error, file.unwrap_or(Path::new("the flow state")));
        }
    };
    let first = match (from_stored, events.is_empty()) {
        (false, _) => 0,
        (true, true) => stored,
        (true, false) => stored + 1,
    };
    let lines: Vec<String> = outcomes
        .iter()
        .skip(first)
        .map(|o| serde_json::to_string(o).unwrap_or_default())
        .collect();
    let status = write_state(&state, state_out);
    if status != EXIT_OK {
        return status;
    }
    for line in lines {
        print_line(&line);
    }
    EXIT_OK
}

fn write_state(state: &FlowState, path: Option<PathBuf>) -> u8 {
    let Some(path) = path else { return EXIT_OK };
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(state).unwrap_or_default(),
    ) {
        Ok(()) => EXIT_OK,
        Err(error) => {
            err!("error: cannot write `{}`: {error}", path.display());
            EXIT_USAGE
        }
    }
}

/// Finds the event file an input error names, from its `events[N]` field.
fn event_file<'a>(error: &EvalError, stored: usize, events: &'a [PathBuf]) -> Option<&'a Path> {
    let EvalError::Input(input) = error else {
        return None;
    };
    let index: usize = input
        .field
        .strip_prefix("events[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    events.get(index.checked_sub(stored)?).map(PathBuf::as_path)
}

/// Prints one line on standard output. A closed pipe (the reader stopped)
/// ends the program quietly instead of with a panic.
fn print_line(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(i32::from(EXIT_USAGE));
    }
}

fn eval(
    path: &Path,
    input: &Path,
    events: &[PathBuf],
    trace: bool,
    state_out: Option<PathBuf>,
) -> u8 {
    let policy = try_status!(load_policy(path));
    let request = try_status!(read_json(input));
    let state = match policy.start(&request, now_micros()) {
        Ok(state) => state,
        Err(error) => {
            err!("error: {error} (in `{}`)", input.display());
            return EXIT_INPUT;
        }
    };
    run_events(&policy, state, events, trace, false, state_out)
}

fn resume(
    path: &Path,
    state_path: &Path,
    events: &[PathBuf],
    trace: bool,
    migrate: bool,
    state_out: Option<PathBuf>,
) -> u8 {
    let policy = try_status!(load_policy(path));
    let stored = try_status!(read_json(state_path));
    let mut state = match FlowState::from_json(stored) {
        Ok(state) => state,
        Err(error) => {
            err!(
                "error: invalid flow state in `{}`: {error}",
                state_path.display()
            );
            return EXIT_INPUT;
        }
    };
    if migrate {
        state = match policy.migrate(&state) {
            Ok(state) => state,
            Err(error) => return report_eval_error(&error, state_path),
        };
    } else if let Err(error) = policy.facts(&state) {
        return report_eval_error(&error, state_path);
    }
    run_events(&policy, state, events, trace, true, state_out)
}

/// Finds the first place where two JSON values differ, as a path.
fn first_difference(expected: &Json, actual: &Json, path: &str) -> Option<String> {
    match (expected, actual) {
        (Json::Object(a), Json::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                let child = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(found) = first_difference(x, y, &child) {
                            return Some(found);
                        }
                    }
                    (Some(x), None) => {
                        return Some(format!("{child}: recorded {x}, replay has nothing"))
                    }
                    (None, Some(y)) => {
                        return Some(format!("{child}: recorded nothing, replay has {y}"))
                    }
                    (None, None) => {}
                }
            }
            None
        }
        (Json::Array(a), Json::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if let Some(found) = first_difference(x, y, &format!("{path}[{i}]")) {
                    return Some(found);
                }
            }
            (a.len() != b.len())
                .then(|| format!("{path}: recorded {} items, replay has {}", a.len(), b.len()))
        }
        _ => (expected != actual)
            .then(|| format!("{path}: recorded {expected}, replay has {actual}")),
    }
}

/// One outcome line recorded with `eval --trace`.
struct Recorded {
    /// `FILE:LINE`, for messages.
    location: String,
    outcome: Json,
    /// The flow state the trace records.
    state: FlowState,
}

/// Reads every outcome line of a traces file; a file without any, or a line
/// that is not an outcome with a trace, is invalid input.
fn read_recorded(trace_path: &Path) -> Result<Vec<Recorded>, u8> {
    let text = read_source(trace_path).map_err(|error| {
        err!("error: cannot read `{}`: {error}", trace_path.display());
        EXIT_USAGE
    })?;
    let mut recorded = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let location = format!("{}:{}", trace_path.display(), number + 1);
        let outcome = authflow_runtime::json::parse(line).map_err(|message| {
            err!("error: {location}: {message}");
            EXIT_INPUT
        })?;
        let Some(trace) = outcome.get("trace") else {
            err!("error: {location}: the outcome has no `trace`; record it with `authflow eval --trace`");
            return Err(EXIT_INPUT);
        };
        let state = recorded_state(trace);
        recorded.push(Recorded {
            location,
            outcome,
            state,
        });
    }
    if recorded.is_empty() {
        err!(
            "error: `{}` holds no recorded outcomes",
            trace_path.display()
        );
        return Err(EXIT_INPUT);
    }
    Ok(recorded)
}

fn replay(path: &Path, trace_path: &Path) -> u8 {
    let policy = try_status!(load_policy(path));
    let recorded = try_status!(read_recorded(trace_path));
    for Recorded {
        location,
        outcome,
        state,
    } in &recorded
    {
        if state.policy != policy.digest() {
            err!(
                "error: {location}: the trace was recorded under policy {}, not the loaded policy {}",
                state.policy,
                policy.digest()
            );
            return EXIT_INPUT;
        }
        let replayed = match policy.evaluate(state, true) {
            Ok(replayed) => serde_json::to_value(&replayed).unwrap_or(Json::Null),
            Err(error) => {
                err!("error: {location}: the recorded input does not fit the policy: {error}");
                return EXIT_INPUT;
            }
        };
        if let Some(difference) = first_difference(outcome, &replayed, "$") {
            out!("{location}: differs at {difference}");
            return EXIT_COMPILE;
        }
    }
    let count = recorded.len();
    out!(
        "{count} outcome{} confirmed",
        if count == 1 { "" } else { "s" }
    );
    EXIT_OK
}

fn test(path: &Path, coverage: bool) -> u8 {
    let text = try_status!(read_policy(path));
    let compilation = compile(&path.display().to_string(), &text, &mut FileLoader);
    print_diagnostics(&compilation);
    let (Some(checked), Some(program)) = (&compilation.checked, &compilation.program) else {
        return EXIT_COMPILE;
    };
    let mut policy = match Policy::new(program.clone()) {
        Ok(policy) => policy,
        Err(message) => {
            err!("error: internal compiler error: the program failed verification: {message}");
            return EXIT_COMPILE;
        }
    };
    // Test blocks may exercise a flow that only `run` reaches.
    policy.reach_all_flows();
    let (results, reached) = authflow_compiler::testing::run_tests(checked, &policy);
    let mut failed = 0;
    for result in &results {
        match &result.failure {
            None => out!("ok   {}", result.name),
            Some((span, message)) => {
                failed += 1;
                let source = compilation.sources.get(span.file.0 as usize);
                let name = source.map(|s| s.name.as_str()).unwrap_or("");
                let (line, column) = render::line_column(
                    source.map(|s| s.text.as_str()).unwrap_or(""),
                    span.start as usize,
                );
                out!("FAIL {}: {name}:{line}:{column}: {message}", result.name);
            }
        }
    }
    if coverage {
        let gaps = authflow_compiler::testing::gaps(checked, &policy, &reached);
        if gaps.is_empty() {
            out!("coverage: every step, arm and exception path was reached");
        }
        for gap in &gaps {
            out!(
                "not covered: flow `{}` line {}: {}",
                gap.flow,
                gap.line,
                gap.description
            );
        }
    }
    out!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        EXIT_OK
    } else {
        EXIT_COMPILE
    }
}

/// Rebuilds the flow state recorded in an outcome line's trace.
fn recorded_state(trace: &Json) -> FlowState {
    let text = |key: &str| {
        trace
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    FlowState {
        policy: text("policy"),
        flow: text("flow"),
        instance: text("instance"),
        request: trace
            .pointer("/input/request")
            .cloned()
            .unwrap_or(Json::Null),
        events: trace
            .pointer("/input/events")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Summarises a decision with the detail that distinguishes two outcomes.
fn decision_summary(outcome: &Json) -> String {
    let decision = outcome
        .get("decision")
        .and_then(Json::as_str)
        .unwrap_or("?");
    let detail = ["reason", "options", "awaiting"]
        .iter()
        .find_map(|key| outcome.get(*key));
    match detail {
        Some(detail) => format!("{decision} {detail}"),
        None => decision.to_string(),
    }
}

/// Re-evaluates every recorded input under `candidate` and counts how the
/// decisions would change: the report-only mode, offline and exact.
fn what_if(candidate: &Path, trace_path: &Path) -> u8 {
    let policy = try_status!(load_policy(candidate));
    let recorded = try_status!(read_recorded(trace_path));
    let mut changes: std::collections::BTreeMap<(String, String), (usize, String)> =
        std::collections::BTreeMap::new();
    for Recorded {
        location,
        outcome,
        state,
    } in &recorded
    {
        // An input the candidate rejects is a change like any other, because
        // the host would respond with an error instead of a decision.
        let after = match policy
            .migrate(state)
            .and_then(|state| policy.evaluate(&state, false))
        {
            Ok(candidate_outcome) => {
                decision_summary(&serde_json::to_value(&candidate_outcome).unwrap_or(Json::Null))
            }
            Err(_) => "rejected as invalid input".to_string(),
        };
        let before = decision_summary(outcome);
        if before != after {
            let entry = changes
                .entry((before, after))
                .or_insert((0, location.clone()));
            entry.0 += 1;
        }
    }
    let total = recorded.len();
    let changed: usize = changes.values().map(|(count, _)| count).sum();
    out!(
        "{total} recorded outcomes replayed under {}: {} unchanged, {changed} changed",
        candidate.display(),
        total - changed
    );
    for ((before, after), (count, first)) in &changes {
        out!("  {count} × {before} → {after} (first at {first})");
    }
    EXIT_OK
}

/// Prints, for each recorded outcome, the steps that produced it with their
/// guard values, and the facts that would change a non-allow decision.
fn explain(path: &Path, trace_path: &Path) -> u8 {
    let policy = try_status!(load_policy(path));
    let recorded = try_status!(read_recorded(trace_path));
    for (
        index,
        Recorded {
            location,
            outcome: recorded,
            state,
        },
    ) in recorded.iter().enumerate()
    {
        let where_ = location;
        // Explain what the policy decides now, and note it if the record differs.
        let outcome = match policy.evaluate(state, true) {
            Ok(outcome) => outcome,
            Err(error) => {
                err!("error: {where_}: the recorded input does not fit the policy: {error}");
                return EXIT_INPUT;
            }
        };
        let current = serde_json::to_value(&outcome).unwrap_or(Json::Null);
        if index > 0 {
            out!("");
        }
        out!(
            "{where_}: flow `{}` decided {}",
            state.flow,
            decision_summary(&current)
        );
        if first_difference(recorded, &current, "$").is_some() {
            out!(
                "  note: the recorded outcome was {}; this policy decides differently",
                decision_summary(recorded)
            );
        }
        for step in outcome.trace.iter().flat_map(|t| &t.steps) {
            let guards = match step.guards.as_slice() {
                [] => String::new(),
                values => format!(
                    " [{}]",
                    values
                        .iter()
                        .map(|g| if *g { "true" } else { "false" })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let arm = step
                .arm
                .as_ref()
                .map(|a| format!(", arm {a}"))
                .unwrap_or_default();
            out!(
                "  line {:>4}  {}{guards}{arm} → {}",
                step.line,
                step.step,
                step.result
            );
        }
        for fact in counterfactuals(&outcome) {
            out!("  would change it: {fact}");
        }
    }
    EXIT_OK
}

/// Lists the facts that, if different, would change an outcome.
fn counterfactuals(outcome: &authflow_runtime::Outcome) -> Vec<String> {
    use authflow_runtime::program::Decision;
    let deciding = outcome
        .trace
        .as_ref()
        .and_then(|t| t.steps.iter().rev().find(|s| s.result != "continue"));
    let step = deciding
        .map(|s| format!("`{}` (line {})", s.step, s.line))
        .unwrap_or_default();
    let list = |names: &[String]| names.join(", ");
    match (outcome.decision, outcome.reason.as_deref()) {
        (Decision::Allow, _) => Vec::new(),
        (Decision::Challenge, _) => vec![format!(
            "verifying one of {} for {step}",
            list(&outcome.options)
        )],
        (Decision::Enroll, _) => vec![format!(
            "enrolling one of {} for {step}",
            list(&outcome.options)
        )],
        (Decision::Pending, _) => vec![format!(
            "approvals from {} for {step}",
            list(&outcome.awaiting)
        )],
        (Decision::Deny, Some("too many failed attempts")) => {
            vec![format!("fewer failed attempts at the factors of {step}")]
        }
        (Decision::Deny, Some("approval refused")) => {
            vec![format!("no refusal by a role of {step}")]
        }
        (Decision::Deny, Some("approval expired")) => {
            vec![format!(
                "every approval of {step} granted before its deadline"
            )]
        }
        (Decision::Deny, Some("no decision")) => {
            vec!["a step that allows or denies on the path taken".to_string()]
        }
        (Decision::Deny, _) => {
            let mut facts = Vec::new();
            if let Some(condition) = deciding
                .and_then(|s| s.step.split_once(" when "))
                .map(|(_, c)| c.to_string())
            {
                facts.push(format!("`{condition}` being false at {step}"));
            }
            let branches = outcome
                .trace
                .iter()
                .flat_map(|t| &t.steps)
                .filter(|s| s.arm.is_some());
            for branch in branches {
                facts.push(format!(
                    "another arm of `{}` (line {}) being selected",
                    branch.step, branch.line
                ));
            }
            facts
        }
    }
}

fn format_files(files: &[PathBuf], check: bool) -> u8 {
    let mut unformatted = 0;
    for path in files {
        let text = try_status!(read_policy(path));
        let formatted = match authflow_compiler::format::format_source(&text) {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                let sources = [authflow_compiler::SourceFile {
                    name: path.display().to_string(),
                    text,
                }];
                err_text!("{}", render::to_text(&sources, &diagnostics, false));
                err!(
                    "error: `{}` has syntax errors and was not formatted",
                    path.display()
                );
                return EXIT_COMPILE;
            }
        };
        if formatted == text {
            continue;
        }
        unformatted += 1;
        if check {
            out!("{} is not formatted", path.display());
        } else if let Err(error) = std::fs::write(path, formatted) {
            err!("error: cannot write `{}`: {error}", path.display());
            return EXIT_USAGE;
        }
    }
    if check && unformatted > 0 {
        EXIT_COMPILE
    } else {
        EXIT_OK
    }
}

/// Compares two policy versions over every input: exit 0 when they decide
/// identically everywhere, 1 with one confirmed example per kind of change.
fn diff(old_path: &Path, new_path: &Path, only: Option<&str>) -> u8 {
    let (old, new) = match (load_policy(old_path), load_policy(new_path)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(status), _) | (_, Err(status)) => return status,
    };
    let flows: Vec<String> = match only {
        Some(name) => vec![name.to_string()],
        None => old
            .program()
            .flows
            .iter()
            .filter(|flow| new.program().flow(&flow.name).is_some())
            .map(|flow| flow.name.clone())
            .collect(),
    };
    let mut differences = 0;
    if only.is_none() {
        for change in authflow_compiler::prove::route_changes(old.program(), new.program()) {
            differences += 1;
            out!("route: {change}");
        }
    }
    for name in &flows {
        if old.program().flow(name).is_none() || new.program().flow(name).is_none() {
            err!("error: flow `{name}` is not in both policies");
            return EXIT_USAGE;
        }
        let regions = match authflow_compiler::prove::diff(old.program(), new.program(), name) {
            Ok(regions) => regions,
            Err(message) => {
                // Not 1, which means the policies differ.
                err!("error: cannot compare flow `{name}`: {message}");
                return EXIT_USAGE;
            }
        };
        for region in regions {
            differences += 1;
            out!(
                "flow `{name}`: {:?}: {} → {}",
                region.change,
                region.old.name(),
                region.new.name()
            );
            out!("  example request: {}", region.request);
            for event in &region.events {
                out!("  example event: {event}");
            }
            for band in integer_bands(&old, &new, &region.request, &region.events) {
                out!("  where {band} (other inputs as in the example)");
            }
            if let Some(divergence) = divergence(&old, &new, &region.request, &region.events) {
                out!("  {divergence}");
            }
        }
    }
    if differences == 0 {
        out!("no difference: the two policies decide identically on every input");
        EXIT_OK
    } else {
        EXIT_COMPILE
    }
}

/// Finds where the traces of one input first differ under two policies:
/// the step, its guard values and its result in each.
fn divergence(old: &Policy, new: &Policy, request: &Json, events: &[Json]) -> Option<String> {
    let trace = |policy: &Policy| -> Option<Vec<authflow_runtime::outcome::TraceEntry>> {
        let mut state = policy.start(request, 0).ok()?;
        state.events = events.to_vec();
        policy.evaluate(&state, true).ok()?.trace.map(|t| t.steps)
    };
    let (before, after) = (trace(old)?, trace(new)?);
    let describe = |step: &authflow_runtime::outcome::TraceEntry| {
        let guards: Vec<&str> = step
            .guards
            .iter()
            .map(|g| if *g { "true" } else { "false" })
            .collect();
        format!("`{}` [{}] → {}", step.step, guards.join(", "), step.result)
    };
    let pairs = before.iter().zip(&after);
    for (a, b) in pairs {
        if a.step != b.step || a.guards != b.guards || a.result != b.result || a.arm != b.arm {
            return Some(format!(
                "differs at: old line {} {} / new line {} {}",
                a.line,
                describe(a),
                b.line,
                describe(b)
            ));
        }
    }
    None
}

/// Evaluates one input under two policies; returns both final decisions.
fn decisions(
    old: &Policy,
    new: &Policy,
    request: &Json,
    events: &[Json],
) -> Option<(String, String)> {
    let decide = |policy: &Policy| -> Option<String> {
        let mut state = policy.start(request, 0).ok()?;
        state.events = events.to_vec();
        let outcome = policy.evaluate(&state, false).ok()?;
        Some(decision_summary(&serde_json::to_value(&outcome).ok()?))
    };
    Some((decide(old)?, decide(new)?))
}

/// For each integer attribute of the example request, the widest range of
/// values around the example's own for which the two policies still differ
/// in the same way, found by searching outwards with the other inputs fixed.
fn integer_bands(old: &Policy, new: &Policy, request: &Json, events: &[Json]) -> Vec<String> {
    const LIMIT: i64 = 1 << 40;
    let Some(expected) = decisions(old, new, request, events) else {
        return Vec::new();
    };
    let mut bands = Vec::new();
    for part in ["principal", "context"] {
        let Some(attributes) = request.get(part).and_then(Json::as_object) else {
            continue;
        };
        for (name, value) in attributes {
            let Some(start) = value.as_i64() else {
                continue;
            };
            let same = |candidate: i64| {
                let mut probe = request.clone();
                probe[part][name.as_str()] = Json::from(candidate);
                decisions(old, new, &probe, events).as_ref() == Some(&expected)
            };
            // Grow a step each way while the change persists, then narrow by bisection.
            let edge = |direction: i64| {
                let (mut inside, mut step) = (start, 1i64);
                while step < LIMIT && same(start.saturating_add(direction * step)) {
                    inside = start.saturating_add(direction * step);
                    step *= 2;
                }
                let mut outside = start.saturating_add(direction * step);
                while (outside - inside).abs() > 1 {
                    let middle = inside + (outside - inside) / 2;
                    if same(middle) {
                        inside = middle;
                    } else {
                        outside = middle;
                    }
                }
                (inside, (inside - start).abs() >= LIMIT / 2)
            };
            let (low, unbounded_low) = edge(-1);
            let (high, unbounded_high) = edge(1);
            if unbounded_low && unbounded_high {
                continue;
            }
            let low = if unbounded_low {
                "..".to_string()
            } else {
                format!("{low}..")
            };
            let high = if unbounded_high {
                String::new()
            } else {
                high.to_string()
            };
            bands.push(format!("{part}.{name} in {low}{high}"));
        }
    }
    bands
}
