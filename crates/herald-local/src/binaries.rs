//! Finding (and building) the function binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The project root: the nearest ancestor of the current directory holding `template.yaml` and
/// `Cargo.toml`, or the workspace this crate was built in.
pub fn project_root() -> PathBuf {
    if let Some(root) = find_project_root() {
        return root;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The project around the current directory: the nearest ancestor holding both `template.yaml`
/// and `Cargo.toml`; none outside a project (the `herald` command then says so rather than
/// falling back to where it was built).
pub fn find_project_root() -> Option<PathBuf> {
    let dir = std::env::current_dir().ok()?;
    dir.ancestors()
        .find(|candidate| {
            candidate.join("template.yaml").exists() && candidate.join("Cargo.toml").exists()
        })
        .map(Path::to_path_buf)
}

/// Cargo's target directory for the project (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Where binaries of a profile land.
pub fn bin_dir(root: &Path, release: bool) -> PathBuf {
    target_dir(root).join(if release { "release" } else { "debug" })
}

/// Build `binaries` with cargo (incremental: fast when nothing changed). `quiet` hides cargo's output.
pub fn build(root: &Path, binaries: &[String], release: bool, quiet: bool) -> Result<PathBuf> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root).args(["build", "--workspace"]);
    if release {
        command.arg("--release");
    }
    for binary in binaries {
        command.args(["--bin", binary]);
    }
    if quiet {
        command.arg("--quiet");
    }
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the function binaries failed ({status})");
    }
    let dir = bin_dir(root, release);
    for binary in binaries {
        if !dir.join(binary).exists() {
            bail!("{} was not built", dir.join(binary).display());
        }
    }
    Ok(dir)
}
