//! Does an answer's confidence say whether it is true? (docs/architecture.md
//! §9.) Each answer the daemon would speak up with on its own (descriptions
//! and watch-rule answers: what `trigger.min_confidence` holds back) is
//! recorded with its confidence and whether it was true; the report shows
//! the accuracy per confidence bin (a reliability table) and, per candidate
//! threshold, the share of answers that would be kept and how many of those
//! are true. `min_confidence`'s default is read off that table.

use serde::Serialize;

/// Bin edges of the reliability table (the last bin includes 1).
pub const EDGES: [f32; 9] = [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0];

/// Thresholds the report tries as `min_confidence`.
pub const THRESHOLDS: [f32; 8] = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// Answers with their confidence and truth.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    /// (confidence, true) per answer.
    samples: Vec<(f32, bool)>,
}

/// The JSON report holds the tables, not every answer.
impl Serialize for Calibration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tables {
            answers: usize,
            ece: f64,
            bins: Vec<Bin>,
            cuts: Vec<Cut>,
        }
        Tables {
            answers: self.len(),
            ece: self.ece(),
            bins: self.bins(),
            cuts: THRESHOLDS.iter().map(|&t| self.cut(t)).collect(),
        }
        .serialize(serializer)
    }
}

/// One bin of the reliability table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge (included).
    pub low: f32,
    /// Upper edge (excluded, except 1).
    pub high: f32,
    /// Answers in the bin.
    pub answers: usize,
    /// Of those, the true ones.
    pub right: usize,
    /// Mean confidence of the bin's answers (NaN when empty).
    pub mean_confidence: f64,
}

/// What holding back below a threshold would do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cut {
    /// The threshold.
    pub min_confidence: f32,
    /// Share of answers kept.
    pub kept: f64,
    /// Share of the kept answers that are true (NaN when none is kept).
    pub accuracy: f64,
    /// True answers kept over all true answers.
    pub true_kept: f64,
}

impl Calibration {
    /// Records one answer.
    pub fn add(&mut self, confidence: f32, right: bool) {
        self.samples.push((confidence, right));
    }

    /// Answers recorded.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The reliability table.
    pub fn bins(&self) -> Vec<Bin> {
        EDGES
            .windows(2)
            .map(|w| {
                let (low, high) = (w[0], w[1]);
                let last = high >= 1.0;
                let inside: Vec<&(f32, bool)> = self
                    .samples
                    .iter()
                    .filter(|(c, _)| *c >= low && (*c < high || (last && *c <= high)))
                    .collect();
                let n = inside.len();
                Bin {
                    low,
                    high,
                    answers: n,
                    right: inside.iter().filter(|(_, r)| *r).count(),
                    mean_confidence: if n == 0 {
                        f64::NAN
                    } else {
                        inside.iter().map(|(c, _)| f64::from(*c)).sum::<f64>() / n as f64
                    },
                }
            })
            .collect()
    }

    /// Expected calibration error: the answer-weighted mean gap between a
    /// bin's accuracy and its mean confidence (0 is perfectly calibrated).
    pub fn ece(&self) -> f64 {
        let n = self.samples.len().max(1) as f64;
        self.bins()
            .iter()
            .filter(|b| b.answers > 0)
            .map(|b| {
                let accuracy = b.right as f64 / b.answers as f64;
                b.answers as f64 / n * (accuracy - b.mean_confidence).abs()
            })
            .sum()
    }

    /// What holding back below `min_confidence` would do.
    pub fn cut(&self, min_confidence: f32) -> Cut {
        let kept: Vec<bool> = self
            .samples
            .iter()
            .filter(|(c, _)| *c >= min_confidence)
            .map(|(_, r)| *r)
            .collect();
        let right_kept = kept.iter().filter(|r| **r).count();
        let right_all = self.samples.iter().filter(|(_, r)| *r).count();
        Cut {
            min_confidence,
            kept: kept.len() as f64 / self.samples.len().max(1) as f64,
            accuracy: if kept.is_empty() {
                f64::NAN
            } else {
                right_kept as f64 / kept.len() as f64
            },
            true_kept: right_kept as f64 / right_all.max(1) as f64,
        }
    }

    /// The reliability table and the thresholds, as the report prints them.
    pub fn table(&self, what: &str) -> String {
        let mut out = format!(
            "\n{what}: {} answers, expected calibration error {:.3}\n",
            self.len(),
            self.ece()
        );
        out += &format!(
            "{:<13} {:>7} {:>9} {:>9}\n",
            "confidence", "answers", "accuracy", "mean conf"
        );
        for b in self.bins() {
            if b.answers == 0 {
                continue;
            }
            out += &format!(
                "[{:.2}, {:.2}{} {:>7} {:>8.1}% {:>9.3}\n",
                b.low,
                b.high,
                if b.high >= 1.0 { "]" } else { ")" },
                b.answers,
                100.0 * b.right as f64 / b.answers as f64,
                b.mean_confidence
            );
        }
        out += &format!(
            "{:<15} {:>6} {:>15} {:>16}\n",
            "min_confidence", "kept", "true of kept", "true answers kept"
        );
        for t in THRESHOLDS {
            let c = self.cut(t);
            out += &format!(
                "{:<15} {:>5.1}% {:>14.1}% {:>16.1}%\n",
                t,
                100.0 * c.kept,
                100.0 * c.accuracy,
                100.0 * c.true_kept
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_thresholds_and_ece_count_what_they_say() {
        let mut c = Calibration::default();
        // Sure and right, sure and wrong, unsure and wrong (twice), one
        // exactly at 1 (the last bin includes it).
        for (conf, right) in [
            (0.995, true),
            (0.96, false),
            (0.2, false),
            (0.25, false),
            (1.0, true),
        ] {
            c.add(conf, right);
        }
        let bins = c.bins();
        assert_eq!(bins.len(), EDGES.len() - 1);
        assert_eq!((bins[0].answers, bins[0].right), (2, 0));
        assert_eq!((bins[6].answers, bins[6].right), (1, 0));
        assert_eq!((bins[7].answers, bins[7].right), (2, 2));
        assert_eq!(bins.iter().map(|b| b.answers).sum::<usize>(), 5);
        let all = c.cut(0.0);
        assert_eq!((all.kept, all.accuracy, all.true_kept), (1.0, 0.4, 1.0));
        let sure = c.cut(0.9);
        assert_eq!((sure.kept, sure.true_kept), (0.6, 1.0));
        assert!((sure.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!(c.cut(1.1).accuracy.is_nan());
        // |0 - 0.225|·2/5 + |0 - 0.96|·1/5 + |1 - 0.9975|·2/5
        let ece = 0.225 * 0.4 + 0.96 * 0.2 + 0.0025 * 0.4;
        assert!((c.ece() - ece).abs() < 1e-6, "{}", c.ece());
    }
}
