//! Users and profiles, and the bodies base accepts for them.
//!
//! Validation lives in the types: a `UserName` or `ProfileUsers` that exists is within the
//! limits, so a deserialised request body is a valid one, and serde's error names the field.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{ProfileId, UserId};

/// Longest user name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 256;
/// Most users one profile may hold.
pub const MAX_USERS_PER_PROFILE: usize = 10_000;
/// Largest request body any service accepts (a full profile of UUIDs is ≈ 390 KB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A user's display name: 1 to 256 characters, not blank, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be blank")]
    Blank,
    #[error("name must be at most {MAX_NAME_CHARS} characters, got {0}")]
    TooLong(usize),
    #[error("name must not contain control characters")]
    ControlCharacter,
}

impl UserName {
    pub fn parse(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(NameError::Blank);
        }
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(NameError::TooLong(chars));
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The users of a profile: a set (duplicates collapse), at most `MAX_USERS_PER_PROFILE`; a
/// body's list may hold at most that many ids, duplicates included.
/// Ordered, so every backend lists a profile's users in the same order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProfileUsers(BTreeSet<UserId>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a profile holds at most {MAX_USERS_PER_PROFILE} users, got {0}")]
pub struct TooManyUsers(pub usize);

impl ProfileUsers {
    pub fn new(users: impl IntoIterator<Item = UserId>) -> Result<Self, TooManyUsers> {
        let set: BTreeSet<UserId> = users.into_iter().collect();
        if set.len() > MAX_USERS_PER_PROFILE {
            return Err(TooManyUsers(set.len()));
        }
        Ok(Self(set))
    }

    pub fn contains(&self, user: UserId) -> bool {
        self.0.contains(&user)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = UserId> + '_ {
        self.0.iter().copied()
    }
}

impl<'de> Deserialize<'de> for ProfileUsers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The body limit bounds how many ids can arrive here before the count is checked. The
        // list is counted as sent, duplicates included: that is the `maxItems` the API's
        // description publishes, and a list the description calls invalid is refused.
        let ids = Vec::<UserId>::deserialize(d)?;
        if ids.len() > MAX_USERS_PER_PROFILE {
            return Err(serde::de::Error::custom(TooManyUsers(ids.len())));
        }
        Self::new(ids).map_err(serde::de::Error::custom)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: UserName,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: ProfileId,
    pub users: ProfileUsers,
}

/// Body of `POST /users` and `PUT /users/{id}`. `id` may be absent or `null` (what a client
/// that sends whole objects, like a generated or Feign client, puts in a create); base refuses any other id
/// on a create and one that differs from the path's on a replace. Unknown fields (a typo) are
/// refused rather than ignored: a silently dropped field is a bug the client never hears about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// Left out or null; on a replace it may be the path's own id, as a GET answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<UserId>,
    pub name: UserName,
}

impl UserBody {
    /// A body without an id, as a create sends it.
    pub fn new(name: UserName) -> Self {
        Self { id: None, name }
    }
}

/// Body of `POST /profiles` and `PUT /profiles/{id}`; `id` as in [`UserBody`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// Left out or null; on a replace it may be the path's own id, as a GET answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ProfileId>,
    pub users: ProfileUsers,
}

impl ProfileBody {
    /// A body without an id, as a create sends it.
    pub fn new(users: ProfileUsers) -> Self {
        Self { id: None, users }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_within_limits_parse() {
        assert_eq!(UserName::parse("Ada Lovelace").unwrap().as_str(), "Ada Lovelace");
        let longest = "é".repeat(MAX_NAME_CHARS);
        assert!(UserName::parse(longest).is_ok(), "limit counts characters, not bytes");
    }

    #[test]
    fn bad_names_are_refused_with_reason() {
        assert_eq!(UserName::parse(""), Err(NameError::Blank));
        assert_eq!(UserName::parse("   "), Err(NameError::Blank));
        assert_eq!(
            UserName::parse("x".repeat(MAX_NAME_CHARS + 1)),
            Err(NameError::TooLong(MAX_NAME_CHARS + 1))
        );
        assert_eq!(UserName::parse("a\u{0}b"), Err(NameError::ControlCharacter));
    }

    #[test]
    fn profile_users_collapse_duplicates_and_enforce_limit() {
        let a = UserId::new_random();
        let users = ProfileUsers::new([a, a]).unwrap();
        assert_eq!(users.len(), 1);
        let many = (0..=MAX_USERS_PER_PROFILE).map(|_| UserId::new_random());
        assert_eq!(ProfileUsers::new(many).unwrap_err(), TooManyUsers(MAX_USERS_PER_PROFILE + 1));
    }

    /// Found by the API fuzzer: 10,001 copies of one id collapsed to one user and were
    /// accepted, while the published `maxItems` says such a list is invalid.
    #[test]
    fn a_list_longer_than_the_limit_is_refused_even_of_duplicates() {
        let id = UserId::new_random();
        let over =
            format!(r#"{{"users":[{}]}}"#, vec![format!("\"{id}\""); MAX_USERS_PER_PROFILE + 1].join(","));
        let err = serde_json::from_str::<ProfileBody>(&over).unwrap_err();
        assert!(err.to_string().contains("at most 10000 users, got 10001"), "{err}");
        let at = format!(r#"{{"users":[{}]}}"#, vec![format!("\"{id}\""); MAX_USERS_PER_PROFILE].join(","));
        assert_eq!(
            serde_json::from_str::<ProfileBody>(&at).unwrap().users.len(),
            1,
            "duplicates still collapse"
        );
    }

    #[test]
    fn bodies_refuse_unknown_fields_and_bad_values() {
        let err = serde_json::from_str::<UserBody>(r#"{"nmae":"a","name":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `nmae`"), "{err}");
        let err = serde_json::from_str::<UserBody>(r#"{"id":"x","name":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("not a valid user id"), "{err}");
        let err = serde_json::from_str::<UserBody>(r#"{"name":""}"#).unwrap_err();
        assert!(err.to_string().contains("blank"), "{err}");
        let err = serde_json::from_str::<ProfileBody>(r#"{"users":["nope"]}"#).unwrap_err();
        assert!(err.to_string().contains("not a valid user id"), "{err}");
    }

    #[test]
    fn bodies_take_an_absent_or_null_id() {
        let absent: UserBody = serde_json::from_str(r#"{"name":"a"}"#).unwrap();
        let null: UserBody = serde_json::from_str(r#"{"id":null,"name":"a"}"#).unwrap();
        assert_eq!((absent.id, null.id), (None, None));
        let null: ProfileBody = serde_json::from_str(r#"{"id":null,"users":[]}"#).unwrap();
        assert_eq!(null.id, None);
        let id = ProfileId::new_random();
        let given: ProfileBody = serde_json::from_str(&format!(r#"{{"id":"{id}","users":[]}}"#)).unwrap();
        assert_eq!(given.id, Some(id));
        assert_eq!(
            serde_json::to_string(&UserBody::new(UserName::parse("a").unwrap())).unwrap(),
            r#"{"name":"a"}"#,
            "no id sent on a create"
        );
    }
}
