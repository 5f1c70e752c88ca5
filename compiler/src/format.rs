//! The canonical formatter for `.flow` files.
//!
//! Formatting runs in two passes. The first renders the AST as output lines:
//! each declaration, field, step, test statement and closing brace gets a line
//! of its own, and every line starts at a known source token. The second pass
//! puts the comments back. The lexer skips comments, so they are recovered
//! from the gaps between tokens, where nothing but whitespace and comments can
//! occur. A comment that follows code on the same source line trails the
//! output line that contains that code. Any other comment gets a line of its
//! own before the output line that contains the next token. A comment inside
//! a construct that the formatter joins into one line, such as a record that
//! spanned several lines, moves to its own line before the joined line.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::lex::{self, Tok, Token};
use crate::parse;
use crate::span::FileId;

const INDENT: &str = "  ";

/// Duration units from the largest to the smallest. A duration prints in the
/// first unit that divides it exactly. Units the lexer does not know are
/// skipped.
const DURATION_UNITS: [&str; 6] = ["d", "h", "m", "s", "ms", "us"];

/// Formats one `.flow` source text in the canonical layout, keeping every
/// comment. Returns the lexer and parser diagnostics instead when the text
/// has a syntax error.
///
/// The result parses to the same AST as the input, apart from spans, and
/// formatting it again returns it unchanged. It uses `\n` line breaks, ends
/// with one `\n` unless it is empty, and drops a leading byte order mark.
pub fn format_source(source: &str) -> Result<String, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let tokens = lex::lex(FileId(0), source, &mut diagnostics);
    let file = parse::parse(&tokens, &mut diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    let mut printer = Printer {
        tokens: &tokens,
        lines: Vec::new(),
    };
    for item in &file.items {
        printer.item(item);
    }
    let comments = find_comments(source, &tokens);
    Ok(assemble(source, &tokens, &printer.lines, &comments))
}

// ---- first pass: the AST as lines ----

/// The place of a line in a declaration, which decides the blank lines and
/// the comments before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The first line of a declaration.
    Item,
    /// A field, step, test statement, match arm or invariant clause.
    Body,
    /// A line that starts with the `}` of a block: `}`, `} else {`.
    Close,
}

#[derive(Debug)]
struct Line {
    /// Index of the source token that the line starts with.
    first_token: usize,
    depth: usize,
    role: Role,
    text: String,
}

struct Printer<'a> {
    tokens: &'a [Token],
    lines: Vec<Line>,
}

impl Printer<'_> {
    /// Returns the index of the first token that starts at or after `offset`.
    fn token_at(&self, offset: u32) -> usize {
        self.tokens
            .partition_point(|token| token.span.start < offset)
    }

    /// Returns the index of the token right before the one that starts at
    /// `offset`. It finds the keyword of a declaration whose AST node only
    /// records its name.
    fn token_before(&self, offset: u32) -> usize {
        self.token_at(offset).saturating_sub(1)
    }

    fn push(&mut self, first_token: usize, depth: usize, role: Role, text: String) {
        self.lines.push(Line {
            first_token,
            depth,
            role,
            text,
        });
    }

    /// Pushes the `}` line of a block whose span ends with that brace.
    fn push_close(&mut self, end: u32, depth: usize) {
        let close = self.token_at(end.saturating_sub(1));
        self.push(close, depth, Role::Close, "}".to_string());
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Policy(policy) => {
                let mut text = format!("policy {}", string_literal(&policy.name));
                if let Some(version) = &policy.version {
                    text.push_str(&format!(" version {}", string_literal(version)));
                }
                let first = self.token_at(policy.span.start);
                self.push(first, 0, Role::Item, text);
            }
            Item::Import(import) => {
                let target = match &import.target {
                    ImportTarget::Std(module) => format!("std.{}", module.name),
                    ImportTarget::Path(path) => string_literal(path),
                };
                let first = self.token_at(import.span.start);
                self.push(first, 0, Role::Item, format!("import {target}"));
            }
            Item::Enum(decl) => {
                let variants: Vec<&str> = decl.variants.iter().map(|v| v.name.as_str()).collect();
                let text = if variants.is_empty() {
                    format!("enum {} {{}}", decl.name.name)
                } else {
                    format!("enum {} {{ {} }}", decl.name.name, variants.join(", "))
                };
                let first = self.token_before(decl.name.span.start);
                self.push(first, 0, Role::Item, text);
            }
            Item::Principal(decl) => {
                let first = self.token_before(decl.kind.span.start);
                let Some(last_field) = decl.fields.last() else {
                    let text = format!("principal {} {{}}", decl.kind.name);
                    self.push(first, 0, Role::Item, text);
                    return;
                };
                let text = format!("principal {} {{", decl.kind.name);
                self.push(first, 0, Role::Item, text);
                self.fields(&decl.fields);
                // The declaration has no span: its `}` follows the last field
                // and that field's optional comma.
                let mut close = self.token_at(last_field.ty.span.end);
                if self.tokens.get(close).map(|token| &token.tok) == Some(&Tok::Comma) {
                    close += 1;
                }
                self.push(close, 0, Role::Close, "}".to_string());
            }
            Item::Context(decl) => {
                let first = self.token_at(decl.span.start);
                if decl.fields.is_empty() {
                    self.push(first, 0, Role::Item, "context {}".to_string());
                    return;
                }
                self.push(first, 0, Role::Item, "context {".to_string());
                self.fields(&decl.fields);
                self.push_close(decl.span.end, 0);
            }
            Item::Const(decl) => {
                let ty = match &decl.ty {
                    Some(ty) => format!(": {}", type_expr(ty)),
                    None => String::new(),
                };
                let text = format!("const {}{ty} = {}", decl.name.name, expr(&decl.value));
                let first = self.token_before(decl.name.span.start);
                self.push(first, 0, Role::Item, text);
            }
            Item::Switch(decl) => {
                let text = format!(
                    "switch {}: {} = {}",
                    decl.name.name,
                    type_expr(&decl.ty),
                    expr(&decl.default)
                );
                let first = self.token_before(decl.name.span.start);
                self.push(first, 0, Role::Item, text);
            }
            Item::Flow(flow) => self.flow(flow),
            Item::Test(test) => {
                let first = self.token_at(test.span.start);
                let text = format!("test {} {{", string_literal(&test.name));
                self.push(first, 0, Role::Item, text);
                for statement in &test.statements {
                    let first = self.token_at(statement.span.start);
                    self.push(first, 1, Role::Body, test_statement(&statement.kind));
                }
                self.push_close(test.span.end, 0);
            }
            Item::Invariant(invariant) => self.invariant(invariant),
        }
    }

    fn fields(&mut self, fields: &[Field]) {
        for field in fields {
            let first = self.token_at(field.name.span.start);
            let text = format!("{}: {}", field.name.name, type_expr(&field.ty));
            self.push(first, 1, Role::Body, text);
        }
    }

    fn flow(&mut self, flow: &FlowDecl) {
        let kinds = match &flow.kinds {
            Kinds::Any(_) => "any".to_string(),
            Kinds::Listed(kinds) => names(kinds),
        };
        let mut text = format!("flow {} for {kinds}", flow.name.name);
        if let Some(event) = &flow.event {
            text.push_str(&format!(" on {}", event.name));
        }
        text.push_str(" {");
        let first = self.token_at(flow.span.start);
        self.push(first, 0, Role::Item, text);
        self.block(&flow.body, 1);
        self.push_close(flow.body.span.end, 0);
    }

    fn invariant(&mut self, invariant: &InvariantDecl) {
        let first = self.token_at(invariant.span.start);
        let text = format!("invariant {} {{", string_literal(&invariant.name));
        self.push(first, 0, Role::Item, text);
        let flow_keyword = self.token_before(invariant.flow.span.start);
        let text = format!("flow {}", invariant.flow.name);
        self.push(flow_keyword, 1, Role::Body, text);
        if let Some(when) = &invariant.when {
            let when_keyword = self.token_before(when.span.start);
            self.push(when_keyword, 1, Role::Body, format!("when {}", expr(when)));
        }
        let first = self.token_at(invariant.decision.span.start);
        let text = format!(
            "{} implies {}",
            invariant.decision.name,
            expr(&invariant.implies)
        );
        self.push(first, 1, Role::Body, text);
        self.push_close(invariant.span.end, 0);
    }

    /// Pushes the steps of a block. The caller pushes the lines with its braces.
    fn block(&mut self, block: &Block, depth: usize) {
        for step in &block.steps {
            self.step(step, depth);
        }
    }

    fn step(&mut self, step: &Step, depth: usize) {
        let first = self.token_at(step.span.start);
        let text = match &step.kind {
            StepKind::If { arms, otherwise } => {
                self.if_step(first, arms, otherwise.as_ref(), depth);
                return;
            }
            StepKind::Match { scrutinee, arms } => {
                let text = format!("match {} {{", expr(scrutinee));
                self.push(first, depth, Role::Body, text);
                for arm in arms {
                    let first = self.token_at(arm.variant.span.start);
                    let text = format!("{} => {{", arm.variant.name);
                    self.push(first, depth + 1, Role::Body, text);
                    self.block(&arm.body, depth + 2);
                    self.push_close(arm.body.span.end, depth + 1);
                }
                self.push_close(step.span.end, depth);
                return;
            }
            StepKind::Exception { name, when, body } => {
                let text = format!("exception {} when {} {{", string_literal(name), expr(when));
                self.push(first, depth, Role::Body, text);
                self.block(body, depth + 1);
                self.push_close(body.span.end, depth);
                return;
            }
            _ => step_text(step),
        };
        self.push(first, depth, Role::Body, text);
    }

    /// Pushes an `if` chain. Each `else` shares a line with the `}` before it.
    fn if_step(
        &mut self,
        first: usize,
        arms: &[(Expr, Block)],
        otherwise: Option<&Block>,
        depth: usize,
    ) {
        let mut line_start = first;
        let mut role = Role::Body;
        let mut keyword = "if";
        for (guard, body) in arms {
            let text = format!("{keyword} {} {{", expr(guard));
            self.push(line_start, depth, role, text);
            self.block(body, depth + 1);
            line_start = self.token_at(body.span.end.saturating_sub(1));
            role = Role::Close;
            keyword = "} else if";
        }
        if let Some(body) = otherwise {
            self.push(line_start, depth, Role::Close, "} else {".to_string());
            self.block(body, depth + 1);
            line_start = self.token_at(body.span.end.saturating_sub(1));
        }
        self.push(line_start, depth, Role::Close, "}".to_string());
    }
}

/// Renders the head of a step in canonical form on one line: the whole step
/// for simple steps, the conditions of an `if` chain, `match EXPR`, or
/// `exception "NAME" when COND`. Traces show this text, so it does not
/// depend on the layout of the source.
pub fn step_text(step: &Step) -> String {
    match &step.kind {
        StepKind::If { arms, otherwise } => {
            let mut text = String::new();
            for (index, (guard, _)) in arms.iter().enumerate() {
                if index > 0 {
                    text.push_str(" else ");
                }
                text.push_str(&format!("if {}", expr(guard)));
            }
            if otherwise.is_some() {
                text.push_str(" else");
            }
            text
        }
        StepKind::Match { scrutinee, .. } => format!("match {}", expr(scrutinee)),
        StepKind::Exception { name, when, .. } => {
            format!("exception {} when {}", string_literal(name), expr(when))
        }
        StepKind::Allow { with } => format!("allow{}", with_record(with)),
        StepKind::Deny { reason, when } => match when {
            Some(when) => format!("deny {} when {}", string_literal(reason), expr(when)),
            None => format!("deny {}", string_literal(reason)),
        },
        StepKind::Require {
            factors,
            within,
            attempts,
        } => {
            let mut text = format!("require {}", factor_spec(factors));
            if let Some(within) = within {
                text.push_str(&format!(" within {}", expr(within)));
            }
            if let Some(attempts) = attempts {
                text.push_str(&format!(" attempts {}", expr(attempts)));
            }
            text
        }
        StepKind::Enroll { factors } => format!("enroll {}", factor_spec(factors)),
        StepKind::Approve { roles, within } => match within {
            Some(within) => format!("approve by {} within {}", names(roles), expr(within)),
            None => format!("approve by {}", names(roles)),
        },
        StepKind::Emit { name, with } => {
            format!("emit {}{}", string_literal(name), with_record(with))
        }
        StepKind::Run { flow } => format!("run {}", flow.name),
    }
}

fn names(idents: &[Ident]) -> String {
    let names: Vec<&str> = idents.iter().map(|ident| ident.name.as_str()).collect();
    names.join(", ")
}

fn type_expr(ty: &TypeExpr) -> String {
    let mut text = ty.name.name.clone();
    if let Some(argument) = &ty.argument {
        text.push_str(&format!("<{}>", type_expr(argument)));
    }
    if ty.optional {
        text.push('?');
    }
    text
}

fn factor_spec(factors: &FactorSpec) -> String {
    match factors {
        FactorSpec::One(factor) => factor.name.clone(),
        FactorSpec::Any(factors) => format!("any({})", names(factors)),
        FactorSpec::All(factors) => format!("all({})", names(factors)),
    }
}

fn record(record: &Record) -> String {
    if record.entries.is_empty() {
        return "{}".to_string();
    }
    let entries: Vec<String> = record
        .entries
        .iter()
        .map(|(key, value)| format!("{}: {}", key.name, expr(value)))
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

/// ` with { ... }` after `allow` and `emit`, or nothing.
fn with_record(with: &Option<Record>) -> String {
    match with {
        Some(with) => format!(" with {}", record(with)),
        None => String::new(),
    }
}

fn test_statement(kind: &TestStatementKind) -> String {
    match kind {
        TestStatementKind::Flow(flow) => format!("flow {}", flow.name),
        TestStatementKind::Principal { kind, record: r } => {
            format!("principal {} {}", kind.name, record(r))
        }
        TestStatementKind::Context(r) => format!("context {}", record(r)),
        TestStatementKind::Session(r) => format!("session {}", record(r)),
        TestStatementKind::Switches(r) => format!("switches {}", record(r)),
        TestStatementKind::Expect { decision, detail } => match detail {
            Some(detail) => format!("expect {} {}", decision.name, expr(detail)),
            None => format!("expect {}", decision.name),
        },
        TestStatementKind::Verify(factor) => format!("verify {}", factor.name),
        TestStatementKind::Fail(factor) => format!("fail {}", factor.name),
        TestStatementKind::Enroll(factor) => format!("enroll {}", factor.name),
        TestStatementKind::Approve { role, approver } => {
            format!("approve {}{}", role.name, by_approver(approver))
        }
        TestStatementKind::Refuse { role, approver } => {
            format!("refuse {}{}", role.name, by_approver(approver))
        }
        TestStatementKind::Update {
            context,
            principal,
            switches,
        } => {
            let mut text = "update".to_string();
            if let Some(context) = context {
                text.push_str(&format!(" context {}", record(context)));
            }
            if let Some(principal) = principal {
                text.push_str(&format!(" principal {}", record(principal)));
            }
            if let Some(switches) = switches {
                text.push_str(&format!(" switches {}", record(switches)));
            }
            text
        }
        TestStatementKind::At(time) => format!("at {}", expr(time)),
    }
}

fn by_approver(approver: &Option<String>) -> String {
    match approver {
        Some(approver) => format!(" by {}", string_literal(approver)),
        None => String::new(),
    }
}

// ---- expressions ----

/// Binding strength of an expression's outermost operator, as in the parser:
/// `??` 1, `or` 2, `and` 3, `not` 4, comparisons and `in` 5, `+ -` 6,
/// negation 7, and 8 for postfix and primary expressions.
fn precedence(expr: &Expr) -> u8 {
    match &expr.kind {
        ExprKind::Binary { op, .. } => binary_precedence(*op),
        ExprKind::Unary {
            op: UnaryOp::Not, ..
        } => 4,
        ExprKind::Unary {
            op: UnaryOp::Neg, ..
        } => 7,
        _ => 8,
    }
}

fn binary_precedence(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Coalesce => 1,
        BinaryOp::Or => 2,
        BinaryOp::And => 3,
        BinaryOp::Eq
        | BinaryOp::Ne
        | BinaryOp::Lt
        | BinaryOp::Le
        | BinaryOp::Gt
        | BinaryOp::Ge
        | BinaryOp::In => 5,
        BinaryOp::Add | BinaryOp::Sub => 6,
    }
}

fn expr(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr, 0);
    out
}

fn write_list(out: &mut String, exprs: &[Expr]) {
    for (index, element) in exprs.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        write_expr(out, element, 0);
    }
}

/// Writes `expr` where the parser reads an operand of precedence `min` or
/// higher, with parentheses when the expression binds more loosely.
fn write_expr(out: &mut String, expr: &Expr, min: u8) {
    let parenthesized = precedence(expr) < min;
    if parenthesized {
        out.push('(');
    }
    match &expr.kind {
        ExprKind::Int(value) => out.push_str(&value.to_string()),
        ExprKind::Duration(micros) => out.push_str(&duration_literal(*micros)),
        ExprKind::Str(value) => out.push_str(&string_literal(value)),
        ExprKind::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        ExprKind::None => out.push_str("none"),
        ExprKind::Name(name) => out.push_str(name),
        ExprKind::Set(elements) => {
            out.push('{');
            write_list(out, elements);
            out.push('}');
        }
        ExprKind::Call { function, args } => {
            out.push_str(&function.name);
            out.push('(');
            write_list(out, args);
            out.push(')');
        }
        ExprKind::Attr { base, attr } => {
            write_expr(out, base, 8);
            out.push('.');
            out.push_str(&attr.name);
        }
        ExprKind::Method {
            receiver,
            method,
            args,
        } => {
            write_expr(out, receiver, 8);
            out.push('.');
            out.push_str(&method.name);
            out.push('(');
            write_list(out, args);
            out.push(')');
        }
        ExprKind::Unary { op, operand } => match op {
            // The operand of `not` is parsed at its own level, so `not not a`
            // and `not a == b` need no parentheses.
            // A comparison under `not` keeps its parentheses for the reader,
            // although `not a in s` already means `not (a in s)`.
            UnaryOp::Not => {
                out.push_str("not ");
                let comparison = matches!(operand.kind, ExprKind::Binary { op, .. } if binary_precedence(op) == 5);
                write_expr(out, operand, if comparison { 9 } else { 4 });
            }
            // The operand of `-` is another negation or a postfix expression.
            UnaryOp::Neg => {
                out.push('-');
                write_expr(out, operand, 7);
            }
        },
        ExprKind::Binary { op, left, right } => {
            let level = binary_precedence(*op);
            // `??` is right-associative, comparisons do not chain, and the
            // other operators are left-associative.
            let (left_min, right_min) = match level {
                1 => (2, 1),
                5 => (6, 6),
                _ => (level, level + 1),
            };
            write_expr(out, left, left_min);
            out.push(' ');
            out.push_str(op.text());
            out.push(' ');
            write_expr(out, right, right_min);
        }
        // A file with an error node is never formatted: it has a diagnostic.
        ExprKind::Error => {}
    }
    if parenthesized {
        out.push(')');
    }
}

/// Writes a duration in the largest unit that divides it exactly: `90m`
/// stays `90m`, and `60m` becomes `1h`. Zero is `0s`.
fn duration_literal(micros: i64) -> String {
    if micros == 0 {
        return "0s".to_string();
    }
    for suffix in DURATION_UNITS {
        if let Some(unit) = lex::duration_unit(suffix) {
            if micros % unit == 0 {
                return format!("{}{suffix}", micros / unit);
            }
        }
    }
    // The lexer only produces whole multiples of its smallest unit, so the
    // loop above always returns.
    format!("{micros}us")
}

/// Writes a string literal with the escapes `\"`, `\\`, `\n`, `\t`, and
/// `\u{HEX}` for every other control character.
fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---- second pass: comments and blank lines ----

#[derive(Debug)]
struct Comment {
    start: usize,
    end: usize,
    /// Index of the token that the comment's gap ends at: the comment lies
    /// between token `gap - 1` and token `gap`.
    gap: usize,
    /// Whether code precedes the comment on its source line, directly or
    /// through other trailing comments.
    trailing: bool,
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c')
}

/// Finds every comment, in source order. Comments can only occur in the gaps
/// between tokens, which contain nothing else but whitespace.
fn find_comments(source: &str, tokens: &[Token]) -> Vec<Comment> {
    let bytes = source.as_bytes();
    let mut comments = Vec::new();
    let mut gap_start = if source.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    for (gap, token) in tokens.iter().enumerate() {
        let gap_end = (token.span.start as usize).min(source.len());
        // The end of the token or trailing comment that a comment must follow
        // on the same line to trail it.
        let mut trailing_anchor = (gap > 0).then_some(gap_start);
        let mut at = gap_start;
        while at < gap_end {
            if is_whitespace(bytes[at]) {
                at += 1;
                continue;
            }
            let rest = &source[at..gap_end];
            let end = if rest.starts_with("//") {
                at + rest.find('\n').unwrap_or(rest.len())
            } else if let Some(body) = rest.strip_prefix("/*") {
                at + body.find("*/").map_or(rest.len(), |close| close + 4)
            } else {
                // Unreachable for a file without diagnostics.
                at += rest.chars().next().map_or(1, char::len_utf8);
                continue;
            };
            let trailing = trailing_anchor.is_some_and(|anchor| !source[anchor..at].contains('\n'));
            trailing_anchor = trailing.then_some(end);
            comments.push(Comment {
                start: at,
                end,
                gap,
                trailing,
            });
            at = end;
        }
        gap_start = token.span.end as usize;
    }
    comments
}

/// Tells whether the source has an empty line right before `offset`.
fn blank_line_before(source: &str, offset: usize) -> bool {
    let newlines = source.as_bytes()[..offset]
        .iter()
        .rev()
        .take_while(|&&byte| is_whitespace(byte))
        .filter(|&&byte| byte == b'\n')
        .count();
    newlines >= 2
}

/// The separation of an output line from the one before it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// No blank line.
    None,
    /// A blank line if the author had one, except right after a `{`.
    AsWritten(bool),
    /// Exactly one blank line, except at the start of the file.
    Blank,
}

#[derive(Default)]
struct Output {
    text: String,
    /// Whether the last line ends with the `{` of a block.
    after_open: bool,
}

impl Output {
    fn line(&mut self, depth: usize, content: &str, gap: Gap, opens: bool) {
        let blank = match gap {
            Gap::None => false,
            Gap::AsWritten(blank) => blank && !self.after_open,
            Gap::Blank => true,
        };
        if blank && !self.text.is_empty() {
            self.text.push('\n');
        }
        for _ in 0..depth {
            self.text.push_str(INDENT);
        }
        self.text.push_str(content);
        self.text.push('\n');
        self.after_open = opens;
    }
}

fn comment_text<'s>(source: &'s str, comment: &Comment) -> &'s str {
    // A line comment runs to the end of the line, including trailing spaces
    // and the `\r` of a `\r\n`.
    source[comment.start..comment.end].trim_end()
}

/// Writes the lines with the comments attached to them. Each line covers the
/// tokens from its first one to the first token of the next line.
fn assemble(source: &str, tokens: &[Token], lines: &[Line], comments: &[Comment]) -> String {
    let end_of_file = tokens.len().saturating_sub(1);
    let mut output = Output::default();
    let mut next = 0;
    for (index, line) in lines.iter().enumerate() {
        let first = line.first_token;
        let last = lines
            .get(index + 1)
            .map_or(end_of_file, |next_line| next_line.first_token)
            .saturating_sub(1)
            .max(first);
        // Comments in the gap before the first token: on lines of their own.
        let mut leading = Vec::new();
        // Comments between the line's tokens: moved before the line.
        let mut inside = Vec::new();
        // Comments after the last token on the same source line.
        let mut trailing = Vec::new();
        while let Some(comment) = comments.get(next) {
            if comment.gap <= first {
                leading.push(comment);
            } else if comment.gap <= last {
                inside.push(comment);
            } else if comment.gap == last + 1 && comment.trailing {
                trailing.push(comment);
            } else {
                break;
            }
            next += 1;
        }
        // A line that starts with `}` has its comments inside the block it closes.
        let comment_depth = match line.role {
            Role::Close => line.depth + 1,
            _ => line.depth,
        };
        let mut first_of_group = true;
        for comment in leading {
            let gap = if line.role == Role::Item && first_of_group {
                Gap::Blank
            } else {
                Gap::AsWritten(blank_line_before(source, comment.start))
            };
            output.line(comment_depth, comment_text(source, comment), gap, false);
            first_of_group = false;
        }
        let mut gap = match line.role {
            Role::Close => Gap::None,
            Role::Item if first_of_group => Gap::Blank,
            _ => {
                let start = tokens
                    .get(first)
                    .map_or(0, |token| token.span.start as usize);
                Gap::AsWritten(blank_line_before(source, start))
            }
        };
        for comment in inside {
            output.line(comment_depth, comment_text(source, comment), gap, false);
            gap = Gap::None;
        }
        let mut text = line.text.clone();
        for comment in trailing {
            text.push(' ');
            text.push_str(comment_text(source, comment));
        }
        output.line(line.depth, &text, gap, line.text.ends_with('{'));
    }
    // Comments after the last token that do not trail it.
    let mut first_of_group = true;
    for comment in &comments[next..] {
        let gap = if first_of_group {
            Gap::Blank
        } else {
            Gap::AsWritten(blank_line_before(source, comment.start))
        };
        output.line(0, comment_text(source, comment), gap, false);
        first_of_group = false;
    }
    output.text
}
