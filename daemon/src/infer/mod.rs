//! Inference backends: the three ONNX graphs of a model, run on a CPU or GPU
//! runtime behind one [`Backend`] trait.
//!
//! A model is loaded once per config generation ([`load`]): the folder is
//! checked ([`ModelFolder`]), the graphs are compiled into plans shared by
//! `Arc`, and each model worker gets its own [`Backend`] over those plans.
//! The generation loop itself lives in `llm`, above the trait, so every
//! backend behaves the same; a backend only runs graphs:
//!
//! - `encode_image`: preprocessed pixels → visual tokens `[T, hidden]`;
//! - `embed`: token ids → embeddings `[S, hidden]`;
//! - `decode`: embeddings at given positions, on top of a [`KvCache`] →
//!   the last position's logits, with the cache extended.
//!
//! Backends so far: `tract` (pure Rust, any CPU).

mod folder;
mod tract;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use folder::{GraphInfo, ModelFolder, ModelInfo, TensorInfo, GRAPHS};
pub use tract::TractModel;

use crate::config::Problems;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// A file of the model folder is missing or wrong.
    #[error("{}: {reason}", file.display())]
    Folder {
        /// The file (or folder) at fault.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A graph could not be compiled by the backend.
    #[error("{}: cannot compile: {message}", file.display())]
    Compile {
        /// The graph file.
        file: PathBuf,
        /// The backend's explanation.
        message: String,
    },
    /// Running a graph failed.
    #[error("running {graph}: {message}")]
    Run {
        /// Which graph.
        graph: &'static str,
        /// The backend's explanation.
        message: String,
    },
    /// The inputs do not fit the model.
    #[error("{0}")]
    Input(String),
}

/// The attention cache of one generation: keys and values of every layer
/// for the positions seen so far, in the backend's own tensors.
pub struct KvCache {
    len: usize,
    state: Box<dyn Any + Send>,
}

impl KvCache {
    /// A cache holding `len` positions in `state`.
    pub(crate) fn new(len: usize, state: Box<dyn Any + Send>) -> Self {
        KvCache { len, state }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first decode.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One worker's handle on a loaded model.
pub trait Backend: Send {
    /// The model's sizes and ids.
    fn info(&self) -> &ModelInfo;

    /// Visual tokens `[T, hidden]` of one preprocessed image (`[3, S, S]`
    /// floats, S = `image_size`).
    fn encode_image(&mut self, pixel_values: &[f32]) -> Result<Vec<f32>, InferError>;

    /// Embeddings `[S, hidden]` of `ids`.
    fn embed(&mut self, ids: &[i64]) -> Result<Vec<f32>, InferError>;

    /// An empty cache for a new generation.
    fn new_cache(&self) -> KvCache;

    /// Runs the decoder on `embeds` (`[S, hidden]`) at `positions` (S
    /// position ids, any values: gaps are allowed) after what `cache`
    /// holds; extends the cache and returns the last position's logits.
    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        positions: &[i64],
    ) -> Result<Vec<f32>, InferError>;
}

/// A model loaded for one config generation, shared by the workers.
#[derive(Clone)]
pub struct Model {
    folder: Arc<ModelFolder>,
    plans: Arc<TractModel>,
}

impl Model {
    /// The folder it came from.
    pub fn folder(&self) -> &ModelFolder {
        &self.folder
    }

    /// A backend for one worker (cheap: the plans are shared).
    pub fn backend(&self) -> Box<dyn Backend> {
        Box::new(self.plans.backend())
    }
}

/// `[model]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model folder (onnx-community layout).
    pub path: PathBuf,
    /// Graph precision suffix: "" (fp32), "_fp16", "_int8", "_quantized",
    /// ... as the folder's `onnx/` files are named. Default: "".
    #[serde(default)]
    pub variant: String,
    /// `auto` or `tract`. Default: auto (tract).
    #[serde(default)]
    pub backend: BackendKind,
    /// Threads one model call may use (matrix products). Default: 2.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_threads() -> usize {
    2
}

/// Which runtime runs the graphs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The best available.
    #[default]
    Auto,
    /// tract, pure Rust on the CPU.
    Tract,
}

impl ModelConfig {
    /// Checks every value of the table at `key` (the folder itself is
    /// checked when it is loaded).
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if self.path.as_os_str().is_empty() {
            problems.push(format!("{key}.path"), "must not be empty");
        }
        if !(1..=64).contains(&self.threads) {
            problems.push(
                format!("{key}.threads"),
                format!("must be between 1 and 64, got {}", self.threads),
            );
        }
        if !self.variant.is_empty() && !self.variant.starts_with('_') {
            problems.push(
                format!("{key}.variant"),
                format!(
                    "is a file-name suffix such as \"_fp16\" (or \"\" for fp32), got {:?}",
                    self.variant
                ),
            );
        }
    }
}

/// Opens, checks and compiles the model of `config`. Slow (seconds): call
/// it off the async runtime.
pub fn load(config: &ModelConfig) -> Result<Model, InferError> {
    let folder = ModelFolder::open(&config.path, &config.variant)?;
    if config.threads > 1 {
        // Process-wide in tract; the last loaded model decides.
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(config.threads),
        );
    }
    let plans = TractModel::compile(&folder)?;
    tracing::info!(
        model = %config.path.display(),
        backend = "tract",
        reason = match config.backend {
            BackendKind::Auto => "auto: tract is the backend built in",
            BackendKind::Tract => "configured",
        },
        "model loaded"
    );
    Ok(Model {
        folder: Arc::new(folder),
        plans: Arc::new(plans),
    })
}
