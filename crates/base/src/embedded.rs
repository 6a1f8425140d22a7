//! The embedded store: users and profiles in one `redb` file, for the all-in-one process.
//! Same semantics as the Cassandra store (the conformance suite runs on both): replace only
//! what exists, deleting a user takes it out of its profiles, listings in id order, and
//! profiles-of-user through an index (a multimap user → profiles kept in the same transaction
//! as the profile), never a scan.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kubescaler_core::bindings::Binding;
use kubescaler_core::model::{Profile, ProfileUsers, User, UserName};
use kubescaler_core::{ProfileId, UserId};
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition, WriteTransaction,
};
use uuid::Uuid;

use crate::store::{Removed, Store, StoreError, StoreResult};

const BACKEND: &str = "embedded";
/// user id → name
const USERS: TableDefinition<u128, &str> = TableDefinition::new("users");
/// profile id → its users, 16 bytes each
const PROFILES: TableDefinition<u128, &[u8]> = TableDefinition::new("profiles");
/// user id → ids of the profiles holding it
const PROFILES_OF_USER: MultimapTableDefinition<u128, u128> =
    MultimapTableDefinition::new("profiles_of_user");

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::internal(BACKEND, "its database failed").because(e)
}

fn encode(users: &ProfileUsers) -> Vec<u8> {
    users.iter().flat_map(|u| u.as_uuid().into_bytes()).collect()
}

fn decode(id: u128, bytes: &[u8]) -> StoreResult<Profile> {
    let users = bytes
        .chunks_exact(16)
        .map(|chunk| <[u8; 16]>::try_from(chunk).map(|b| UserId::from(Uuid::from_bytes(b))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    let users = ProfileUsers::new(users).map_err(internal)?;
    Ok(Profile { id: ProfileId::from(Uuid::from_u128(id)), users })
}

fn user(id: u128, name: &str) -> StoreResult<User> {
    Ok(User { id: UserId::from(Uuid::from_u128(id)), name: UserName::parse(name).map_err(internal)? })
}

fn key(id: Uuid) -> u128 {
    id.as_u128()
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(internal)?;
        let db = Database::create(dir.join("kubescaler.redb")).map_err(internal)?;
        // Tables exist from the start, so readers never meet a missing one.
        let tx = db.begin_write().map_err(internal)?;
        tx.open_table(USERS).map_err(internal)?;
        tx.open_table(PROFILES).map_err(internal)?;
        tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
        tx.commit().map_err(internal)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking database work off the async workers (commits wait for the disk).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(internal)?
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(internal)?;
            let out = work(&tx)?;
            tx.commit().map_err(internal)?;
            Ok(out)
        })
        .await
    }
}

/// Writes a profile and keeps the index in step, in the caller's transaction.
fn put_profile(tx: &WriteTransaction, profile: &Profile) -> StoreResult<()> {
    let id = key(profile.id.as_uuid());
    let mut profiles = tx.open_table(PROFILES).map_err(internal)?;
    let mut index = tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
    if let Some(old) = profiles.get(id).map_err(internal)? {
        for user in decode(id, old.value())?.users.iter() {
            index.remove(key(user.as_uuid()), id).map_err(internal)?;
        }
    }
    profiles.insert(id, encode(&profile.users).as_slice()).map_err(internal)?;
    for user in profile.users.iter() {
        index.insert(key(user.as_uuid()), id).map_err(internal)?;
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|db| db.begin_read().map(drop).map_err(internal)).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.run(|db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(USERS).map_err(internal)?;
            let mut users = Vec::new();
            for entry in table.iter().map_err(internal)? {
                let (id, name) = entry.map_err(internal)?;
                users.push(user(id.value(), name.value())?);
            }
            Ok(users)
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(USERS).map_err(internal)?;
            let found = table.get(key(id.as_uuid())).map_err(internal)?;
            found.map(|name| user(key(id.as_uuid()), name.value())).transpose()
        })
        .await
    }

    async fn create_user(&self, new: &User) -> StoreResult<()> {
        let (id, name) = (key(new.id.as_uuid()), new.name.as_str().to_owned());
        self.write(move |tx| {
            tx.open_table(USERS).map_err(internal)?.insert(id, name.as_str()).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn replace_user(&self, changed: &User) -> StoreResult<bool> {
        let (id, name) = (key(changed.id.as_uuid()), changed.name.as_str().to_owned());
        self.write(move |tx| {
            let mut table = tx.open_table(USERS).map_err(internal)?;
            if table.get(id).map_err(internal)?.is_none() {
                return Ok(false);
            }
            table.insert(id, name.as_str()).map_err(internal)?;
            Ok(true)
        })
        .await
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        let uid = key(id.as_uuid());
        self.write(move |tx| {
            let holders: Vec<u128> = {
                let index = tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
                let mut ids = Vec::new();
                for value in index.get(uid).map_err(internal)? {
                    ids.push(value.map_err(internal)?.value());
                }
                ids
            };
            for pid in holders {
                let current = {
                    let profiles = tx.open_table(PROFILES).map_err(internal)?;
                    let bytes = profiles.get(pid).map_err(internal)?;
                    bytes.map(|b| decode(pid, b.value())).transpose()?
                };
                if let Some(mut profile) = current {
                    profile.users =
                        ProfileUsers::new(profile.users.iter().filter(|u| *u != id)).map_err(internal)?;
                    put_profile(tx, &profile)?;
                }
            }
            tx.open_table(USERS).map_err(internal)?.remove(uid).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn delete_all_users(&self) -> StoreResult<()> {
        // Dropped and recreated in one transaction: a reader sees the old table or the new,
        // empty one, never none.
        self.write(|tx| {
            tx.delete_table(USERS).map_err(internal)?;
            tx.open_table(USERS).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn list_profiles(&self) -> StoreResult<Vec<Profile>> {
        self.run(|db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(PROFILES).map_err(internal)?;
            let mut profiles = Vec::new();
            for entry in table.iter().map_err(internal)? {
                let (id, users) = entry.map_err(internal)?;
                profiles.push(decode(id.value(), users.value())?);
            }
            Ok(profiles)
        })
        .await
    }

    async fn get_profile(&self, id: ProfileId) -> StoreResult<Option<Profile>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(PROFILES).map_err(internal)?;
            let pid = key(id.as_uuid());
            let found = table.get(pid).map_err(internal)?;
            found.map(|users| decode(pid, users.value())).transpose()
        })
        .await
    }

    async fn create_profile(&self, profile: &Profile) -> StoreResult<()> {
        let profile = profile.clone();
        self.write(move |tx| put_profile(tx, &profile)).await
    }

    async fn replace_profile(&self, profile: &Profile) -> StoreResult<Option<Removed>> {
        let profile = profile.clone();
        self.write(move |tx| {
            let pid = key(profile.id.as_uuid());
            let before = {
                let table = tx.open_table(PROFILES).map_err(internal)?;
                let found = table.get(pid).map_err(internal)?;
                found.map(|users| decode(pid, users.value())).transpose()?
            };
            let Some(before) = before else { return Ok(None) };
            put_profile(tx, &profile)?;
            // One write transaction at a time: who left is known exactly.
            let removed = before.users.iter().filter(|&u| !profile.users.contains(u)).collect();
            Ok(Some(Removed::Users(removed)))
        })
        .await
    }

    async fn delete_profile(&self, id: ProfileId) -> StoreResult<()> {
        let pid = key(id.as_uuid());
        self.write(move |tx| {
            let mut profiles = tx.open_table(PROFILES).map_err(internal)?;
            let removed =
                profiles.remove(pid).map_err(internal)?.map(|b| decode(pid, b.value())).transpose()?;
            if let Some(profile) = removed {
                let mut index = tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
                for user in profile.users.iter() {
                    index.remove(key(user.as_uuid()), pid).map_err(internal)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn delete_all_profiles(&self) -> StoreResult<()> {
        self.write(|tx| {
            tx.delete_table(PROFILES).map_err(internal)?;
            tx.delete_multimap_table(PROFILES_OF_USER).map_err(internal)?;
            tx.open_table(PROFILES).map_err(internal)?;
            tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn profiles_of_user(&self, user: UserId) -> StoreResult<Vec<Profile>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let index = tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
            let profiles = tx.open_table(PROFILES).map_err(internal)?;
            let mut out = Vec::new();
            for value in index.get(key(user.as_uuid())).map_err(internal)? {
                let pid = value.map_err(internal)?.value();
                if let Some(users) = profiles.get(pid).map_err(internal)? {
                    out.push(decode(pid, users.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn binding(&self, profile: ProfileId, user: UserId) -> StoreResult<Binding> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let pid = key(profile.as_uuid());
            if tx.open_table(PROFILES).map_err(internal)?.get(pid).map_err(internal)?.is_none() {
                return Ok(Binding::NoProfile);
            }
            // The index lists the user's profiles (a few), not the profile's users (thousands).
            let index = tx.open_multimap_table(PROFILES_OF_USER).map_err(internal)?;
            for value in index.get(key(user.as_uuid())).map_err(internal)? {
                if value.map_err(internal)?.value() == pid {
                    return Ok(Binding::Bound);
                }
            }
            Ok(Binding::NotBound)
        })
        .await
    }
}
