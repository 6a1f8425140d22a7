//! Percentiles of measured values, as every report of the load tools states them.

/// The value at `p` (0 to 1) of `sorted` (ascending), by nearest rank: the smallest value at
/// or below which a share `p` of the values lie, so `p` = 1 is the maximum and a p99 of a
/// hundred values is the 99th, not the largest. `None` when there are no values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = (sorted.len() as f64 * p.clamp(0.0, 1.0)).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 0.5), Some(50));
        assert_eq!(percentile(&hundred, 0.99), Some(99));
        assert_eq!(percentile(&hundred, 1.0), Some(100));
        assert_eq!(percentile(&hundred, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }
}
