//! Types and compile-time values of the checked program.

use std::fmt;

use authflow_runtime::factor::Factor;
use authflow_runtime::value::{format_cidr, format_duration, format_ip, format_time, Cidr};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Type {
    Bool,
    Int,
    String,
    Duration,
    Time,
    Ip,
    Cidr,
    Factor,
    /// A user enum, by index into the program's enums.
    Enum(u32),
    Set(Box<Type>),
    Optional(Box<Type>),
    /// The type of the `none` literal before it meets an optional.
    NoneLiteral,
    /// The type of `{}` before it meets a set type.
    EmptySet,
    /// Stands in after an error so that one mistake is reported once.
    Error,
}

impl Type {
    pub fn set_of(element: Type) -> Type {
        Type::Set(Box::new(element))
    }

    pub fn optional(inner: Type) -> Type {
        Type::Optional(Box::new(inner))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Type::Error)
    }

    pub fn element(&self) -> Option<&Type> {
        match self {
            Type::Set(element) => Some(element),
            _ => None,
        }
    }

    /// Tells whether a value of type `self` may be used where `expected` is required.
    pub fn fits(&self, expected: &Type) -> bool {
        match (self, expected) {
            (Type::Error, _) | (_, Type::Error) => true,
            (Type::EmptySet, Type::Set(_)) => true,
            (Type::NoneLiteral, Type::Optional(_)) => true,
            (Type::Set(a), Type::Set(b)) => a.fits(b),
            (actual, Type::Optional(inner)) => actual == expected || actual.fits(inner),
            (actual, expected) => actual == expected,
        }
    }

    /// Renders the type as written in source, with enum names from `enums`.
    pub fn display<'a>(&'a self, enums: &'a [String]) -> TypeDisplay<'a> {
        TypeDisplay { ty: self, enums }
    }
}

pub struct TypeDisplay<'a> {
    ty: &'a Type,
    enums: &'a [String],
}

impl fmt::Display for TypeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ty {
            Type::Bool => write!(f, "Bool"),
            Type::Int => write!(f, "Int"),
            Type::String => write!(f, "String"),
            Type::Duration => write!(f, "Duration"),
            Type::Time => write!(f, "Time"),
            Type::Ip => write!(f, "Ip"),
            Type::Cidr => write!(f, "Cidr"),
            Type::Factor => write!(f, "Factor"),
            Type::Enum(index) => {
                write!(
                    f,
                    "{}",
                    self.enums
                        .get(*index as usize)
                        .map(String::as_str)
                        .unwrap_or("?")
                )
            }
            Type::Set(element) => write!(f, "Set<{}>", element.display(self.enums)),
            Type::Optional(inner) => write!(f, "{}?", inner.display(self.enums)),
            Type::NoneLiteral => write!(f, "none"),
            Type::EmptySet => write!(f, "Set"),
            Type::Error => write!(f, "?"),
        }
    }
}

/// A value known at compile time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ConstValue {
    Bool(bool),
    Int(i64),
    Str(String),
    /// Microseconds.
    Duration(i64),
    /// Microseconds since the Unix epoch.
    Time(i64),
    Ip(u128),
    Cidr {
        network: u128,
        prefix: u8,
    },
    Factor(u8),
    Enum {
        enumeration: u32,
        variant: u32,
    },
    /// Elements sorted and without duplicates.
    Set(Vec<ConstValue>),
    None,
}

impl ConstValue {
    pub fn cidr(cidr: Cidr) -> ConstValue {
        ConstValue::Cidr {
            network: cidr.network,
            prefix: cidr.prefix,
        }
    }

    pub fn set(mut elements: Vec<ConstValue>) -> ConstValue {
        elements.sort();
        elements.dedup();
        ConstValue::Set(elements)
    }

    /// Renders the value as JSON input would carry it.
    pub fn to_json(&self, enums: &[Vec<String>]) -> serde_json::Value {
        use serde_json::Value;
        match self {
            ConstValue::Bool(value) => Value::Bool(*value),
            ConstValue::Int(value) => Value::from(*value),
            ConstValue::Str(value) => Value::String(value.clone()),
            ConstValue::Duration(value) => Value::String(format_duration(*value)),
            ConstValue::Time(value) => Value::String(format_time(*value)),
            ConstValue::Ip(value) => Value::String(format_ip(*value)),
            ConstValue::Cidr { network, prefix } => Value::String(format_cidr(Cidr {
                network: *network,
                prefix: *prefix,
            })),
            ConstValue::Factor(index) => Value::String(
                Factor::from_index(usize::from(*index))
                    .map(Factor::name)
                    .unwrap_or("?")
                    .to_string(),
            ),
            ConstValue::Enum {
                enumeration,
                variant,
            } => Value::String(
                enums
                    .get(*enumeration as usize)
                    .and_then(|variants| variants.get(*variant as usize))
                    .cloned()
                    .unwrap_or_default(),
            ),
            ConstValue::Set(elements) => {
                Value::Array(elements.iter().map(|e| e.to_json(enums)).collect())
            }
            ConstValue::None => Value::Null,
        }
    }
}
