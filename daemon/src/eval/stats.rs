//! What an accuracy means: the trivial baselines of a task, and bootstrap
//! confidence intervals over clips (docs/architecture.md §9). Questions of
//! one clip are correlated (they are about the same shapes), so the
//! interval resamples whole clips, not questions.

use std::collections::BTreeMap;

use serde::Serialize;

/// Resamples per interval; with a fixed seed the report is reproducible.
pub const RESAMPLES: usize = 1000;
const SEED: u64 = 0x5eed_0f61_1a95;

/// A baseline: one answer given to every question of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// The answer.
    pub answer: String,
    /// Its accuracy over the task's questions.
    pub accuracy: f64,
}

/// The answer a task's fixed baseline gives ("nothing changed", "yes",
/// "one"), for the tasks that have one.
pub fn fixed_answer(task: &str) -> Option<&'static str> {
    match task {
        "describe" => Some(super::events::NO_EVENT),
        "rule" => Some("yes"),
        "count" => Some("one"),
        _ => None,
    }
}

/// The commonest true answer of `truths` (ties: the first in sorted
/// order, so the report does not depend on question order).
pub fn majority<'a>(truths: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in truths {
        *counts.entry(t.trim().to_lowercase()).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(a, _)| a)
}

/// Accuracy of always answering `answer` to `truths`, scored as the model.
pub fn baseline<'a>(
    task: &str,
    answer: &str,
    truths: impl IntoIterator<Item = &'a str>,
) -> Baseline {
    let (mut right, mut asked) = (0usize, 0usize);
    for t in truths {
        right += usize::from(super::score(task, answer, t));
        asked += 1;
    }
    Baseline {
        answer: answer.to_owned(),
        accuracy: right as f64 / asked.max(1) as f64,
    }
}

/// The 95% interval of right/asked when the clips are drawn again with
/// replacement; `per_clip` holds (right, asked) per clip. None without
/// clips.
pub fn bootstrap_ci(per_clip: &[(usize, usize)]) -> Option<(f64, f64)> {
    if per_clip.is_empty() {
        return None;
    }
    let mut rng = SplitMix64(SEED);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let (mut right, mut asked) = (0, 0);
            for _ in 0..per_clip.len() {
                let (r, a) = per_clip[rng.below(per_clip.len())];
                right += r;
                asked += a;
            }
            right as f64 / asked.max(1) as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Some((at(0.025), at(0.975)))
}

/// A small fixed-seed generator (SplitMix64): the intervals need no crate
/// and must not change between runs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n is a handful of clips: the modulo bias is nil).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_take_the_commonest_answer_and_score_like_the_model() {
        let truths = ["yes", "no", "No", "yes", "no"];
        assert_eq!(majority(truths).as_deref(), Some("no"));
        // A tie goes to the first in sorted order.
        assert_eq!(majority(["two", "one"]).as_deref(), Some("one"));
        assert_eq!(majority([]), None);
        let b = baseline("rule", "yes", truths);
        assert_eq!(b.accuracy, 0.4);
        // Times are scored within a second, as the model's are.
        let b = baseline("when_left", "at 3.0 s", ["at 3.5 s", "at 9.0 s"]);
        assert_eq!(b.accuracy, 0.5);
        assert_eq!(fixed_answer("describe"), Some("nothing changed"));
        assert_eq!(fixed_answer("where"), None);
    }

    #[test]
    fn bootstrap_interval_is_fixed_and_covers_the_clips_spread() {
        let clips = [(9, 10), (5, 10), (1, 10), (7, 10)];
        let ci = bootstrap_ci(&clips).unwrap();
        // The same clips give the same interval, every run.
        assert_eq!(bootstrap_ci(&clips), Some(ci));
        let (lo, hi) = ci;
        // Around the pooled 55%, inside the per-clip extremes.
        assert!(lo < 0.55 && 0.55 < hi, "{ci:?}");
        assert!(lo >= 0.1 && hi <= 0.9, "{ci:?}");
        assert!(
            hi - lo > 0.2,
            "clips this different give a wide interval: {ci:?}"
        );
        // Clips that agree give a point.
        assert_eq!(bootstrap_ci(&[(3, 4), (6, 8)]), Some((0.75, 0.75)));
        assert_eq!(bootstrap_ci(&[]), None);
    }
}
