//! `herald schema check`: released event schemas stay backward compatible, and the sample events
//! match their schemas.

use std::path::Path;

use anyhow::{bail, Result};

/// Check the schemas in `dir`; with `update`, record them as released when the check passes.
pub fn schema_check(dir: &Path, update: bool) -> Result<()> {
    use herald_local::schemas;
    let root = crate::common::project()?;
    let dir = root.join(dir);
    let current = schemas::load(&dir)?;
    let released = schemas::load_lock(&dir)?;
    let breaking = schemas::breaking_changes(&released, &current);
    let mut invalid = Vec::new();
    let events_dir = dir.parent().unwrap_or(&root).to_path_buf();
    let samples = schemas::sample_events(&events_dir)?;
    for (file, event) in &samples {
        if let Err(errors) = schemas::validate_event(&current, event) {
            invalid.extend(errors.into_iter().map(|e| format!("{file}: {e}")));
        }
    }
    for line in breaking.iter().chain(&invalid) {
        println!("  ✗ {line}");
    }
    if !breaking.is_empty() || !invalid.is_empty() {
        bail!(
            "{} breaking schema changes, {} sample events that do not match their schema",
            breaking.len(),
            invalid.len()
        );
    }
    let declared = if events_dir.join(schemas::SAMPLES_FILE).exists() {
        format!("{} sample events match their schemas", samples.len())
    } else {
        format!(
            "no samples checked: {} declares none",
            events_dir.join(schemas::SAMPLES_FILE).display()
        )
    };
    println!(
        "{} schemas ({} released) are backward compatible; {declared}",
        current.len(),
        released.len(),
    );
    if update {
        schemas::write_lock(&dir, &current)?;
        println!(
            "recorded {} as released",
            dir.join(schemas::LOCK_FILE).display()
        );
    } else if released != current {
        println!("compatible changes not yet recorded: run `herald schema check --update` to release them");
    }
    Ok(())
}
