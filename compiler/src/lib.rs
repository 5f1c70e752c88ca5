//! The authflow compiler: `.flow` source in, checked program, bytecode with a
//! content digest, and diagnostics out.
//!
//! Stages, one module each: [`lex`] → [`parse`] → resolve and [`check`] →
//! [`lower`] → [`emit`]. The compiler performs no I/O: imported files are
//! requested through the [`Loader`] trait, which the host implements.

pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod emit;
pub mod format;
pub mod lex;
pub mod lower;
pub mod parse;
pub mod prove;
/// A tree-walking evaluator of checked flows that differential tests compare with the kernels.
pub mod reference;
pub mod resolve;
pub mod span;
pub mod stdlib;
pub mod testing;
pub mod types;

pub use diagnostic::{Diagnostic, Severity};
pub use span::{FileId, Span};

/// Lexes and parses one source text without resolving imports or checking
/// it. Returns the AST and every lexical and syntax error.
pub fn parse_file(source: &str) -> (ast::File, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let tokens = lex::lex(FileId(0), source, &mut diagnostics);
    let file = parse::parse(&tokens, &mut diagnostics);
    (file, diagnostics)
}

/// A file supplied by a [`Loader`].
pub struct Loaded {
    /// The file's identity: files with equal keys are loaded once.
    pub key: String,
    /// The name diagnostics show.
    pub name: String,
    pub text: String,
}

/// Supplies the text of files named by `import "path.flow"`.
pub trait Loader {
    /// Loads `path` as imported from the file named `importer`.
    fn load(&mut self, importer: &str, path: &str) -> Result<Loaded, String>;

    /// The identity key of the root file called `name`, so that an import of
    /// the root file is recognised as the root. Defaults to the name.
    fn root_key(&mut self, name: &str) -> String {
        name.to_string()
    }
}

/// A loader for hosts that compile a single text: every path import fails.
pub struct NoImports;

impl Loader for NoImports {
    fn load(&mut self, _importer: &str, path: &str) -> Result<Loaded, String> {
        Err(format!(
            "cannot import `{path}`: this compilation has no file access"
        ))
    }
}

/// One source file of a compilation; its index is its [`FileId`].
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Everything a compilation produced.
#[derive(Debug, Default)]
pub struct Compilation {
    pub sources: Vec<SourceFile>,
    /// Errors and warnings, in source order of discovery.
    pub diagnostics: Vec<Diagnostic>,
    /// The checked program; present when there are no errors.
    pub checked: Option<check::Checked>,
    /// The bytecode program; present after [`compile`] succeeds.
    pub program: Option<authflow_runtime::program::Program>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Runs the front end on a root file and everything it imports: lexing,
/// parsing, name resolution and type checking.
pub fn check_source(name: &str, text: &str, loader: &mut dyn Loader) -> Compilation {
    let mut compilation = Compilation::default();
    let files = load_all(name, text, loader, &mut compilation);
    if compilation.has_errors() {
        return compilation;
    }
    let file_refs: Vec<&ast::File> = files.iter().collect();
    let scope = resolve::resolve(&file_refs, &mut compilation.diagnostics);
    let texts: Vec<&str> = compilation
        .sources
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let mut diagnostics = Vec::new();
    let checked = check::check(&scope, &texts, &mut diagnostics);
    compilation.diagnostics.extend(diagnostics);
    if !compilation.has_errors() {
        compilation.checked = Some(checked);
    }
    compilation
}

/// Compiles a root file and everything it imports to bytecode. The program
/// is present when the compilation has no errors.
pub fn compile(name: &str, text: &str, loader: &mut dyn Loader) -> Compilation {
    let mut compilation = check_source(name, text, loader);
    if let (Some(checked), Some(program)) = (&compilation.checked, build_program(&compilation)) {
        let diagnostics = invariant_diagnostics(checked, &program);
        compilation.diagnostics.extend(diagnostics);
        if !compilation.has_errors() {
            compilation.program = Some(program);
        }
    }
    compilation
}

/// Lowers and emits the bytecode of a checked compilation without proving
/// its invariants; `None` when the compilation has errors.
pub fn build_program(compilation: &Compilation) -> Option<authflow_runtime::program::Program> {
    let checked = compilation.checked.as_ref()?;
    let texts: Vec<&str> = compilation
        .sources
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let (program, flows) = lower::lower(checked, &texts);
    Some(emit::emit(program, flows))
}

/// Proves every invariant over all inputs. A violation is an error that
/// carries a counterexample the engine has confirmed; an invariant outside
/// what the analysis decides is a warning.
fn invariant_diagnostics(
    checked: &check::Checked,
    program: &authflow_runtime::program::Program,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for result in prove::check_invariants(checked, program) {
        match result.verdict {
            prove::Verdict::Proved => {}
            prove::Verdict::Violated { request, events } => {
                let mut example = format!(
                    "a counterexample, which `authflow eval` reproduces:\n  request: {request}"
                );
                for event in &events {
                    example.push_str(&format!("\n  event: {event}"));
                }
                // The `implies` condition is the smallest span that is wrong.
                let span = checked
                    .invariants
                    .iter()
                    .find(|invariant| invariant.name == result.name)
                    .map_or(result.span, |invariant| invariant.implies.span);
                diagnostics.push(
                    Diagnostic::error(format!("invariant `{}` does not hold", result.name), span)
                        .with_label("violated by some input")
                        .with_help(example),
                );
            }
            prove::Verdict::Unknown { reason } => diagnostics.push(
                Diagnostic::warning(
                    format!("invariant `{}` could not be proved", result.name),
                    result.span,
                )
                .with_label(reason),
            ),
        }
    }
    diagnostics
}

/// Renders the lowered code of a checked compilation before register
/// allocation, one instruction per line with each step's source as a comment.
pub fn render_ir(compilation: &Compilation) -> Option<String> {
    let checked = compilation.checked.as_ref()?;
    let texts: Vec<&str> = compilation
        .sources
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let (_, flows) = lower::lower(checked, &texts);
    Some(emit::render_ir(&flows))
}

/// Parses the root file and, breadth first, every file it imports. Each
/// file is loaded once, so import cycles are harmless.
fn load_all(
    name: &str,
    text: &str,
    loader: &mut dyn Loader,
    compilation: &mut Compilation,
) -> Vec<ast::File> {
    let mut files = Vec::new();
    let mut keys = vec![loader.root_key(name)];
    compilation.sources.push(SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    });
    let mut next = 0;
    while next < compilation.sources.len() {
        let file_id = FileId(next as u32);
        let source = compilation.sources[next].text.clone();
        let importer = compilation.sources[next].name.clone();
        let tokens = lex::lex(file_id, &source, &mut compilation.diagnostics);
        let file = parse::parse(&tokens, &mut compilation.diagnostics);
        for item in &file.items {
            let ast::Item::Import(import) = item else {
                continue;
            };
            let loaded = match &import.target {
                ast::ImportTarget::Std(module) => match stdlib::module(&module.name) {
                    Some(text) => {
                        let name = format!("std/{}.flow", module.name);
                        Ok(Loaded {
                            key: name.clone(),
                            name,
                            text: text.to_string(),
                        })
                    }
                    None => {
                        let names = stdlib::MODULES.iter().map(|(name, _)| *name);
                        let mut diagnostic = Diagnostic::error(
                            format!("unknown standard library module `std.{}`", module.name),
                            module.span,
                        );
                        diagnostic = match diagnostic::did_you_mean(&module.name, names) {
                            Some(close) => {
                                diagnostic.with_help(format!("did you mean `std.{close}`?"))
                            }
                            None => diagnostic.with_help(format!(
                                "the modules are: {}",
                                stdlib::MODULES
                                    .iter()
                                    .map(|(n, _)| format!("std.{n}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        };
                        compilation.diagnostics.push(diagnostic);
                        continue;
                    }
                },
                ast::ImportTarget::Path(path) => loader.load(&importer, path),
            };
            match loaded {
                Ok(loaded) => {
                    if !keys.contains(&loaded.key) {
                        keys.push(loaded.key);
                        compilation.sources.push(SourceFile {
                            name: loaded.name,
                            text: loaded.text,
                        });
                    }
                }
                Err(message) => compilation
                    .diagnostics
                    .push(Diagnostic::error(message, import.span).with_label("imported here")),
            }
        }
        files.push(file);
        next += 1;
    }
    files
}
