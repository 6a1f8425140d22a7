//! Files of user–profile pairs, one `user profile` line each: what `kubescaler-bench
//! seed-pairs` writes and the load tools (`loadgen --pairs`, `kubescaler-bench sse-load`) read.

use crate::ids::{IdError, ProfileId, UserId};

/// Why a pairs file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairsError {
    #[error("line {line}: expected `user profile`, got `{text}`")]
    Shape { line: usize, text: String },
    #[error("line {line}: {source}")]
    Id {
        line: usize,
        #[source]
        source: IdError,
    },
}

/// The pairs of `text`, in order; blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<(UserId, ProfileId)>, PairsError> {
    let mut pairs = Vec::new();
    for (at, content) in text.lines().enumerate() {
        let line = at + 1;
        let mut words = content.split_whitespace();
        let (user, profile) = match (words.next(), words.next(), words.next()) {
            (None, ..) => continue,
            (Some(user), Some(profile), None) => (user, profile),
            _ => return Err(PairsError::Shape { line, text: content.chars().take(100).collect() }),
        };
        let id = |source| PairsError::Id { line, source };
        pairs.push((UserId::parse(user).map_err(id)?, ProfileId::parse(profile).map_err(id)?));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_two_ids() {
        let (u, p) = (UserId::new_random(), ProfileId::new_random());
        assert_eq!(parse(&format!("{u} {p}\n\n{u} {p}\n")).unwrap(), vec![(u, p), (u, p)]);
        assert_eq!(parse("").unwrap(), vec![]);
        assert!(matches!(parse(&format!("{u}\n")), Err(PairsError::Shape { line: 1, .. })));
        let error = parse(&format!("{u} {p}\n{u} nope\n")).unwrap_err();
        assert!(matches!(error, PairsError::Id { line: 2, .. }), "{error}");
    }
}
