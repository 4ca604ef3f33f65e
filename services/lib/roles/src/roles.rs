//! The roles: each connects, starts its work, runs until SIGTERM/SIGINT
//! and then shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use certfleet_acme::{AcmeConfig, Issuer, IssuerPool, Scheduler, SchedulerConfig};
use certfleet_api::ApiState;
use certfleet_bus::rabbitmq::{
    DurableEvents, JobQueue, RabbitConfig, RabbitEvents, RabbitJobs, RabbitPublisher,
};
use certfleet_bus::{JobDelivery, JobSource, OutboxRelay};
use certfleet_core::SystemClock;
use certfleet_notify::{Notifier, NotifierConfig};
use certfleet_store::Store;
use tokio::sync::watch;

use crate::config::RoleConfig;
use crate::runtime::{
    connect_broker, finish_relay, load_grpc_tls, open_store, open_vault, rabbit_config,
    serve_health, stop_on_signal, stopped,
};

/// How long jobs in flight may run on after SIGTERM.
const ISSUER_GRACE: Duration = Duration::from_secs(30);
/// How often the issuer looks for versions without an archive copy.
const BACKUP_INTERVAL: Duration = Duration::from_secs(10);
/// How often an issuer looks for ARI windows due to be fetched again.
const RENEWAL_INFO_INTERVAL: Duration = Duration::from_secs(30);
/// How often an idle relay looks at the outbox (it is woken after commits).
const RELAY_POLL: Duration = Duration::from_secs(1);

/// The gRPC API: ApiState over PostgreSQL, an outbox relay to RabbitMQ, and
/// watch streams fed from `certfleet.events`. Migrates the database first.
pub async fn run_api(config: RoleConfig) -> anyhow::Result<()> {
    let stop = stop_on_signal()?;
    let tls = match &config.grpc_tls {
        Some((certificate, key)) => Some(load_grpc_tls(
            certificate,
            key,
            config.grpc_tls_client_ca.as_deref(),
        )?),
        None => {
            if !config.grpc_listen.ip().is_loopback() {
                tracing::warn!(address = %config.grpc_listen, "the gRPC API is plaintext on a non-loopback address: set grpc_tls_cert and grpc_tls_key unless the network is private");
            }
            None
        }
    };
    let store = open_store(&config, true).await?;
    let vault = open_vault(&config).await?;
    let rabbit = rabbit_config(&config)?;
    let (publisher, relay) = connect_relay(&config, &store, &rabbit).await?;
    let events = connect_broker("subscribing to certfleet.events", || {
        RabbitEvents::start(rabbit.clone())
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("binding grpc_listen {}", config.grpc_listen))?;
    // Healthy once everything is connected and bound.
    let health = serve_health(config.health_listen, stop.clone()).await?;
    let relay_task = tokio::spawn(relay.clone().run());
    let api = ApiState {
        store,
        vault,
        relay: relay.clone(),
        events: Arc::new(events),
        clock: Arc::new(SystemClock),
        directory_url: config.ca_directory.clone(),
        dns: config.dns.clone(),
    };
    tracing::info!(instance = %config.instance_id, address = %config.grpc_listen, "certfleet-api running");
    let served = certfleet_api::serve_with_tls(api, listener, tls, stopped(stop)).await;
    finish_relay(&relay, relay_task).await;
    publisher.close().await;
    if let Some(health) = health {
        let _ = health.await;
    }
    served.context("grpc api")
}

/// Creates an admin token in the database (migrating it first) and returns it.
pub async fn create_admin_token(config: &RoleConfig) -> anyhow::Result<String> {
    let store = open_store(config, true).await?;
    certfleet_api::create_admin_token(&store, &SystemClock, "certfleet-api --create-admin-token")
        .await
        .context("creating the admin token")
}

/// The process's RabbitMQ publisher and the outbox relay that feeds it.
async fn connect_relay(
    config: &RoleConfig,
    store: &Store,
    rabbit: &RabbitConfig,
) -> anyhow::Result<(Arc<RabbitPublisher>, OutboxRelay)> {
    let publisher = Arc::new(
        connect_broker("connecting to rabbitmq", || {
            RabbitPublisher::connect(rabbit.clone())
        })
        .await?,
    );
    let relay = OutboxRelay::new(store.clone(), publisher.clone(), RELAY_POLL)
        .with_owner(config.instance_id.clone());
    Ok((publisher, relay))
}

/// The ACME worker: jobs from both queues into the issuer pool; on stop, no
/// new jobs, the ones in flight finish (bounded), leases are released.
pub async fn run_issuer(config: RoleConfig) -> anyhow::Result<()> {
    // The CA settings are checked before connecting anywhere.
    let mut acme = AcmeConfig {
        self_check: config.self_check.clone(),
        dns: config.dns.clone(),
        ..AcmeConfig::new(config.ca_directory.clone()).with_ca_root(config.ca_root.clone())
    };
    acme.configure_issuers(
        &config.fallback_cas,
        &config.fallback_ca_roots,
        &config.rate_limits,
        ["fallback_cas", "fallback_ca_roots", "rate_limits"],
    )
    .map_err(anyhow::Error::msg)?;
    let stop = stop_on_signal()?;
    let store = open_store(&config, false).await?;
    let vault = open_vault(&config).await?;
    let rabbit = rabbit_config(&config)?;
    let (publisher, relay) = connect_relay(&config, &store, &rabbit).await?;
    let mut jobs = connect_broker("consuming the job queues", || {
        RabbitJobs::connect(rabbit.clone(), &JobQueue::ALL, config.issuer_concurrency)
    })
    .await?;
    let relay_task = tokio::spawn(relay.clone().run());
    let health = serve_health(config.health_listen, stop.clone()).await?;
    let owner = config.instance_id.clone();
    let issuer = Issuer::new(
        store.clone(),
        vault,
        relay.clone(),
        Arc::new(SystemClock),
        acme,
        owner.clone(),
    );
    let renewal_info = {
        let mut stopped = stop.clone();
        tokio::spawn(
            issuer
                .clone()
                .run_renewal_info_until(RENEWAL_INFO_INTERVAL, async move {
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                }),
        )
    };
    let backups = match &config.archive {
        Some(archive) => {
            let archive = certfleet_archive::Archive::open(archive)
                .map_err(|error| anyhow::anyhow!("archive_location: {error}"))?;
            tracing::info!(archive = %archive.describe(), "copies of issued certificates go to the archive");
            let worker = certfleet_acme::BackupWorker::new(
                store.clone(),
                archive,
                Arc::new(SystemClock),
                owner.clone(),
            );
            let mut stopped = stop.clone();
            Some(tokio::spawn(worker.run_until(
                BACKUP_INTERVAL,
                async move {
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                },
            )))
        }
        None => {
            tracing::warn!(
                "no archive_location: no copies of issued certificates are kept outside the database"
            );
            None
        }
    };
    tracing::info!(instance = %owner, concurrency = config.issuer_concurrency, "certfleet-issuer running");
    let mut source = UntilStopped {
        jobs: &mut jobs,
        stop,
    };
    let unfinished = IssuerPool::run_and_drain(
        issuer,
        &mut source,
        usize::from(config.issuer_concurrency),
        ISSUER_GRACE,
    )
    .await;
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "jobs still running after the grace period; they go back to the queue"
        );
    }
    let _ = renewal_info.await;
    if let Some(backups) = backups {
        let _ = backups.await;
    }
    // Leases first, then the connection: a job redelivered to another issuer
    // must find its certificate free.
    release_leases(&store, &owner).await;
    finish_relay(&relay, relay_task).await;
    jobs.close().await;
    publisher.close().await;
    if let Some(health) = health {
        let _ = health.await;
    }
    Ok(())
}

async fn release_leases(store: &Store, owner: &str) {
    match store.release_all_leases_of(owner).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "released the leases of unfinished jobs"),
        Err(error) => {
            tracing::warn!(%error, "cannot release leases; they expire by themselves")
        }
    }
}

/// The job queues until the stop flag is set; then the consumers are
/// cancelled, and prefetched jobs go back to the queue when the connection closes.
struct UntilStopped<'a> {
    jobs: &'a mut RabbitJobs,
    stop: watch::Receiver<bool>,
}

#[async_trait]
impl JobSource for UntilStopped<'_> {
    async fn next(&mut self) -> Option<JobDelivery> {
        let next = if *self.stop.borrow() {
            None
        } else {
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|stopped| *stopped) => None,
                delivery = JobSource::next(&mut *self.jobs) => Some(delivery),
            }
        };
        match next {
            Some(delivery) => delivery,
            None => {
                self.jobs.stop().await;
                None
            }
        }
    }
}

/// The scheduler: passes at the interval (only the holder of the "scheduler"
/// lease does work), plus a relay for what the passes queue. A pass in
/// progress is finished before the process stops.
pub async fn run_scheduler(config: RoleConfig) -> anyhow::Result<()> {
    let stop = stop_on_signal()?;
    let store = open_store(&config, false).await?;
    let rabbit = rabbit_config(&config)?;
    let (publisher, relay) = connect_relay(&config, &store, &rabbit).await?;
    let relay_task = tokio::spawn(relay.clone().run());
    let health = serve_health(config.health_listen, stop.clone()).await?;
    let scheduler = Scheduler::new(
        store,
        relay.clone(),
        Arc::new(SystemClock),
        SchedulerConfig {
            interval: config.scheduler_interval,
            owner: config.instance_id.clone(),
        },
    );
    // Every scheduler (active or standby) records dead-lettered jobs: each
    // dead letter goes to one of them.
    let dead_letters = tokio::spawn(record_dead_letters(
        scheduler.clone(),
        RabbitJobs::new(
            rabbit
                .clone()
                .with_connection_name(format!("{} dead letters", rabbit.connection_name)),
            &[JobQueue::Dead],
            DEAD_LETTER_PREFETCH,
        ),
        stop.clone(),
    ));
    tracing::info!(instance = %config.instance_id, interval_seconds = config.scheduler_interval.as_secs(), "certfleet-scheduler running");
    // Stops between passes and gives the lease up, so a standby takes over at once.
    let mut stopping = stop.clone();
    scheduler
        .run_until(async move {
            let _ = stopping.wait_for(|stopped| *stopped).await;
        })
        .await;
    let _ = dead_letters.await;
    finish_relay(&relay, relay_task).await;
    publisher.close().await;
    if let Some(health) = health {
        let _ = health.await;
    }
    Ok(())
}

/// Dead letters a scheduler holds unacked at once.
const DEAD_LETTER_PREFETCH: u16 = 8;

/// Records each dead-lettered job on its certificate, then acks it. While the
/// database cannot be written, the same dead letter is tried again with a
/// growing pause; at stop, an unrecorded one stays in the queue.
async fn record_dead_letters(
    scheduler: Scheduler,
    mut jobs: RabbitJobs,
    stop: watch::Receiver<bool>,
) {
    let mut until_stopped = UntilStopped {
        jobs: &mut jobs,
        stop: stop.clone(),
    };
    while let Some(delivery) = until_stopped.next().await {
        let mut pause = Duration::from_millis(500);
        loop {
            match scheduler
                .record_dead_job(&delivery.job, delivery.death())
                .await
            {
                Ok(_) => {
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(%error, "cannot ack a recorded dead letter; it comes back and is recorded again");
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(certificate_id = %delivery.job.certificate_id, %error, "cannot record a dead-lettered job yet");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stopped(stop.clone()) => {
                            // Unsettled: back to the queue when the connection closes.
                            drop(delivery);
                            jobs.close().await;
                            return;
                        }
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
    jobs.close().await;
}

/// The notifier: its own durable queue of `expiring` and `failed` events,
/// and the delivery of what is due.
pub async fn run_notifier(config: RoleConfig) -> anyhow::Result<()> {
    let stop = stop_on_signal()?;
    let store = open_store(&config, false).await?;
    let vault = open_vault(&config).await?;
    let rabbit = rabbit_config(&config)?;
    let health = serve_health(config.health_listen, stop.clone()).await?;
    let notifier = Notifier::new(
        store,
        vault,
        Arc::new(SystemClock),
        NotifierConfig::default(),
    );
    let queue = DurableEvents::new(
        rabbit
            .clone()
            .with_connection_name(format!("{} notifier", rabbit.connection_name)),
        NOTIFIER_QUEUE,
        &["certificate.expiring", "certificate.failed"],
    );
    connect_broker("declare the notifier queue", || queue.declare()).await?;
    let accepting = {
        let notifier = notifier.clone();
        tokio::spawn(queue.run(
            move |event| {
                let notifier = notifier.clone();
                async move {
                    notifier
                        .accept(&event)
                        .await
                        .map(|_| ())
                        .map_err(|error| error.to_string())
                }
            },
            stop.clone(),
        ))
    };
    tracing::info!(instance = %config.instance_id, queue = NOTIFIER_QUEUE, "certfleet-notifier running");
    notifier.run(stop).await;
    let _ = accepting.await;
    if let Some(health) = health {
        let _ = health.await;
    }
    Ok(())
}

/// The notifier's durable queue (shared by every notifier replica).
const NOTIFIER_QUEUE: &str = "certfleet.notifier";

/// The HTTP-01 responder over the shared database.
pub async fn run_responder(config: RoleConfig) -> anyhow::Result<()> {
    let stop = stop_on_signal()?;
    let store = open_store(&config, false).await?;
    let listener = tokio::net::TcpListener::bind(config.http01_listen)
        .await
        .with_context(|| format!("binding http01_listen {}", config.http01_listen))?;
    let health = serve_health(config.health_listen, stop.clone()).await?;
    tracing::info!(instance = %config.instance_id, address = %config.http01_listen, "certfleet-responder running");
    let served = certfleet_responder::serve(store, listener, stopped(stop)).await;
    if let Some(health) = health {
        let _ = health.await;
    }
    served.context("http-01 responder")
}
