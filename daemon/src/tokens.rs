//! Visual tokens as plain data, between the stages that make, thin and
//! remember them: the encoder's output on its grid ([`FrameTokens`],
//! `vision`), what token dropping keeps of it ([`Kept`], `dtd`, read by
//! `memory` and `llm`), and the similarity both compare tokens with.

use crate::frame::FrameMeta;

/// A frame's visual tokens on their grid.
#[derive(Debug, Clone)]
pub struct FrameTokens {
    /// The frame they come from.
    pub meta: FrameMeta,
    /// Grid rows.
    pub rows: u32,
    /// Grid columns.
    pub cols: u32,
    /// Width of one token.
    pub dim: usize,
    /// `rows * cols * dim` values, row-major: token (r, c) starts at
    /// `(r * cols + c) * dim`.
    pub features: Vec<f32>,
}

/// A frame's tokens after dropping: what the language model may see.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The frame.
    pub meta: FrameMeta,
    /// Grid rows and columns.
    pub rows: u32,
    /// Grid columns.
    pub cols: u32,
    /// Width of a token.
    pub dim: usize,
    /// Per grid position (row-major), whether the token was kept.
    pub mask: Vec<bool>,
    /// Grid indices (`row * cols + col`) of the kept tokens, ascending.
    pub positions: Vec<u32>,
    /// The kept tokens, `dim` values each, in the order of `positions`.
    pub tokens: Vec<f32>,
}

impl Kept {
    /// Kept tokens over all tokens: the retention `r_t`.
    pub fn retention(&self) -> f32 {
        self.positions.len() as f32 / self.mask.len().max(1) as f32
    }

    /// Kept tokens over all tokens, leaving out the `ignored` patches
    /// (motion masks): the retention the trigger reads. 0 when every patch
    /// is ignored.
    pub fn retention_outside(&self, ignored: &[bool]) -> f32 {
        if ignored.is_empty() {
            return self.retention();
        }
        let counted = |i: usize| !ignored.get(i).copied().unwrap_or(false);
        let total = (0..self.mask.len()).filter(|&i| counted(i)).count();
        let kept = self
            .positions
            .iter()
            .filter(|&&p| counted(p as usize))
            .count();
        kept as f32 / total.max(1) as f32
    }

    /// A frame the gate skipped: nothing kept.
    pub fn nothing(meta: FrameMeta, rows: u32, cols: u32, dim: usize) -> Kept {
        Kept {
            meta,
            rows,
            cols,
            dim,
            mask: vec![false; (rows * cols) as usize],
            positions: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

/// Cosine similarity; two zero vectors are identical (1), one zero vector
/// is unlike anything (0). Also compares memory entries.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 && nb == 0.0 {
        return 1.0;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}
