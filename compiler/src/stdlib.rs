//! The standard library: `.flow` modules embedded at build time and
//! imported with `import std.NAME`.

/// Each module's name and source text.
pub const MODULES: &[(&str, &str)] = &[
    ("agent", include_str!("../../stdlib/agent.flow")),
    ("login", include_str!("../../stdlib/login.flow")),
    ("nist", include_str!("../../stdlib/nist.flow")),
    ("offboarding", include_str!("../../stdlib/offboarding.flow")),
    ("onboarding", include_str!("../../stdlib/onboarding.flow")),
    ("step_up", include_str!("../../stdlib/step_up.flow")),
];

/// Returns the source of standard library module `name`.
pub fn module(name: &str) -> Option<&'static str> {
    MODULES
        .iter()
        .find(|(module, _)| *module == name)
        .map(|(_, source)| *source)
}
