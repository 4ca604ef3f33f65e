//! The `certfleet` command line: clap definitions, the embedded server and the
//! client commands. `main.rs` only parses and runs.

mod args;
mod audit;
pub mod client;
mod commands;
mod dns;
pub mod embedded;
mod output;
mod tokens;
mod wait;

use std::process::ExitCode;

pub use args::{Cli, Command, ServerArgs};

/// Runs a parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Dev(server) => {
            embedded::run_cli(server.into_config(true), cli.log_format, &cli.log).await
        }
        Command::Server(server) => {
            embedded::run_cli(server.into_config(false), cli.log_format, &cli.log).await
        }
        Command::Migrate(migrate) => commands::migrate(migrate).await,
        Command::Org(org) => commands::org(&cli.client, org).await,
        Command::Token(token) => tokens::run(&cli.client, token).await,
        Command::Cert(cert) => commands::cert(&cli.client, cert).await,
        Command::Dns(dns) => dns::run(&cli.client, dns).await,
        Command::Audit(audit) => audit::run(&cli.client, audit).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
