//! The `certfleet` command: the embedded server (`dev`, `server`), migrations,
//! and the operator CLI over gRPC.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = certfleet_cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(certfleet_cli::run(cli))
}
