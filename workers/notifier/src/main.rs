//! `certfleet-notifier`: email and webhook notifications of the distributed mode (see `--help`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    certfleet_roles::main::<certfleet_roles::NotifierCli>().await
}
