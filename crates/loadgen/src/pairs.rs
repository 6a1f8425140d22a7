//! The user–profile pairs a run streams: from a file, or from `/main/profiles`; and as the
//! parent hands them to its workers, so that every process has the very same list.

use std::fmt::Write;
use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use kubescaler_core::model::Profile;
use kubescaler_core::{ProfileId, UserId, pairs};

pub type Pair = (UserId, ProfileId);

pub async fn load(url: &str, file: Option<&Path>) -> anyhow::Result<Vec<Pair>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return pairs::parse(&text).with_context(|| format!("reading {}", file.display()));
    }
    let http = crate::stream::client(None)?;
    let profiles: Vec<Profile> = http
        .get(format!("{url}/main/profiles"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}/main/profiles"))?
        .json()
        .await?;
    Ok(profiles.iter().flat_map(|profile| profile.users.iter().map(|user| (user, profile.id))).collect())
}

/// The pairs as a worker reads them on its stdin: `pairs N`, then N `user profile` lines.
/// The count tells the list's end from the rest of stdin, which stays open for as long as
/// the worker should run.
pub fn encode(pairs: &[Pair]) -> String {
    let mut text = format!("pairs {}\n", pairs.len());
    for (user, profile) in pairs {
        let _ = writeln!(text, "{user} {profile}");
    }
    text
}

/// Reads what [`encode`] wrote, and not a line more.
pub fn decode(input: &mut impl BufRead) -> anyhow::Result<Vec<Pair>> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the pairs from the parent")?;
    let count: usize = line
        .trim_end()
        .strip_prefix("pairs ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("expected `pairs N` from the parent, got `{}`", line.trim_end()))?;
    let mut text = String::new();
    for _ in 0..count {
        let before = text.len();
        input.read_line(&mut text).context("reading the pairs from the parent")?;
        anyhow::ensure!(text.len() > before, "the parent's list of pairs ended early");
    }
    Ok(pairs::parse(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_cross_to_a_worker_whole() {
        let pairs: Vec<Pair> = (0..3).map(|_| (UserId::new_random(), ProfileId::new_random())).collect();
        let text = encode(&pairs) + "rest of stdin";
        let mut input = std::io::Cursor::new(text.as_bytes());
        assert_eq!(decode(&mut input).unwrap(), pairs);
        let mut rest = String::new();
        input.read_line(&mut rest).unwrap();
        assert_eq!(rest, "rest of stdin");
        let short = encode(&pairs).replace("pairs 3", "pairs 4");
        assert!(decode(&mut std::io::Cursor::new(short.as_bytes())).is_err());
    }
}
