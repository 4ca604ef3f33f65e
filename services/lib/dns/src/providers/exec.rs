//! The exec provider: runs an operator's program as
//! `PROGRAM present|cleanup FQDN. VALUE` (the same arguments as lego's exec
//! provider, so existing hook scripts work). Only programs the operator lists
//! in `dns_exec_programs` may run: a tenant must not choose what runs on a
//! worker. The program gets a clean environment (no worker secrets).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use crate::{
    DnsError, DnsPolicy, DnsProvider, ProviderConfig, ProviderKind, SettingError, Settings,
    TxtRecord,
};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug)]
pub struct Exec {
    program: PathBuf,
    timeout: Duration,
}

impl Exec {
    pub fn from_config(config: &ProviderConfig, policy: &DnsPolicy) -> Result<Exec, SettingError> {
        let settings = &config.settings;
        let field = Settings::field("program");
        let program = settings.required("program", "(the absolute path of the program to run)")?;
        let path = Path::new(program);
        if !path.is_absolute() {
            return Err(SettingError::new(
                &field,
                program,
                "is not an absolute path",
            ));
        }
        if !policy.exec_programs.iter().any(|allowed| allowed == path) {
            return Err(SettingError::new(
                &field,
                program,
                "is not among the programs the operator allows (dns_exec_programs)",
            ));
        }
        let timeout = settings.number("timeout_seconds", 60, 1, 600)?;
        Ok(Exec {
            program: path.to_owned(),
            timeout: Duration::from_secs(timeout),
        })
    }

    async fn run(&self, action: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let what = format!("{} {action} {}.", self.program.display(), record.fqdn);
        let unavailable = |detail: String| DnsError::Unavailable {
            provider: "exec",
            detail,
        };
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg(action)
            .arg(format!("{}.", record.fqdn))
            .arg(&record.value)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(zone) = &record.zone {
            command.env("CERTFLEET_DNS_ZONE", format!("{zone}."));
        }
        let mut child = command
            .spawn()
            .map_err(|error| unavailable(format!("cannot start {what}: {error}")))?;
        let mut stderr = child.stderr.take();
        let outcome = tokio::time::timeout(self.timeout, async {
            let mut text = String::new();
            if let Some(stderr) = stderr.as_mut() {
                // Read while it runs so a chatty program cannot block on a full pipe.
                let _ = stderr.take(64 * 1024).read_to_string(&mut text).await;
            }
            (child.wait().await, text)
        })
        .await;
        match outcome {
            Err(_) => Err(unavailable(format!(
                "{what} did not finish within {} s and was stopped",
                self.timeout.as_secs()
            ))),
            Ok((Err(error), _)) => Err(unavailable(format!("waiting for {what}: {error}"))),
            Ok((Ok(status), _)) if status.success() => Ok(()),
            Ok((Ok(status), text)) => {
                let said = last_lines(&text);
                let code = status.code().map_or_else(
                    || "was killed by a signal".to_owned(),
                    |code| format!("exited with {code}"),
                );
                Err(DnsError::Refused {
                    provider: "exec",
                    detail: if said.is_empty() {
                        format!("{what} {code}")
                    } else {
                        format!("{what} {code}: {said}")
                    },
                })
            }
        }
    }
}

/// The last few lines a program wrote, for an error message.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    let joined = lines[start..].join(" / ");
    match joined.char_indices().nth(400) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

#[async_trait::async_trait]
impl DnsProvider for Exec {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Exec
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.run("present", record).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.run("cleanup", record).await
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn config(program: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("program".to_owned(), program.to_owned())])
    }

    fn record() -> TxtRecord {
        TxtRecord {
            fqdn: "_acme-challenge.example.test".to_owned(),
            zone: Some("example.test".to_owned()),
            value: "abc".to_owned(),
        }
    }

    #[test]
    fn programs_must_be_allowed_and_absolute() {
        let none = DnsPolicy::default();
        let error =
            ProviderConfig::parse(ProviderKind::Exec, config("/bin/true"), &none).unwrap_err();
        assert_eq!(error.field, "settings.program");
        assert!(error.message.contains("dns_exec_programs"), "{error}");
        let error = ProviderConfig::parse(ProviderKind::Exec, config("true"), &none).unwrap_err();
        assert!(error.message.contains("absolute"), "{error}");
        let error = ProviderConfig::parse(ProviderKind::Exec, BTreeMap::new(), &none).unwrap_err();
        assert_eq!(error.field, "settings.program");
    }

    #[tokio::test]
    async fn runs_the_program_with_lego_arguments_and_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3 zone=$CERTFLEET_DNS_ZONE secret=${{CERTFLEET_SECRET:-none}}\" >> {}\n[ \"$3\" = bad ] && {{ echo 'no such zone' >&2; exit 3; }}\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let policy = DnsPolicy {
            exec_programs: vec![script.clone()],
        };
        let parsed = ProviderConfig::parse(
            ProviderKind::Exec,
            config(script.to_str().unwrap()),
            &policy,
        )
        .unwrap();
        let exec = Exec::from_config(&parsed, &policy).unwrap();
        exec.present(&record()).await.unwrap();
        exec.cleanup(&record()).await.unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls,
            "present _acme-challenge.example.test. abc zone=example.test. secret=none\n\
             cleanup _acme-challenge.example.test. abc zone=example.test. secret=none\n"
        );
        let refused = exec
            .present(&TxtRecord {
                value: "bad".to_owned(),
                ..record()
            })
            .await
            .unwrap_err();
        assert!(matches!(refused, DnsError::Refused { .. }), "{refused}");
        assert!(
            refused.to_string().contains("exited with 3: no such zone"),
            "{refused}"
        );
    }
}
