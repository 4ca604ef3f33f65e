//! End-to-end tests: certfleet against a real Pebble, over gRPC only.

#![expect(clippy::unwrap_used, reason = "tests")]

mod archive;
mod backup;
mod binary;
mod crash;
mod dead_letters;
mod distributed;
mod dns;
mod eab;
mod failures;
mod grpcurl;
mod issuance;
mod kms;
mod leaks;
mod lifecycle;
mod outage;
mod renew_due;
mod rotation;
mod secrets;
mod secrets_distributed;
mod tenancy;
mod tls;
mod trace;
