//! Reading every row of a paged CQL statement, page by page: how base reads whole tables and
//! index results, and how `kubescaler-bench` measures the same query without base.
//!
//! Manual paging rather than the driver's row stream: the stream runs a task per query, which
//! costs more than the whole query when the answer fits in one page, as it nearly always does
//! here.

use std::ops::ControlFlow;

use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::ExecutionError;
use scylla::response::PagingState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

/// Rows per page when reading whole tables or index results: bounded memory per round trip, and
/// a page large enough that a user's profiles (tens) come in one.
pub const PAGE_SIZE: i32 = 1000;

/// Why the rows could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The statement failed: a node unreachable, a timeout, a query Cassandra refuses. Boxed:
    /// the driver's error is large, and the rows' path should not carry its size.
    #[error(transparent)]
    Execution(Box<ExecutionError>),
    /// The answer did not hold rows of the expected columns and types.
    #[error("reading the rows: {0}")]
    Rows(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<ExecutionError> for ReadError {
    fn from(error: ExecutionError) -> Self {
        Self::Execution(Box::new(error))
    }
}

impl ReadError {
    fn rows(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Rows(Box::new(error))
    }
}

/// Hands every row of `statement` (its page size set when prepared) to `each`, page by page,
/// and stops at the first error, `each`'s or the read's.
pub async fn for_each_row<R, E>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    mut each: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    E: From<ReadError>,
{
    let mut paging = PagingState::start();
    loop {
        let (result, next) =
            session.execute_single_page(statement, &values, paging).await.map_err(ReadError::from)?;
        let rows = result.into_rows_result().map_err(ReadError::rows)?;
        for row in rows.rows::<R>().map_err(ReadError::rows)? {
            each(row.map_err(ReadError::rows)?)?;
        }
        match next.into_paging_control_flow() {
            ControlFlow::Continue(state) => paging = state,
            ControlFlow::Break(()) => return Ok(()),
        }
    }
}
