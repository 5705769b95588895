//! `herald trace`: follow one business transaction through every hop, from the stack's logs.

use std::path::PathBuf;

use anyhow::{bail, Result};
use herald_local::binaries;

/// Print the transaction of `id` (an event id or a correlation id) as a tree or a Mermaid
/// sequence diagram, from `logs` (default `.herald/logs/<stack>`).
pub fn trace(id: &str, stack: &str, format: &str, logs: Option<PathBuf>) -> Result<()> {
    use herald_local::trace;
    let dir = logs.unwrap_or_else(|| binaries::project_root().join(".herald/logs").join(stack));
    let found = trace::trace(&dir, id)?;
    match format {
        "tree" => print!("{}", trace::render_tree(&found)),
        "mermaid" => print!("{}", trace::render_mermaid(&found)),
        other => bail!("--format {other}: expected tree or mermaid"),
    }
    Ok(())
}
