//! The authflow compiler: `.flow` source in, checked program, bytecode with a
//! content digest, and diagnostics out.
//!
//! Stages, one module each: [`lex`] → [`parse`] → resolve and [`check`] →
//! [`lower`] → [`emit`]. The compiler performs no I/O: imported files are
//! requested through the [`Loader`] trait, which the host implements.

pub mod ast;
pub mod diagnostic;
pub mod lex;
pub mod parse;
pub mod span;

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
