//! The distributed roles of certfleet — api, issuer, scheduler, responder,
//! notifier —
//! each its own process on PostgreSQL and RabbitMQ: one typed configuration
//! (file + `CERTFLEET_*` environment + flags), start-up, a health check and a
//! graceful shutdown on SIGTERM. The binaries are thin mains over [`main`].

use std::process::ExitCode;

mod args;
mod config;
mod roles;
mod runtime;
mod vault;

pub use args::{
    ApiCli, BrokerArgs, CaArgs, CommonArgs, DnsArgs, GrpcArgs, IssuerArgs, IssuerCli, NotifierCli,
    ResponderArgs, ResponderCli, RoleCli, SchedulerArgs, SchedulerCli, VaultArgs,
};
pub use config::{LogFormat, Role, RoleConfig, Settings};
pub use roles::{
    create_admin_token, run_api, run_issuer, run_notifier, run_responder, run_scheduler,
};
pub use vault::{MasterKeySource, VaultKeySource, VaultProvider};

/// Parses the command line of role `C`, validates the configuration and runs
/// the role until SIGTERM/SIGINT. A configuration error exits with status 2.
pub async fn main<C: RoleCli>() -> ExitCode {
    let cli = C::parse();
    let config = match cli.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = runtime::init_tracing(&config) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    certfleet_acme::install_crypto_provider();
    let result = match config.role {
        Role::Api => run_api(config).await,
        Role::Issuer => run_issuer(config).await,
        Role::Scheduler => run_scheduler(config).await,
        Role::Responder => run_responder(config).await,
        Role::Notifier => run_notifier(config).await,
    };
    exit(result)
}

/// `certfleet-api`: runs the api, or with `--create-admin-token` prints a new
/// admin token and exits.
pub async fn api_main() -> ExitCode {
    use clap::Parser as _;
    let cli = ApiCli::parse();
    if !cli.create_admin_token {
        return main::<ApiCli>().await;
    }
    let config = match cli.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = runtime::init_tracing(&config) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    match create_admin_token(&config).await {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => exit(Err(error)),
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "stopped on error");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
