//! The `certfleet` command line: clap definitions, the embedded server and the
//! client commands. `main.rs` only parses and runs.

pub mod archive;
mod args;
mod audit;
pub mod backup;
pub mod client;
mod commands;
mod dns;
mod eab;
pub mod embedded;
mod notify;
mod output;
pub mod renew;
mod tokens;
pub mod vault;
mod wait;

use std::process::ExitCode;

pub use args::{Cli, Command, ServerArgs};

/// Runs a parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Dev(server) => match server.into_config(true) {
            Ok(config) => embedded::run_cli(config, cli.log_format, &cli.log).await,
            Err(error) => Err(error),
        },
        Command::Server(server) => match server.into_config(false) {
            Ok(config) => embedded::run_cli(config, cli.log_format, &cli.log).await,
            Err(error) => Err(error),
        },
        Command::Migrate(migrate) => commands::migrate(migrate).await,
        Command::Org(org) => commands::org(&cli.client, org).await,
        Command::Token(token) => tokens::run(&cli.client, token).await,
        Command::Cert(cert) => commands::cert(&cli.client, cert).await,
        Command::Dns(dns) => dns::run(&cli.client, dns).await,
        Command::Notify(notify) => notify::run(&cli.client, notify).await,
        Command::Audit(audit) => audit::run(&cli.client, audit).await,
        Command::Vault(vault) => vault::run(vault).await,
        Command::RenewDue(args) => renew::run(args).await,
        Command::Backup(backup) => backup::run(backup).await,
        Command::Restore(restore) => backup::restore_command(restore).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
