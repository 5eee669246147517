//! Running the built `psinet` binary as an operator does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// Runs psinet with `files` (global options such as `--db` and `--stats-db`, each with its
/// path) before `args`; the environment's `PSINET_DB` and `PSINET_STATS_DB` are not passed on.
pub fn psinet(files: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_psinet"));
    for (option, path) in files {
        cmd.arg(option).arg(path);
    }
    cmd.args(args)
        .env_remove("PSINET_DB")
        .env_remove("PSINET_STATS_DB")
        .output()
        .unwrap()
}

/// A run's (stdout, stderr); fails the test, with its stderr, unless it succeeded.
pub fn succeeded(args: &[&str], out: Output) -> (String, String) {
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "psinet {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// Every file below `dir`, recursively, appended to `out`.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}
