//! certfleet-bus
