//! `certfleet-api`: the gRPC front door of the distributed mode (see `--help`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    certfleet_roles::api_main().await
}
