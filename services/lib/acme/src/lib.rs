//! certfleet-acme
