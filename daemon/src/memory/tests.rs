use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::frame::FrameMeta;

const GRID: u32 = 8;
const DIM: usize = 4;

/// A frame keeping the tokens at `positions`, every token equal to `value`
/// in direction `dir` (so similarity between frames is controlled).
fn kept(seq: u64, positions: &[u32], dir: usize, value: f32) -> Kept {
    let n = (GRID * GRID) as usize;
    let mut mask = vec![false; n];
    let mut tokens = Vec::new();
    for &p in positions {
        mask[p as usize] = true;
        tokens.extend((0..DIM).map(|d| if d == dir { value } else { 0.1 }));
    }
    Kept {
        meta: FrameMeta {
            camera: Arc::from("cam"),
            seq,
            pts: Duration::from_millis(seq * 500),
            wall_time: SystemTime::UNIX_EPOCH,
            discont: seq == 0,
        },
        rows: GRID,
        cols: GRID,
        dim: DIM,
        mask,
        positions: positions.to_vec(),
        tokens,
    }
}

fn bank(capacities: [usize; 3]) -> MemoryBank {
    MemoryBank::new(
        GRID,
        DIM,
        &MemoryConfig {
            capacities,
            ..MemoryConfig::default()
        },
    )
}

fn times(bank: &MemoryBank, level: usize) -> Vec<u64> {
    bank.level(level)
        .iter()
        .map(|e| e.pts.as_millis() as u64 / 500)
        .collect()
}

#[test]
fn frames_are_routed_by_their_index_and_pooled_for_their_level() {
    let mut b = bank([4, 8, 24]);
    for k in 0..9 {
        b.push(&kept(k, &[0, 1, 8, 9, 63], 0, 1.0));
    }
    assert_eq!(times(&b, 0), vec![0, 8]);
    assert_eq!(times(&b, 1), vec![4]);
    assert_eq!(times(&b, 2), vec![1, 2, 3, 5, 6, 7]);
    // Level 0: the full grid; level 1: 2x2 pooled (4x4 grid), the four
    // top-left tokens become one cell; level 2: 4x4 pooled (2x2 grid).
    assert_eq!(
        (b.level(0)[0].side, b.level(0)[0].cells.clone()),
        (8, vec![0, 1, 8, 9, 63])
    );
    assert_eq!(
        (b.level(1)[0].side, b.level(1)[0].cells.clone()),
        (4, vec![0, 15])
    );
    assert_eq!(
        (b.level(2)[0].side, b.level(2)[0].cells.clone()),
        (2, vec![0, 3])
    );
}

#[test]
fn a_pooled_cell_averages_the_kept_tokens_under_it_and_absent_cells_stay_absent() {
    let entry = Entry {
        pts: Duration::ZERO,
        side: 4,
        cells: vec![0, 1, 5, 10],
        tokens: vec![1.0, 0.0, 3.0, 0.0, 5.0, 0.0, 7.0, 1.0],
        descriptor: vec![],
    };
    let pooled = pool(&entry, 2);
    assert_eq!(pooled.side, 2);
    assert_eq!(
        pooled.cells,
        vec![0, 3],
        "cells 1 and 2 of the coarse grid had no token"
    );
    assert_eq!(pooled.tokens, vec![3.0, 0.0, 7.0, 1.0]);
}

#[test]
fn eviction_drops_the_earlier_of_the_most_similar_adjacent_pair_and_cascades() {
    let mut b = bank([2, 4, 2]);
    // k = 0 and 8 go to level 0; with capacity 2, k = 16 overflows it.
    // Frames 0 and 8 are alike, 16 is different: 0 (the earlier of the
    // most similar pair) is evicted to level 1.
    for k in 0..=16u64 {
        let dir = if k == 16 { 1 } else { 0 };
        b.push(&kept(k, &[0, 9, 18], dir, 1.0));
    }
    assert_eq!(times(&b, 0), vec![8, 16]);
    assert!(
        times(&b, 1).contains(&0),
        "the evicted frame moved down: {:?}",
        times(&b, 1)
    );
    let moved = b.level(1).iter().find(|e| e.pts == Duration::ZERO).unwrap();
    assert_eq!(moved.side, 4, "pooled once more on the way");
    for level in 0..LEVELS {
        let t = times(&b, level);
        assert!(
            t.windows(2).all(|w| w[0] < w[1]),
            "level {level} in time order: {t:?}"
        );
        assert!(t.len() <= [2, 4, 2][level]);
    }
    // Level 2 overflowed all along: its survivors are the least alike.
    assert_eq!(b.lens()[2], 2);
}

#[test]
fn memory_stays_bounded_over_100k_frames_and_the_readout_within_its_bound() {
    let mut b = bank([4, 8, 24]);
    let mut bytes_at = Vec::new();
    for k in 0..100_000u64 {
        // Varying content: different cells and directions.
        let cells: Vec<u32> = (0..(k % 64) as u32)
            .map(|i| (i * 7 + k as u32) % 64)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        b.push(&kept(
            k,
            &cells,
            (k % DIM as u64) as usize,
            1.0 + (k % 13) as f32,
        ));
        if [999, 9_999, 99_999].contains(&k) {
            bytes_at.push(b.token_bytes());
        }
    }
    assert_eq!(b.lens(), [4, 8, 24]);
    let canvas = b.canvas();
    let readout = b.readout(&canvas);
    let tokens: usize = readout.iter().map(|i| i.cells.len()).sum();
    assert!(tokens <= b.token_bound(), "{tokens} > {}", b.token_bound());
    assert_eq!(b.token_bound(), 4 * 64 + 8 * 16 + 24 * 4 + 64);
    assert!(readout.windows(2).all(|w| w[0].pts <= w[1].pts || w[1].now));
    assert!(readout.last().unwrap().now);
    // The data held never grows past what full levels hold.
    let max = (b.token_bound() + (4 + 8 + 24)) * DIM * 4;
    assert!(bytes_at.iter().all(|&x| x <= max), "{bytes_at:?} vs {max}");
}

#[test]
fn the_canvas_holds_the_last_kept_token_of_each_position() {
    let mut b = bank([4, 8, 24]);
    b.push(&kept(0, &[0, 1], 0, 1.0));
    b.push(&kept(1, &[1, 2], 1, 2.0));
    let (cells, tokens) = b.canvas();
    assert_eq!(cells, vec![0, 1, 2]);
    assert_eq!(
        &tokens[DIM..2 * DIM],
        &[0.1, 2.0, 0.1, 0.1],
        "position 1 from the newer frame"
    );
}

#[test]
fn snapshots_round_trip_and_bad_ones_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam.mem");
    let mut b = bank([4, 8, 24]);
    for k in 0..50 {
        b.push(&kept(k, &[(k % 64) as u32, 3], (k % 4) as usize, 1.0));
    }
    save_snapshot(&path, &b, "model-a").unwrap();
    let empty = bank([4, 8, 24]);
    let back = load_snapshot(&path, "model-a", &empty).unwrap().unwrap();
    assert_eq!(back, b);
    assert!(
        load_snapshot(&dir.path().join("none.mem"), "model-a", &empty)
            .unwrap()
            .is_none()
    );

    let other = load_snapshot(&path, "model-b", &empty)
        .unwrap_err()
        .to_string();
    assert!(
        other.ends_with("made with another model (model-a), now model-b"),
        "{other}"
    );
    let resized = load_snapshot(&path, "model-a", &bank([4, 8, 12]))
        .unwrap_err()
        .to_string();
    assert!(
        resized.contains("capacities [4, 8, 24], now [4, 8, 12]"),
        "{resized}"
    );

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_snapshot(&path, "model-a", &empty)
        .unwrap_err()
        .to_string()
        .ends_with("the file is truncated"));
    std::fs::write(&path, b"garbage").unwrap();
    assert!(load_snapshot(&path, "model-a", &empty)
        .unwrap_err()
        .to_string()
        .ends_with("not a glimpse memory snapshot"));
}

/// A window's change: the cells pushed inside it, as they were when it
/// began (the push at its start is the scene before) and as they are now;
/// cells no push inside it touched are left out.
#[test]
fn a_window_holds_the_cells_pushed_inside_it_before_and_now() {
    let mut b = bank([4, 8, 24]);
    b.keep_history(Duration::from_secs(2));
    // Frames 0.5 s apart: the whole grid at 0 s, then frame k changes
    // cell k (seq 1..=8, up to 4.0 s).
    let all: Vec<u32> = (0..GRID * GRID).collect();
    b.push(&kept(0, &all, 0, 1.0));
    for seq in 1..=8u64 {
        b.push(&kept(seq, &[seq as u32], 1, seq as f32));
    }
    // Now is 4.0 s: the window (2.0, 4.0] holds seqs 5..=8.
    let w = b.changed_since(Duration::from_secs(2));
    assert_eq!(w.before.0, vec![5, 6, 7, 8]);
    assert_eq!(w.now.0, vec![5, 6, 7, 8]);
    for (i, cell) in (5..=8u32).enumerate() {
        let before = &w.before.1[i * DIM..(i + 1) * DIM];
        let now = &w.now.1[i * DIM..(i + 1) * DIM];
        assert_eq!(before, [1.0, 0.1, 0.1, 0.1], "cell {cell} before");
        assert_eq!(now[1], cell as f32, "cell {cell} now");
    }
    // The history reaches back 2 s from the newest push: a longer window
    // sees no further (seq 4, at 2.0 s, is forgotten).
    assert_eq!(
        b.changed_since(Duration::from_secs(1)).now.0,
        vec![5, 6, 7, 8]
    );
    // A push that kept a token equal to the one before changes nothing.
    b.push(&kept(9, &[0], 0, 1.0));
    assert_eq!(
        b.changed_since(Duration::from_millis(4000)).now.0,
        Vec::<u32>::new()
    );
    // Without history nothing is undone, so nothing changed.
    let mut plain = bank([4, 8, 24]);
    plain.push(&kept(0, &[0], 0, 1.0));
    plain.push(&kept(1, &[1], 0, 2.0));
    assert_eq!(plain.changed_since(Duration::ZERO), Changed::default());
}

/// A cell first seen inside the window is in "now" only.
#[test]
fn a_cell_first_seen_inside_the_window_is_new_in_it() {
    let mut b = bank([4, 8, 24]);
    b.keep_history(Duration::from_secs(2));
    b.push(&kept(0, &[0, 1], 0, 1.0));
    b.push(&kept(1, &[1, 2], 0, 2.0));
    let w = b.changed_since(Duration::ZERO);
    assert_eq!(w.before.0, vec![1]);
    assert_eq!(w.now.0, vec![1, 2]);
}
