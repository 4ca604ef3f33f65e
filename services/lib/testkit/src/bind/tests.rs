//! The BIND twin: its config and a real start.

use std::process::Stdio;

use anyhow::Context as _;
use tokio::process::Command;

use super::*;

#[tokio::test]
async fn serves_zones_extra_records_and_follows_cnames() -> anyhow::Result<()> {
    let bind = Bind::start_zones(vec![
        BindZone::new("example.test")
            .record("_acme-challenge.cname.example.test. CNAME _acme-challenge.x.delegated.test."),
        BindZone::new("delegated.test").record("_acme-challenge.x.delegated.test. TXT \"given\""),
    ])
    .await?;
    assert_eq!(
        bind.txt_values("_acme-challenge.cname.example.test")
            .await?,
        ["given"]
    );
    assert_eq!(
        bind.txt_records().await?,
        [r#"_acme-challenge.x.delegated.test TXT "given""#]
    );
    // Given at the start, so not left behind by a test.
    assert!(bind.acme_challenge_records().await?.is_empty());
    let server = bind.addr().port().to_string();
    let update = format!(
        "server 127.0.0.1 {server}\nzone delegated.test\nupdate add y.delegated.test. 60 TXT \"added\"\nsend\n"
    );
    nsupdate(&bind, &update).await?;
    assert_eq!(
        bind.acme_challenge_records().await?,
        [r#"y.delegated.test TXT "added""#]
    );
    assert!(bind.txt_values("nothing.example.test").await?.is_empty());
    if runs_as_root(Path::new("/proc/self")) {
        let pid = bind.named.id().context("named's pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        assert!(
            status
                .lines()
                .any(|line| line.starts_with("Uid:") && line.contains("65534")),
            "{status}"
        );
    }
    Ok(())
}

async fn nsupdate(bind: &Bind, script: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let key = format!("hmac-sha256:{UPDATE_KEY}:{}", bind.tsig_secret_base64());
    let mut child = Command::new(find_program("nsupdate")?)
        .args(["-y", &key])
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("nsupdate's stdin")?;
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "nsupdate failed ({status})");
    Ok(())
}

#[test]
fn zone_files_hold_soa_ns_and_extra_records() {
    let zone =
        BindZone::new("Example.Test.").record("_acme-challenge.example.test. CNAME x.other.test.");
    let text = zone.zone_file();
    assert!(
        text.contains("example.test. IN SOA ns1.example.test."),
        "{text}"
    );
    assert!(text.contains("ns1.example.test. IN A 127.0.0.1"), "{text}");
    assert!(text.ends_with("CNAME x.other.test.\n"), "{text}");
}

#[test]
fn only_updatable_zones_get_an_update_policy() {
    let zones = [BindZone::new("a.test"), BindZone::new("b.test").read_only()];
    let config = named_conf(Path::new("/tmp/x"), 5300, &zones, "c2VjcmV0", "c2VjcmV0");
    assert!(config.contains("zone \"a.test\" { type primary; file \"a.test.zone\"; update-policy { grant certfleet-update zonesub TXT; }; };"), "{config}");
    assert!(
        config.contains("zone \"b.test\" { type primary; file \"b.test.zone\";  };"),
        "{config}"
    );
    assert!(
        config.contains("listen-on port 5300 { 127.0.0.1; };"),
        "{config}"
    );
}
