use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::frame::FrameMeta;

const ROWS: u32 = 4;
const COLS: u32 = 4;
const DIM: usize = 8;

fn meta(seq: u64, discont: bool) -> FrameMeta {
    FrameMeta {
        camera: Arc::from("cam"),
        seq,
        pts: Duration::from_millis(seq * 500),
        wall_time: SystemTime::UNIX_EPOCH,
        discont,
    }
}

/// A 32x32 frame of flat grey with sensor noise, optionally with a bright
/// block covering patch (row 1, col 2).
fn frame(seq: u64, block: bool, noise_seed: u64) -> Frame {
    let (w, h) = (32u32, 32u32);
    let mut state = noise_seed | 1;
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 5) as u8;
            let inside = block && (16..24).contains(&x) && (8..16).contains(&y);
            let v = if inside { 230 } else { 100 + noise };
            rgb.extend_from_slice(&[v, v, v]);
        }
    }
    Frame {
        camera: Arc::from("cam"),
        seq,
        pts: Duration::from_millis(seq * 500),
        wall_time: SystemTime::UNIX_EPOCH,
        discont: seq == 0,
        width: w,
        height: h,
        rgb,
    }
}

/// Tokens that follow the pixels, like a (very) simple encoder: a pattern
/// proper to each position (a real encoder sees the background's texture)
/// plus the patch's brightness as an angle between two fixed directions.
fn tokens_of(frame: &Frame) -> FrameTokens {
    let brightness = patch_change(
        &vec![0; frame.rgb.len()],
        &frame.rgb,
        frame.width,
        frame.height,
        ROWS,
        COLS,
    );
    let mut features = Vec::new();
    for (p, c) in brightness.into_iter().enumerate() {
        for d in 0..DIM {
            let texture = if (p * 5 + d * 3) % 7 < 3 { 1.0 } else { -1.0 };
            let (a, b) = (
                if d % 2 == 0 { 1.0 } else { 0.0 },
                if d % 2 == 1 { 1.0 } else { 0.0 },
            );
            let angle = std::f32::consts::PI * c;
            features.push(texture + 3.0 * (angle.cos() * a + angle.sin() * b));
        }
    }
    FrameTokens {
        meta: frame.meta(),
        rows: ROWS,
        cols: COLS,
        dim: DIM,
        features,
    }
}

fn tokens(seq: u64, discont: bool, values: impl Fn(usize, usize) -> f32) -> FrameTokens {
    let n = (ROWS * COLS) as usize;
    FrameTokens {
        meta: meta(seq, discont),
        rows: ROWS,
        cols: COLS,
        dim: DIM,
        features: (0..n * DIM).map(|i| values(i / DIM, i % DIM)).collect(),
    }
}

#[test]
fn a_static_stream_keeps_nothing_after_the_first_frame() {
    let mut gate = PixelGate::new(0.02, ROWS, COLS);
    let mut dropper = TokenDropper::new(&DtdConfig::default());
    for seq in 0..10 {
        let f = frame(seq, false, seq + 1);
        let decision = gate.check(&f);
        assert_eq!(decision.encode, seq == 0, "frame {seq}: only noise changed");
        let kept = dropper.drop_unchanged(tokens_of(&f));
        assert_eq!(
            kept.retention(),
            if seq == 0 { 1.0 } else { 0.0 },
            "frame {seq}"
        );
    }
}

#[test]
fn a_change_in_one_region_keeps_exactly_the_tokens_covering_it() {
    // Pixel variant: only the block's patch passes the gate.
    let mut gate = PixelGate::new(0.02, ROWS, COLS);
    gate.check(&frame(0, false, 1));
    let decision = gate.check(&frame(1, true, 2));
    assert!(decision.encode);
    let moved: Vec<usize> = decision
        .change
        .iter()
        .enumerate()
        .filter(|(_, &c)| c >= 0.02)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(moved, vec![6], "patch (1, 2) only");

    // Feature variant, both similarities and references.
    for similarity in [Similarity::Centered, Similarity::Cosine] {
        for reference in [Reference::LastKept, Reference::Previous] {
            let mut dropper = TokenDropper::new(&DtdConfig {
                tau: 0.9,
                similarity,
                reference,
                ..DtdConfig::default()
            });
            dropper.drop_unchanged(tokens_of(&frame(0, false, 1)));
            let kept = dropper.drop_unchanged(tokens_of(&frame(1, true, 2)));
            assert_eq!(kept.positions, vec![6], "{similarity:?} {reference:?}");
            assert_eq!(kept.tokens.len(), DIM);
            assert_eq!(kept.mask.iter().filter(|k| **k).count(), 1);
        }
    }
}

#[test]
fn raising_tau_never_keeps_fewer_tokens() {
    // Property over many random token pairs: the kept set at a higher tau
    // contains the kept set at a lower one.
    let mut state = 0x1234_5678u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f32 / 1000.0 - 1.0
    };
    for _ in 0..50 {
        let a: Vec<f32> = (0..ROWS as usize * COLS as usize * DIM)
            .map(|_| random())
            .collect();
        let b: Vec<f32> = (0..a.len()).map(|_| random()).collect();
        let mut previous: Option<Vec<bool>> = None;
        for step in 0..=20 {
            let tau = -1.0 + 0.1 * step as f32;
            for similarity in [Similarity::Centered, Similarity::Cosine] {
                let mut dropper = TokenDropper::new(&DtdConfig {
                    tau,
                    similarity,
                    ..DtdConfig::default()
                });
                dropper.drop_unchanged(tokens(0, true, |t, d| a[t * DIM + d]));
                let kept = dropper.drop_unchanged(tokens(1, false, |t, d| b[t * DIM + d]));
                if similarity == Similarity::Cosine {
                    if let Some(prev) = &previous {
                        assert!(
                            prev.iter().zip(&kept.mask).all(|(p, k)| !p || *k),
                            "tau {tau}"
                        );
                    }
                    previous = Some(kept.mask.clone());
                }
            }
        }
    }
}

#[test]
fn slow_drift_is_kept_by_last_kept_but_never_by_previous() {
    // Token 0 turns a little each frame; each step alone is tiny.
    let angle = |seq: u64| seq as f32 * 0.08;
    let drift = |seq: u64| {
        move |t: usize, d: usize| match (t, d) {
            (0, 0) => angle(seq).cos(),
            (0, 1) => angle(seq).sin(),
            (0, _) => 0.0,
            (_, d) => ((t * 7 + d * 3) % 5) as f32 - 2.0,
        }
    };
    let run = |reference: Reference| {
        let mut dropper = TokenDropper::new(&DtdConfig {
            tau: 0.95,
            reference,
            similarity: Similarity::Cosine,
            ..DtdConfig::default()
        });
        (0..30u64)
            .filter(|&seq| {
                dropper
                    .drop_unchanged(tokens(seq, seq == 0, drift(seq)))
                    .mask[0]
            })
            .count()
    };
    assert_eq!(
        run(Reference::Previous),
        1,
        "only the first frame: each step is below the threshold"
    );
    assert!(
        run(Reference::LastKept) >= 3,
        "the drift adds up and is kept again and again"
    );
}

#[test]
fn a_discontinuity_keeps_the_frame_whole() {
    let mut dropper = TokenDropper::new(&DtdConfig::default());
    dropper.drop_unchanged(tokens(0, true, |t, d| (t + d) as f32));
    assert_eq!(
        dropper
            .drop_unchanged(tokens(1, false, |t, d| (t + d) as f32))
            .retention(),
        0.0
    );
    assert_eq!(
        dropper
            .drop_unchanged(tokens(2, true, |t, d| (t + d) as f32))
            .retention(),
        1.0
    );
    dropper.reset();
    assert_eq!(
        dropper
            .drop_unchanged(tokens(3, false, |t, d| (t + d) as f32))
            .retention(),
        1.0
    );
}

#[test]
fn the_gate_accumulates_slow_pixel_drift_against_the_last_encoded_frame() {
    let mut gate = PixelGate::new(0.02, ROWS, COLS);
    let shade = |seq: u64, v: u8| Frame {
        rgb: vec![v; 32 * 32 * 3],
        discont: seq == 0,
        ..frame(seq, false, 1)
    };
    assert!(gate.check(&shade(0, 100)).encode);
    // +1 level per frame = 0.004 per frame: passes after 5 frames.
    let encoded: Vec<u64> = (1..13u64)
        .filter(|&s| gate.check(&shade(s, 100 + s as u8)).encode)
        .collect();
    assert_eq!(encoded, vec![6, 12]);
}

/// A motion mask: the gate does not open for a change in the patches it
/// ignores, and opens for the same change elsewhere.
#[test]
fn a_gate_ignoring_the_changed_patch_stays_shut() {
    // The block covers patch (row 1, col 2) of the 4 x 4 grid: index 6.
    let mut ignored = vec![false; 16];
    ignored[6] = true;
    let mut masked = PixelGate::new(0.02, ROWS, COLS).ignoring(ignored);
    let mut open = PixelGate::new(0.02, ROWS, COLS);
    for gate in [&mut masked, &mut open] {
        assert!(gate.check(&frame(0, false, 1)).encode, "the first frame");
    }
    assert!(!masked.check(&frame(1, true, 1)).encode);
    assert!(open.check(&frame(1, true, 1)).encode);
}
