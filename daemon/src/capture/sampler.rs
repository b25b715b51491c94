//! Sampling a stream down to the configured fps by stream time.
//!
//! Decoding may run faster or slower than real time (a file decodes as fast
//! as the CPU allows, a camera stalls), so frames are chosen by their
//! presentation time, never by the wall clock: a 30 fps clip sampled at
//! 2 fps yields frames 0.5 s apart in stream time whatever the decode speed.

use std::time::Duration;

/// Decides which frames of a stream to keep.
#[derive(Debug, Clone)]
pub struct Sampler {
    period_ns: u64,
    next_due_ns: Option<u64>,
    last_pts_ns: Option<u64>,
}

/// Frames whose pts is this close before the due time still count as due:
/// containers round timestamps to their own time base.
const TOLERANCE_NS: u64 = 1_000_000;

impl Sampler {
    /// A sampler keeping `fps` frames per second of stream time.
    pub fn new(fps: f64) -> Self {
        Sampler {
            period_ns: (1e9 / fps).round().max(1.0) as u64,
            next_due_ns: None,
            last_pts_ns: None,
        }
    }

    /// True when the frame at `pts` should be kept.
    pub fn admit(&mut self, pts: Duration) -> bool {
        let pts = pts.as_nanos() as u64;
        // A timestamp going backwards is a new stream (a looped file, a
        // reconnect): start over.
        if self.last_pts_ns.is_some_and(|last| pts < last) {
            self.next_due_ns = None;
        }
        self.last_pts_ns = Some(pts);
        match self.next_due_ns {
            Some(due) if pts + TOLERANCE_NS < due => false,
            Some(mut due) => {
                // Advance from the due time, not from the pts, so that
                // rounding never makes the sample rate drift; skip whole
                // periods after a gap.
                while due <= pts + TOLERANCE_NS {
                    due += self.period_ns;
                }
                self.next_due_ns = Some(due);
                true
            }
            None => {
                self.next_due_ns = Some(pts + self.period_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts_of(rate: f64, n: u64) -> Duration {
        Duration::from_nanos((n as f64 * 1e9 / rate).round() as u64)
    }

    #[test]
    fn thirty_fps_sampled_at_two_gives_frames_half_a_second_apart() {
        let mut sampler = Sampler::new(2.0);
        let kept: Vec<u64> = (0..300)
            .filter(|&n| sampler.admit(pts_of(30.0, n)))
            .collect();
        assert_eq!(kept.len(), 20);
        for pair in kept.windows(2) {
            let gap = pts_of(30.0, pair[1]) - pts_of(30.0, pair[0]);
            assert!((gap.as_secs_f64() - 0.5).abs() < 1e-3, "{gap:?}");
        }
    }

    #[test]
    fn a_non_integer_ratio_keeps_the_average_rate() {
        let mut sampler = Sampler::new(2.0);
        let kept = (0..2500)
            .filter(|&n| sampler.admit(pts_of(25.0, n)))
            .count();
        // 100 s of stream at 2 fps.
        assert_eq!(kept, 200);
    }

    #[test]
    fn a_slower_source_passes_every_frame() {
        let mut sampler = Sampler::new(10.0);
        assert!((0..50).all(|n| sampler.admit(pts_of(2.0, n))));
    }

    #[test]
    fn a_restarted_stream_is_sampled_from_its_first_frame() {
        let mut sampler = Sampler::new(1.0);
        assert!(sampler.admit(pts_of(30.0, 0)));
        assert!(!sampler.admit(pts_of(30.0, 10)));
        assert!(
            sampler.admit(pts_of(30.0, 0)),
            "pts went back: a new stream"
        );
    }
}
