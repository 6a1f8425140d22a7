//! `UserId` and `ProfileId` from any text, as a path segment or a JSON string brings it.
//!
//! Asserts: parsing never panics; `parse`, `FromStr` and serde agree; an id that parses prints
//! as 36 lower-case characters that parse back to the same id, and is the input up to case
//! (only the canonical hyphenated spelling is an id); a refusal echoes at most 64 characters.

#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use kubescaler_core::{IdError, ProfileId, UserId};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    // Any bytes make some UTF-8 text, so no input is wasted on being invalid.
    let input = String::from_utf8_lossy(data);
    let user = check::<UserId>(&input, UserId::parse(&input), "user");
    let profile = check::<ProfileId>(&input, ProfileId::parse(&input), "profile");
    assert_eq!(user.is_some(), profile.is_some(), "both kinds of id take the same spelling");
    if let (Some(user), Some(profile)) = (user, profile) {
        assert_eq!(user.as_uuid(), profile.as_uuid());
    }
});

fn check<T>(input: &str, parsed: Result<T, IdError>, kind: &str) -> Option<T>
where
    T: FromStr<Err = IdError> + Display + Debug + Copy + PartialEq + Serialize + DeserializeOwned,
{
    assert_eq!(input.parse::<T>(), parsed, "FromStr is parse");
    let from_json: Result<T, _> = serde_json::from_value(serde_json::Value::String(input.to_owned()));
    assert_eq!(from_json.as_ref().ok(), parsed.as_ref().ok(), "serde is parse");
    match parsed {
        Ok(id) => {
            let text = id.to_string();
            assert_eq!(text.len(), 36, "{text}");
            assert!(!text.bytes().any(|b| b.is_ascii_uppercase()), "{text}");
            assert!(text.eq_ignore_ascii_case(input), "{input:?} parsed as {text}");
            assert_eq!(text.parse::<T>(), Ok(id), "round trip of {text}");
            let json = serde_json::to_string(&id).expect("an id serialises");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).ok(), Some(id));
            Some(id)
        }
        Err(error) => {
            let message = error.to_string();
            let echoed: String = input.chars().take(64).collect();
            assert!(message.starts_with(&format!("`{echoed}` is not a valid {kind} id")), "{message}");
            None
        }
    }
}
