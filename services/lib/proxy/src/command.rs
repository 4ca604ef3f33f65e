//! Running a proxy's own command line (`nginx -t`, `nginx -s reload`) with a
//! timeout, keeping what it printed for the error message.

use std::path::Path;
use std::process::Stdio;

use crate::{COMMAND_TIMEOUT, ProxyError};

/// Most of a command's output that goes into an error message.
const MAX_OUTPUT: usize = 2000;

pub(crate) struct Finished {
    /// The command line as run, for error messages.
    pub(crate) command: String,
    pub(crate) success: bool,
    /// Trimmed stderr followed by stdout, shortened.
    pub(crate) output: String,
}

fn describe(program: &Path, args: &[String]) -> String {
    let mut text = program.display().to_string();
    for arg in args {
        text.push(' ');
        text.push_str(arg);
    }
    text
}

/// Runs `program args`; an error only when it could not run or timed out.
pub(crate) async fn run(program: &Path, args: &[String]) -> Result<Finished, ProxyError> {
    let command_text = describe(program, args);
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| ProxyError::Command {
            command: command_text.clone(),
            detail: error.to_string(),
        })?;
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_elapsed| ProxyError::Command {
            command: command_text.clone(),
            detail: format!("did not finish within {} s", COMMAND_TIMEOUT.as_secs()),
        })?
        .map_err(|error| ProxyError::Command {
            command: command_text.clone(),
            detail: error.to_string(),
        })?;
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    if text.is_empty() {
        text = format!("exited with {}", output.status);
    }
    Ok(Finished {
        command: command_text,
        success: output.status.success(),
        output: shorten(text),
    })
}

fn shorten(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" …");
    }
    text
}
