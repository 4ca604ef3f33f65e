//! End-to-end tests: certfleet against a real Pebble, over gRPC only.

#![expect(clippy::unwrap_used, reason = "tests")]

mod binary;
mod crash;
mod dead_letters;
mod distributed;
mod dns;
mod failures;
mod grpcurl;
mod issuance;
mod kms;
mod lifecycle;
mod outage;
mod secrets;
mod tenancy;
mod tls;
mod trace;
