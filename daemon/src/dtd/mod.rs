//! Change blindness: drop what did not change, before and after the vision
//! encoder (docs/architecture.md §3, after TimeChat-Online's Differential Token Drop).
//!
//! - [`PixelGate`] (before the encoder, ours): per token patch, the mean
//!   absolute difference of the pixels against the last frame that was
//!   encoded. A frame whose patches are all below `tau_pix` is not encoded
//!   at all. Slow drift accumulates against that reference until it passes.
//! - [`TokenDropper`] (after the encoder, the paper's): per grid position,
//!   the cosine similarity of the token with a reference token; above
//!   `tau` it is dropped. `reference = "previous"` compares with the
//!   previous frame's token (the paper); `"last_kept"` with the token the
//!   model last saw at that position, so slow drift is kept once it has
//!   accumulated. `similarity = "centered"` subtracts each frame's mean
//!   token first (small encoders share a large common component).
//!
//! The first frame, and the first after a discontinuity (a loop, a
//! reconnection) or a reload, is kept whole. Both run on a model worker
//! thread, once per sampled frame; they are plain loops over contiguous
//! memory, negligible next to the encoder (see `benches/dtd.rs`).

mod config;

pub use config::{DtdConfig, Reference, Similarity};

use crate::frame::Frame;
pub use crate::tokens::Kept;
use crate::tokens::{cosine, FrameTokens};

/// The pixel gate of one camera.
#[derive(Debug, Clone)]
pub struct PixelGate {
    tau_pix: f32,
    rows: u32,
    cols: u32,
    reference: Option<(u32, u32, Vec<u8>)>,
    /// Patches whose change never counts (motion masks), row-major; empty
    /// for none.
    ignored: Vec<bool>,
}

/// What the gate decided for a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct GateDecision {
    /// Encode the frame.
    pub encode: bool,
    /// Per patch (row-major) mean absolute difference in [0, 1]; empty for
    /// a frame without reference.
    pub change: Vec<f32>,
}

impl PixelGate {
    /// A gate over a `rows`×`cols` patch grid.
    pub fn new(tau_pix: f32, rows: u32, cols: u32) -> PixelGate {
        PixelGate {
            tau_pix,
            rows,
            cols,
            reference: None,
            ignored: Vec::new(),
        }
    }

    /// The same gate, blind to change in the `patches` set (row-major over
    /// its grid): a motion mask.
    pub fn ignoring(mut self, patches: Vec<bool>) -> PixelGate {
        self.ignored = patches;
        self
    }

    /// Decides whether `frame` goes to the encoder; if so it becomes the
    /// reference.
    pub fn check(&mut self, frame: &Frame) -> GateDecision {
        let same_shape = self
            .reference
            .as_ref()
            .is_some_and(|(w, h, _)| (*w, *h) == (frame.width, frame.height));
        if frame.discont || !same_shape {
            self.reference = Some((frame.width, frame.height, frame.rgb.clone()));
            return GateDecision {
                encode: true,
                change: Vec::new(),
            };
        }
        let change = match &self.reference {
            Some((_, _, reference)) => patch_change(
                reference,
                &frame.rgb,
                frame.width,
                frame.height,
                self.rows,
                self.cols,
            ),
            None => Vec::new(),
        };
        let ignored = |i: usize| self.ignored.get(i).copied().unwrap_or(false);
        let encode = change
            .iter()
            .enumerate()
            .any(|(i, &c)| c >= self.tau_pix && !ignored(i));
        if encode {
            if let Some((_, _, reference)) = &mut self.reference {
                reference.copy_from_slice(&frame.rgb);
            }
        }
        GateDecision { encode, change }
    }

    /// The threshold a patch's change must reach.
    pub fn tau_pix(&self) -> f32 {
        self.tau_pix
    }

    /// Forgets the reference: the next frame is encoded.
    pub fn reset(&mut self) {
        self.reference = None;
    }
}

/// Mean absolute difference per patch, in [0, 1]. Patches tile the frame
/// as the token grid does; edge pixels go to the last row/column.
pub fn patch_change(a: &[u8], b: &[u8], width: u32, height: u32, rows: u32, cols: u32) -> Vec<f32> {
    let (w, h, rows, cols) = (
        width as usize,
        height as usize,
        rows as usize,
        cols as usize,
    );
    let mut sums = vec![0u64; rows * cols];
    let mut counts = vec![0u64; rows * cols];
    // Which patch column each pixel column falls in, computed once.
    let col_of: Vec<usize> = (0..w).map(|x| (x * cols / w).min(cols - 1)).collect();
    for y in 0..h {
        let row = (y * rows / h).min(rows - 1) * cols;
        let (ra, rb) = (
            &a[y * w * 3..(y + 1) * w * 3],
            &b[y * w * 3..(y + 1) * w * 3],
        );
        for (x, (pa, pb)) in ra.chunks_exact(3).zip(rb.chunks_exact(3)).enumerate() {
            let d = u64::from(pa[0].abs_diff(pb[0]))
                + u64::from(pa[1].abs_diff(pb[1]))
                + u64::from(pa[2].abs_diff(pb[2]));
            let patch = row + col_of[x];
            sums[patch] += d;
            counts[patch] += 3;
        }
    }
    sums.iter()
        .zip(&counts)
        .map(|(&s, &c)| {
            if c == 0 {
                0.0
            } else {
                s as f32 / (c as f32 * 255.0)
            }
        })
        .collect()
}

/// The token dropper of one camera.
#[derive(Debug, Clone)]
pub struct TokenDropper {
    tau: f32,
    reference: Reference,
    similarity: Similarity,
    /// Reference token per grid position (`dim` values each).
    last: Option<Vec<f32>>,
}

impl TokenDropper {
    /// A dropper with the given threshold and modes.
    pub fn new(config: &DtdConfig) -> TokenDropper {
        TokenDropper {
            tau: config.tau,
            reference: config.reference,
            similarity: config.similarity,
            last: None,
        }
    }

    /// Forgets the reference: the next frame is kept whole.
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Keeps the tokens of `frame` that changed.
    pub fn drop_unchanged(&mut self, frame: FrameTokens) -> Kept {
        let n = (frame.rows * frame.cols) as usize;
        let dim = frame.dim;
        let current = match self.similarity {
            Similarity::Cosine => None,
            Similarity::Centered => Some(centered(&frame.features, n, dim)),
        };
        let compared = current.as_deref().unwrap_or(&frame.features);
        let whole =
            frame.meta.discont || self.last.as_ref().is_none_or(|l| l.len() != compared.len());
        let mask: Vec<bool> = if whole {
            vec![true; n]
        } else {
            // Checked just above: a reference of the same size exists.
            let last = self.last.as_deref().unwrap_or_default();
            (0..n)
                .map(|i| {
                    cosine(
                        &last[i * dim..(i + 1) * dim],
                        &compared[i * dim..(i + 1) * dim],
                    ) <= self.tau
                })
                .collect()
        };
        // The reference follows the mode: the whole previous frame, or
        // only the tokens the model saw.
        match (&mut self.last, self.reference, whole) {
            (Some(last), Reference::LastKept, false) => {
                for (i, _) in mask.iter().enumerate().filter(|(_, k)| **k) {
                    last[i * dim..(i + 1) * dim].copy_from_slice(&compared[i * dim..(i + 1) * dim]);
                }
            }
            _ => self.last = Some(compared.to_vec()),
        }
        let positions: Vec<u32> = mask
            .iter()
            .enumerate()
            .filter(|(_, k)| **k)
            .map(|(i, _)| i as u32)
            .collect();
        let mut tokens = Vec::with_capacity(positions.len() * dim);
        for &p in &positions {
            let p = p as usize;
            tokens.extend_from_slice(&frame.features[p * dim..(p + 1) * dim]);
        }
        Kept {
            meta: frame.meta,
            rows: frame.rows,
            cols: frame.cols,
            dim,
            mask,
            positions,
            tokens,
        }
    }
}

/// Tokens minus the frame's mean token.
fn centered(features: &[f32], n: usize, dim: usize) -> Vec<f32> {
    let mut mean = vec![0f32; dim];
    for token in features.chunks_exact(dim) {
        for (m, v) in mean.iter_mut().zip(token) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f32);
    features
        .chunks_exact(dim)
        .flat_map(|token| token.iter().zip(&mean).map(|(v, m)| v - m))
        .collect()
}

#[cfg(test)]
mod tests;
