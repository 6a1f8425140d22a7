//! Changes of who is in which profile, as base announces them and stream reads them.
//!
//! base publishes one [`BindingChange`] after each write that can take a user out of a
//! profile (a replace or delete of a profile, a delete of a user, a delete of everything), on
//! the Redis channel [`keys::BINDINGS`] of every instance of `REDIS_URLS`. A change names what
//! changed — at its narrowest one pair, a user that left a profile — not a verdict: a stream
//! instance re-checks the pairs it holds that the change touches, so a message that comes twice,
//! late or out of order gives the same verdict as one that comes once, on time — the check reads
//! the store as it is then.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{IdError, ProfileId, UserId};
#[cfg(doc)]
use crate::keys;

/// How a user relates to a profile: what admission needs (404 for no profile, 403 for a user
/// not in it), and what a re-check reduces to a yes/no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Bound,
    NotBound,
    NoProfile,
}

impl Binding {
    pub fn is_bound(self) -> bool {
        self == Self::Bound
    }
}

/// Most pairs one binding check (`POST /bindings/check`) asks about: a body of about 90 KB,
/// answered by as many single-cell reads, in well under a second.
pub const MAX_PAIRS_PER_CHECK: usize = 1_000;

/// A user–profile pair.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub user: UserId,
    pub profile: ProfileId,
}

/// The pairs of one binding check: at most [`MAX_PAIRS_PER_CHECK`], in the order their
/// answers come back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CheckPairs(Vec<Pair>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a binding check asks about at most {MAX_PAIRS_PER_CHECK} pairs, got {0}")]
pub struct TooManyPairs(pub usize);

impl CheckPairs {
    pub fn new(pairs: Vec<Pair>) -> Result<Self, TooManyPairs> {
        if pairs.len() > MAX_PAIRS_PER_CHECK {
            return Err(TooManyPairs(pairs.len()));
        }
        Ok(Self(pairs))
    }

    pub fn as_slice(&self) -> &[Pair] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CheckPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Body of `POST /bindings/check`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingCheck {
    pub pairs: CheckPairs,
}

/// Answer of `POST /bindings/check`: for each pair asked, in order, whether the user is in the
/// profile (`false` also when there is no such profile).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingVerdicts {
    pub bound: Vec<bool>,
}

/// Answer of `GET /bindings/{profileId}/{userId}` for a profile that exists.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingVerdict {
    /// Whether the user is in the profile.
    pub bound: bool,
}

/// What a write may have unbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingChange {
    /// The user left the profile (a replace of its members without it): the one pair to check.
    Left(Pair),
    /// The profile was deleted, or its members were replaced and who left is not known.
    Profile(ProfileId),
    /// The user was deleted (and taken out of every profile).
    User(UserId),
    /// Every profile or every user was deleted.
    All,
}

impl BindingChange {
    /// Whether the pair `(user, profile)` may have been unbound by this change.
    pub fn touches(&self, user: UserId, profile: ProfileId) -> bool {
        match self {
            Self::Left(pair) => pair.user == user && pair.profile == profile,
            Self::Profile(changed) => *changed == profile,
            Self::User(changed) => *changed == user,
            Self::All => true,
        }
    }
}

/// `left <user id> <profile id>`, `profile <id>`, `user <id>` or `all`: the message text on
/// [`keys::BINDINGS`].
impl fmt::Display for BindingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Left(pair) => write!(f, "left {} {}", pair.user, pair.profile),
            Self::Profile(id) => write!(f, "profile {id}"),
            Self::User(id) => write!(f, "user {id}"),
            Self::All => f.write_str("all"),
        }
    }
}

/// Why a message is not a binding change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "`{0}` is not a binding change: expected `left <user id> <profile id>`, `profile <id>`, \
         `user <id>` or `all`"
    )]
    Shape(String),
    #[error(transparent)]
    Id(#[from] IdError),
}

impl FromStr for BindingChange {
    type Err = ChangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(' ') {
            Some(("left", ids)) => match ids.split_once(' ') {
                Some((user, profile)) => {
                    Ok(Self::Left(Pair { user: UserId::parse(user)?, profile: ProfileId::parse(profile)? }))
                }
                None => Err(ChangeError::Shape(text.chars().take(64).collect())),
            },
            Some(("profile", id)) => Ok(Self::Profile(ProfileId::parse(id)?)),
            Some(("user", id)) => Ok(Self::User(UserId::parse(id)?)),
            None if text == "all" => Ok(Self::All),
            // Echo at most a short prefix: the message comes from the network.
            _ => Err(ChangeError::Shape(text.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "00000000-0000-4000-8000-000000000001";
    const PROFILE: &str = "00000000-0000-4000-8000-000000000002";

    #[test]
    fn changes_read_back_as_written() {
        let user = UserId::parse(USER).unwrap();
        let profile = ProfileId::parse(PROFILE).unwrap();
        let left = BindingChange::Left(Pair { user, profile });
        for change in [left, BindingChange::Profile(profile), BindingChange::User(user), BindingChange::All] {
            assert_eq!(change.to_string().parse::<BindingChange>(), Ok(change));
        }
        assert_eq!(BindingChange::Profile(profile).to_string(), format!("profile {PROFILE}"));
        assert_eq!(left.to_string(), format!("left {USER} {PROFILE}"));
    }

    #[test]
    fn anything_else_is_refused_with_what_was_expected() {
        for text in [
            "",
            "all ",
            "profile",
            "profile  x",
            "team 1",
            &format!("user {PROFILE} more"),
            &format!("left {USER}"),
            &format!("left {USER} {PROFILE} more"),
            &format!("left {USER}  {PROFILE}"),
        ] {
            let error = text.parse::<BindingChange>().unwrap_err();
            assert!(error.to_string().contains("not a"), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_check_asks_about_at_most_the_limit() {
        let pair = Pair { user: UserId::new_random(), profile: ProfileId::new_random() };
        let body = |n: usize| {
            format!(r#"{{"pairs":[{}]}}"#, vec![serde_json::to_string(&pair).unwrap(); n].join(","))
        };
        let at: BindingCheck = serde_json::from_str(&body(MAX_PAIRS_PER_CHECK)).unwrap();
        assert_eq!(at.pairs.as_slice().len(), MAX_PAIRS_PER_CHECK);
        let err = serde_json::from_str::<BindingCheck>(&body(MAX_PAIRS_PER_CHECK + 1)).unwrap_err();
        assert!(err.to_string().contains("at most 1000 pairs, got 1001"), "{err}");
        let err =
            serde_json::from_str::<BindingCheck>(r#"{"pairs":[{"user":"x","profile":"y"}]}"#).unwrap_err();
        assert!(err.to_string().contains("not a valid user id"), "{err}");
    }

    #[test]
    fn a_change_touches_the_pairs_of_what_it_names() {
        let user = UserId::parse(USER).unwrap();
        let profile = ProfileId::parse(PROFILE).unwrap();
        let (other_user, other_profile) = (UserId::new_random(), ProfileId::new_random());
        assert!(BindingChange::Profile(profile).touches(other_user, profile));
        assert!(!BindingChange::Profile(profile).touches(user, other_profile));
        assert!(BindingChange::User(user).touches(user, other_profile));
        assert!(!BindingChange::User(user).touches(other_user, profile));
        assert!(BindingChange::All.touches(other_user, other_profile));
        let left = BindingChange::Left(Pair { user, profile });
        assert!(left.touches(user, profile));
        assert!(!left.touches(other_user, profile) && !left.touches(user, other_profile));
    }
}
