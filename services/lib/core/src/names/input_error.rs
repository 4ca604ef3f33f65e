//! The validation error reported at the edge: which field, which value, why.

use std::fmt;

/// A rejected request value, shown to callers as `field: "value" reason`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl InputError {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: \"{}\" {}", self.field, self.value, self.reason)
    }
}

impl std::error::Error for InputError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_field_value_and_reason() {
        let err = InputError::new("names[2]", "exa mple.com", "is not a valid DNS name");
        assert_eq!(
            err.to_string(),
            "names[2]: \"exa mple.com\" is not a valid DNS name"
        );
    }
}
