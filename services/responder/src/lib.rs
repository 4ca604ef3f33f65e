//! certfleet-responder
