//! A Python virtualenv herald installs for itself (moto, LocalStack) under the user's cache
//! directory, from requirements built into herald.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Create a virtualenv with `python`, write `files` into it (`requirements.txt` among them, which
/// is installed) and move it to `dir` once complete, so a half-finished install (or two at once)
/// never looks installed. `what` is printed while it installs.
pub(crate) fn install(dir: &Path, python: &str, files: &[(&str, &str)], what: &str) -> Result<()> {
    let parent = dir.parent().context("the cache directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let building = parent.join(format!(
        ".{}-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    eprintln!("installing {what} into {}", dir.display());
    let run = |program: &Path, args: &[&str]| -> Result<()> {
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", program.display()))?;
        if !status.success() {
            bail!("{} {} failed ({status})", program.display(), args.join(" "));
        }
        Ok(())
    };
    let venv = building.display().to_string();
    run(Path::new(python), &["-m", "venv", &venv])?;
    for (name, text) in files {
        std::fs::write(building.join(name), text)?;
    }
    let requirements = building.join("requirements.txt").display().to_string();
    run(
        &building.join("bin/pip"),
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            &requirements,
        ],
    )?;
    // Only `bin/python` is used, never the scripts whose first line names the build path: the
    // virtualenv works where it is moved to. Moved whole, it appears complete or not at all.
    if let Err(err) = std::fs::rename(&building, dir) {
        let _ = std::fs::remove_dir_all(&building);
        if !dir.join("requirements.txt").exists() {
            return Err(err).with_context(|| format!("moving {what} to {}", dir.display()));
        }
    }
    Ok(())
}
