//! The conformance suite every [`Store`] implementation must pass: what the API relies on,
//! stated once, run against each backend: Cassandra for real (`scripts/services.sh up`) and
//! the embedded redb store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kubescaler_base::cassandra::{CassandraConfig, CassandraStore};
use kubescaler_base::embedded::EmbeddedStore;
use kubescaler_base::store::{Removed, Store, StoreError};
use kubescaler_core::bindings::Binding;
use kubescaler_core::model::{MAX_USERS_PER_PROFILE, Profile, ProfileUsers, User, UserName};
use kubescaler_core::{ProfileId, UserId};

fn user(name: &str) -> User {
    User { id: UserId::new_random(), name: UserName::parse(name).unwrap() }
}

fn profile(users: &[&User]) -> Profile {
    Profile { id: ProfileId::new_random(), users: ProfileUsers::new(users.iter().map(|u| u.id)).unwrap() }
}

/// The checks, each on a store of its own that starts empty.
mod suite {
    use super::*;

    pub async fn users_round_trip(store: &dyn Store) {
        store.ping().await.unwrap();
        let (a, b) = (user("Ada"), user("Bob"));
        store.create_user(&a).await.unwrap();
        store.create_user(&b).await.unwrap();
        assert_eq!(store.get_user(a.id).await.unwrap(), Some(a.clone()));
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort_by_key(|u| u.id);
        assert_eq!(store.list_users().await.unwrap(), expected, "listed in id order");
        assert_eq!(store.get_user(UserId::new_random()).await.unwrap(), None);
    }

    pub async fn replace_only_existing_users(store: &dyn Store) {
        let mut a = user("Before");
        store.create_user(&a).await.unwrap();
        a.name = UserName::parse("After").unwrap();
        assert!(store.replace_user(&a).await.unwrap());
        assert_eq!(store.get_user(a.id).await.unwrap(), Some(a));

        let ghost = user("Ghost");
        assert!(!store.replace_user(&ghost).await.unwrap());
        assert_eq!(store.get_user(ghost.id).await.unwrap(), None, "a failed replace writes nothing");
    }

    pub async fn deleted_users_leave_their_profiles(store: &dyn Store) {
        let (gone, stays) = (user("Gone"), user("Stays"));
        store.create_user(&gone).await.unwrap();
        store.create_user(&stays).await.unwrap();
        let p = profile(&[&gone, &stays]);
        store.create_profile(&p).await.unwrap();
        store.delete_user(gone.id).await.unwrap();
        store.delete_user(gone.id).await.unwrap();
        assert_eq!(store.get_user(gone.id).await.unwrap(), None);
        let left = store.get_profile(p.id).await.unwrap().unwrap();
        assert_eq!(left.users.iter().collect::<Vec<_>>(), vec![stays.id]);
        assert!(store.profiles_of_user(gone.id).await.unwrap().is_empty());
    }

    pub async fn profiles_round_trip(store: &dyn Store) {
        let (a, b) = (user("A"), user("B"));
        let full = profile(&[&a, &b]);
        let empty = profile(&[]);
        store.create_profile(&full).await.unwrap();
        store.create_profile(&empty).await.unwrap();
        assert_eq!(store.get_profile(full.id).await.unwrap(), Some(full.clone()));
        assert_eq!(store.get_profile(empty.id).await.unwrap(), Some(empty.clone()), "an empty set survives");
        let mut expected = vec![full.clone(), empty.clone()];
        expected.sort_by_key(|p| p.id);
        assert_eq!(store.list_profiles().await.unwrap(), expected);

        let mut moved = full.clone();
        moved.users = ProfileUsers::new([b.id]).unwrap();
        assert_eq!(store.replace_profile(&moved).await.unwrap(), Some(Removed::Users([a.id].into())));
        assert_eq!(store.get_profile(full.id).await.unwrap(), Some(moved));
        let ghost = profile(&[&a]);
        assert_eq!(store.replace_profile(&ghost).await.unwrap(), None);
        assert_eq!(store.get_profile(ghost.id).await.unwrap(), None);

        store.delete_profile(full.id).await.unwrap();
        store.delete_profile(full.id).await.unwrap();
        assert_eq!(store.get_profile(full.id).await.unwrap(), None);
    }

    /// What base announces after a replace: exactly who left, or that it is not known.
    pub async fn a_replace_says_who_left(store: &dyn Store) {
        let (a, b, c) = (user("A"), user("B"), user("C"));
        let mut p = profile(&[&a, &b]);
        store.create_profile(&p).await.unwrap();
        p.users = ProfileUsers::new([a.id, b.id, c.id]).unwrap();
        assert_eq!(store.replace_profile(&p).await.unwrap(), Some(Removed::Users([].into())), "only added");
        p.users = ProfileUsers::new([c.id]).unwrap();
        assert_eq!(store.replace_profile(&p).await.unwrap(), Some(Removed::Users([a.id, b.id].into())));
        assert_eq!(store.get_profile(p.id).await.unwrap(), Some(p.clone()));

        // From no users, the answer may be either: none left, or not known (Cassandra cannot
        // tell an empty profile's members from a deleted row's in a condition).
        let mut empty = profile(&[]);
        store.create_profile(&empty).await.unwrap();
        empty.users = ProfileUsers::new([a.id]).unwrap();
        let from_empty = store.replace_profile(&empty).await.unwrap();
        assert!(
            matches!(&from_empty, Some(Removed::Unknown)) || from_empty == Some(Removed::Users([].into()))
        );
        assert_eq!(store.get_profile(empty.id).await.unwrap(), Some(empty));

        // A full profile, one user taken out: that user, not the other 9,999.
        let crowd: Vec<UserId> = (0..MAX_USERS_PER_PROFILE).map(|_| UserId::new_random()).collect();
        let mut full =
            Profile { id: ProfileId::new_random(), users: ProfileUsers::new(crowd.clone()).unwrap() };
        store.create_profile(&full).await.unwrap();
        full.users = ProfileUsers::new(crowd[1..].iter().copied()).unwrap();
        assert_eq!(store.replace_profile(&full).await.unwrap(), Some(Removed::Users([crowd[0]].into())));
        assert_eq!(store.binding(full.id, crowd[0]).await.unwrap(), Binding::NotBound);
    }

    pub async fn profiles_of_user_follow_every_write(store: &dyn Store) {
        let (me, other) = (user("Me"), user("Other"));
        let p1 = profile(&[&me]);
        let p2 = profile(&[&me, &other]);
        let p3 = profile(&[&other]);
        for p in [&p1, &p2, &p3] {
            store.create_profile(p).await.unwrap();
        }
        let mut expected = vec![p1.clone(), p2.clone()];
        expected.sort_by_key(|p| p.id);
        assert_eq!(store.profiles_of_user(me.id).await.unwrap(), expected);

        let mut p3_with_me = p3.clone();
        p3_with_me.users = ProfileUsers::new([me.id, other.id]).unwrap();
        store.replace_profile(&p3_with_me).await.unwrap();
        store.delete_profile(p1.id).await.unwrap();
        let mut expected = vec![p2.clone(), p3_with_me.clone()];
        expected.sort_by_key(|p| p.id);
        assert_eq!(store.profiles_of_user(me.id).await.unwrap(), expected);
        assert!(store.profiles_of_user(UserId::new_random()).await.unwrap().is_empty());
    }

    pub async fn bindings_follow_every_write(store: &dyn Store) {
        let (me, other) = (user("Me"), user("Other"));
        for u in [&me, &other] {
            store.create_user(u).await.unwrap();
        }
        let mut p = profile(&[&me]);
        store.create_profile(&p).await.unwrap();
        assert_eq!(store.binding(p.id, me.id).await.unwrap(), Binding::Bound);
        assert_eq!(store.binding(p.id, other.id).await.unwrap(), Binding::NotBound);
        assert_eq!(store.binding(ProfileId::new_random(), me.id).await.unwrap(), Binding::NoProfile);

        p.users = ProfileUsers::new([other.id]).unwrap();
        store.replace_profile(&p).await.unwrap();
        assert_eq!(store.binding(p.id, me.id).await.unwrap(), Binding::NotBound, "replaced away");
        assert_eq!(store.binding(p.id, other.id).await.unwrap(), Binding::Bound, "replaced in");
        store.delete_user(other.id).await.unwrap();
        assert_eq!(store.binding(p.id, other.id).await.unwrap(), Binding::NotBound, "deleted users leave");
        assert_eq!(store.binding(p.id, me.id).await.unwrap(), Binding::NotBound);
        store.delete_profile(p.id).await.unwrap();
        assert_eq!(store.binding(p.id, me.id).await.unwrap(), Binding::NoProfile);

        // A full profile answers for one of its users as for a small one.
        let crowd: Vec<User> = (0..MAX_USERS_PER_PROFILE).map(|i| user(&format!("member {i}"))).collect();
        let full = Profile {
            id: ProfileId::new_random(),
            users: ProfileUsers::new(crowd.iter().map(|u| u.id)).unwrap(),
        };
        store.create_profile(&full).await.unwrap();
        assert_eq!(
            store.binding(full.id, crowd[MAX_USERS_PER_PROFILE / 2].id).await.unwrap(),
            Binding::Bound
        );
        assert_eq!(store.binding(full.id, me.id).await.unwrap(), Binding::NotBound);
    }

    pub async fn many_rows_are_all_listed(store: &dyn Store) {
        // More than one page of results (pages are 1000 rows).
        let users: Vec<User> = (0..2500).map(|i| user(&format!("user {i}"))).collect();
        futures::future::try_join_all(users.iter().map(|u| store.create_user(u))).await.unwrap();
        let member = &users[0];
        let profiles: Vec<Profile> = (0..1200).map(|_| profile(&[member])).collect();
        futures::future::try_join_all(profiles.iter().map(|p| store.create_profile(p))).await.unwrap();
        assert_eq!(store.list_users().await.unwrap().len(), 2500);
        assert_eq!(store.list_profiles().await.unwrap().len(), 1200);
        assert_eq!(store.profiles_of_user(member.id).await.unwrap().len(), 1200);
    }

    pub async fn delete_all(store: &dyn Store) {
        let a = user("A");
        store.create_user(&a).await.unwrap();
        store.create_profile(&profile(&[&a])).await.unwrap();
        store.delete_all_profiles().await.unwrap();
        assert!(store.list_profiles().await.unwrap().is_empty());
        assert!(store.profiles_of_user(a.id).await.unwrap().is_empty());
        assert_eq!(store.list_users().await.unwrap(), vec![a], "users outlive profiles");
        store.delete_all_users().await.unwrap();
        assert!(store.list_users().await.unwrap().is_empty());
    }
}

macro_rules! conformance {
    ($backend:ident, $fresh:path) => {
        mod $backend {
            use super::*;

            conformance!(@tests $fresh; users_round_trip, replace_only_existing_users,
                deleted_users_leave_their_profiles, profiles_round_trip, a_replace_says_who_left,
                profiles_of_user_follow_every_write, bindings_follow_every_write, many_rows_are_all_listed,
                delete_all);
        }
    };
    (@tests $fresh:path; $($test:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let store = $fresh(stringify!($test)).await;
                suite::$test(&*store).await;
            }
        )+
    };
}

/// A Cassandra store on a keyspace of the test's own, emptied first.
async fn fresh_cassandra(test: &str) -> Arc<dyn Store> {
    let nodes = kubescaler_testkit::require_cassandra().await;
    let keyspace: String = format!("kst_{test}").chars().take(48).collect();
    let store = CassandraStore::start(CassandraConfig::new(nodes, &keyspace).unwrap());
    store.wait_connected(Duration::from_secs(60)).await.unwrap();
    store.delete_all_profiles().await.unwrap();
    store.delete_all_users().await.unwrap();
    Arc::new(store)
}

conformance!(cassandra, fresh_cassandra);

fn embedded_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kubescaler-store-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// An embedded store in a directory of the test's own.
async fn fresh_embedded(test: &str) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&embedded_dir(test)).unwrap())
}

conformance!(embedded, fresh_embedded);

#[tokio::test]
async fn embedded_data_survives_reopening() {
    let dir = embedded_dir("reopen");
    let (a, b) = (user("Kept"), user("Also kept"));
    let p = profile(&[&a, &b]);
    {
        let store = EmbeddedStore::open(&dir).unwrap();
        store.create_user(&a).await.unwrap();
        store.create_user(&b).await.unwrap();
        store.create_profile(&p).await.unwrap();
    }
    let store = EmbeddedStore::open(&dir).unwrap();
    assert_eq!(store.get_user(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.profiles_of_user(b.id).await.unwrap(), vec![p]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cassandra_down_is_unavailable_not_empty() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let store = CassandraStore::start(CassandraConfig::new(vec![closed.to_string()], "kst_down").unwrap());
    // A refused connection fails the first attempt at once; two seconds see it fail.
    let waited = store.wait_connected(std::time::Duration::from_secs(2)).await;
    for result in [
        waited,
        store.ping().await.map(drop),
        store.list_users().await.map(drop),
        store.get_profile(ProfileId::new_random()).await.map(drop),
    ] {
        match result {
            Err(error @ StoreError::Unavailable { backend: "cassandra", .. }) => {
                assert!(error.to_string().contains("not connected"), "{error}");
                // Why, for the log: the failed attempt's own error behind it.
                let cause = std::error::Error::source(&error).map(ToString::to_string);
                assert_eq!(cause.as_deref(), Some("opening a session"), "{error:?}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}

/// A delete-all is one transaction: a reader sees all the rows or none, never a missing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_delete_all_never_fails_a_concurrent_reader() {
    let dir = embedded_dir("delete-all-readers");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let (mut reads, mut failures) = (0usize, Vec::new());
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for result in [
                        store.list_users().await.map(drop),
                        store.get_user(UserId::new_random()).await.map(drop),
                        store.list_profiles().await.map(drop),
                        store.profiles_of_user(UserId::new_random()).await.map(drop),
                    ] {
                        reads += 1;
                        if let Err(e) = result {
                            failures.push(e.to_string());
                        }
                    }
                }
                (reads, failures)
            })
        })
        .collect();
    for _ in 0..100 {
        let a = user("Deleted again");
        store.create_user(&a).await.unwrap();
        store.create_profile(&profile(&[&a])).await.unwrap();
        store.delete_all_profiles().await.unwrap();
        store.delete_all_users().await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        let (reads, failures) = reader.await.unwrap();
        assert!(reads > 0);
        assert!(failures.is_empty(), "{} of {reads} reads failed: {:?}", failures.len(), &failures[..1]);
    }
    assert!(store.list_users().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
