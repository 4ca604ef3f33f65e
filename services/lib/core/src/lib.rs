//! Domain types and rules shared by every certfleet service; pure logic, no I/O.

pub mod clock;
pub mod names;
pub mod renewal;
pub mod types;
pub mod validate;

pub use clock::{Clock, ManualClock, SystemClock};
pub use names::{DomainName, IdentifierSet, InputError, NameError, registered_domain};
pub use renewal::{SpanError, ari_renew_at, parse_span, renew_at, retry_backoff_ms};
pub use types::{
    CertificateStatus, ChallengeStatus, ChallengeType, KeyType, RevocationReason, Role,
};
pub use validate::{validate_directory_url, validate_email, validate_request, validate_slug};
