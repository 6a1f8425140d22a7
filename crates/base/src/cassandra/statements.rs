//! The statements base runs, prepared once per session: requests only execute them.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::paging::PAGE_SIZE;

/// The statements that also load data from outside base (the benchmarks seed keyspaces with
/// them and measure the query base serves), so that both write the rows base reads.
pub mod cql {
    /// Binds `(id uuid, name text)`.
    pub fn insert_user(ks: &str) -> String {
        format!("INSERT INTO {ks}.user (id, name) VALUES (?, ?)")
    }

    /// Binds `(id uuid, users set<uuid>)`.
    pub fn insert_profile(ks: &str) -> String {
        format!("INSERT INTO {ks}.profile (id, users) VALUES (?, ?)")
    }

    /// The profiles holding a user: binds `(user uuid)`, answers `(id, users)` rows, paged.
    pub fn profiles_of_user(ks: &str) -> String {
        format!("SELECT id, users FROM {ks}.profile WHERE users CONTAINS ?")
    }
}

/// Statements prepared once per session.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) ping: PreparedStatement,
    pub(super) list_users: PreparedStatement,
    pub(super) get_user: PreparedStatement,
    pub(super) insert_user: PreparedStatement,
    pub(super) update_user: PreparedStatement,
    pub(super) delete_user: PreparedStatement,
    pub(super) truncate_users: PreparedStatement,
    pub(super) list_profiles: PreparedStatement,
    pub(super) get_profile: PreparedStatement,
    pub(super) insert_profile: PreparedStatement,
    pub(super) update_profile: PreparedStatement,
    pub(super) swap_profile: PreparedStatement,
    pub(super) delete_profile: PreparedStatement,
    pub(super) truncate_profiles: PreparedStatement,
    pub(super) profiles_of_user: PreparedStatement,
    pub(super) remove_user_from_profile: PreparedStatement,
    pub(super) binding: PreparedStatement,
}

pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Statements, scylla::errors::PrepareError> {
    let paged = |mut statement: PreparedStatement| {
        statement.set_page_size(PAGE_SIZE);
        statement
    };
    let mut lwt_update_user =
        session.prepare(format!("UPDATE {ks}.user SET name = ? WHERE id = ? IF EXISTS")).await?;
    let mut lwt_update_profile =
        session.prepare(format!("UPDATE {ks}.profile SET users = ? WHERE id = ? IF EXISTS")).await?;
    // A profile's members replaced only if they are still those read before: then who left is
    // known, and announced pair by pair.
    let mut lwt_swap_profile =
        session.prepare(format!("UPDATE {ks}.profile SET users = ? WHERE id = ? IF users = ?")).await?;
    // A replace must not resurrect a row deleted a moment before (a plain UPDATE would write
    // the row back), hence the conditional update.
    for lwt in [&mut lwt_update_user, &mut lwt_update_profile, &mut lwt_swap_profile] {
        lwt.set_serial_consistency(Some(scylla::statement::SerialConsistency::LocalSerial));
    }
    Ok(Statements {
        ping: session.prepare("SELECT release_version FROM system.local").await?,
        list_users: paged(session.prepare(format!("SELECT id, name FROM {ks}.user")).await?),
        get_user: session.prepare(format!("SELECT id, name FROM {ks}.user WHERE id = ?")).await?,
        insert_user: session.prepare(cql::insert_user(ks)).await?,
        update_user: lwt_update_user,
        delete_user: session.prepare(format!("DELETE FROM {ks}.user WHERE id = ?")).await?,
        truncate_users: session.prepare(format!("TRUNCATE {ks}.user")).await?,
        list_profiles: paged(session.prepare(format!("SELECT id, users FROM {ks}.profile")).await?),
        get_profile: session.prepare(format!("SELECT id, users FROM {ks}.profile WHERE id = ?")).await?,
        insert_profile: session.prepare(cql::insert_profile(ks)).await?,
        update_profile: lwt_update_profile,
        swap_profile: lwt_swap_profile,
        delete_profile: session.prepare(format!("DELETE FROM {ks}.profile WHERE id = ?")).await?,
        truncate_profiles: session.prepare(format!("TRUNCATE {ks}.profile")).await?,
        profiles_of_user: paged(session.prepare(cql::profiles_of_user(ks)).await?),
        remove_user_from_profile: session
            .prepare(format!("UPDATE {ks}.profile SET users = users - ? WHERE id = ?"))
            .await?,
        // One element of the set (Cassandra 4.0+): the user's id when it is in the profile,
        // null when not, no row when there is no profile — never the other 9,999 ids.
        binding: session.prepare(format!("SELECT users[?] FROM {ks}.profile WHERE id = ?")).await?,
    })
}
