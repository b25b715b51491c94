//! Memory: a bounded pyramid of what a camera saw (docs/architecture.md §5, after
//! VideoChat-Online's Pyramid Memory Bank), adapted to dropped tokens.
//!
//! - Three levels hold frames at the full token grid, 2×2-pooled and
//!   4×4-pooled. Encoded frame k goes to level 0 when k % 8 == 0, else to
//!   level 1 when k % 4 == 0, else to level 2.
//! - A full level evicts the earlier frame of its most similar
//!   time-adjacent pair (cosine of the entries' mean tokens), pools it once
//!   more and inserts it in the next level, in time order; the last level
//!   drops it. Entries stay in time order in every level.
//! - An entry holds the *kept* tokens of its frame; a pooled cell averages
//!   the tokens present under it and is absent when there are none.
//! - Beside the pyramid, the [canvas](MemoryBank::canvas) holds the last
//!   kept token of every grid position: what the scene looks like now.
//!
//! The readout (the model's context) is every entry in time order with its
//! time label, then the canvas; its size is bounded by construction
//! ([`MemoryBank::token_bound`]), so memory use is constant once the
//! levels are full, whatever the stream's length. Runs on a model worker
//! thread, under the camera's analysis lock.
//!
//! A model trained to describe a change from the scene before and after a
//! short window (`glimpse.describe_window_s`, docs/architecture.md §5)
//! needs the cells that changed in it, as they were when it began and as
//! they are now: the bank then keeps what each push of the last `history`
//! overwrote ([`MemoryBank::changed_since`]), a few pushes' worth at a
//! camera's frame rate.

mod config;
mod snapshot;

use std::collections::VecDeque;
use std::time::Duration;

pub use config::MemoryConfig;
pub use snapshot::{load_snapshot, remove_leftovers, save_snapshot, SnapshotError};

use crate::tokens::{cosine, Kept};

/// Levels of the pyramid.
pub const LEVELS: usize = 3;

/// One remembered frame at some level.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stream time of the frame.
    pub pts: Duration,
    /// Side of this entry's grid (the full grid pooled 2^level times).
    pub side: u32,
    /// Present cells (`row * side + col`), ascending.
    pub cells: Vec<u32>,
    /// Their tokens, `dim` values each.
    pub tokens: Vec<f32>,
    /// Mean of the tokens (zeros when empty), cached for eviction.
    pub descriptor: Vec<f32>,
}

/// The memory of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryBank {
    grid: u32,
    dim: usize,
    capacities: [usize; LEVELS],
    levels: [VecDeque<Entry>; LEVELS],
    canvas: Vec<f32>,
    canvas_present: Vec<bool>,
    canvas_pts: Duration,
    encoded: u64,
    /// How far back [`MemoryBank::changed_since`] can reach (zero: no undo
    /// log is kept).
    history: Duration,
    /// What each push within `history` of the newest overwrote, oldest
    /// first. Not part of a snapshot: a restored memory starts without.
    overwritten: VecDeque<Overwrite>,
}

/// What one push overwrote on the canvas.
#[derive(Debug, Clone, PartialEq)]
struct Overwrite {
    pts: Duration,
    cells: Vec<u32>,
    /// The cells' tokens before the push (zeros where absent).
    tokens: Vec<f32>,
    present: Vec<bool>,
}

/// A push within this much of a window's start belongs to the scene
/// before the window (stream times are not exact multiples of a frame).
const WINDOW_SLACK: Duration = Duration::from_millis(1);

/// The cells that changed in a window ([`MemoryBank::changed_since`]):
/// (cells, tokens) as they were when it began, and as they are now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changed {
    /// As they were at the window's start (a cell not seen then is absent).
    pub before: (Vec<u32>, Vec<f32>),
    /// As they are now.
    pub now: (Vec<u32>, Vec<f32>),
}

/// One item of the readout, oldest first: a remembered frame or the canvas.
#[derive(Debug, Clone, Copy)]
pub struct ReadoutItem<'a> {
    /// Stream time (the canvas: its newest token's).
    pub pts: Duration,
    /// Side of the grid.
    pub side: u32,
    /// Present cells.
    pub cells: &'a [u32],
    /// Their tokens.
    pub tokens: &'a [f32],
    /// True for the canvas ("now").
    pub now: bool,
}

impl MemoryBank {
    /// An empty memory for a `grid`×`grid` token grid of width `dim`.
    pub fn new(grid: u32, dim: usize, config: &MemoryConfig) -> MemoryBank {
        let n = (grid * grid) as usize;
        MemoryBank {
            grid,
            dim,
            capacities: config.capacities,
            levels: Default::default(),
            canvas: vec![0.0; n * dim],
            canvas_present: vec![false; n],
            canvas_pts: Duration::ZERO,
            encoded: 0,
            history: Duration::ZERO,
            overwritten: VecDeque::new(),
        }
    }

    /// Keeps enough of the canvas's past that [`MemoryBank::changed_since`]
    /// reaches `history` back from the newest frame.
    pub fn keep_history(&mut self, history: Duration) {
        self.history = history;
        if history.is_zero() {
            self.overwritten.clear();
        }
    }

    /// Remembers an encoded frame's kept tokens.
    pub fn push(&mut self, kept: &Kept) {
        debug_assert_eq!(kept.dim, self.dim);
        if !self.history.is_zero() {
            let pts = kept.meta.pts;
            let mut old = Overwrite {
                pts,
                cells: kept.positions.clone(),
                tokens: Vec::with_capacity(kept.positions.len() * self.dim),
                present: Vec::with_capacity(kept.positions.len()),
            };
            for &p in &kept.positions {
                let p = p as usize;
                old.tokens
                    .extend_from_slice(&self.canvas[p * self.dim..(p + 1) * self.dim]);
                old.present.push(self.canvas_present[p]);
            }
            self.overwritten.push_back(old);
            // A push older than the newest by `history` is never undone.
            while self
                .overwritten
                .front()
                .is_some_and(|o| o.pts + self.history <= pts + WINDOW_SLACK)
            {
                self.overwritten.pop_front();
            }
        }
        for (i, &p) in kept.positions.iter().enumerate() {
            let p = p as usize;
            self.canvas[p * self.dim..(p + 1) * self.dim]
                .copy_from_slice(&kept.tokens[i * self.dim..(i + 1) * self.dim]);
            self.canvas_present[p] = true;
        }
        if !kept.positions.is_empty() {
            self.canvas_pts = kept.meta.pts;
        }
        let k = self.encoded;
        self.encoded += 1;
        let level = if k.is_multiple_of(8) {
            0
        } else if k.is_multiple_of(4) {
            1
        } else {
            2
        };
        let mut entry = Entry {
            pts: kept.meta.pts,
            side: self.grid,
            cells: kept.positions.clone(),
            tokens: kept.tokens.clone(),
            descriptor: Vec::new(),
        };
        for _ in 0..level {
            entry = pool(&entry, self.dim);
        }
        entry.descriptor = descriptor(&entry.tokens, self.dim);
        self.insert(level, entry);
    }

    /// Inserts in time order, then evicts down the pyramid while full.
    fn insert(&mut self, level: usize, entry: Entry) {
        let queue = &mut self.levels[level];
        let at = queue.partition_point(|e| e.pts <= entry.pts);
        queue.insert(at, entry);
        if queue.len() <= self.capacities[level] {
            return;
        }
        // The earlier frame of the most similar adjacent pair goes.
        let victim = (0..queue.len() - 1)
            .map(|i| (i, cosine(&queue[i].descriptor, &queue[i + 1].descriptor)))
            .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
                if s > best.1 {
                    (i, s)
                } else {
                    best
                }
            })
            .0;
        // `victim` < len - 1, so it exists.
        let Some(evicted) = queue.remove(victim) else {
            return;
        };
        if level + 1 < LEVELS {
            let mut pooled = pool(&evicted, self.dim);
            pooled.descriptor = descriptor(&pooled.tokens, self.dim);
            self.insert(level + 1, pooled);
        }
    }

    /// The newest time in the memory (zero when empty): where the stream
    /// time of a restored memory ended.
    pub fn end(&self) -> Duration {
        self.levels
            .iter()
            .flatten()
            .map(|e| e.pts)
            .chain([self.canvas_pts])
            .max()
            .unwrap_or_default()
    }

    /// Times of the oldest and the newest remembered frame (none while
    /// the pyramid is empty).
    pub fn span(&self) -> Option<(Duration, Duration)> {
        let times = self.levels.iter().flatten().map(|e| e.pts);
        Some((times.clone().min()?, times.max()?))
    }

    /// The canvas: the last kept token at every position seen so far.
    pub fn canvas(&self) -> (Vec<u32>, Vec<f32>) {
        let mut cells = Vec::new();
        let mut tokens = Vec::new();
        for (p, present) in self.canvas_present.iter().enumerate() {
            if *present {
                cells.push(p as u32);
                tokens.extend_from_slice(&self.canvas[p * self.dim..(p + 1) * self.dim]);
            }
        }
        (cells, tokens)
    }

    /// The cells that changed since `start` (within [`WINDOW_SLACK`]): as
    /// they were then, and as they are now. A cell changed when a push
    /// newer than `start` left its token (or its presence) different; the
    /// rest of the scene is left out, as token dropping leaves out what
    /// did not change. Reaches back as far as the history kept
    /// ([`MemoryBank::keep_history`]): a push older than that counts as
    /// before.
    pub fn changed_since(&self, start: Duration) -> Changed {
        let mut canvas = self.canvas.clone();
        let mut present = self.canvas_present.clone();
        for old in self.overwritten.iter().rev() {
            if old.pts <= start + WINDOW_SLACK {
                break;
            }
            for (i, &p) in old.cells.iter().enumerate() {
                let p = p as usize;
                canvas[p * self.dim..(p + 1) * self.dim]
                    .copy_from_slice(&old.tokens[i * self.dim..(i + 1) * self.dim]);
                present[p] = old.present[i];
            }
        }
        let mut changed = Changed::default();
        for (p, &was) in present.iter().enumerate() {
            let token = p * self.dim..(p + 1) * self.dim;
            let differs = was != self.canvas_present[p]
                || (self.canvas_present[p] && canvas[token.clone()] != self.canvas[token.clone()]);
            if !differs {
                continue;
            }
            if was {
                changed.before.0.push(p as u32);
                changed.before.1.extend_from_slice(&canvas[token.clone()]);
            }
            if self.canvas_present[p] {
                changed.now.0.push(p as u32);
                changed.now.1.extend_from_slice(&self.canvas[token]);
            }
        }
        changed
    }

    /// Every entry of every level in time order, then the canvas.
    pub fn readout<'a>(&'a self, canvas: &'a (Vec<u32>, Vec<f32>)) -> Vec<ReadoutItem<'a>> {
        let mut items: Vec<ReadoutItem<'a>> = self
            .levels
            .iter()
            .flatten()
            .map(|e| ReadoutItem {
                pts: e.pts,
                side: e.side,
                cells: &e.cells,
                tokens: &e.tokens,
                now: false,
            })
            .collect();
        items.sort_by_key(|i| i.pts);
        items.push(ReadoutItem {
            pts: self.canvas_pts,
            side: self.grid,
            cells: &canvas.0,
            tokens: &canvas.1,
            now: true,
        });
        items
    }

    /// Most visual tokens a readout can hold: every level full of whole
    /// frames, plus a whole canvas.
    pub fn token_bound(&self) -> usize {
        let full = (self.grid * self.grid) as usize;
        (0..LEVELS)
            .map(|l| {
                let side = pooled_side(self.grid, l as u32) as usize;
                self.capacities[l] * side * side
            })
            .sum::<usize>()
            + full
    }

    /// Entries per level.
    pub fn lens(&self) -> [usize; LEVELS] {
        [
            self.levels[0].len(),
            self.levels[1].len(),
            self.levels[2].len(),
        ]
    }

    /// The entries of one level, oldest first.
    pub fn level(&self, level: usize) -> &VecDeque<Entry> {
        &self.levels[level]
    }

    /// Frames remembered so far (the routing counter).
    pub fn encoded(&self) -> u64 {
        self.encoded
    }

    /// The token grid side and width this memory is for.
    pub fn shape(&self) -> (u32, usize) {
        (self.grid, self.dim)
    }

    /// Bytes of token data held (entries and canvas), for the stats.
    pub fn token_bytes(&self) -> usize {
        let entries: usize = self
            .levels
            .iter()
            .flatten()
            .map(|e| e.tokens.len() + e.descriptor.len())
            .sum();
        let overwritten: usize = self.overwritten.iter().map(|o| o.tokens.len()).sum();
        (entries + self.canvas.len() + overwritten) * std::mem::size_of::<f32>()
    }
}

/// Side of the grid after `times` 2×2 poolings.
fn pooled_side(grid: u32, times: u32) -> u32 {
    (0..times).fold(grid, |s, _| s.div_ceil(2))
}

/// Pools an entry 2×2: each cell of the coarser grid averages the present
/// cells under it; a cell with none is absent.
fn pool(entry: &Entry, dim: usize) -> Entry {
    let side = entry.side;
    let coarse = side.div_ceil(2);
    let mut sums: Vec<(u32, Vec<f32>, u32)> = Vec::new();
    for (i, &cell) in entry.cells.iter().enumerate() {
        let (r, c) = (cell / side, cell % side);
        let target = (r / 2) * coarse + c / 2;
        let token = &entry.tokens[i * dim..(i + 1) * dim];
        match sums.iter_mut().find(|(t, _, _)| *t == target) {
            Some((_, sum, n)) => {
                sum.iter_mut().zip(token).for_each(|(s, v)| *s += v);
                *n += 1;
            }
            None => sums.push((target, token.to_vec(), 1)),
        }
    }
    sums.sort_by_key(|(t, _, _)| *t);
    let mut out = Entry {
        pts: entry.pts,
        side: coarse,
        cells: Vec::with_capacity(sums.len()),
        tokens: Vec::with_capacity(sums.len() * dim),
        descriptor: Vec::new(),
    };
    for (target, sum, n) in sums {
        out.cells.push(target);
        out.tokens.extend(sum.iter().map(|s| s / n as f32));
    }
    out
}

fn descriptor(tokens: &[f32], dim: usize) -> Vec<f32> {
    let mut mean = vec![0f32; dim];
    let n = tokens.len() / dim.max(1);
    for token in tokens.chunks_exact(dim) {
        mean.iter_mut().zip(token).for_each(|(m, v)| *m += v);
    }
    if n > 0 {
        mean.iter_mut().for_each(|m| *m /= n as f32);
    }
    mean
}

#[cfg(test)]
mod tests;
