//! end-to-end tests of certfleet over gRPC against a real Pebble
