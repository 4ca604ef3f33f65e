//! `IdentifierSet`: the validated, de-duplicated names of one certificate.

use super::{DomainName, InputError};

/// Let's Encrypt accepts at most 100 identifiers per order.
pub const MAX_NAMES: usize = 100;

/// The names of one certificate; the first one is the primary name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentifierSet {
    names: Vec<DomainName>,
}

impl IdentifierSet {
    /// Validates every element of the request field `field`; duplicates after
    /// normalisation are dropped, keeping the first occurrence.
    pub fn new(field: &str, inputs: &[String]) -> Result<IdentifierSet, InputError> {
        if inputs.is_empty() {
            return Err(InputError::new(field, "", "at least one name is required"));
        }
        if inputs.len() > MAX_NAMES {
            return Err(InputError::new(
                field,
                format!("{} names", inputs.len()),
                format!(
                    "at most {MAX_NAMES} names per certificate, got {}",
                    inputs.len()
                ),
            ));
        }
        let mut names: Vec<DomainName> = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.iter().enumerate() {
            let name = DomainName::parse(input).map_err(|err| {
                InputError::new(format!("{field}[{index}]"), input, err.to_string())
            })?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(IdentifierSet { names })
    }

    /// The first name given; used as the certificate's subject and display name.
    pub fn primary(&self) -> &DomainName {
        // `new` never builds an empty set
        &self.names[0]
    }

    pub fn names(&self) -> &[DomainName] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false; present because clippy expects it next to `len`.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn has_wildcard(&self) -> bool {
        self.names.iter().any(DomainName::is_wildcard)
    }

    /// The names sorted and joined with ","; equal keys mean the same name set.
    pub fn canonical_key(&self) -> String {
        let mut sorted: Vec<&str> = self.names.iter().map(DomainName::as_str).collect();
        sorted.sort_unstable();
        sorted.join(",")
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.names.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn invalid_element_names_its_index_and_original_value() {
        let err = IdentifierSet::new(
            "names",
            &strings(&["example.com", "www.example.com", "exa mple.com"]),
        )
        .unwrap_err();
        assert_eq!(err.field, "names[2]");
        assert_eq!(err.value, "exa mple.com");
        assert_eq!(
            err.to_string(),
            "names[2]: \"exa mple.com\" is not a valid DNS name"
        );
    }

    #[test]
    fn duplicates_after_normalisation_are_removed_keeping_first() {
        let set = IdentifierSet::new(
            "names",
            &strings(&["WWW.example.com", "example.com", "www.example.com."]),
        )
        .unwrap();
        assert_eq!(set.to_strings(), ["www.example.com", "example.com"]);
        assert_eq!(set.primary().as_str(), "www.example.com");
        assert_eq!(set.len(), 2);
        assert!(!set.is_empty());
    }

    #[test]
    fn empty_list_is_refused() {
        let err = IdentifierSet::new("names", &[]).unwrap_err();
        assert_eq!(err.field, "names");
        assert_eq!(err.reason, "at least one name is required");
    }

    #[test]
    fn more_than_100_names_is_refused() {
        let inputs: Vec<String> = (0..101).map(|i| format!("n{i}.example.com")).collect();
        let err = IdentifierSet::new("names", &inputs).unwrap_err();
        assert_eq!(err.field, "names");
        assert_eq!(err.reason, "at most 100 names per certificate, got 101");
        let set = IdentifierSet::new("names", &inputs[..100]).unwrap();
        assert_eq!(set.len(), 100);
    }

    #[test]
    fn canonical_key_ignores_order() {
        let a = IdentifierSet::new("names", &strings(&["b.example.com", "a.example.com"])).unwrap();
        let b = IdentifierSet::new("names", &strings(&["A.example.com", "b.example.com"])).unwrap();
        assert_eq!(a.canonical_key(), "a.example.com,b.example.com");
        assert_eq!(a.canonical_key(), b.canonical_key());
        assert_ne!(a.primary(), b.primary());
    }

    #[test]
    fn has_wildcard() {
        let plain = IdentifierSet::new("names", &strings(&["example.com"])).unwrap();
        assert!(!plain.has_wildcard());
        let wild =
            IdentifierSet::new("names", &strings(&["example.com", "*.example.com"])).unwrap();
        assert!(wild.has_wildcard());
    }
}
