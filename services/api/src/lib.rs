//! certfleet-api
