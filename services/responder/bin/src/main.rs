//! `certfleet-responder`: the HTTP-01 responder of the distributed mode (see `--help`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    certfleet_roles::main::<certfleet_roles::ResponderCli>().await
}
