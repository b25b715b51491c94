//! The synthetic source: frames drawn by glimpse itself.
//!
//! A textured background with sensor noise and `shapes` coloured squares
//! that bounce around at different speeds, produced in real time at
//! `frame_rate`. The scene is a pure function of the seed and the stream
//! time, so only the frames the sampler keeps are ever drawn. It needs
//! nothing installed, which makes it the source of choice for trying the
//! daemon and for tests of everything downstream of capture.

use std::time::{Duration, Instant};

use super::{Picture, Pulled, Sampler, Session, Source, SourceError};

/// What the synthetic scene looks like.
#[derive(Debug, Clone)]
pub struct Scene {
    width: u32,
    height: u32,
    seed: u64,
    squares: Vec<Square>,
}

#[derive(Debug, Clone)]
struct Square {
    colour: [u8; 3],
    side: u32,
    // Start position and velocity in pixels and pixels per second.
    x0: f64,
    y0: f64,
    vx: f64,
    vy: f64,
}

const PALETTE: [[u8; 3]; 6] = [
    [220, 40, 40],
    [40, 90, 220],
    [40, 180, 60],
    [235, 200, 30],
    [160, 60, 200],
    [240, 130, 20],
];

impl Scene {
    /// A scene of `shapes` squares on a `width`×`height` canvas.
    pub fn new(width: u32, height: u32, shapes: u32, seed: u64) -> Scene {
        let mut rng = XorShift::new(seed);
        let side = (width.min(height) / 6).max(2);
        let squares = (0..shapes)
            .map(|i| Square {
                colour: PALETTE[i as usize % PALETTE.len()],
                side,
                x0: rng.unit() * f64::from(width - side),
                y0: rng.unit() * f64::from(height - side),
                vx: (rng.unit() - 0.5) * f64::from(width) * 0.4,
                vy: (rng.unit() - 0.5) * f64::from(height) * 0.4,
            })
            .collect();
        Scene {
            width,
            height,
            seed,
            squares,
        }
    }

    /// Draws the frame at stream time `pts` as packed RGB.
    pub fn render(&self, pts: Duration) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut rgb = vec![0u8; w * h * 3];
        // Noise differs per frame, like a real sensor's.
        let mut rng =
            XorShift::new(self.seed ^ (pts.as_nanos() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for y in 0..h {
            for x in 0..w {
                let texture = ((x / 8 + y / 8) % 2) as i32 * 24 + ((x * 3 + y * 5) % 32) as i32;
                let noise = (rng.next() % 9) as i32 - 4;
                let v = (90 + texture + noise).clamp(0, 255) as u8;
                let i = (y * w + x) * 3;
                rgb[i..i + 3].copy_from_slice(&[v, v, v.saturating_add(10)]);
            }
        }
        let t = pts.as_secs_f64();
        for square in &self.squares {
            let side = square.side as usize;
            let x = bounce(square.x0 + square.vx * t, (w - side) as f64) as usize;
            let y = bounce(square.y0 + square.vy * t, (h - side) as f64) as usize;
            for row in y..y + side {
                for col in x..x + side {
                    let i = (row * w + col) * 3;
                    rgb[i..i + 3].copy_from_slice(&square.colour);
                }
            }
        }
        rgb
    }
}

/// The synthetic scene as a capture source, paced in real time.
pub(crate) struct SyntheticSource {
    scene: Scene,
    period: Duration,
    fps: f64,
}

impl SyntheticSource {
    /// Frames at `frame_rate`, of which only about `fps` per second are
    /// drawn: a frame the sampler would drop is never rendered.
    pub fn new(scene: Scene, frame_rate: f64, fps: f64) -> Self {
        SyntheticSource {
            scene,
            // Whole nanoseconds, so that pts are exact multiples of the period.
            period: Duration::from_nanos((1e9 / frame_rate).round() as u64),
            fps,
        }
    }
}

impl Source for SyntheticSource {
    fn open(&mut self) -> Result<Box<dyn Session>, SourceError> {
        Ok(Box::new(SyntheticSession {
            scene: self.scene.clone(),
            period: self.period,
            started: Instant::now(),
            next: 0,
            sampler: Sampler::new(self.fps),
        }))
    }
}

struct SyntheticSession {
    scene: Scene,
    period: Duration,
    started: Instant,
    next: u32,
    sampler: Sampler,
}

impl Session for SyntheticSession {
    fn pull(&mut self, timeout: Duration) -> Result<Pulled, SourceError> {
        let give_up = Instant::now() + timeout;
        loop {
            let pts = self.period * self.next;
            let due = self.started + pts;
            if due > give_up {
                std::thread::sleep(give_up.saturating_duration_since(Instant::now()));
                return Ok(Pulled::Idle);
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            self.next += 1;
            if self.sampler.admit(pts) {
                return Ok(Pulled::Picture(Picture {
                    pts: Some(pts),
                    width: self.scene.width,
                    height: self.scene.height,
                    rgb: self.scene.render(pts),
                }));
            }
        }
    }
}

/// Folds a position moving along a line into [0, span] like a ball
/// bouncing between two walls.
fn bounce(position: f64, span: f64) -> f64 {
    if span <= 0.0 {
        return 0.0;
    }
    let period = 2.0 * span;
    let p = position.rem_euclid(period);
    if p <= span {
        p
    } else {
        period - p
    }
}

/// A tiny, fast, seedable generator; the noise needs no better.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_configured_size_and_move() {
        let scene = Scene::new(64, 48, 2, 7);
        let a = scene.render(Duration::ZERO);
        let b = scene.render(Duration::from_secs(1));
        assert_eq!(a.len(), 64 * 48 * 3);
        let changed = a
            .chunks(3)
            .zip(b.chunks(3))
            .filter(|(p, q)| p.iter().zip(q.iter()).any(|(u, v)| u.abs_diff(*v) > 20))
            .count();
        assert!(
            changed > 50,
            "squares moved: {changed} pixels changed a lot"
        );
    }

    #[test]
    fn an_empty_scene_differs_only_by_noise() {
        let scene = Scene::new(32, 32, 0, 1);
        let a = scene.render(Duration::ZERO);
        let b = scene.render(Duration::from_millis(500));
        assert_ne!(a, b, "sensor noise changes every frame");
        assert!(a.iter().zip(&b).all(|(u, v)| u.abs_diff(*v) <= 8));
    }

    #[test]
    fn bounce_stays_in_range() {
        for i in -100..100 {
            let p = bounce(f64::from(i) * 3.7, 50.0);
            assert!((0.0..=50.0).contains(&p));
        }
    }
}
