//! Name resolution: collects the declarations of every file into one scope,
//! reports duplicates (pointing at both places), and resolves written types.

use std::collections::HashMap;

use crate::ast::{self, Item};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::span::Span;
use crate::types::Type;

/// Names that flows use for built-in values; no declaration may take them.
pub const BUILTIN_NAMES: &[&str] = &["session", "now"];

#[derive(Debug)]
pub struct EnumSymbol {
    pub name: String,
    pub variants: Vec<ast::Ident>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct FieldSymbol {
    pub name: String,
    pub ty: Type,
    pub span: Span,
}

#[derive(Debug)]
pub struct KindSymbol {
    pub name: String,
    pub fields: Vec<FieldSymbol>,
    pub span: Span,
}

impl KindSymbol {
    pub fn field(&self, name: &str) -> Option<&FieldSymbol> {
        self.fields.iter().find(|field| field.name == name)
    }
}

/// Every declaration in scope, borrowed from the ASTs.
#[derive(Default)]
pub struct Scope<'a> {
    pub policy: Option<&'a ast::PolicyDecl>,
    pub enums: Vec<EnumSymbol>,
    pub kinds: Vec<KindSymbol>,
    pub context: Vec<FieldSymbol>,
    pub context_span: Option<Span>,
    pub consts: Vec<&'a ast::ConstDecl>,
    pub switches: Vec<&'a ast::SwitchDecl>,
    pub flows: Vec<&'a ast::FlowDecl>,
    pub tests: Vec<&'a ast::TestDecl>,
    pub invariants: Vec<&'a ast::InvariantDecl>,
    pub enum_index: HashMap<String, u32>,
    pub kind_index: HashMap<String, u32>,
    pub const_index: HashMap<String, u32>,
    pub switch_index: HashMap<String, u32>,
    pub flow_index: HashMap<String, u32>,
}

/// Built-in attributes that every principal kind has.
pub fn builtin_principal_fields(span: Span) -> Vec<FieldSymbol> {
    vec![
        FieldSymbol {
            name: "id".to_string(),
            ty: Type::String,
            span,
        },
        FieldSymbol {
            name: "enrolled".to_string(),
            ty: Type::set_of(Type::Factor),
            span,
        },
    ]
}

impl<'a> Scope<'a> {
    pub fn enum_names(&self) -> Vec<String> {
        self.enums.iter().map(|e| e.name.clone()).collect()
    }
}

/// Collects declarations from all files, in order. Reports duplicate names
/// and resolves the types of principal and context attributes.
pub fn resolve<'a>(files: &[&'a ast::File], diagnostics: &mut Vec<Diagnostic>) -> Scope<'a> {
    let mut scope = Scope::default();
    let mut value_names: HashMap<String, Span> = HashMap::new();
    let mut principal_decls = Vec::new();
    let mut context_decls = Vec::new();
    let mut policy_span: Option<Span> = None;

    for file in files {
        for item in &file.items {
            match item {
                Item::Policy(policy) => {
                    if let Some(first) = policy_span {
                        diagnostics.push(
                            Diagnostic::error("`policy` is declared twice", policy.span)
                                .with_label("second declaration")
                                .with_secondary(first, "first declared here"),
                        );
                    } else {
                        policy_span = Some(policy.span);
                        scope.policy = Some(policy);
                    }
                }
                Item::Import(_) => {}
                Item::Enum(decl) => {
                    if let Some(&index) = scope.enum_index.get(&decl.name.name) {
                        duplicate(
                            diagnostics,
                            "enum",
                            &decl.name,
                            scope.enums[index as usize].span,
                        );
                        continue;
                    }
                    check_unique_idents(&decl.variants, "enum value", diagnostics);
                    // A set of enum values is one 64-bit word in the input record.
                    if decl.variants.len() > 64 {
                        diagnostics.push(
                            Diagnostic::error(
                                format!(
                                    "enum `{}` has {} values; the limit is 64",
                                    decl.name.name,
                                    decl.variants.len()
                                ),
                                decl.name.span,
                            )
                            .with_help("split the enum, or use `String` values"),
                        );
                    }
                    if decl.variants.is_empty() {
                        diagnostics.push(Diagnostic::error(
                            format!("enum `{}` has no values", decl.name.name),
                            decl.name.span,
                        ));
                    }
                    let index = scope.enums.len() as u32;
                    scope.enum_index.insert(decl.name.name.clone(), index);
                    scope.enums.push(EnumSymbol {
                        name: decl.name.name.clone(),
                        variants: decl.variants.clone(),
                        span: decl.name.span,
                    });
                }
                Item::Principal(decl) => principal_decls.push(decl),
                Item::Context(decl) => context_decls.push(decl),
                Item::Const(decl) => {
                    if claim_value_name(&decl.name, &mut value_names, diagnostics) {
                        scope
                            .const_index
                            .insert(decl.name.name.clone(), scope.consts.len() as u32);
                        scope.consts.push(decl);
                    }
                }
                Item::Switch(decl) => {
                    if claim_value_name(&decl.name, &mut value_names, diagnostics) {
                        scope
                            .switch_index
                            .insert(decl.name.name.clone(), scope.switches.len() as u32);
                        scope.switches.push(decl);
                    }
                }
                Item::Flow(decl) => {
                    if let Some(&index) = scope.flow_index.get(&decl.name.name) {
                        duplicate(
                            diagnostics,
                            "flow",
                            &decl.name,
                            scope.flows[index as usize].name.span,
                        );
                        continue;
                    }
                    scope
                        .flow_index
                        .insert(decl.name.name.clone(), scope.flows.len() as u32);
                    scope.flows.push(decl);
                }
                Item::Test(decl) => scope.tests.push(decl),
                Item::Invariant(decl) => scope.invariants.push(decl),
            }
        }
    }

    // Kinds are registered before any attribute type is resolved, and enums
    // before both, so declaration order between items does not matter.
    for decl in principal_decls {
        if let Some(&index) = scope.kind_index.get(&decl.kind.name) {
            duplicate(
                diagnostics,
                "principal kind",
                &decl.kind,
                scope.kinds[index as usize].span,
            );
            continue;
        }
        if decl.kind.name == "any" {
            diagnostics.push(
                Diagnostic::error("`any` cannot name a principal kind", decl.kind.span)
                    .with_help("`for any` already means every kind"),
            );
        }
        let mut fields = builtin_principal_fields(decl.kind.span);
        fields.extend(resolve_fields(&decl.fields, &scope, diagnostics));
        scope
            .kind_index
            .insert(decl.kind.name.clone(), scope.kinds.len() as u32);
        scope.kinds.push(KindSymbol {
            name: decl.kind.name.clone(),
            fields,
            span: decl.kind.span,
        });
    }
    let mut context_iter = context_decls.into_iter();
    if let Some(first) = context_iter.next() {
        scope.context = resolve_fields(&first.fields, &scope, diagnostics);
        scope.context_span = Some(first.span);
        for other in context_iter {
            diagnostics.push(
                Diagnostic::error("`context` is declared twice", other.span)
                    .with_label("second declaration")
                    .with_secondary(first.span, "first declared here")
                    .with_help("declare every context attribute in one `context` block"),
            );
        }
    }
    scope
}

fn duplicate(diagnostics: &mut Vec<Diagnostic>, what: &str, name: &ast::Ident, first: Span) {
    diagnostics.push(
        Diagnostic::error(
            format!("{what} `{}` is declared twice", name.name),
            name.span,
        )
        .with_label("second declaration")
        .with_secondary(first, "first declared here"),
    );
}

fn claim_value_name(
    name: &ast::Ident,
    taken: &mut HashMap<String, Span>,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    if BUILTIN_NAMES.contains(&name.name.as_str()) {
        diagnostics.push(
            Diagnostic::error(format!("`{}` is a built-in name", name.name), name.span)
                .with_help("choose another name"),
        );
        return false;
    }
    if let Some(first) = taken.get(&name.name) {
        duplicate(diagnostics, "name", name, *first);
        return false;
    }
    taken.insert(name.name.clone(), name.span);
    true
}

fn check_unique_idents(idents: &[ast::Ident], what: &str, diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for ident in idents {
        if let Some(first) = seen.get(ident.name.as_str()) {
            duplicate(diagnostics, what, ident, *first);
        } else {
            seen.insert(&ident.name, ident.span);
        }
    }
}

fn resolve_fields(
    fields: &[ast::Field],
    scope: &Scope<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<FieldSymbol> {
    let mut resolved: Vec<FieldSymbol> = Vec::new();
    for field in fields {
        if let Some(first) = resolved.iter().find(|f| f.name == field.name.name) {
            diagnostics.push(
                Diagnostic::error(
                    format!("attribute `{}` is declared twice", field.name.name),
                    field.name.span,
                )
                .with_label("second declaration")
                .with_secondary(first.span, "first declared here"),
            );
            continue;
        }
        if field.name.name == "id" || field.name.name == "enrolled" || field.name.name == "kind" {
            diagnostics.push(
                Diagnostic::error(format!("attribute `{}` is built in", field.name.name), field.name.span)
                    .with_help("every principal has `id: String` and `enrolled: Set<Factor>`; `kind` names the principal kind"),
            );
            continue;
        }
        let ty = resolve_type(&field.ty, scope, diagnostics);
        check_attribute_type(&ty, &field.ty, scope, diagnostics);
        resolved.push(FieldSymbol {
            name: field.name.name.clone(),
            ty,
            span: field.name.span,
        });
    }
    resolved
}

/// Request attributes must bind into a fixed-size record: sets hold strings,
/// factors or enum values, and optionals do not nest.
fn check_attribute_type(
    ty: &Type,
    written: &ast::TypeExpr,
    scope: &Scope<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let inner = match ty {
        Type::Optional(inner) => inner.as_ref(),
        other => other,
    };
    if let Type::Set(element) = inner {
        if !matches!(
            element.as_ref(),
            Type::String | Type::Factor | Type::Enum(_) | Type::Error
        ) {
            diagnostics.push(
                Diagnostic::error(
                    format!(
                        "request attributes cannot have type `{}`",
                        ty.display(&scope.enum_names())
                    ),
                    written.span,
                )
                .with_help("a request set holds `String`, `Factor` or enum values"),
            );
        }
    }
}

const TYPE_NAMES: &[&str] = &[
    "Bool", "Int", "String", "Duration", "Time", "Ip", "Cidr", "Factor", "Set",
];

/// Resolves a written type. Unknown names are reported with a did-you-mean.
pub fn resolve_type(
    written: &ast::TypeExpr,
    scope: &Scope<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Type {
    let name = written.name.name.as_str();
    let base = match name {
        "Bool" => Type::Bool,
        "Int" => Type::Int,
        "String" => Type::String,
        "Duration" => Type::Duration,
        "Time" => Type::Time,
        "Ip" => Type::Ip,
        "Cidr" => Type::Cidr,
        "Factor" => Type::Factor,
        "Set" => match &written.argument {
            Some(argument) => {
                if argument.optional {
                    diagnostics.push(
                        Diagnostic::error("set elements cannot be optional", argument.span)
                            .with_help("remove the `?`"),
                    );
                }
                let element = resolve_type(argument, scope, diagnostics);
                if matches!(element, Type::Set(_)) {
                    diagnostics.push(Diagnostic::error(
                        "sets of sets are not supported",
                        argument.span,
                    ));
                }
                Type::set_of(element)
            }
            None => {
                diagnostics.push(
                    Diagnostic::error("`Set` needs an element type", written.span)
                        .with_help("write `Set<String>`, `Set<Factor>` or a set of an enum"),
                );
                Type::Error
            }
        },
        _ => match scope.enum_index.get(name) {
            Some(&index) => Type::Enum(index),
            None => {
                let candidates: Vec<&str> = TYPE_NAMES
                    .iter()
                    .copied()
                    .chain(scope.enums.iter().map(|e| e.name.as_str()))
                    .collect();
                let mut diagnostic =
                    Diagnostic::error(format!("unknown type `{name}`"), written.name.span)
                        .with_label("not a type");
                if let Some(close) = did_you_mean(name, candidates) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                diagnostics.push(diagnostic);
                Type::Error
            }
        },
    };
    if written.argument.is_some() && name != "Set" {
        diagnostics.push(
            Diagnostic::error(
                format!("type `{name}` takes no type argument"),
                written.span,
            )
            .with_help("only `Set<T>` takes a type argument"),
        );
    }
    if written.optional {
        Type::optional(base)
    } else {
        base
    }
}
