//! End-to-end tests: certfleet against a real Pebble, over gRPC only.

#![expect(clippy::unwrap_used, reason = "tests")]

mod archive;
mod ari;
mod backup;
mod binary;
mod crash;
mod dead_letters;
mod distributed;
mod dns;
mod eab;
mod expiry;
mod failures;
mod fallback;
mod grpcurl;
mod issuance;
mod kms;
mod leaks;
mod lifecycle;
mod notifications;
mod notifier_distributed;
mod outage;
mod proxy_caddy;
mod proxy_nginx;
mod proxy_traefik;
mod rate_limits;
mod rate_limits_distributed;
mod renew_due;
mod rotation;
mod secrets;
mod secrets_distributed;
mod tenancy;
mod tls;
mod trace;
mod webroot;
