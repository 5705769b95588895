//! A picture of the console, as a browser draws it: what docs/console.png is.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

/// Where the system's Chromium may be (`apt-get install chromium`).
const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// Save the console's pipeline page at `url` as a PNG at `path`: headless Chromium, a window
/// 1,280 pixels wide (the width the flow is laid out to fit), after the page has had ten seconds
/// of its own time to load the flow and its counts.
pub async fn screenshot(url: &str, path: &Path) -> Result<()> {
    let chromium = CHROMIUM
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| anyhow!("no Chromium at {CHROMIUM:?} (apt-get install chromium)"))?;
    let path = std::path::absolute(path)?;
    // Async: the page is served by this process while Chromium loads it.
    let out = tokio::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,960",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--screenshot={}", path.display()))
        .arg(format!("{}#pipeline", url.trim_end_matches('/')))
        .output()
        .await
        .with_context(|| format!("running {chromium}"))?;
    if !out.status.success() || !path.exists() {
        bail!(
            "{chromium} took no screenshot ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
