//! The process's limit on open files. Every connection is a file: a stream instance holds one
//! socket per open stream, and the soft limit a process inherits (1,024 on many systems and in
//! many container runtimes) is far below what it may hold. The soft limit is raised to the
//! hard one at start, as Go's runtime does for every program; the hard limit is the runtime's
//! or the node's to set (docs/SCALE.md).

/// Files a service keeps besides its clients' connections: its listener, its connections to
/// Redis, base and Cassandra, its logs, the runtime's own.
pub const RESERVED_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard limit; answers the limit now in force
/// (`None` where it cannot be read).
pub fn raise_open_files() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(open_files = limit, "open files limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the open files limit could not be raised");
            open_files()
        }
    }
}

/// The soft limit on open files in force now.
pub fn open_files() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}
