//! The JSON bodies base accepts, and the users and profiles its clients read back, from any
//! bytes.
//!
//! Asserts: decoding never panics; whatever decodes is within the limits (a name of 1 to 256
//! characters, not blank, without control characters; at most 10 000 distinct users, listed in
//! order), encodes, and decodes back to an equal value whose encoding is the same again.

#![no_main]

use std::fmt::Debug;

use kubescaler_core::model::{
    MAX_NAME_CHARS, MAX_USERS_PER_PROFILE, Profile, ProfileBody, ProfileUsers, User, UserBody, UserName,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    // Every input is tried as each of the four: the fields overlap, and trying is cheap.
    if let Some(body) = round_trip::<UserBody>(data) {
        check_name(&body.name);
    }
    if let Some(user) = round_trip::<User>(data) {
        check_name(&user.name);
    }
    if let Some(body) = round_trip::<ProfileBody>(data) {
        check_users(&body.users);
    }
    if let Some(profile) = round_trip::<Profile>(data) {
        check_users(&profile.users);
    }
});

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!("{} does not decode: {e}", String::from_utf8_lossy(&json));
    });
    assert_eq!(again, value);
    assert_eq!(serde_json::to_vec(&again).ok(), Some(json), "one value, one encoding");
    Some(value)
}

fn check_name(name: &UserName) {
    let name = name.as_str();
    let chars = name.chars().count();
    assert!((1..=MAX_NAME_CHARS).contains(&chars), "{chars} characters");
    assert!(!name.trim().is_empty(), "blank name {name:?}");
    assert!(!name.chars().any(char::is_control), "control character in {name:?}");
}

fn check_users(users: &ProfileUsers) {
    assert!(users.len() <= MAX_USERS_PER_PROFILE, "{} users", users.len());
    assert_eq!(users.iter().count(), users.len());
    let ids: Vec<_> = users.iter().collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "users listed in order, once each");
    assert_eq!(users.is_empty(), ids.is_empty());
}
