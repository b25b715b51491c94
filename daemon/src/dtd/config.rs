//! `[cameras.NAME.dtd]`: how much of a stream is considered unchanged.

use serde::{Deserialize, Serialize};

use crate::settings::Problems;

/// `[cameras.NAME.dtd]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DtdConfig {
    /// A token whose similarity with its reference is above this is
    /// dropped. Lower drops more (the paper: 0.5 drops ~50%, 0.25 ~84%).
    /// Default: 0.5.
    #[serde(default = "default_tau")]
    pub tau: f32,
    /// A frame whose every patch changed less than this (mean absolute
    /// pixel difference in [0, 1]) is not encoded at all. 0 disables the
    /// gate. Default: 0.02.
    #[serde(default = "default_tau_pix")]
    pub tau_pix: f32,
    /// What a token is compared with: `last_kept` (the token the model last
    /// saw at that position: slow drift is caught once it adds up) or
    /// `previous` (the previous frame's token, as in the paper).
    /// Default: last_kept.
    #[serde(default)]
    pub reference: Reference,
    /// `centered` (subtract each frame's mean token first; needed by small
    /// encoders whose tokens share a large common part) or `cosine`
    /// (plain, as in the paper). Default: centered.
    #[serde(default)]
    pub similarity: Similarity,
}

/// What a token is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// The token last kept at the same position.
    #[default]
    LastKept,
    /// The previous frame's token at the same position.
    Previous,
}

/// How tokens are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    /// Cosine after subtracting the frame's mean token.
    #[default]
    Centered,
    /// Plain cosine.
    Cosine,
}

fn default_tau() -> f32 {
    0.5
}
fn default_tau_pix() -> f32 {
    0.02
}

impl Default for DtdConfig {
    fn default() -> Self {
        DtdConfig {
            tau: default_tau(),
            tau_pix: default_tau_pix(),
            reference: Reference::default(),
            similarity: Similarity::default(),
        }
    }
}

impl DtdConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        // A cosine at or below 0 drops every token that is not opposite to
        // its reference: the model would see nothing change. 1 keeps all.
        if !(self.tau > 0.0 && self.tau <= 1.0) {
            problems.push(
                format!("{key}.tau"),
                format!(
                    "must be > 0 and at most 1 (a cosine similarity; lower drops more, 1 keeps every token), got {}",
                    self.tau
                ),
            );
        }
        // A mean pixel difference is never above 1: at 1 the gate would
        // skip every frame.
        if !(0.0..1.0).contains(&self.tau_pix) {
            problems.push(
                format!("{key}.tau_pix"),
                format!(
                    "must be at least 0 and below 1 (0 disables the gate), got {}",
                    self.tau_pix
                ),
            );
        }
    }
}
