//! Rendering of compiler diagnostics, for people (codespan-reporting) and
//! for tools (JSON).
//!
//! codespan-reporting prints the `file:line:col` header, the source line and
//! the label under the exact span without pulling in a fancy-terminal stack,
//! and its plain output is stable enough to snapshot in tests.

use authflow_compiler::{Diagnostic, Severity, SourceFile};
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor::Buffer, Config};
use serde_json::json;

/// Renders diagnostics as text. With `color`, ANSI colors are added.
pub fn to_text(sources: &[SourceFile], diagnostics: &[Diagnostic], color: bool) -> String {
    let mut files = SimpleFiles::new();
    for source in sources {
        files.add(source.name.as_str(), source.text.as_str());
    }
    let mut buffer = if color {
        Buffer::ansi()
    } else {
        Buffer::no_color()
    };
    let config = Config::default();
    for diagnostic in diagnostics {
        let report = to_report(diagnostic);
        if term::emit(&mut buffer, &config, &files, &report).is_err() {
            // A span outside its file would be an internal error; show the message alone.
            buffer.clear();
            return diagnostics
                .iter()
                .map(|d| format!("{}: {}\n", severity_name(d.severity), d.message))
                .collect();
        }
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

fn to_report(diagnostic: &Diagnostic) -> Report<usize> {
    let report = match diagnostic.severity {
        Severity::Error => Report::error(),
        Severity::Warning => Report::warning(),
    };
    let mut labels = vec![
        Label::primary(diagnostic.span.file.0 as usize, diagnostic.span.range())
            .with_message(diagnostic.label.clone()),
    ];
    for secondary in &diagnostic.secondary {
        labels.push(
            Label::secondary(secondary.span.file.0 as usize, secondary.span.range())
                .with_message(secondary.message.clone()),
        );
    }
    let notes = diagnostic
        .help
        .iter()
        .map(|help| format!("help: {help}"))
        .collect();
    report
        .with_message(diagnostic.message.clone())
        .with_labels(labels)
        .with_notes(notes)
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Line and column (both 1-based, column in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Renders diagnostics as one JSON document for editors and CI.
pub fn to_json(sources: &[SourceFile], diagnostics: &[Diagnostic]) -> serde_json::Value {
    let location = |span: authflow_compiler::Span| {
        let source = sources.get(span.file.0 as usize);
        let name = source.map(|s| s.name.as_str()).unwrap_or("");
        let text = source.map(|s| s.text.as_str()).unwrap_or("");
        let (line, column) = line_column(text, span.start as usize);
        let (end_line, end_column) = line_column(text, span.end as usize);
        json!({ "file": name, "line": line, "column": column, "end_line": end_line, "end_column": end_column,
                "start": span.start, "end": span.end })
    };
    let items: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            json!({
                "severity": severity_name(d.severity),
                "message": d.message,
                "location": location(d.span),
                "label": d.label,
                "help": d.help,
                "related": d.secondary.iter().map(|s| json!({ "message": s.message, "location": location(s.span) })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    json!({ "errors": errors, "warnings": diagnostics.len() - errors, "diagnostics": items })
}
