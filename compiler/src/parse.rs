//! Parsing: tokens to AST by recursive descent.
//!
//! Every syntax error becomes a diagnostic and parsing resumes at the next
//! step or declaration, so one run reports all errors in a file. Nesting of
//! blocks and expressions is limited to [`MAX_NESTING`] levels; deeper input
//! is an error, never a stack overflow.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::lex::{Keyword, Tok, Token};
use crate::span::Span;

/// The deepest nesting of blocks and expressions the parser accepts.
pub const MAX_NESTING: usize = 256;

/// Parses the tokens of one file. Diagnostics are appended, and the returned AST
/// contains every item that parsed, with error nodes where one did not.
pub fn parse(tokens: &[Token], diagnostics: &mut Vec<Diagnostic>) -> File {
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
        diagnostics,
    };
    parser.file()
}

/// Marks that a diagnostic was already reported; the caller recovers.
struct Reported;

type Parsed<T> = Result<T, Reported>;

struct Parser<'a> {
    tokens: &'a [Token],
    position: usize,
    depth: usize,
    diagnostics: &'a mut Vec<Diagnostic>,
}

const STEP_KEYWORDS: &[Keyword] = &[
    Keyword::Allow,
    Keyword::Deny,
    Keyword::Require,
    Keyword::Enroll,
    Keyword::Approve,
    Keyword::Emit,
    Keyword::If,
    Keyword::Match,
    Keyword::Exception,
    Keyword::Run,
];

const ITEM_KEYWORDS: &[Keyword] = &[
    Keyword::Policy,
    Keyword::Import,
    Keyword::Enum,
    Keyword::Principal,
    Keyword::Context,
    Keyword::Const,
    Keyword::Switch,
    Keyword::Flow,
    Keyword::Test,
    Keyword::Invariant,
];

impl<'a> Parser<'a> {
    // ---- token access ----

    fn peek(&self) -> &Tok {
        &self.token().tok
    }

    fn token(&self) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.position.min(last)]
    }

    fn span(&self) -> Span {
        self.token().span
    }

    /// Returns the span of the token before the current one.
    fn previous_span(&self) -> Span {
        let index = self
            .position
            .saturating_sub(1)
            .min(self.tokens.len().saturating_sub(1));
        self.tokens[index].span
    }

    fn advance(&mut self) -> Token {
        let token = self.token().clone();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn at(&self, tok: &Tok) -> bool {
        self.peek() == tok
    }

    fn at_keyword(&self, keyword: Keyword) -> bool {
        self.peek() == &Tok::Keyword(keyword)
    }

    fn at_ident(&self, text: &str) -> bool {
        matches!(self.peek(), Tok::Ident(name) if name == text)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.at(tok);
        if found {
            self.advance();
        }
        found
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        self.eat(&Tok::Keyword(keyword))
    }

    fn error_expected(&mut self, expected: &str) -> Reported {
        let found = self.peek().describe();
        let span = self.span();
        self.diagnostics.push(
            Diagnostic::error(format!("expected {expected}, found {found}"), span)
                .with_label(format!("expected {expected}")),
        );
        Reported
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> Parsed<Span> {
        if self.at(&tok) {
            Ok(self.advance().span)
        } else {
            Err(self.error_expected(expected))
        }
    }

    fn expect_keyword(&mut self, keyword: Keyword) -> Parsed<Span> {
        self.expect(Tok::Keyword(keyword), &format!("`{}`", keyword.text()))
    }

    /// Parses an identifier that refers to something (a factor, role, flow, kind).
    fn ident(&mut self, what: &str) -> Parsed<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                let span = self.advance().span;
                Ok(Ident { name, span })
            }
            _ => Err(self.error_expected(what)),
        }
    }

    /// Parses an identifier that declares a name. A keyword here gets a hint
    /// that it is reserved.
    fn name(&mut self, what: &str) -> Parsed<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                let span = self.advance().span;
                Ok(Ident { name, span })
            }
            Tok::Keyword(keyword) => {
                let span = self.span();
                self.diagnostics.push(
                    Diagnostic::error(
                        format!("expected {what}, found keyword `{}`", keyword.text()),
                        span,
                    )
                    .with_label("reserved word")
                    .with_help(format!(
                        "`{}` is reserved; choose another name",
                        keyword.text()
                    )),
                );
                Err(Reported)
            }
            _ => Err(self.error_expected(what)),
        }
    }

    fn string(&mut self, what: &str) -> Parsed<(String, Span)> {
        match self.peek().clone() {
            Tok::Str(value) => Ok((value, self.advance().span)),
            _ => Err(self.error_expected(what)),
        }
    }

    // ---- nesting ----

    /// Enters one nesting level; past the limit, reports and skips the
    /// bracketed group that starts at the current token.
    fn enter(&mut self) -> Parsed<()> {
        self.depth += 1;
        if self.depth <= MAX_NESTING {
            return Ok(());
        }
        self.depth -= 1;
        let span = self.span();
        self.diagnostics.push(
            Diagnostic::error(format!("nesting is deeper than {MAX_NESTING} levels"), span)
                .with_label("too deeply nested")
                .with_help("split the condition into named constants or separate steps"),
        );
        self.skip_group();
        Err(Reported)
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Skips tokens until the brackets opened from here are balanced again.
    fn skip_group(&mut self) {
        let mut balance: i64 = 0;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::LParen | Tok::LBrace => balance += 1,
                Tok::RParen | Tok::RBrace => balance -= 1,
                _ => {}
            }
            self.advance();
            if balance <= 0 {
                return;
            }
        }
    }

    // ---- recovery ----

    /// Skips to the next token that can start a step, or to the `}` that
    /// closes the current block, without leaving it.
    fn recover_in_block(&mut self) {
        let mut balance: i64 = 0;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::LBrace | Tok::LParen => balance += 1,
                Tok::RBrace if balance == 0 => return,
                // A stray `)` at this level belongs to nothing: skip it.
                Tok::RParen if balance == 0 => {}
                Tok::RBrace | Tok::RParen => balance -= 1,
                Tok::Keyword(keyword) if balance == 0 && STEP_KEYWORDS.contains(keyword) => return,
                Tok::Keyword(keyword) if ITEM_KEYWORDS.contains(keyword) && self.starts_item() => {
                    return
                }
                _ => {}
            }
            self.advance();
        }
    }

    /// Skips to the next token that can start a declaration.
    fn recover_at_top(&mut self) {
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Keyword(keyword) if ITEM_KEYWORDS.contains(keyword) && self.starts_item() => {
                    return
                }
                _ => {}
            }
            self.advance();
        }
    }

    /// Tells whether the current item keyword starts a declaration rather
    /// than an expression: `principal.roles` and `context.x` are expressions.
    fn starts_item(&self) -> bool {
        let next = self.tokens.get(self.position + 1).map(|token| &token.tok);
        !matches!(next, Some(Tok::Dot))
    }

    // ---- items ----

    fn file(&mut self) -> File {
        let mut file = File::default();
        while !self.at(&Tok::Eof) {
            let start = self.position;
            match self.item() {
                Ok(item) => file.items.push(item),
                Err(Reported) => {
                    if self.position == start {
                        self.advance();
                    }
                    self.recover_at_top();
                }
            }
        }
        file
    }

    fn item(&mut self) -> Parsed<Item> {
        let Tok::Keyword(keyword) = self.peek().clone() else {
            return Err(self.error_expected("a declaration"));
        };
        match keyword {
            Keyword::Policy => self.policy().map(Item::Policy),
            Keyword::Import => self.import().map(Item::Import),
            Keyword::Enum => self.enum_decl().map(Item::Enum),
            Keyword::Principal => self.principal().map(Item::Principal),
            Keyword::Context => self.context().map(Item::Context),
            Keyword::Const => self.const_decl().map(Item::Const),
            Keyword::Switch => self.switch().map(Item::Switch),
            Keyword::Flow => self.flow().map(Item::Flow),
            Keyword::Test => self.test().map(Item::Test),
            Keyword::Invariant => self.invariant().map(Item::Invariant),
            _ => Err(self.error_expected("a declaration")),
        }
    }

    fn policy(&mut self) -> Parsed<PolicyDecl> {
        let start = self.advance().span;
        let (name, _) = self.string("a policy name string")?;
        let mut version = None;
        if self.at_ident("version") {
            self.advance();
            version = Some(self.string("a version string")?.0);
        }
        Ok(PolicyDecl {
            name,
            version,
            span: start.to(self.previous_span()),
        })
    }

    fn import(&mut self) -> Parsed<Import> {
        let start = self.advance().span;
        let target = match self.peek().clone() {
            Tok::Str(path) => {
                self.advance();
                ImportTarget::Path(path)
            }
            Tok::Ident(name) if name == "std" => {
                self.advance();
                self.expect(Tok::Dot, "`.` after `std`")?;
                ImportTarget::Std(self.ident("a standard library module name")?)
            }
            _ => return Err(self.error_expected("`std.NAME` or a quoted path")),
        };
        Ok(Import {
            target,
            span: start.to(self.previous_span()),
        })
    }

    fn enum_decl(&mut self) -> Parsed<EnumDecl> {
        self.advance();
        let name = self.name("an enum name")?;
        self.expect(Tok::LBrace, "`{`")?;
        let mut variants = Vec::new();
        while !self.at(&Tok::RBrace) {
            variants.push(self.name("an enum value")?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(Tok::RBrace, "`,` or `}`")?;
        Ok(EnumDecl { name, variants })
    }

    fn principal(&mut self) -> Parsed<PrincipalDecl> {
        self.advance();
        let kind = self.name("a principal kind name")?;
        let fields = self.fields()?;
        Ok(PrincipalDecl { kind, fields })
    }

    fn context(&mut self) -> Parsed<ContextDecl> {
        let start = self.advance().span;
        let fields = self.fields()?;
        Ok(ContextDecl {
            fields,
            span: start.to(self.previous_span()),
        })
    }

    /// `{ name: Type [,] ... }`; newlines or commas separate fields.
    fn fields(&mut self) -> Parsed<Vec<Field>> {
        self.expect(Tok::LBrace, "`{`")?;
        let mut fields = Vec::new();
        while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
            let name = self.name("an attribute name")?;
            self.expect(Tok::Colon, "`:` and a type")?;
            let ty = self.type_expr()?;
            fields.push(Field { name, ty });
            self.eat(&Tok::Comma);
        }
        self.expect(Tok::RBrace, "`}`")?;
        Ok(fields)
    }

    fn type_expr(&mut self) -> Parsed<TypeExpr> {
        self.enter()?;
        let result = self.type_expr_inner();
        self.leave();
        result
    }

    fn type_expr_inner(&mut self) -> Parsed<TypeExpr> {
        let name = self.ident("a type")?;
        let mut argument = None;
        if self.eat(&Tok::Lt) {
            argument = Some(Box::new(self.type_expr()?));
            self.expect(Tok::Gt, "`>`")?;
        }
        let optional = self.eat(&Tok::Question);
        let span = name.span.to(self.previous_span());
        Ok(TypeExpr {
            name,
            argument,
            optional,
            span,
        })
    }

    fn const_decl(&mut self) -> Parsed<ConstDecl> {
        self.advance();
        let name = self.name("a constant name")?;
        let ty = if self.eat(&Tok::Colon) {
            Some(self.type_expr()?)
        } else {
            None
        };
        self.expect(Tok::Assign, "`=`")?;
        let value = self.expr()?;
        Ok(ConstDecl { name, ty, value })
    }

    fn switch(&mut self) -> Parsed<SwitchDecl> {
        self.advance();
        let name = self.name("a switch name")?;
        self.expect(Tok::Colon, "`:` and the switch type")?;
        let ty = self.type_expr()?;
        self.expect(Tok::Assign, "`=` and a default value")?;
        let default = self.expr()?;
        Ok(SwitchDecl { name, ty, default })
    }

    fn flow(&mut self) -> Parsed<FlowDecl> {
        let start = self.advance().span;
        let name = self.name("a flow name")?;
        self.expect_keyword(Keyword::For)?;
        let kinds = if self.at_keyword(Keyword::Any) {
            Kinds::Any(self.advance().span)
        } else {
            let mut kinds = vec![self.ident("a principal kind or `any`")?];
            while self.eat(&Tok::Comma) {
                kinds.push(self.ident("a principal kind")?);
            }
            Kinds::Listed(kinds)
        };
        let event = if self.eat_keyword(Keyword::On) {
            Some(self.ident("an event name")?)
        } else {
            None
        };
        let body = self.block()?;
        let span = start.to(self.previous_span());
        Ok(FlowDecl {
            name,
            kinds,
            event,
            body,
            span,
        })
    }

    // ---- steps ----

    fn block(&mut self) -> Parsed<Block> {
        let start = self.span();
        if !self.at(&Tok::LBrace) {
            return Err(self.error_expected("`{`"));
        }
        self.enter()?;
        self.advance();
        self.block_rest(start)
    }

    /// Parses the steps of a block whose `{` is already consumed (or was
    /// missing and reported), up to and including the closing `}`.
    fn block_rest(&mut self, start: Span) -> Parsed<Block> {
        let mut steps = Vec::new();
        while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
            if let Tok::Keyword(keyword) = self.peek() {
                if ITEM_KEYWORDS.contains(keyword) && self.starts_item() {
                    break;
                }
            }
            let before = self.position;
            match self.step() {
                Ok(step) => steps.push(step),
                Err(Reported) => {
                    if self.position == before {
                        self.advance();
                    }
                    self.recover_in_block();
                }
            }
        }
        self.leave();
        let end = self.expect(Tok::RBrace, "`}`");
        let span = start.to(self.previous_span());
        end?;
        Ok(Block { steps, span })
    }

    fn step(&mut self) -> Parsed<Step> {
        let start = self.span();
        let kind = match self.peek() {
            Tok::Keyword(Keyword::Allow) => self.allow()?,
            Tok::Keyword(Keyword::Deny) => self.deny()?,
            Tok::Keyword(Keyword::Require) => self.require()?,
            Tok::Keyword(Keyword::Enroll) => {
                self.advance();
                StepKind::Enroll {
                    factors: self.factor_spec()?,
                }
            }
            Tok::Keyword(Keyword::Approve) => self.approve()?,
            Tok::Keyword(Keyword::Emit) => {
                self.advance();
                let (name, _) = self.string("an obligation name string")?;
                let with = self.optional_record()?;
                StepKind::Emit { name, with }
            }
            Tok::Keyword(Keyword::If) => self.if_step()?,
            Tok::Keyword(Keyword::Match) => self.match_step()?,
            Tok::Keyword(Keyword::Exception) => {
                self.advance();
                let (name, _) = self.string("an exception name string")?;
                self.expect_keyword(Keyword::When)?;
                let when = self.expr()?;
                let body = self.block()?;
                StepKind::Exception { name, when, body }
            }
            Tok::Keyword(Keyword::Run) => {
                self.advance();
                StepKind::Run {
                    flow: self.ident("a flow name")?,
                }
            }
            Tok::Ident(name) => {
                let name = name.clone();
                let span = self.span();
                let steps = STEP_KEYWORDS.iter().map(|k| k.text());
                let mut diagnostic =
                    Diagnostic::error(format!("expected a step, found identifier `{name}`"), span)
                        .with_label("expected a step");
                if let Some(close) = crate::diagnostic::did_you_mean(&name, steps) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.diagnostics.push(diagnostic);
                return Err(Reported);
            }
            _ => return Err(self.error_expected("a step")),
        };
        Ok(Step {
            kind,
            span: start.to(self.previous_span()),
        })
    }

    fn allow(&mut self) -> Parsed<StepKind> {
        self.advance();
        Ok(StepKind::Allow {
            with: self.optional_record()?,
        })
    }

    fn deny(&mut self) -> Parsed<StepKind> {
        self.advance();
        let (reason, _) = self.string("a reason string")?;
        let when = if self.eat_keyword(Keyword::When) {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(StepKind::Deny { reason, when })
    }

    fn require(&mut self) -> Parsed<StepKind> {
        self.advance();
        let factors = self.factor_spec()?;
        let mut within = None;
        let mut attempts = None;
        loop {
            if self.at_keyword(Keyword::Within) && within.is_none() {
                self.advance();
                within = Some(self.expr()?);
            } else if self.at_keyword(Keyword::Attempts) && attempts.is_none() {
                self.advance();
                attempts = Some(self.expr()?);
            } else if self.at_keyword(Keyword::Within) || self.at_keyword(Keyword::Attempts) {
                let span = self.span();
                let clause = self.peek().describe();
                self.diagnostics.push(
                    Diagnostic::error(format!("{clause} is given twice in one `require`"), span)
                        .with_label("second clause")
                        .with_help("keep one `within` and one `attempts`"),
                );
                return Err(Reported);
            } else {
                break;
            }
        }
        Ok(StepKind::Require {
            factors,
            within,
            attempts,
        })
    }

    fn factor_spec(&mut self) -> Parsed<FactorSpec> {
        if self.eat_keyword(Keyword::Any) {
            Ok(FactorSpec::Any(self.factor_list()?))
        } else if self.eat_keyword(Keyword::All) {
            Ok(FactorSpec::All(self.factor_list()?))
        } else {
            Ok(FactorSpec::One(self.ident(
                "a factor, `any(...)`, `all(...)` or an assurance level",
            )?))
        }
    }

    fn factor_list(&mut self) -> Parsed<Vec<Ident>> {
        self.expect(Tok::LParen, "`(`")?;
        let mut factors = vec![self.ident("a factor")?];
        while self.eat(&Tok::Comma) {
            if self.at(&Tok::RParen) {
                break;
            }
            factors.push(self.ident("a factor")?);
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        Ok(factors)
    }

    fn approve(&mut self) -> Parsed<StepKind> {
        self.advance();
        self.expect_keyword(Keyword::By)?;
        let mut roles = vec![self.ident("a role")?];
        while self.eat(&Tok::Comma) {
            roles.push(self.ident("a role")?);
        }
        let within = if self.eat_keyword(Keyword::Within) {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(StepKind::Approve { roles, within })
    }

    fn if_step(&mut self) -> Parsed<StepKind> {
        let mut arms = Vec::new();
        let mut otherwise = None;
        self.advance();
        loop {
            let guard = self.expr()?;
            if !self.at(&Tok::LBrace) {
                let span = self.span();
                self.diagnostics.push(
                    Diagnostic::error(
                        format!(
                            "expected `{{` after the `if` condition, found {}",
                            self.peek().describe()
                        ),
                        span,
                    )
                    .with_label("expected `{`")
                    .with_help("put the steps of the arm between `{` and `}`"),
                );
                // Go on as if the `{` were there: the arm usually ends at the next `}`.
                self.enter()?;
                arms.push((guard, self.block_rest(span)?));
                if !self.eat_keyword(Keyword::Else) {
                    break;
                }
                if !self.eat_keyword(Keyword::If) {
                    otherwise = Some(self.block()?);
                    break;
                }
                continue;
            }
            arms.push((guard, self.block()?));
            if !self.eat_keyword(Keyword::Else) {
                break;
            }
            if !self.eat_keyword(Keyword::If) {
                otherwise = Some(self.block()?);
                break;
            }
        }
        Ok(StepKind::If { arms, otherwise })
    }

    fn match_step(&mut self) -> Parsed<StepKind> {
        self.advance();
        let scrutinee = self.expr()?;
        self.expect(Tok::LBrace, "`{`")?;
        self.enter()?;
        let mut arms = Vec::new();
        let result = (|| {
            while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
                let variant = self.ident("an enum value")?;
                self.expect(Tok::FatArrow, "`=>`")?;
                let body = self.block()?;
                arms.push(MatchArm { variant, body });
                self.eat(&Tok::Comma);
            }
            Ok(())
        })();
        self.leave();
        result?;
        self.expect(Tok::RBrace, "`}`")?;
        Ok(StepKind::Match { scrutinee, arms })
    }

    fn optional_record(&mut self) -> Parsed<Option<Record>> {
        if self.eat_keyword(Keyword::With) {
            Ok(Some(self.record()?))
        } else {
            Ok(None)
        }
    }

    /// `{ key: expr, ... }`; commas or newlines separate entries.
    fn record(&mut self) -> Parsed<Record> {
        let start = self.expect(Tok::LBrace, "`{`")?;
        self.enter()?;
        let mut entries = Vec::new();
        let result = (|| {
            while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
                let key = self.name("an attribute name")?;
                self.expect(Tok::Colon, "`:`")?;
                let value = self.expr()?;
                entries.push((key, value));
                self.eat(&Tok::Comma);
            }
            Ok(())
        })();
        self.leave();
        result?;
        self.expect(Tok::RBrace, "`}`")?;
        Ok(Record {
            entries,
            span: start.to(self.previous_span()),
        })
    }

    // ---- tests and invariants ----

    fn test(&mut self) -> Parsed<TestDecl> {
        let start = self.advance().span;
        let (name, _) = self.string("a test name string")?;
        self.expect(Tok::LBrace, "`{`")?;
        let mut statements = Vec::new();
        while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
            statements.push(self.test_statement()?);
        }
        self.expect(Tok::RBrace, "`}`")?;
        Ok(TestDecl {
            name,
            statements,
            span: start.to(self.previous_span()),
        })
    }

    fn test_statement(&mut self) -> Parsed<TestStatement> {
        let start = self.span();
        let kind = match self.peek().clone() {
            Tok::Keyword(Keyword::Flow) => {
                self.advance();
                TestStatementKind::Flow(self.ident("a flow name")?)
            }
            Tok::Keyword(Keyword::Principal) => {
                self.advance();
                let kind = self.ident("a principal kind")?;
                TestStatementKind::Principal {
                    kind,
                    record: self.record()?,
                }
            }
            Tok::Keyword(Keyword::Context) => {
                self.advance();
                TestStatementKind::Context(self.record()?)
            }
            Tok::Keyword(Keyword::Enroll) => {
                self.advance();
                TestStatementKind::Enroll(self.ident("a factor")?)
            }
            Tok::Keyword(Keyword::Approve) => {
                self.advance();
                let role = self.ident("a role")?;
                let approver = self.optional_approver()?;
                TestStatementKind::Approve { role, approver }
            }
            Tok::Ident(word) => {
                self.advance();
                match word.as_str() {
                    "session" => TestStatementKind::Session(self.record()?),
                    "switches" => TestStatementKind::Switches(self.record()?),
                    "expect" => {
                        let decision = self.decision_word()?;
                        let detail = if matches!(self.peek(), Tok::Str(_) | Tok::LBrace) {
                            Some(self.expr()?)
                        } else {
                            None
                        };
                        TestStatementKind::Expect { decision, detail }
                    }
                    "verify" => TestStatementKind::Verify(self.ident("a factor")?),
                    "fail" => TestStatementKind::Fail(self.ident("a factor")?),
                    "refuse" => {
                        let role = self.ident("a role")?;
                        let approver = self.optional_approver()?;
                        TestStatementKind::Refuse { role, approver }
                    }
                    "update" => self.test_update()?,
                    "at" => TestStatementKind::At(self.expr()?),
                    _ => {
                        self.position -= 1;
                        return Err(self.error_expected("a test statement"));
                    }
                }
            }
            _ => return Err(self.error_expected("a test statement")),
        };
        Ok(TestStatement {
            kind,
            span: start.to(self.previous_span()),
        })
    }

    fn optional_approver(&mut self) -> Parsed<Option<String>> {
        if self.eat_keyword(Keyword::By) {
            Ok(Some(self.string("an approver id string")?.0))
        } else {
            Ok(None)
        }
    }

    fn test_update(&mut self) -> Parsed<TestStatementKind> {
        let mut context = None;
        let mut principal = None;
        let mut switches = None;
        loop {
            // `principal KIND { ... }` after an update starts the next statement;
            // the update's own part is `principal { ... }`.
            let record_follows = matches!(
                self.tokens.get(self.position + 1).map(|t| &t.tok),
                Some(Tok::LBrace)
            );
            let at_switches = matches!(self.peek(), Tok::Ident(word) if word == "switches");
            if self.at_keyword(Keyword::Context) && record_follows && context.is_none() {
                self.advance();
                context = Some(self.record()?);
            } else if self.at_keyword(Keyword::Principal) && record_follows && principal.is_none() {
                self.advance();
                principal = Some(self.record()?);
            } else if at_switches && record_follows && switches.is_none() {
                self.advance();
                switches = Some(self.record()?);
            } else {
                break;
            }
        }
        if context.is_none() && principal.is_none() && switches.is_none() {
            return Err(
                self.error_expected("`context { ... }`, `principal { ... }` or `switches { ... }`")
            );
        }
        Ok(TestStatementKind::Update {
            context,
            principal,
            switches,
        })
    }

    /// `allow`, `deny`, `enroll`, `challenge` or `pending`.
    fn decision_word(&mut self) -> Parsed<Ident> {
        let span = self.span();
        let name = match self.peek() {
            Tok::Keyword(Keyword::Allow) => "allow",
            Tok::Keyword(Keyword::Deny) => "deny",
            Tok::Keyword(Keyword::Enroll) => "enroll",
            Tok::Ident(name) if name == "challenge" || name == "pending" => {
                if name == "challenge" {
                    "challenge"
                } else {
                    "pending"
                }
            }
            _ => {
                return Err(self.error_expected(
                    "a decision (`allow`, `deny`, `challenge`, `enroll`, `pending`)",
                ))
            }
        };
        self.advance();
        Ok(Ident {
            name: name.to_string(),
            span,
        })
    }

    fn invariant(&mut self) -> Parsed<InvariantDecl> {
        let start = self.advance().span;
        let (name, _) = self.string("an invariant name string")?;
        self.expect(Tok::LBrace, "`{`")?;
        self.expect_keyword(Keyword::Flow)?;
        let flow = self.ident("a flow name")?;
        let when = if self.eat_keyword(Keyword::When) {
            Some(self.expr()?)
        } else {
            None
        };
        let decision = self.decision_word()?;
        if !self.at_ident("implies") {
            return Err(self.error_expected("`implies`"));
        }
        self.advance();
        let implies = self.expr()?;
        self.expect(Tok::RBrace, "`}`")?;
        Ok(InvariantDecl {
            name,
            flow,
            when,
            decision,
            implies,
            span: start.to(self.previous_span()),
        })
    }

    // ---- expressions ----

    pub(crate) fn expr(&mut self) -> Parsed<Expr> {
        self.enter()?;
        let result = self.binary_expr(0);
        self.leave();
        result
    }

    fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        let span = left.span.to(right.span);
        Expr {
            kind: ExprKind::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
            span,
        }
    }

    /// Returns the binary operator at the current token with its precedence, lowest
    /// first: `??`, `or`, `and`, (`not`), comparisons and `in`, `+ -`.
    fn binary_op(&self) -> Option<(BinaryOp, u8)> {
        Some(match self.peek() {
            Tok::QuestionQuestion => (BinaryOp::Coalesce, 1),
            Tok::Keyword(Keyword::Or) => (BinaryOp::Or, 2),
            Tok::Keyword(Keyword::And) => (BinaryOp::And, 3),
            Tok::EqEq => (BinaryOp::Eq, 5),
            Tok::NotEq => (BinaryOp::Ne, 5),
            Tok::Lt => (BinaryOp::Lt, 5),
            Tok::Le => (BinaryOp::Le, 5),
            Tok::Gt => (BinaryOp::Gt, 5),
            Tok::Ge => (BinaryOp::Ge, 5),
            Tok::Keyword(Keyword::In) => (BinaryOp::In, 5),
            Tok::Plus => (BinaryOp::Add, 6),
            Tok::Minus => (BinaryOp::Sub, 6),
            _ => return None,
        })
    }

    /// Precedence climbing over operators that bind at least as tightly as
    /// `min`. `??` is right-associative, comparisons do not chain, and `not`
    /// (precedence 4) binds looser than comparisons: `not a == b` is
    /// `not (a == b)`.
    fn binary_expr(&mut self, min: u8) -> Parsed<Expr> {
        let mut left = if self.at_keyword(Keyword::Not) && min <= 4 {
            let start = self.advance().span;
            self.enter()?;
            let operand = self.binary_expr(4);
            self.leave();
            let operand = operand?;
            let span = start.to(operand.span);
            Expr {
                kind: ExprKind::Unary {
                    op: UnaryOp::Not,
                    operand: Box::new(operand),
                },
                span,
            }
        } else {
            self.unary()?
        };
        // Each operator folded into `left` deepens the tree by one level, so a
        // long flat chain counts against the nesting limit like parentheses.
        let mut folded = 0;
        let result = self.binary_chain(&mut left, min, &mut folded);
        for _ in 0..folded {
            self.leave();
        }
        result.map(|()| left)
    }

    fn binary_chain(&mut self, left: &mut Expr, min: u8, folded: &mut usize) -> Parsed<()> {
        while let Some((op, precedence)) = self.binary_op() {
            if precedence < min.max(1) {
                break;
            }
            self.enter()?;
            *folded += 1;
            self.advance();
            let right = match op {
                BinaryOp::Coalesce => {
                    self.enter()?;
                    let right = self.binary_expr(1);
                    self.leave();
                    right?
                }
                _ => self.binary_expr(precedence + 1)?,
            };
            let placeholder = Expr {
                kind: ExprKind::Error,
                span: left.span,
            };
            *left = Self::binary(op, std::mem::replace(left, placeholder), right);
            if precedence == 5 && matches!(self.binary_op(), Some((_, 5))) {
                let span = self.span();
                self.diagnostics.push(
                    Diagnostic::error("comparisons cannot be chained", span)
                        .with_label("second comparison")
                        .with_help("combine the comparisons with `and`"),
                );
                return Err(Reported);
            }
        }
        Ok(())
    }

    fn unary(&mut self) -> Parsed<Expr> {
        if self.at(&Tok::Minus) {
            let start = self.advance().span;
            self.enter()?;
            let operand = self.unary();
            self.leave();
            let operand = operand?;
            let span = start.to(operand.span);
            return Ok(Expr {
                kind: ExprKind::Unary {
                    op: UnaryOp::Neg,
                    operand: Box::new(operand),
                },
                span,
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Parsed<Expr> {
        let mut expr = self.primary()?;
        while self.eat(&Tok::Dot) {
            let name = self.ident("an attribute or method name")?;
            if self.at(&Tok::LParen) {
                let args = self.arguments()?;
                let span = expr.span.to(self.previous_span());
                expr = Expr {
                    kind: ExprKind::Method {
                        receiver: Box::new(expr),
                        method: name,
                        args,
                    },
                    span,
                };
            } else {
                let span = expr.span.to(name.span);
                expr = Expr {
                    kind: ExprKind::Attr {
                        base: Box::new(expr),
                        attr: name,
                    },
                    span,
                };
            }
        }
        Ok(expr)
    }

    fn arguments(&mut self) -> Parsed<Vec<Expr>> {
        self.expect(Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        while !self.at(&Tok::RParen) {
            args.push(self.expr()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        Ok(args)
    }

    fn primary(&mut self) -> Parsed<Expr> {
        let span = self.span();
        let kind = match self.peek().clone() {
            Tok::Int(value) => {
                self.advance();
                ExprKind::Int(value)
            }
            Tok::Duration(value) => {
                self.advance();
                ExprKind::Duration(value)
            }
            Tok::Str(value) => {
                self.advance();
                ExprKind::Str(value)
            }
            Tok::Keyword(Keyword::True) => {
                self.advance();
                ExprKind::Bool(true)
            }
            Tok::Keyword(Keyword::False) => {
                self.advance();
                ExprKind::Bool(false)
            }
            Tok::Keyword(Keyword::None) => {
                self.advance();
                ExprKind::None
            }
            Tok::Keyword(Keyword::Principal) => {
                self.advance();
                ExprKind::Name("principal".to_string())
            }
            Tok::Keyword(Keyword::Context) => {
                self.advance();
                ExprKind::Name("context".to_string())
            }
            Tok::Ident(name) => {
                self.advance();
                if self.at(&Tok::LParen) {
                    let args = self.arguments()?;
                    ExprKind::Call {
                        function: Ident { name, span },
                        args,
                    }
                } else {
                    ExprKind::Name(name)
                }
            }
            Tok::LParen => {
                self.advance();
                self.enter()?;
                let inner = self.binary_expr(0);
                self.leave();
                let inner = inner?;
                self.expect(Tok::RParen, "`)`")?;
                return Ok(Expr {
                    kind: inner.kind,
                    span: span.to(self.previous_span()),
                });
            }
            Tok::LBrace => {
                self.enter()?;
                let elements = self.set_elements();
                self.leave();
                ExprKind::Set(elements?)
            }
            _ => return Err(self.error_expected("an expression")),
        };
        Ok(Expr {
            kind,
            span: span.to(self.previous_span()),
        })
    }

    fn set_elements(&mut self) -> Parsed<Vec<Expr>> {
        self.advance();
        let mut elements = Vec::new();
        while !self.at(&Tok::RBrace) {
            elements.push(self.expr()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(Tok::RBrace, "`,` or `}`")?;
        Ok(elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::lex;
    use crate::span::FileId;

    fn parse_source(source: &str) -> (File, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let tokens = lex(FileId(0), source, &mut diagnostics);
        let file = parse(&tokens, &mut diagnostics);
        (file, diagnostics)
    }

    #[test]
    fn flow_with_every_step_parses() {
        let source = r#"
            flow f for human, service on login {
              deny "x" when context.risk >= 90
              require password attempts 5
              require any(totp, push) within 5m
              enroll all(totp)
              approve by hr, manager within 7d
              emit "review" with { after: 30d }
              if a { allow } else if b { deny "no" } else { run g }
              match principal.employment { employee => { allow }, contractor => { allow } }
              exception "glass" when c { allow with { ttl: 1h } }
              allow with { ttl: 8h, tool: context.tool }
            }"#;
        let (file, diagnostics) = parse_source(source);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let Item::Flow(flow) = &file.items[0] else {
            panic!("not a flow")
        };
        assert_eq!(flow.body.steps.len(), 10);
    }

    #[test]
    fn three_syntax_errors_are_all_reported() {
        let source = "flow a for human on login {\n deny when x\n allow\n}\n\
                      flow b for human on login {\n require\n allow\n}\n\
                      const = 5\n";
        let (_, diagnostics) = parse_source(source);
        assert_eq!(diagnostics.len(), 3, "{diagnostics:?}");
    }

    #[test]
    fn deep_parentheses_are_an_error_not_a_crash() {
        let depth = 100_000;
        let source = format!("const x = {}1{}", "(".repeat(depth), ")".repeat(depth));
        let (_, diagnostics) = parse_source(&source);
        assert_eq!(diagnostics.len(), 1);
        assert!(diagnostics[0].message.contains("nesting"));
    }

    #[test]
    fn chained_comparison_is_rejected() {
        let (_, diagnostics) = parse_source("const x = 1 < 2 < 3");
        assert_eq!(diagnostics[0].message, "comparisons cannot be chained");
    }
}
