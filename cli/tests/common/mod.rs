//! Helpers shared by the binary's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli crate has a parent")
        .to_path_buf()
}

/// Runs the real `authflow` binary with `args` from the repository root.
pub fn authflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authflow"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("authflow runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
