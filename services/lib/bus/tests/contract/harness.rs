//! One bus under test: the in-process bus, or RabbitMQ in a fresh vhost.

use std::sync::Arc;
use std::time::Duration;

use certfleet_bus::rabbitmq::{
    JobQueue, RabbitConfig, RabbitEvents, RabbitJobs, RabbitPublisher, Topology,
};
use certfleet_bus::{
    EventSource, InProcessBus, InProcessJobs, Job, JobDelivery, JobSource, Publisher,
};
use certfleet_store::OutboxMessage;
use certfleet_testkit::TestVhost;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(500);
/// Retry tiers short enough to wait for in a test, on both buses.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
];

#[expect(clippy::large_enum_variant, reason = "one harness per test")]
pub enum Harness {
    InProcess {
        bus: InProcessBus,
        receiver: Option<mpsc::UnboundedReceiver<Job>>,
    },
    Rabbit {
        vhost: TestVhost,
        config: RabbitConfig,
        publisher: RabbitPublisher,
    },
}

impl Harness {
    pub async fn in_process() -> Harness {
        let (bus, receiver) = InProcessBus::new();
        Harness::InProcess {
            bus,
            receiver: Some(receiver),
        }
    }

    pub async fn rabbit() -> Harness {
        Harness::rabbit_with(Topology {
            retry_delays: RETRY_DELAYS,
            ..Topology::default()
        })
        .await
    }

    /// RabbitMQ with its own topology settings (short retry delays for tests).
    pub async fn rabbit_with(topology: Topology) -> Harness {
        let vhost = TestVhost::create().await.expect("test vhost created");
        let config = RabbitConfig::new(vhost.amqp_url())
            .with_connection_name("certfleet-contract-test")
            .with_topology(topology);
        let publisher = RabbitPublisher::connect(config.clone())
            .await
            .expect("publisher connects");
        Harness::Rabbit {
            vhost,
            config,
            publisher,
        }
    }

    pub async fn publish(&self, message: &OutboxMessage) {
        let publisher: &dyn Publisher = match self {
            Harness::InProcess { bus, .. } => bus,
            Harness::Rabbit { publisher, .. } => publisher,
        };
        publisher.publish(message).await.expect("message published");
    }

    /// A consumer of `queues`; in-process there is one queue for all jobs,
    /// handed out once.
    pub async fn jobs(&mut self, queues: &[JobQueue]) -> Box<dyn JobSource> {
        match self {
            Harness::InProcess { bus, receiver } => {
                let receiver = receiver.take().expect("one in-process job source per test");
                Box::new(InProcessJobs::new(bus, receiver).with_retry_delays(RETRY_DELAYS))
            }
            Harness::Rabbit { config, .. } => Box::new(
                RabbitJobs::connect(config.clone(), queues, 32)
                    .await
                    .expect("consumer connects"),
            ),
        }
    }

    pub async fn events(&self) -> Arc<dyn EventSource> {
        match self {
            Harness::InProcess { bus, .. } => Arc::new(bus.clone()),
            Harness::Rabbit { config, .. } => Arc::new(
                RabbitEvents::start(config.clone())
                    .await
                    .expect("event feed starts"),
            ),
        }
    }

    /// Ready messages in a broker queue once nobody consumes it any more;
    /// `None` in-process.
    pub async fn idle_queue_depth(&self, queue: &str) -> Option<u32> {
        let Harness::Rabbit { config, .. } = self else {
            return None;
        };
        let (_connection, channel) = raw_channel(config).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let declared = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions::durable().passive(),
                    FieldTable::default(),
                )
                .await
                .expect("queue exists");
            if declared.consumer_count() == 0 || tokio::time::Instant::now() > deadline {
                return Some(declared.message_count());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn vhost(&self) -> &TestVhost {
        match self {
            Harness::Rabbit { vhost, .. } => vhost,
            Harness::InProcess { .. } => panic!("only RabbitMQ has a vhost"),
        }
    }

    pub fn config(&self) -> &RabbitConfig {
        match self {
            Harness::Rabbit { config, .. } => config,
            Harness::InProcess { .. } => panic!("only RabbitMQ has a config"),
        }
    }

    pub fn publisher(&self) -> &RabbitPublisher {
        match self {
            Harness::Rabbit { publisher, .. } => publisher,
            Harness::InProcess { .. } => panic!("only RabbitMQ has a broker publisher"),
        }
    }

    pub async fn finish(self) {
        if let Harness::Rabbit {
            vhost, publisher, ..
        } = self
        {
            publisher.close().await;
            vhost.delete().await.expect("test vhost deleted");
        }
    }
}

/// A plain lapin connection into the test's vhost, for looking behind the bus.
pub async fn raw_channel(config: &RabbitConfig) -> (Connection, Channel) {
    let connection = Connection::connect(config.url(), ConnectionProperties::default())
        .await
        .expect("raw connection");
    let channel = connection.create_channel().await.expect("raw channel");
    (connection, channel)
}

/// The next delivery, failing the test after [`PATIENCE`].
pub async fn next_job(jobs: &mut Box<dyn JobSource>) -> JobDelivery {
    tokio::time::timeout(PATIENCE, jobs.next())
        .await
        .expect("a job arrives in time")
        .expect("job source open")
}

/// Asserts that no job arrives for a while.
pub async fn no_job(jobs: &mut Box<dyn JobSource>) {
    if let Ok(delivery) = tokio::time::timeout(QUIET, jobs.next()).await {
        panic!(
            "unexpected job: {:?}",
            delivery.map(|delivery| delivery.job.clone())
        );
    }
}
