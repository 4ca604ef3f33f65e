//! Validated DNS names and certificate identifier sets (DESIGN §7).

mod domain;
mod identifiers;
mod input_error;

pub use domain::{DomainName, NameError, registered_domain};
pub use identifiers::IdentifierSet;
pub use input_error::InputError;
