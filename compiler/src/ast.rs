//! Abstract syntax tree of one `.flow` file, with spans on every node.

use serde::Serialize;

use crate::span::Span;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, Serialize)]
pub enum Item {
    Policy(PolicyDecl),
    Import(Import),
    Enum(EnumDecl),
    Principal(PrincipalDecl),
    Context(ContextDecl),
    Const(ConstDecl),
    Switch(SwitchDecl),
    Flow(FlowDecl),
    Test(TestDecl),
    Invariant(InvariantDecl),
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyDecl {
    pub name: String,
    pub version: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum ImportTarget {
    /// `import std.NAME`
    Std(Ident),
    /// `import "relative/path.flow"`
    Path(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Import {
    pub target: ImportTarget,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnumDecl {
    pub name: Ident,
    pub variants: Vec<Ident>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Field {
    pub name: Ident,
    pub ty: TypeExpr,
}

#[derive(Clone, Debug, Serialize)]
pub struct PrincipalDecl {
    pub kind: Ident,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContextDecl {
    pub fields: Vec<Field>,
    pub span: Span,
}

/// A written type: `Int`, `Set<String>`, `Time?`.
#[derive(Clone, Debug, Serialize)]
pub struct TypeExpr {
    pub name: Ident,
    pub argument: Option<Box<TypeExpr>>,
    pub optional: bool,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConstDecl {
    pub name: Ident,
    pub ty: Option<TypeExpr>,
    pub value: Expr,
}

#[derive(Clone, Debug, Serialize)]
pub struct SwitchDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Expr,
}

#[derive(Clone, Debug, Serialize)]
pub enum Kinds {
    /// `for any`
    Any(Span),
    Listed(Vec<Ident>),
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowDecl {
    pub name: Ident,
    pub kinds: Kinds,
    /// The lifecycle event that routes to this flow; `None` for a flow that
    /// is only reached by name or by `run`.
    pub event: Option<Ident>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub steps: Vec<Step>,
    pub span: Span,
}

/// `{ key: expr, ... }` after `with`.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub entries: Vec<(Ident, Expr)>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum FactorSpec {
    One(Ident),
    Any(Vec<Ident>),
    All(Vec<Ident>),
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum StepKind {
    Allow {
        with: Option<Record>,
    },
    Deny {
        reason: String,
        when: Option<Expr>,
    },
    Require {
        factors: FactorSpec,
        within: Option<Expr>,
        attempts: Option<Expr>,
    },
    Enroll {
        factors: FactorSpec,
    },
    Approve {
        roles: Vec<Ident>,
        within: Option<Expr>,
    },
    Emit {
        name: String,
        with: Option<Record>,
    },
    If {
        arms: Vec<(Expr, Block)>,
        otherwise: Option<Block>,
    },
    Match {
        scrutinee: Expr,
        arms: Vec<MatchArm>,
    },
    Exception {
        name: String,
        when: Expr,
        body: Block,
    },
    Run {
        flow: Ident,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct MatchArm {
    pub variant: Ident,
    pub body: Block,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BinaryOp {
    Coalesce,
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
}

impl BinaryOp {
    pub fn text(self) -> &'static str {
        match self {
            BinaryOp::Coalesce => "??",
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Clone, Debug, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum ExprKind {
    Int(i64),
    Duration(i64),
    Str(String),
    Bool(bool),
    None,
    Name(String),
    Set(Vec<Expr>),
    /// `name(args)`: `ip(..)`, `cidr(..)`, `time(..)`, `hour(..)`, `weekday(..)`, `failures(..)`.
    Call {
        function: Ident,
        args: Vec<Expr>,
    },
    Attr {
        base: Box<Expr>,
        attr: Ident,
    },
    Method {
        receiver: Box<Expr>,
        method: Ident,
        args: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// Stands in for an expression that failed to parse, so checking can go on.
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestDecl {
    pub name: String,
    pub statements: Vec<TestStatement>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestStatement {
    pub kind: TestStatementKind,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum TestStatementKind {
    Flow(Ident),
    Principal {
        kind: Ident,
        record: Record,
    },
    Context(Record),
    Session(Record),
    Switches(Record),
    Expect {
        decision: Ident,
        detail: Option<Expr>,
    },
    Verify(Ident),
    Fail(Ident),
    Enroll(Ident),
    Approve {
        role: Ident,
        approver: Option<String>,
    },
    Refuse {
        role: Ident,
        approver: Option<String>,
    },
    Update {
        context: Option<Record>,
        principal: Option<Record>,
        switches: Option<Record>,
    },
    At(Expr),
}

#[derive(Clone, Debug, Serialize)]
pub struct InvariantDecl {
    pub name: String,
    pub flow: Ident,
    pub when: Option<Expr>,
    pub decision: Ident,
    pub implies: Expr,
    pub span: Span,
}
