//! The Redis key schema: the one definition used by stream, which writes locks and launched
//! markers, main, which reads the markers, and base, which announces binding changes.
//! Changing a key here changes it for all of them.

use crate::ids::{ProfileId, UserId};

/// Prefix of every key the suite writes, so an operator can find (or flush) them with `SCAN`.
pub const PREFIX: &str = "kubescaler";

/// The Redlock resource for a user–profile pair.
pub fn lock(user: UserId, profile: ProfileId) -> String {
    format!("{PREFIX}:lock:{user}:{profile}")
}

/// The marker saying the pair is streaming somewhere; written after the lock is taken, with
/// the same TTL, refreshed with it. It holds no host information.
pub fn launched(user: UserId, profile: ProfileId) -> String {
    format!("{PREFIX}:launched:{user}:{profile}")
}

/// An instance's number of open streams, written by that stream instance every
/// `REBALANCE_PERIOD` with a TTL of a few periods: the fleet's live instances and total.
pub fn instance(host: &str) -> String {
    format!("{PREFIX}:instance:{host}")
}

/// The index of the instance entries: host name scored by when its entry expires, so the
/// live instances are listed without scanning the keyspace.
pub const INSTANCES: &str = "kubescaler:instances";

/// The pub/sub channel on which base announces each change that may unbind pairs
/// ([`BindingChange`](crate::bindings::BindingChange)), and stream listens.
pub const BINDINGS: &str = "kubescaler:bindings";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_schema() {
        let u = UserId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let p = ProfileId::parse("00000000-0000-4000-8000-000000000002").unwrap();
        assert_eq!(
            lock(u, p),
            "kubescaler:lock:00000000-0000-4000-8000-000000000001:00000000-0000-4000-8000-000000000002"
        );
        assert_eq!(
            launched(u, p),
            "kubescaler:launched:00000000-0000-4000-8000-000000000001:00000000-0000-4000-8000-000000000002"
        );
        assert_eq!(instance("stream-6d9f-x2k4j"), "kubescaler:instance:stream-6d9f-x2k4j");
        assert!(INSTANCES.starts_with(PREFIX));
        assert!(BINDINGS.starts_with(PREFIX));
    }
}
