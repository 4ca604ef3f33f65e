//! Closed vocabularies of the domain (key types, statuses, roles) and their wire strings.

use crate::names::InputError;

/// Defines an enum whose wire form is a fixed lower-case string, with
/// case-insensitive aliases accepted by `parse`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$( $name::$variant ),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// Parses the wire string or an accepted alias, ignoring ASCII case.
            pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
                let lower = s.to_ascii_lowercase();
                $(
                    if lower == $text $(|| lower == $alias)* {
                        return Ok($name::$variant);
                    }
                )+
                let accepted: &[&str] = &[$( $text ),+];
                Err(InputError::new(
                    field,
                    s,
                    format!("is not a valid {}; accepted values: {}", $what, accepted.join(", ")),
                ))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                $name::parse($what, &raw).map_err(|err| ::serde::de::Error::custom(err.to_string()))
            }
        }
    };
}

string_enum! {
    /// The private key algorithm of a certificate; ECDSA P-256 unless asked otherwise.
    #[derive(Default)]
    KeyType, "key type" {
        #[default]
        EcdsaP256 => "ecdsa-p256" | "p256" | "p-256" | "ecdsa_p256",
        EcdsaP384 => "ecdsa-p384" | "p384" | "p-384" | "ecdsa_p384",
        Rsa2048 => "rsa-2048" | "rsa2048" | "rsa_2048",
        Rsa3072 => "rsa-3072" | "rsa3072" | "rsa_3072",
        Rsa4096 => "rsa-4096" | "rsa4096" | "rsa_4096",
    }
}

string_enum! {
    /// The lifecycle state of a managed certificate (DESIGN §3).
    CertificateStatus, "certificate status" {
        Pending => "pending",
        Issuing => "issuing",
        Valid => "valid",
        Renewing => "renewing",
        Expired => "expired",
        Revoked => "revoked",
        Failed => "failed",
    }
}

string_enum! {
    /// The ACME challenge used to prove control of the names; HTTP-01 by default.
    #[derive(Default)]
    ChallengeType, "challenge type" {
        #[default]
        Http01 => "http-01" | "http01" | "http",
        Dns01 => "dns-01" | "dns01" | "dns",
    }
}

string_enum! {
    /// The state of one ACME challenge.
    ChallengeStatus, "challenge status" {
        Pending => "pending",
        Processing => "processing",
        Valid => "valid",
        Invalid => "invalid",
        Expired => "expired",
    }
}

string_enum! {
    /// RFC 5280 revocation reasons that Let's Encrypt accepts.
    RevocationReason, "revocation reason" {
        Unspecified => "unspecified" | "0",
        KeyCompromise => "key-compromise" | "keycompromise" | "key_compromise" | "1",
        AffiliationChanged => "affiliation-changed" | "affiliationchanged" | "affiliation_changed" | "3",
        Superseded => "superseded" | "4",
        CessationOfOperation => "cessation-of-operation" | "cessationofoperation" | "cessation_of_operation" | "5",
    }
}

impl RevocationReason {
    /// The RFC 5280 `CRLReason` code.
    pub fn code(&self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        RevocationReason::ALL
            .iter()
            .copied()
            .find(|reason| reason.code() == code)
    }
}

string_enum! {
    /// What an API token may do; organization tokens hold read, write or
    /// bundle, platform tokens admin or agent.
    Role, "role" {
        Read => "read",
        Write => "write",
        Bundle => "bundle",
        Admin => "admin",
        Agent => "agent",
    }
}

impl Role {
    /// Whether a token with this role may perform an action needing `needed`.
    /// Where the token is used (its organization, or with a platform agent
    /// token the organization the request names) is checked apart.
    pub fn allows(&self, needed: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Write => matches!(needed, Role::Read | Role::Write),
            Role::Bundle => matches!(needed, Role::Read | Role::Bundle),
            Role::Read => needed == Role::Read,
            // Proxy agents read certificates and keys to install them; they change nothing.
            Role::Agent => matches!(needed, Role::Read | Role::Bundle | Role::Agent),
        }
    }

    /// Whether tokens with this role belong to the platform, not to an organization.
    pub fn is_platform(&self) -> bool {
        match self {
            Role::Admin | Role::Agent => true,
            Role::Read | Role::Write | Role::Bundle => false,
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    macro_rules! round_trip {
        ($ty:ty) => {
            for value in <$ty>::ALL {
                let text = value.as_str();
                assert_eq!(<$ty>::parse("field", text).unwrap(), *value);
                assert_eq!(
                    <$ty>::parse("field", &text.to_ascii_uppercase()).unwrap(),
                    *value
                );
                assert_eq!(value.to_string(), text);
                let json = serde_json::to_string(value).unwrap();
                assert_eq!(json, format!("\"{text}\""));
                assert_eq!(serde_json::from_str::<$ty>(&json).unwrap(), *value);
            }
            assert!(<$ty>::parse("field", "nonsense").is_err());
            assert!(serde_json::from_str::<$ty>("\"nonsense\"").is_err());
        };
    }

    #[test]
    fn all_enums_round_trip() {
        round_trip!(KeyType);
        round_trip!(CertificateStatus);
        round_trip!(ChallengeType);
        round_trip!(ChallengeStatus);
        round_trip!(RevocationReason);
        round_trip!(Role);
    }

    #[test]
    fn key_type_strings_and_aliases() {
        let expected = [
            (KeyType::EcdsaP256, "ecdsa-p256", "P256"),
            (KeyType::EcdsaP384, "ecdsa-p384", "p384"),
            (KeyType::Rsa2048, "rsa-2048", "RSA2048"),
            (KeyType::Rsa3072, "rsa-3072", "rsa3072"),
            (KeyType::Rsa4096, "rsa-4096", "Rsa4096"),
        ];
        for (key_type, text, alias) in expected {
            assert_eq!(key_type.as_str(), text);
            assert_eq!(KeyType::parse("key_type", alias).unwrap(), key_type);
        }
        assert_eq!(KeyType::default(), KeyType::EcdsaP256);
    }

    #[test]
    fn parse_error_names_field_and_accepted_values() {
        let err = KeyType::parse("key_type", "ed25519").unwrap_err();
        assert_eq!(
            err.to_string(),
            "key_type: \"ed25519\" is not a valid key type; accepted values: \
             ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096"
        );
    }

    #[test]
    fn challenge_type_strings() {
        assert_eq!(ChallengeType::Http01.as_str(), "http-01");
        assert_eq!(ChallengeType::Dns01.as_str(), "dns-01");
        assert_eq!(ChallengeType::default(), ChallengeType::Http01);
    }

    #[test]
    fn revocation_reason_codes_and_rfc_names() {
        let expected = [
            (
                RevocationReason::Unspecified,
                0,
                "unspecified",
                "unspecified",
            ),
            (
                RevocationReason::KeyCompromise,
                1,
                "key-compromise",
                "keyCompromise",
            ),
            (
                RevocationReason::AffiliationChanged,
                3,
                "affiliation-changed",
                "affiliationChanged",
            ),
            (RevocationReason::Superseded, 4, "superseded", "superseded"),
            (
                RevocationReason::CessationOfOperation,
                5,
                "cessation-of-operation",
                "cessationOfOperation",
            ),
        ];
        for (reason, code, text, rfc) in expected {
            assert_eq!(reason.code(), code);
            assert_eq!(RevocationReason::from_code(code), Some(reason));
            assert_eq!(reason.as_str(), text);
            assert_eq!(RevocationReason::parse("reason", rfc).unwrap(), reason);
            assert_eq!(
                RevocationReason::parse("reason", &code.to_string()).unwrap(),
                reason
            );
        }
        assert_eq!(RevocationReason::from_code(2), None);
        assert_eq!(RevocationReason::from_code(6), None);
        assert!(RevocationReason::parse("reason", "2").is_err());
        assert!(RevocationReason::parse("reason", "caCompromise").is_err());
    }

    #[test]
    fn status_strings_are_lower_case() {
        assert_eq!(CertificateStatus::Renewing.as_str(), "renewing");
        assert_eq!(ChallengeStatus::Processing.as_str(), "processing");
    }

    #[test]
    fn role_allows() {
        use Role::*;
        let table = [
            (Admin, [true, true, true, true, true]),
            (Agent, [true, false, true, false, true]),
            (Write, [true, true, false, false, false]),
            (Bundle, [true, false, true, false, false]),
            (Read, [true, false, false, false, false]),
        ];
        assert_eq!(table.len(), Role::ALL.len());
        for (role, allowed) in table {
            for (needed, expected) in [Read, Write, Bundle, Admin, Agent].into_iter().zip(allowed) {
                assert_eq!(role.allows(needed), expected, "{role} allows {needed}");
            }
        }
    }

    #[test]
    fn platform_roles() {
        let platform: Vec<Role> = Role::ALL
            .iter()
            .copied()
            .filter(Role::is_platform)
            .collect();
        assert_eq!(platform, [Role::Admin, Role::Agent]);
    }
}
