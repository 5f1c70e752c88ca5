//! The `authflow` command: check, build, evaluate and replay policies.
//!
//! All file, clock and console I/O of the project happens here; the compiler
//! and runtime crates are pure.

mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use authflow_compiler::{check_source, compile, Compilation, Loaded, Loader};
use authflow_runtime::{EvalError, FlowState, Policy};
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

#[derive(Parser)]
#[command(
    name = "authflow",
    version,
    about = "Compile, check and evaluate authentication flow policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
        /// Where to write the bytecode (default: the policy path with `.flowc`).
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
    /// Re-evaluate recorded traces and confirm them, or print the first difference.
    Replay {
        policy: PathBuf,
        /// Outcome lines with traces, as printed by `eval --trace`.
        trace: PathBuf,
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
        Command::Replay { policy, trace } => replay(&policy, &trace),
    };
    ExitCode::from(status)
}

/// Reads imported files relative to the importing file's folder.
struct FileLoader;

impl Loader for FileLoader {
    fn load(&mut self, importer: &str, path: &str) -> Result<Loaded, String> {
        let base = Path::new(importer).parent().unwrap_or(Path::new("."));
        let full = base.join(path);
        let canonical = full
            .canonicalize()
            .map_err(|error| format!("cannot import `{path}`: {error}"))?;
        let text = std::fs::read_to_string(&canonical)
            .map_err(|error| format!("cannot import `{path}`: {error}"))?;
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

fn read_policy(path: &Path) -> Result<String, u8> {
    std::fs::read_to_string(path).map_err(|error| {
        eprintln!("error: cannot read `{}`: {error}", path.display());
        EXIT_USAGE
    })
}

fn front_end(path: &Path) -> Result<Compilation, u8> {
    let text = read_policy(path)?;
    Ok(check_source(
        &path.display().to_string(),
        &text,
        &mut FileLoader,
    ))
}

fn print_diagnostics(compilation: &Compilation) {
    if compilation.diagnostics.is_empty() {
        return;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!(
        "{}",
        render::to_text(&compilation.sources, &compilation.diagnostics, color)
    );
}

fn check(path: &Path, format: Format) -> u8 {
    let compilation = match front_end(path) {
        Ok(compilation) => compilation,
        Err(status) => return status,
    };
    match format {
        Format::Text => print_diagnostics(&compilation),
        Format::Json => {
            let document = render::to_json(&compilation.sources, &compilation.diagnostics);
            println!("{document}");
        }
    }
    if compilation.has_errors() {
        let errors = compilation
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .count();
        if matches!(format, Format::Text) {
            eprintln!(
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
        return Policy::load(&text).map_err(|message| {
            eprintln!("error: cannot load `{}`: {message}", path.display());
            EXIT_COMPILE
        });
    }
    let compilation = compile(&path.display().to_string(), &text, &mut FileLoader);
    if compilation.has_errors() {
        print_diagnostics(&compilation);
        return Err(EXIT_COMPILE);
    }
    let program = compilation.program.ok_or(EXIT_COMPILE)?;
    Policy::new(program).map_err(|message| {
        eprintln!("error: internal compiler error: the program failed verification: {message}");
        EXIT_COMPILE
    })
}

fn build(path: &Path, output: Option<PathBuf>, emit: Option<Stage>) -> u8 {
    let text = match read_policy(path) {
        Ok(text) => text,
        Err(status) => return status,
    };
    if let Some(Stage::Ast) = emit {
        let (file, diagnostics) = authflow_compiler::parse_file(&text);
        if !diagnostics.is_empty() {
            let sources = [authflow_compiler::SourceFile {
                name: path.display().to_string(),
                text,
            }];
            eprint!("{}", render::to_text(&sources, &diagnostics, false));
            return EXIT_COMPILE;
        }
        println!(
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
            eprintln!("error: internal compiler error: the program failed verification: {message}");
            return EXIT_COMPILE;
        }
    };
    match emit {
        Some(Stage::Ir) => {
            print!(
                "{}",
                authflow_compiler::render_ir(&compilation).unwrap_or_default()
            );
            EXIT_OK
        }
        Some(Stage::Bytecode) => {
            println!(
                "{}",
                serde_json::to_string_pretty(policy.program()).unwrap_or_default()
            );
            println!("digest {}", policy.digest());
            EXIT_OK
        }
        Some(Stage::Ast) | None => {
            let target = output.unwrap_or_else(|| path.with_extension("flowc"));
            match std::fs::write(&target, policy.to_bytecode()) {
                Ok(()) => {
                    eprintln!("wrote {} (policy {})", target.display(), policy.digest());
                    EXIT_OK
                }
                Err(error) => {
                    eprintln!("error: cannot write `{}`: {error}", target.display());
                    EXIT_USAGE
                }
            }
        }
    }
}

/// Reads and parses a JSON input file; malformed JSON is invalid input.
fn read_json(path: &Path) -> Result<Json, u8> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        eprintln!("error: cannot read `{}`: {error}", path.display());
        EXIT_USAGE
    })?;
    authflow_runtime::json::parse(&text).map_err(|message| {
        eprintln!("error: invalid input in `{}`: {message}", path.display());
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
            eprintln!("error: {error} (in `{}`)", file.display());
            EXIT_INPUT
        }
        EvalError::PolicyMismatch { .. } => {
            eprintln!("error: {error}");
            eprintln!(
                "help: `authflow resume --migrate` re-evaluates the state under the loaded policy"
            );
            EXIT_INPUT
        }
    }
}

/// Validates every event against the state first, then evaluates after the
/// request and after each event, so invalid input prints no outcome.
fn run_events(
    policy: &Policy,
    state: FlowState,
    events: &[PathBuf],
    trace: bool,
    evaluate_start: bool,
) -> Result<FlowState, u8> {
    let mut states = Vec::with_capacity(events.len() + 1);
    states.push(state);
    for path in events {
        let event = read_json(path)?;
        let last = states.last().ok_or(EXIT_INPUT)?;
        let next = policy
            .resume(last, &event)
            .map_err(|error| report_eval_error(&error, path))?;
        states.push(next);
    }
    let skip = usize::from(!evaluate_start);
    for state in states.iter().skip(skip) {
        match policy.evaluate(state, trace) {
            Ok(outcome) => println!("{}", serde_json::to_string(&outcome).unwrap_or_default()),
            Err(error) => {
                eprintln!("error: {error}");
                return Err(EXIT_INPUT);
            }
        }
    }
    states.pop().ok_or(EXIT_INPUT)
}

fn write_state(state: &FlowState, path: Option<PathBuf>) -> u8 {
    let Some(path) = path else { return EXIT_OK };
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(state).unwrap_or_default(),
    ) {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("error: cannot write `{}`: {error}", path.display());
            EXIT_USAGE
        }
    }
}

fn eval(
    path: &Path,
    input: &Path,
    events: &[PathBuf],
    trace: bool,
    state_out: Option<PathBuf>,
) -> u8 {
    let policy = match load_policy(path) {
        Ok(policy) => policy,
        Err(status) => return status,
    };
    let request = match read_json(input) {
        Ok(request) => request,
        Err(status) => return status,
    };
    let state = match policy.start(&request, now_micros()) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {error} (in `{}`)", input.display());
            return EXIT_INPUT;
        }
    };
    match run_events(&policy, state, events, trace, true) {
        Ok(last) => write_state(&last, state_out),
        Err(status) => status,
    }
}

fn resume(
    path: &Path,
    state_path: &Path,
    events: &[PathBuf],
    trace: bool,
    migrate: bool,
    state_out: Option<PathBuf>,
) -> u8 {
    let policy = match load_policy(path) {
        Ok(policy) => policy,
        Err(status) => return status,
    };
    let stored = match read_json(state_path) {
        Ok(json) => json,
        Err(status) => return status,
    };
    let mut state: FlowState = match serde_json::from_value(stored) {
        Ok(state) => state,
        Err(error) => {
            eprintln!(
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
    let evaluate_start = events.is_empty();
    match run_events(&policy, state, events, trace, evaluate_start) {
        Ok(last) => write_state(&last, state_out),
        Err(status) => status,
    }
}

/// The first place where two JSON values differ, as a path.
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

fn replay(path: &Path, trace_path: &Path) -> u8 {
    let policy = match load_policy(path) {
        Ok(policy) => policy,
        Err(status) => return status,
    };
    let text = match std::fs::read_to_string(trace_path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read `{}`: {error}", trace_path.display());
            return EXIT_USAGE;
        }
    };
    let mut confirmed = 0;
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let where_ = format!("{}:{}", trace_path.display(), number + 1);
        let recorded = match authflow_runtime::json::parse(line) {
            Ok(json) => json,
            Err(message) => {
                eprintln!("error: {where_}: {message}");
                return EXIT_INPUT;
            }
        };
        let Some(trace) = recorded.get("trace") else {
            eprintln!("error: {where_}: the outcome has no `trace`; record it with `authflow eval --trace`");
            return EXIT_INPUT;
        };
        let state = FlowState {
            policy: trace
                .get("policy")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            flow: trace
                .get("flow")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            instance: trace
                .get("instance")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            request: trace
                .pointer("/input/request")
                .cloned()
                .unwrap_or(Json::Null),
            events: trace
                .pointer("/input/events")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        let replayed = match policy.evaluate(&state, true) {
            Ok(outcome) => serde_json::to_value(&outcome).unwrap_or(Json::Null),
            Err(error) => {
                println!("{where_}: differs: {error}");
                return EXIT_COMPILE;
            }
        };
        if let Some(difference) = first_difference(&recorded, &replayed, "$") {
            println!("{where_}: differs at {difference}");
            return EXIT_COMPILE;
        }
        confirmed += 1;
    }
    println!(
        "{confirmed} outcome{} confirmed",
        if confirmed == 1 { "" } else { "s" }
    );
    EXIT_OK
}
