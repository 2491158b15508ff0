//! How long a trunk's calls take to ring: a decaying 95th percentile.
//!
//! The proxy sizes a trunk's progress timeout from what its calls usually
//! take, so the estimate must follow a trunk that got slower within a few
//! calls, must not be pulled down by one fast call, and must cost O(1) per
//! call. A mean does not do: ten 5 ms calls and one 600 ms call average 60 ms,
//! which is wrong for both kinds of call. The algorithm, in order:
//!
//! 1. Buckets. [`BOUNDS_US`] holds 48 upper bounds, 250 µs × 1.3^k for
//!    k = 0..=47 (each the previous × 1.3, rounded to whole microseconds):
//!    250 µs, 325 µs, 423 µs ... 4.490 ms, 5.837 ms ... 656.354 ms ...
//!    56.777348 s. A sample, rounded up to whole microseconds, goes to the
//!    first bucket whose bound is at least the sample; anything longer than
//!    the top bound is counted in the top bucket (it saturates).
//! 2. Decay. Each sample adds the current increment to its bucket, and the
//!    increment then grows by 64/63. A sample `k` samples old so weighs
//!    (63/64)^k of the newest: an exponential window whose time constant is
//!    64 samples (the last 64 carry 63 % of the weight, the last 192 95 %).
//! 3. Rescale. When the increment passes 2^32 (every ~1,400 samples), every
//!    bucket and the increment are divided by the increment: relative weights
//!    are unchanged and the numbers stay in range. Recording is O(1)
//!    amortised; nothing is ever multiplied per sample but the increment.
//! 4. Estimate. Walking the buckets from the shortest, the first bucket where
//!    the cumulative weight reaches 95 % of the total gives its upper bound:
//!    at least 95 % of the (weighted) calls rang within it.
//! 5. Too few. Fewer than [`MIN_SAMPLES`] samples give no estimate.
//!
//! A high percentile rises fast and falls slowly. After a hundred 5 ms calls,
//! the third 600 ms call moves the estimate to 656 ms (the new calls carry
//! 5 % of the weight); after two hundred 600 ms calls it takes 188 fast ones
//! to bring it back (the old ones must fall under 5 %). For a timeout that is
//! the safe direction.

use std::time::Duration;

use crate::Progress;

/// How many buckets.
const BUCKETS: usize = 48;

/// Upper bounds of the buckets in microseconds: 250 × 1.3^k, each the
/// previous × 13 / 10 rounded to the nearest microsecond.
pub(crate) const BOUNDS_US: [u64; BUCKETS] = [
    250, 325, 423, 550, 715, 930, 1_209, 1_572, 2_044, 2_657, 3_454, 4_490, 5_837, 7_588, 9_864,
    12_823, 16_670, 21_671, 28_172, 36_624, 47_611, 61_894, 80_462, 104_601, 135_981, 176_775,
    229_808, 298_750, 388_375, 504_888, 656_354, 853_260, 1_109_238, 1_442_009, 1_874_612,
    2_436_996, 3_168_095, 4_118_524, 5_354_081, 6_960_305, 9_048_397, 11_762_916, 15_291_791,
    19_879_328, 25_843_126, 33_596_064, 43_674_883, 56_777_348,
];

/// The largest bound: longer samples are counted as this.
const TOP_US: u64 = 56_777_348;

/// Samples needed before there is an estimate.
pub(crate) const MIN_SAMPLES: u64 = 8;

/// The increment's growth per sample: the window's time constant is 64.
const GROWTH: f64 = 64.0 / 63.0;

/// Rescale once the increment is this large.
const RESCALE_AT: f64 = 4_294_967_296.0;

/// The share of the weight the estimate must cover.
const QUANTILE: f64 = 0.95;

/// The bucket a sample is counted in (step 1).
pub(crate) fn bucket(sample: Duration) -> usize {
    let us = u64::try_from(sample.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX);
    BOUNDS_US
        .partition_point(|&bound| bound < us)
        .min(BUCKETS - 1)
}

/// The upper bound of bucket `i` (the top bound for anything past the end).
pub(crate) fn bound(i: usize) -> Duration {
    Duration::from_micros(BOUNDS_US.get(i).copied().unwrap_or(TOP_US))
}

/// A decaying 95th percentile of one kind of duration.
#[derive(Clone, Debug)]
struct Percentile {
    weights: [f64; BUCKETS],
    /// What the next sample adds (step 2).
    increment: f64,
    samples: u64,
}

impl Default for Percentile {
    fn default() -> Self {
        Self {
            weights: [0.0; BUCKETS],
            increment: 1.0,
            samples: 0,
        }
    }
}

impl Percentile {
    fn record(&mut self, sample: Duration) {
        if let Some(w) = self.weights.get_mut(bucket(sample)) {
            *w += self.increment;
        }
        self.samples = self.samples.saturating_add(1);
        self.increment *= GROWTH;
        if self.increment > RESCALE_AT {
            let scale = self.increment;
            for w in &mut self.weights {
                *w /= scale;
            }
            self.increment = 1.0;
        }
    }

    fn estimate(&self) -> Option<Duration> {
        if self.samples < MIN_SAMPLES {
            return None;
        }
        let total: f64 = self.weights.iter().sum();
        let target = total * QUANTILE;
        let mut cumulative = 0.0;
        for (i, w) in self.weights.iter().enumerate() {
            cumulative += w;
            if *w > 0.0 && cumulative >= target {
                return Some(bound(i));
            }
        }
        // Summed in the same order, the last non-empty bucket reaches the
        // total; this is only reached if every weight underflowed to zero.
        self.weights
            .iter()
            .rposition(|w| *w > 0.0)
            .map(bound)
            .or(Some(bound(BUCKETS - 1)))
    }
}

/// What one trunk's calls take to ring: see the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Learner {
    invite_to_ringing: Percentile,
    trying_to_ringing: Percentile,
    samples: u64,
}

impl Learner {
    /// One call's timings; `trying_to_ringing` only if a 100 Trying came.
    pub(crate) fn record(
        &mut self,
        invite_to_ringing: Duration,
        trying_to_ringing: Option<Duration>,
    ) {
        self.samples = self.samples.saturating_add(1);
        self.invite_to_ringing.record(invite_to_ringing);
        if let Some(d) = trying_to_ringing {
            self.trying_to_ringing.record(d);
        }
    }

    /// The estimates.
    pub(crate) fn progress(&self) -> Progress {
        Progress {
            invite_to_ringing: self.invite_to_ringing.estimate(),
            trying_to_ringing: self.trying_to_ringing.estimate(),
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn p95(l: &Learner) -> Option<Duration> {
        l.progress().invite_to_ringing
    }

    #[test]
    fn bounds_are_the_documented_table() {
        let mut b = 250u64;
        for (i, &bound) in BOUNDS_US.iter().enumerate() {
            assert_eq!(bound, b, "bucket {i}");
            b = (b * 13 + 5) / 10;
        }
        assert_eq!(BOUNDS_US.last(), Some(&TOP_US));
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(
            bucket(Duration::from_micros(250)),
            0,
            "bounds are inclusive"
        );
        assert_eq!(bucket(Duration::from_nanos(250_001)), 1, "rounded up");
        assert_eq!(bound(bucket(ms(5))), Duration::from_micros(5_837));
        assert_eq!(bound(bucket(ms(600))), Duration::from_micros(656_354));
    }

    #[test]
    fn steady_samples_give_the_bound_just_above() {
        let mut l = Learner::default();
        for i in 1..=7 {
            l.record(ms(5), None);
            assert_eq!(p95(&l), None, "{i} samples are too few");
        }
        l.record(ms(5), None);
        assert_eq!(p95(&l), Some(Duration::from_micros(5_837)));
        for _ in 0..1_000 {
            l.record(ms(5), None);
        }
        assert_eq!(p95(&l), Some(Duration::from_micros(5_837)));
        assert_eq!(l.progress().samples, 1_008);
    }

    #[test]
    fn trying_to_ringing_counts_only_calls_that_had_a_trying() {
        let mut l = Learner::default();
        for _ in 0..20 {
            l.record(ms(50), None);
        }
        for _ in 0..7 {
            l.record(ms(50), Some(ms(40)));
        }
        assert_eq!(l.progress().trying_to_ringing, None);
        l.record(ms(50), Some(ms(40)));
        let p = l.progress();
        assert_eq!(p.trying_to_ringing, Some(Duration::from_micros(47_611)));
        assert_eq!(p.invite_to_ringing, Some(Duration::from_micros(61_894)));
        assert_eq!(p.samples, 28);
    }

    #[test]
    fn a_ten_percent_slow_tail_is_captured() {
        // One call in ten takes 600 ms: always more than 5 % of the weight.
        let mut l = Learner::default();
        for i in 0..2_000 {
            l.record(if i % 10 == 0 { ms(600) } else { ms(5) }, None);
            if i >= 7 {
                assert_eq!(p95(&l), Some(Duration::from_micros(656_354)), "call {i}");
            }
        }
    }

    #[test]
    fn a_two_percent_slow_tail_is_not() {
        // One call in fifty: at most 2.9 % of the weight, even right after one.
        let mut l = Learner::default();
        for i in 1..=2_000 {
            l.record(if i % 50 == 0 { ms(600) } else { ms(5) }, None);
            if i >= 8 {
                assert_eq!(p95(&l), Some(Duration::from_micros(5_837)), "call {i}");
            }
        }
    }

    #[test]
    fn a_slower_trunk_is_followed_within_a_few_calls() {
        let mut l = Learner::default();
        for _ in 0..100 {
            l.record(ms(5), None);
        }
        let mut crossed = None;
        for n in 1..=64 {
            l.record(ms(600), None);
            if crossed.is_none() && p95(&l) == Some(Duration::from_micros(656_354)) {
                crossed = Some(n);
            }
        }
        assert_eq!(
            crossed,
            Some(3),
            "the third slow call carries 5 % of the weight"
        );
        assert_eq!(p95(&l), Some(Duration::from_micros(656_354)));
    }

    #[test]
    fn old_slow_samples_decay_away() {
        let mut l = Learner::default();
        for _ in 0..200 {
            l.record(ms(600), None);
        }
        let mut n = 0;
        while p95(&l) != Some(Duration::from_micros(5_837)) {
            l.record(ms(5), None);
            n += 1;
            assert!(n < 1_000, "never decayed");
        }
        assert_eq!(n, 188, "the slow calls fall under 5 % of the weight");
    }

    #[test]
    fn rescaling_changes_nothing() {
        // Past 2^32 the increment is rescaled (about every 1,400 samples):
        // the same pattern gives the same answers before and after.
        let mut l = Learner::default();
        let mut seen = Vec::new();
        for i in 0..10_000u32 {
            let d = if i % 16 < 2 { ms(300) } else { ms(20) };
            l.record(d, None);
            if i % 1_600 == 1_599 {
                seen.push(p95(&l));
            }
        }
        assert!(l.invite_to_ringing.increment <= RESCALE_AT);
        assert_eq!(seen, vec![Some(Duration::from_micros(388_375)); 6]);
    }

    #[test]
    fn zero_and_huge_durations() {
        let mut l = Learner::default();
        for _ in 0..8 {
            l.record(Duration::ZERO, Some(Duration::ZERO));
        }
        let p = l.progress();
        assert_eq!(p.invite_to_ringing, Some(Duration::from_micros(250)));
        assert_eq!(p.trying_to_ringing, Some(Duration::from_micros(250)));
        for _ in 0..64 {
            l.record(Duration::from_secs(3 * 3600), Some(Duration::MAX));
        }
        let p = l.progress();
        assert_eq!(p.invite_to_ringing, Some(Duration::from_micros(TOP_US)));
        assert_eq!(p.trying_to_ringing, Some(Duration::from_micros(TOP_US)));
    }
}
