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
//! Backends: `tract` (pure Rust, any CPU), with the `cuda` cargo feature
//! `tract-cuda` (the same tract plans on an NVIDIA GPU), and with the `ort`
//! cargo feature `ort` (ONNX Runtime loaded at run time: CPU, CUDA,
//! TensorRT). [`load`] picks one from `model.backend` and says which and
//! why.

pub mod cuda;
mod folder;
mod graph;
#[cfg(feature = "ort")]
mod ort;
pub mod timing;
mod tract;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(feature = "ort")]
pub use self::ort::{engine_cache_key, probe as probe_ort, OrtModel, OrtProbe};
pub use folder::{
    ChatTemplate, Float, Floats, ModelFolder, ModelInfo, PromptLayout, GRAPHS, TEMPLATE_SOURCES,
};
pub use graph::{GraphInfo, TensorInfo};
pub use tract::{Placed, Target, TractModel};

use crate::settings::Problems;

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
    /// The ONNX Runtime library is missing, unloadable or not built in.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A GPU is required (`model.require_gpu`) but tract's CUDA runtime
    /// cannot run: no driver, a CUDA library missing, no device.
    #[error("tract-cuda cannot be used: {reason} (model.require_gpu = true)")]
    Gpu {
        /// What is missing, with the library names tried.
        reason: String,
    },
    /// A GPU execution provider is required (`model.require_gpu`) but
    /// cannot be registered.
    #[error("execution provider {provider} cannot be used: {reason} (model.require_gpu = true)")]
    Provider {
        /// The provider as the config names it (`tensorrt`, `cuda`).
        provider: Provider,
        /// ONNX Runtime's explanation.
        reason: String,
    },
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

    /// Which runtime it is (`tract`, `ort`): the label of its timings.
    fn kind(&self) -> &'static str;

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
    plans: Plans,
}

/// The compiled graphs, in the chosen runtime.
#[derive(Clone)]
enum Plans {
    Tract(Arc<TractModel>),
    #[cfg(feature = "ort")]
    Ort(Arc<OrtModel>),
}

impl Model {
    /// The folder it came from.
    pub fn folder(&self) -> &ModelFolder {
        &self.folder
    }

    /// A backend for one worker (cheap: the plans are shared).
    pub fn backend(&self) -> Box<dyn Backend> {
        match &self.plans {
            Plans::Tract(plans) => Box::new(plans.backend()),
            #[cfg(feature = "ort")]
            Plans::Ort(plans) => Box::new(plans.backend()),
        }
    }

    /// What runs the graphs, for logs and reports: `tract`, or `ort` with
    /// its execution providers in order (`ort (tensorrt, cpu)`).
    pub fn runtime(&self) -> String {
        match &self.plans {
            Plans::Tract(plans) => plans.describe(),
            #[cfg(feature = "ort")]
            Plans::Ort(plans) => plans.describe(),
        }
    }
}

/// `[model]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model folder (onnx-community layout); a relative path is
    /// relative to the config file's folder. `glimpse check` opens it.
    pub path: PathBuf,
    /// Graph precision suffix: "" (fp32), "_fp16", "_int8", "_quantized",
    /// ... as the folder's `onnx/` files are named. float16 graphs (`_fp16`,
    /// `_q4f16`) run on both backends; quantized ones are several times
    /// slower on tract than on ONNX Runtime (a warning says so). Default: "".
    #[serde(default)]
    pub variant: String,
    /// `auto`, `tract`, `tract-cuda` or `ort`. Default: auto: ONNX Runtime
    /// with a GPU provider (TensorRT, CUDA), else tract-cuda (the `cuda`
    /// cargo feature) when a GPU and the CUDA libraries are found, else
    /// ONNX Runtime on the CPU, else tract. `tract-cuda` without a usable
    /// GPU falls back to tract on the CPU with a warning, or fails with
    /// `require_gpu`.
    #[serde(default)]
    pub backend: BackendKind,
    /// Threads one model call may use (matrix products). Default: 2.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// The ONNX Runtime library (`libonnxruntime.so`) of the ort backend;
    /// a relative path is relative to the config file's folder. Default:
    /// `$ORT_DYLIB_PATH`, else `libonnxruntime.so` in /usr/lib,
    /// /usr/local/lib or next to the glimpse binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime execution providers to try, in order: `tensorrt`,
    /// `cuda`, `cpu`. Default: all three.
    #[serde(default = "default_providers")]
    pub providers: Vec<Provider>,
    /// Refuse to start unless the model runs on a GPU: every GPU provider
    /// listed registers (ort), or tract's CUDA runtime finds its driver,
    /// libraries and a device and takes every graph (tract-cuda). Never
    /// fall back to the CPU silently. Default: false.
    #[serde(default)]
    pub require_gpu: bool,
    /// Longest context (prompt + answer) in tokens; sizes the TensorRT
    /// shape profiles of the decoder. Default: 2048.
    #[serde(default = "default_max_context")]
    pub max_context: usize,
    /// TensorRT builds fp16 engines. Default: true.
    #[serde(default = "default_true")]
    pub tensorrt_fp16: bool,
    /// How the memory readout is laid out in the prompt: `auto` (the
    /// layout the folder's model family was trained on: `smolvlm-video`
    /// for SmolVLM2, `glimpse` for the shapes model; `glimpse model
    /// inspect` says which), `glimpse` or `smolvlm-video`. Default: auto.
    #[serde(default)]
    pub prompt_layout: PromptLayout,
    /// How tract runs float16 graphs (`_fp16`, `_q4f16`) on the CPU:
    /// `auto` (natively where the CPU has float16 arithmetic, as on a
    /// Jetson's Cortex-A78AE; else the vision encoder converted to float32
    /// at load, which doubles its weights in memory but is ~47x faster
    /// than tract's emulated float16: [`TractFloat16::widens_graph`]),
    /// `native` or `float32` (all three graphs). ONNX Runtime and
    /// tract-cuda are not affected. Default: auto.
    #[serde(default)]
    pub tract_float16: TractFloat16,
}

/// `model.tract_float16`: what tract does with a float16 graph on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TractFloat16 {
    /// `native` where the CPU has float16 arithmetic, `float32` elsewhere.
    #[default]
    Auto,
    /// Run float16 as it is (tract emulates it where the CPU cannot).
    Native,
    /// Convert the graph to float32 when it is loaded.
    Float32,
}

impl TractFloat16 {
    /// Whether a float16 graph is converted to float32 on this CPU (the
    /// vision encoder's, with `auto`: [`TractFloat16::widens_graph`]).
    pub fn widens(self) -> bool {
        match self {
            TractFloat16::Auto => !tract_linalg::has_fp16(),
            TractFloat16::Native => false,
            TractFloat16::Float32 => true,
        }
    }

    /// Whether `graph` (`vision_encoder`, `embed_tokens`,
    /// `decoder_model_merged`) is converted. `auto` converts the vision
    /// encoder only: measured on SmolVLM2-256M's layout, 2 x86 cores
    /// (`cargo bench --bench infer`, 2026-12-07), tract's emulated float16
    /// encoder took 105 s a frame against 2.2 s converted (fp32: 2.5 s),
    /// while its float16 decoder decoded at 27.8 ms a token against 275 ms
    /// converted (fp32: 35 ms): tract's conversion leaves a cast of a
    /// weight in the decoder's step.
    pub fn widens_graph(self, graph: &str) -> bool {
        match self {
            TractFloat16::Auto => self.widens() && graph == "vision_encoder",
            other => other.widens(),
        }
    }
}

fn default_threads() -> usize {
    2
}

fn default_providers() -> Vec<Provider> {
    vec![Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
}

fn default_max_context() -> usize {
    2048
}

fn default_true() -> bool {
    true
}

impl ModelConfig {
    /// The model at `path` with every other key at its default.
    pub fn new(path: impl Into<PathBuf>) -> ModelConfig {
        ModelConfig {
            path: path.into(),
            variant: String::new(),
            backend: BackendKind::Auto,
            threads: default_threads(),
            ort_library: None,
            providers: default_providers(),
            require_gpu: false,
            max_context: default_max_context(),
            tensorrt_fp16: true,
            prompt_layout: PromptLayout::Auto,
            tract_float16: TractFloat16::Auto,
        }
    }
}

/// An ONNX Runtime execution provider, as the config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// NVIDIA TensorRT: fp16 engines compiled once and cached.
    Tensorrt,
    /// NVIDIA CUDA (cuDNN).
    Cuda,
    /// ONNX Runtime's own CPU kernels.
    Cpu,
}

impl Provider {
    /// The config's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    /// Runs on a GPU.
    pub fn is_gpu(self) -> bool {
        self != Provider::Cpu
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    /// tract's CUDA runtime on an NVIDIA GPU (the `cuda` cargo feature).
    #[serde(rename = "tract-cuda")]
    TractCuda,
    /// ONNX Runtime (the `ort` cargo feature), with `model.providers`.
    Ort,
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
        if self.providers.is_empty() {
            problems.push(
                format!("{key}.providers"),
                "must list at least one of \"tensorrt\", \"cuda\", \"cpu\"",
            );
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].contains(p) {
                problems.push(format!("{key}.providers"), format!("lists {p} twice"));
            }
        }
        if self.require_gpu
            && self.backend != BackendKind::TractCuda
            && !self.providers.iter().any(|p| p.is_gpu())
        {
            problems.push(
                format!("{key}.require_gpu"),
                "needs \"tensorrt\" or \"cuda\" in providers",
            );
        }
        if self.require_gpu && self.backend == BackendKind::Tract {
            problems.push(
                format!("{key}.require_gpu"),
                "needs backend = \"tract-cuda\", \"ort\" or \"auto\" (tract runs on the CPU only)",
            );
        }
        if !cfg!(feature = "ort") && self.backend == BackendKind::Ort {
            problems.push(
                format!("{key}.backend"),
                "\"ort\" needs glimpse built with the `ort` cargo feature",
            );
        }
        if !cfg!(feature = "tract-cuda") && self.backend == BackendKind::TractCuda {
            problems.push(
                format!("{key}.backend"),
                "\"tract-cuda\" needs glimpse built with the `cuda` (or `cuda-12`) cargo feature",
            );
        }
        if !(16..=1 << 20).contains(&self.max_context) {
            problems.push(
                format!("{key}.max_context"),
                format!("must be between 16 and 1048576, got {}", self.max_context),
            );
        }
    }
}

/// Opens, checks and compiles the model of `config`, without a state
/// directory (TensorRT engines are then not cached). Slow (seconds): call
/// it off the async runtime.
pub fn load(config: &ModelConfig) -> Result<Model, InferError> {
    load_in(config, None)
}

/// Opens, checks and compiles the model of `config`; TensorRT engines are
/// cached under `state_dir/engines/`. Slow (seconds, minutes for a first
/// TensorRT build): call it off the async runtime.
pub fn load_in(config: &ModelConfig, state_dir: Option<&Path>) -> Result<Model, InferError> {
    let mut folder = ModelFolder::open(&config.path, &config.variant)?;
    folder.set_prompt_layout(config.prompt_layout);
    let (plans, reason) = match choose(config)? {
        Choice::Tract(reason) => (compile_tract(config, &folder, Target::Cpu)?, reason),
        #[cfg(feature = "tract-cuda")]
        Choice::TractCuda(cuda, reason) => (
            compile_tract(
                config,
                &folder,
                Target::Cuda {
                    cuda,
                    required: config.require_gpu,
                },
            )?,
            reason,
        ),
        #[cfg(feature = "ort")]
        Choice::Ort(library, reason) => {
            let compiled = OrtModel::compile(&folder, config, &library, state_dir);
            match compiled {
                // auto: ONNX Runtime on the CPU only comes after tract-cuda.
                #[cfg(feature = "tract-cuda")]
                Ok(plans) if config.backend == BackendKind::Auto && !plans.on_gpu() => {
                    match cuda::probe() {
                        Ok(cuda) => {
                            drop(plans);
                            (
                                compile_tract(
                                    config,
                                    &folder,
                                    Target::Cuda {
                                        cuda,
                                        required: false,
                                    },
                                )?,
                                "auto: ONNX Runtime has no GPU provider, tract-cuda found a GPU"
                                    .to_owned(),
                            )
                        }
                        Err(_) => (Plans::Ort(Arc::new(plans)), reason),
                    }
                }
                Ok(plans) => (Plans::Ort(Arc::new(plans)), reason),
                // auto with require_gpu: a GPU provider that does not
                // register leaves tract-cuda to try.
                #[cfg(feature = "tract-cuda")]
                Err(InferError::Provider {
                    provider,
                    reason: why,
                }) if config.backend == BackendKind::Auto => {
                    let cuda = cuda::probe().map_err(|cuda_why| InferError::Gpu {
                        reason: format!(
                            "ONNX Runtime's {provider} provider: {why}; tract-cuda: {cuda_why}"
                        ),
                    })?;
                    (
                        compile_tract(
                            config,
                            &folder,
                            Target::Cuda {
                                cuda,
                                required: true,
                            },
                        )?,
                        format!("auto: ONNX Runtime's {provider} provider failed ({why})"),
                    )
                }
                // auto falls back on a library that does not load, never
                // on a provider the config requires.
                Err(InferError::Runtime(why))
                    if config.backend == BackendKind::Auto && !config.require_gpu =>
                {
                    tracing::warn!(
                        library = %library.display(),
                        "ONNX Runtime cannot be used, falling back to tract: {why}"
                    );
                    (
                        compile_tract(config, &folder, Target::Cpu)?,
                        format!("auto: ONNX Runtime failed ({why})"),
                    )
                }
                Err(e) => return Err(e),
            }
        }
    };
    let quantized = folder.quantized_ops().join(", ");
    if matches!(plans, Plans::Tract(_)) && !quantized.is_empty() {
        // Measured on SmolVLM2-256M `_quantized`, 2 cores (FACTS.md): tract
        // 7.6-8.1 s per frame and ~120 ms per token, ONNX Runtime 1.1-1.4 s
        // and 11-13 ms, tract on the fp32 graphs 2.0-2.3 s and ~25 ms.
        tracing::warn!(
            model = %config.path.display(),
            variant = %config.variant,
            operators = %quantized,
            "tract runs quantized graphs several times slower than ONNX Runtime (and than its own \
             fp32 graphs): give glimpse ONNX Runtime (model.ort_library or ORT_DYLIB_PATH), or \
             use the fp32 graphs (variant = \"\")"
        );
    }
    let model = Model {
        folder: Arc::new(folder),
        plans,
    };
    #[cfg(not(feature = "ort"))]
    let _ = state_dir;
    tracing::info!(
        model = %config.path.display(),
        backend = %model.runtime(),
        reason = %reason,
        "model loaded"
    );
    Ok(model)
}

/// Which runtime `load` uses, and why.
enum Choice {
    Tract(String),
    #[cfg(feature = "tract-cuda")]
    TractCuda(cuda::Cuda, String),
    #[cfg(feature = "ort")]
    Ort(PathBuf, String),
}

fn choose(config: &ModelConfig) -> Result<Choice, InferError> {
    match config.backend {
        BackendKind::Tract => return Ok(Choice::Tract("configured".to_owned())),
        BackendKind::TractCuda => {
            return match cuda::probe() {
                #[cfg(feature = "tract-cuda")]
                Ok(cuda) => Ok(Choice::TractCuda(cuda, "configured".to_owned())),
                Err(why) if config.require_gpu => Err(InferError::Gpu { reason: why }),
                Err(why) => {
                    tracing::warn!(
                        "tract-cuda cannot be used, falling back to tract on the CPU \
                         (model.require_gpu = true refuses instead): {why}"
                    );
                    Ok(Choice::Tract(format!(
                        "tract-cuda unavailable, CPU fallback: {why}"
                    )))
                }
            };
        }
        BackendKind::Auto | BackendKind::Ort => {}
    }
    #[cfg(feature = "ort")]
    let found = self::ort::find_library(config.ort_library.as_deref());
    #[cfg(not(feature = "ort"))]
    let found: Result<std::convert::Infallible, String> =
        Err("glimpse was built without the `ort` cargo feature".to_owned());
    match found {
        #[cfg(feature = "ort")]
        Ok((library, from)) => {
            let reason = match config.backend {
                BackendKind::Ort => format!("configured, library from {from}"),
                _ => format!("auto: ONNX Runtime found (from {from})"),
            };
            Ok(Choice::Ort(library, reason))
        }
        Err(why) if config.backend == BackendKind::Ort => Err(InferError::Runtime(why)),
        Err(why) => match cuda::probe() {
            #[cfg(feature = "tract-cuda")]
            Ok(cuda) => Ok(Choice::TractCuda(
                cuda,
                format!("auto: {why}; tract-cuda found a GPU"),
            )),
            Err(cuda_why) if config.require_gpu => Err(InferError::Gpu {
                reason: format!("ONNX Runtime: {why}; tract-cuda: {cuda_why}"),
            }),
            Err(_) => Ok(Choice::Tract(format!("auto: {why}"))),
        },
    }
}

fn compile_tract(
    config: &ModelConfig,
    folder: &ModelFolder,
    target: Target,
) -> Result<Plans, InferError> {
    if config.threads > 1 {
        // Process-wide in tract; the last loaded model decides. On the GPU
        // it still serves the ops that stay on the CPU.
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(config.threads),
        );
    }
    let model = TractModel::compile(folder, target, config.tract_float16)?;
    if let Some(graphs) = model.widened() {
        // Measured on SmolVLM2-256M's layout, 2 x86 cores (issue 41): the
        // _fp16 encoder took 57-205 s a frame on tract against 3.1 s for
        // its fp32 twin, because tract emulates float16 on such CPUs.
        tracing::info!(
            model = %config.path.display(),
            variant = %config.variant,
            graphs = %graphs,
            "float16 graphs converted to float32 at load: this CPU has no float16 arithmetic, \
             so tract would run them many times slower (their weights now take twice the \
             memory; model.tract_float16 = \"native\" keeps float16, \"float32\" converts \
             all three graphs)"
        );
    }
    for (graph, placed) in model.placement() {
        match placed {
            Placed::Gpu(placement) => {
                tracing::info!(graph, %placement, "graph placed by tract-cuda")
            }
            Placed::CpuFallback(why) => tracing::info!(graph, "graph on the CPU: {why}"),
            Placed::Cpu => {}
        }
    }
    Ok(Plans::Tract(Arc::new(model)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> String {
        let config: ModelConfig = toml::from_str(&format!("path = \"m\"\n{text}")).unwrap();
        let mut problems = Problems::default();
        config.validate("model", &mut problems);
        problems.to_string()
    }

    #[test]
    fn provider_keys_are_checked_with_their_defaults() {
        let config: ModelConfig = toml::from_str("path = \"m\"").unwrap();
        assert_eq!(config, ModelConfig::new("m"));
        assert_eq!(
            config.providers,
            [Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
        );
        assert_eq!(problems(""), "0 problems:");
        assert_eq!(
            problems("providers = [\"cpu\"]\nrequire_gpu = true"),
            "model.require_gpu: needs \"tensorrt\" or \"cuda\" in providers"
        );
        assert_eq!(
            problems("backend = \"tract\"\nrequire_gpu = true"),
            "model.require_gpu: needs backend = \"tract-cuda\", \"ort\" or \"auto\" (tract runs on the CPU only)"
        );
        assert_eq!(
            problems("providers = [\"cuda\", \"cuda\"]\nmax_context = 8"),
            "2 problems:\n  model.providers: lists cuda twice\n  model.max_context: must be between 16 and 1048576, got 8"
        );
        assert!(toml::from_str::<ModelConfig>("path = \"m\"\nproviders = [\"npu\"]").is_err());
    }
}
