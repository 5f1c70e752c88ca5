//! The `authflow` command: check, build, evaluate and replay policies.
//!
//! All file, clock and console I/O of the project happens here; the compiler
//! and runtime crates are pure.

mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use authflow_compiler::{check_source, Compilation, Loader};
use clap::{Parser, Subcommand, ValueEnum};

/// Exit status when every evaluation produced a decision, or a check passed.
const EXIT_OK: u8 = 0;
/// Exit status for compile errors and failed checks.
const EXIT_COMPILE: u8 = 1;
/// Exit status for usage errors (clap uses it too) and unreadable files.
const EXIT_USAGE: u8 = 2;
/// Exit status for invalid input: no decision was made.
#[allow(dead_code)]
const EXIT_INPUT: u8 = 3;

#[derive(Parser)]
#[command(name = "authflow", version, about = "Compile, check and evaluate authentication flow policies")]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Check { policy, format } => check(&policy, format),
    };
    ExitCode::from(status)
}

/// Reads imported files relative to the importing file's folder.
struct FileLoader;

impl Loader for FileLoader {
    fn load(&mut self, importer: &str, path: &str) -> Result<(String, String), String> {
        let base = Path::new(importer).parent().unwrap_or(Path::new("."));
        let full = base.join(path);
        let canonical = full.canonicalize().map_err(|error| format!("cannot import `{path}`: {error}"))?;
        let text = std::fs::read_to_string(&canonical).map_err(|error| format!("cannot import `{path}`: {error}"))?;
        Ok((canonical.display().to_string(), text))
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
    Ok(check_source(&path.display().to_string(), &text, &mut FileLoader))
}

fn print_diagnostics(compilation: &Compilation) {
    if compilation.diagnostics.is_empty() {
        return;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", render::to_text(&compilation.sources, &compilation.diagnostics, color));
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
        let errors = compilation.diagnostics.iter().filter(|d| d.is_error()).count();
        if matches!(format, Format::Text) {
            eprintln!("error: `{}` has {errors} error{}", path.display(), if errors == 1 { "" } else { "s" });
        }
        EXIT_COMPILE
    } else {
        EXIT_OK
    }
}
