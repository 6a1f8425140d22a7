//! Identifiers. A `UserId` or `ProfileId` always holds a valid UUID: it is parsed once, at
//! the edge (path segment, JSON body, database row), and never re-validated after that.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} id: expected a UUID such as 3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a90")]
pub struct IdError {
    kind: &'static str,
    input: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random (version 4) id: ids are made by the service, never by clients.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn parse(input: &str) -> Result<Self, IdError> {
                // Only the canonical hyphenated form: the id ends up in Redis keys and URLs,
                // where two spellings of one id would be two different things.
                match Uuid::try_parse(input) {
                    Ok(uuid) if input.len() == 36 => Ok(Self(uuid)),
                    _ => Err(IdError {
                        kind: $kind,
                        // Echo at most a short prefix back: the input is attacker-controlled.
                        input: input.chars().take(64).collect(),
                    }),
                }
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Lower-case hyphenated, the one spelling used in keys and JSON.
                self.0.hyphenated().fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Identifies a user.
    UserId,
    "user"
);
id_type!(
    /// Identifies a profile (a set of users).
    ProfileId,
    "profile"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_uuid_and_prints_it_lowercase() {
        let id = UserId::parse("3F2C1A9E-8D4B-4C7A-9F10-2B5E6D7C8A90").unwrap();
        assert_eq!(id.to_string(), "3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a90");
        assert_eq!(UserId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn rejects_garbage_and_other_spellings() {
        for bad in [
            "",
            "42",
            "not-a-uuid",
            "3f2c1a9e8d4b4c7a9f102b5e6d7c8a90",
            "{3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a90}",
            "urn:uuid:3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a90",
            "3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a9g",
            " 3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a90",
        ] {
            let err = ProfileId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("profile id"), "{err}");
        }
    }

    #[test]
    fn error_echoes_at_most_64_chars() {
        let long = "x".repeat(10_000);
        assert!(UserId::parse(&long).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn serde_round_trip_and_rejection() {
        let id = UserId::new_random();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<UserId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<UserId>("7").is_err());
    }

    #[test]
    fn random_ids_are_version_4() {
        assert_eq!(ProfileId::new_random().as_uuid().get_version_num(), 4);
    }
}
