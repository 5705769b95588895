//! What every command shares about its answer: text or JSON on stdout, and exit codes that tell a
//! script "failed" from "done, but something was refused".

use std::fmt;

use clap::ValueEnum;
use serde_json::Value;

/// How a command prints what it found or did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text (tables, trees).
    #[default]
    Text,
    /// One JSON document on stdout, with stable camelCase field names; progress and errors go to
    /// stderr.
    Json,
}

impl Output {
    /// Whether JSON was asked for.
    pub fn is_json(self) -> bool {
        self == Output::Json
    }
}

/// Print `value` as one JSON document.
pub fn print_json(value: &Value) {
    println!("{value}");
}

/// The command ran to the end, but some of its work was refused or left behind (events the
/// producer rejected, letters a redrive could not send back): exit code 2, not 1.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Exit codes, as `herald --help` documents them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failed: bad arguments, no project or stack found, an AWS or emulator error
  2  done, but something was refused, left behind or found wrong: `send` with a rejected event,
     `dlq redrive` with letters it could not send back, `doctor` with a problem";

/// The exit code of a command's result.
pub fn exit_code(result: &anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(err) if err.downcast_ref::<Refused>().is_some() => 2,
        Err(_) => 1,
    }
}
