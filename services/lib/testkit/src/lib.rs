//! Real parts for integration tests: a throwaway Pebble ACME CA with
//! pebble-challtestsrv as its resolver, a fresh PostgreSQL database and
//! RabbitMQ vhost per test, and the location of `grpcurl`.
//!
//! Everything here drives the programs that `deploy/local/install-deps.sh`
//! installs; when one is missing the error says to run that script.

pub mod acme_front;
mod bind;
mod caddy;
mod cloudflare;
mod database;
mod listener;
mod moto;
mod nginx;
mod pebble;
mod powerdns;
mod process;
mod proxy;
mod rabbitmq;
mod smtp;
mod webhook;

pub use bind::{Bind, BindZone};
pub use caddy::Caddy;
pub use cloudflare::FakeCloudflare;
pub use database::{TestDatabase, psql};
pub use moto::Moto;
pub use nginx::Nginx;
pub use pebble::{Pebble, PebbleOptions};
pub use powerdns::PowerDns;
pub use process::grpcurl_path;
pub use proxy::TcpProxy;
pub use rabbitmq::TestVhost;
pub use smtp::{ReceivedMail, SmtpSink, SmtpTls};
pub use webhook::{RecordedRequest, WebhookReceiver};

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
///
/// The port is released before returning, so another process can take it in
/// between; callers that spawn servers should retry on "address in use".
///
/// # Panics
///
/// When the machine cannot bind a loopback socket at all.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding an ephemeral port on 127.0.0.1 failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port from free_port is bindable");
    }
}
