//! Checking of constants and switches: types, and evaluation at compile time.

use super::*;

impl<'s, 'a> Checker<'s, 'a> {
    pub(super) fn constant(&mut self, index: u32) -> (ConstValue, Type) {
        match self.consts[index as usize].clone() {
            ConstState::Done(value, ty) => return (value, ty),
            ConstState::InProgress => {
                let decl = self.scope.consts[index as usize];
                self.error(
                    Diagnostic::error(
                        format!("constant `{}` refers to itself", decl.name.name),
                        decl.name.span,
                    )
                    .with_help("a constant cannot depend on its own value"),
                );
                self.consts[index as usize] = ConstState::Done(ConstValue::None, Type::Error);
                return (ConstValue::None, Type::Error);
            }
            ConstState::Pending => {}
        }
        self.consts[index as usize] = ConstState::InProgress;
        let decl = self.scope.consts[index as usize];
        let annotated = decl
            .ty
            .as_ref()
            .map(|t| resolve_type(t, self.scope, self.diagnostics));
        let expr = self.expr(&decl.value, annotated.as_ref(), &Env::Constant);
        let ty = match &annotated {
            Some(annotated) => {
                self.expect_type(&expr, annotated);
                annotated.clone()
            }
            None => expr.ty.clone(),
        };
        if matches!(ty, Type::EmptySet) {
            self.error(
                Diagnostic::error(
                    format!(
                        "the type of `{}` cannot be inferred from `{{}}`",
                        decl.name.name
                    ),
                    decl.value.span,
                )
                .with_help(format!(
                    "annotate it: `const {}: Set<String> = {{}}`",
                    decl.name.name
                )),
            );
        }
        let value = match (&expr.kind, &ty) {
            (TKind::Const(value), _) => value.clone(),
            (TKind::Error, _) | (_, Type::Error) => ConstValue::None,
            _ => {
                self.error(
                    Diagnostic::error(format!("constant `{}` is not computable at compile time", decl.name.name), decl.value.span)
                        .with_help("constants may use literals, other constants and `ip`, `cidr`, `time`; use a switch for run-time settings"),
                );
                ConstValue::None
            }
        };
        self.consts[index as usize] = ConstState::Done(value.clone(), ty.clone());
        (value, ty)
    }

    pub(super) fn switch(&mut self, decl: &ast::SwitchDecl) -> CheckedSwitch {
        let ty = resolve_type(&decl.ty, self.scope, self.diagnostics);
        if !matches!(
            ty,
            Type::Bool | Type::Int | Type::String | Type::Duration | Type::Time | Type::Error
        ) && !matches!(ty, Type::Enum(_))
        {
            self.error(
                Diagnostic::error(
                    format!("a switch cannot have type `{}`", self.show(&ty)),
                    decl.ty.span,
                )
                .with_help("switches are `Bool`, `Int`, `String`, `Duration`, `Time` or an enum"),
            );
        }
        let default = self.expr(&decl.default, Some(&ty), &Env::Constant);
        self.expect_type(&default, &ty);
        let value = match default.kind {
            TKind::Const(value) => value,
            TKind::Error => ConstValue::None,
            _ => {
                self.error(
                    Diagnostic::error(
                        "a switch default must be computable at compile time",
                        decl.default.span,
                    )
                    .with_help("use a literal or a constant"),
                );
                ConstValue::None
            }
        };
        CheckedSwitch {
            name: decl.name.name.clone(),
            ty,
            default: value,
        }
    }

    pub(super) fn expect_type(&mut self, expr: &TExpr, expected: &Type) -> bool {
        if expr.ty.fits(expected) {
            return true;
        }
        let message = format!(
            "expected `{}`, found `{}`",
            self.show(expected),
            self.show(&expr.ty)
        );
        self.error(
            Diagnostic::error(message, expr.span)
                .with_label(format!("this is `{}`", self.show(&expr.ty))),
        );
        false
    }
}
