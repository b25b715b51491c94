//! The ONNX Runtime backend (`ort` cargo feature): the same three graphs as
//! tract, run by a `libonnxruntime.so` loaded at run time, on the CPU, CUDA
//! or TensorRT.
//!
//! Nothing is linked at build time (`ort`'s `load-dynamic`): the library
//! comes from `model.ort_library`, `ORT_DYLIB_PATH` or a few standard places
//! ([`find_library`]), is checked to exist and loaded once per process with
//! `ort::init_from`, so a missing library is an error, never `ort`'s panic.
//!
//! Execution providers are tried in the config's order once per load
//! ([`resolve_providers`]): one that cannot register is logged once with the
//! reason and skipped, or, with `model.require_gpu`, fails the load naming
//! it. TensorRT builds fp16 engines for explicit shape profiles (static for
//! the vision encoder, 1..`max_context` for the text graphs) and caches
//! them, with its timing cache, in `<state_dir>/engines/<key>/`, where the
//! key ([`engine_cache_key`]) changes with the model bytes, the runtime
//! versions, the GPU and the profile.
//!
//! Sessions are shared by every worker's backend behind one mutex per graph:
//! `ort`'s `Session::run` takes `&mut self`, and a session per worker would
//! hold the weights (and TensorRT engines) twice. The KV cache is a list of
//! ONNX Runtime tensors handed back to the decoder at every step, as in
//! tract, in the decoder's own float type (float16 graphs get f32 inputs
//! converted and their outputs converted back, [`Floats`]). Runs on the
//! model worker threads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::{
    Backend, Float, Floats, GraphInfo, InferError, KvCache, ModelConfig, ModelFolder, ModelInfo,
    Provider,
};

/// The library's file name where we look for it ourselves.
const LIBRARY: &str = "libonnxruntime.so";

/// Finds the ONNX Runtime library: `configured` (`model.ort_library`), else
/// `$ORT_DYLIB_PATH`, else `libonnxruntime.so` next to the binary or in the
/// system library folders. Returns the file and where it came from, or why
/// there is none. Only looks at files: cheap enough for every load.
pub fn find_library(configured: Option<&Path>) -> Result<(PathBuf, &'static str), String> {
    let exists = |path: &Path, from: &'static str| {
        if path.is_file() {
            Ok((
                std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
                from,
            ))
        } else {
            Err(format!("{from} = {}: no such file", path.display()))
        }
    };
    if let Some(path) = configured {
        return exists(path, "model.ort_library");
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return exists(Path::new(&path), "ORT_DYLIB_PATH");
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(LIBRARY)));
    let system = [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
    ]
    .map(|dir| Path::new(dir).join(LIBRARY));
    beside
        .into_iter()
        .chain(system)
        .find(|p| p.is_file())
        .map(|p| (p, "a standard location"))
        .ok_or_else(|| {
            "no ONNX Runtime library: set model.ort_library or ORT_DYLIB_PATH to a libonnxruntime.so \
             (the onnxruntime pip wheel has one in onnxruntime/capi/)"
                .to_owned()
        })
}

/// ONNX Runtime, loaded once per process: `ort` allows one library and one
/// environment for the life of the process.
struct Runtime {
    env: Environment,
    library: PathBuf,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

fn runtime(library: &Path) -> Result<Arc<Runtime>, InferError> {
    let mut loaded = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let canonical = library
        .canonicalize()
        .map_err(|e| InferError::Runtime(format!("{}: {e}", library.display())))?;
    if let Some(runtime) = loaded.as_ref() {
        if runtime.library != canonical {
            return Err(InferError::Runtime(format!(
                "already loaded from {} in this process; restart glimpse to use {}",
                runtime.library.display(),
                canonical.display()
            )));
        }
        return Ok(runtime.clone());
    }
    let env = ort::init_from(&canonical)
        .map_err(|e| InferError::Runtime(e.to_string()))?
        .with_name("glimpse")
        .build()
        .map_err(|e| InferError::Runtime(format!("{}: {e}", canonical.display())))?;
    // ONNX Runtime's INFO lines (thread pools, graph passes) drown ours.
    env.set_log_level(ort::logging::LogLevel::Warning);
    tracing::info!(library = %canonical.display(), build = ort::info(), "ONNX Runtime loaded");
    let runtime = Arc::new(Runtime {
        env,
        library: canonical,
    });
    *loaded = Some(runtime.clone());
    Ok(runtime)
}

/// What `glimpse doctor` reports of ONNX Runtime: the library `config`
/// finds, its build, and whether each execution provider registers (the
/// provider's own libraries — CUDA, cuDNN, TensorRT — load here).
pub fn probe(configured: Option<&Path>) -> Result<OrtProbe, String> {
    let (library, from) = find_library(configured)?;
    let runtime = runtime(&library).map_err(|e| e.to_string())?;
    let providers = [Provider::Tensorrt, Provider::Cuda, Provider::Cpu]
        .into_iter()
        .map(|p| (p, try_register(&runtime.env, p, &library)))
        .collect();
    Ok(OrtProbe {
        library: runtime.library.clone(),
        from,
        build: ort::info().to_owned(),
        providers,
    })
}

/// [`probe`]'s findings.
#[derive(Debug)]
pub struct OrtProbe {
    /// The library, resolved.
    pub library: PathBuf,
    /// Where its path came from.
    pub from: &'static str,
    /// ONNX Runtime's build string (version, commit).
    pub build: String,
    /// Each provider: registered, or why not.
    pub providers: Vec<(Provider, Result<(), String>)>,
}

/// Tries each provider of `config.providers` in order on a scratch session
/// and keeps those that register. A skipped provider is logged once, with
/// the reason; with `require_gpu`, a GPU provider that does not register is
/// the error.
pub fn resolve_providers(
    env: &Environment,
    config: &ModelConfig,
    library: &Path,
) -> Result<Vec<Provider>, InferError> {
    let mut usable = Vec::new();
    for (i, &provider) in config.providers.iter().enumerate() {
        match try_register(env, provider, library) {
            Ok(()) => usable.push(provider),
            Err(reason) if config.require_gpu && provider.is_gpu() => {
                return Err(InferError::Provider { provider, reason })
            }
            Err(reason) => {
                let next = config.providers[i + 1..]
                    .first()
                    .map_or("ONNX Runtime's CPU kernels", |p| p.name());
                tracing::warn!(
                    provider = provider.name(),
                    "execution provider {provider} unavailable, falling back to {next}: {reason}"
                );
            }
        }
    }
    Ok(usable)
}

fn try_register(env: &Environment, provider: Provider, library: &Path) -> Result<(), String> {
    let built_in = match provider {
        Provider::Tensorrt => ep::TensorRT::is_available(),
        Provider::Cuda => ep::CUDA::is_available(),
        Provider::Cpu => Ok(true),
    }
    .map_err(|e| e.to_string())?;
    if !built_in {
        return Err(format!(
            "not built into this ONNX Runtime ({}); use a build with the {} execution provider",
            library.display(),
            match provider {
                Provider::Tensorrt => "TensorRT",
                Provider::Cuda => "CUDA",
                Provider::Cpu => "CPU",
            }
        ));
    }
    // Registration loads the provider's own library (and CUDA, cuDNN,
    // TensorRT): where those are missing, this is where it fails.
    Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_execution_providers([dispatch(provider, &GraphOptions::default())])
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Per-graph settings of the providers.
#[derive(Default)]
struct GraphOptions {
    /// TensorRT: min, opt and max shapes (`name:1x2x3,...`).
    profile: Option<[String; 3]>,
    /// TensorRT: engine and timing cache folder.
    cache: Option<PathBuf>,
    fp16: bool,
}

fn dispatch(provider: Provider, options: &GraphOptions) -> ExecutionProviderDispatch {
    match provider {
        Provider::Tensorrt => {
            let mut trt = ep::TensorRT::default().with_fp16(options.fp16);
            if let Some([min, opt, max]) = &options.profile {
                trt = trt
                    .with_profile_min_shapes(min)
                    .with_profile_opt_shapes(opt)
                    .with_profile_max_shapes(max);
            }
            if let Some(dir) = &options.cache {
                let dir = dir.display().to_string();
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&dir)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&dir);
            }
            trt.build().error_on_failure()
        }
        Provider::Cuda => ep::CUDA::default().build().error_on_failure(),
        Provider::Cpu => ep::CPU::default().build().error_on_failure(),
    }
}

/// TensorRT shape profiles (min, opt, max) of a graph: static shapes for
/// the vision encoder (one frame of the model's size), one to `max_context`
/// tokens for the text graphs, with the decoder optimised for one new token
/// on half the context (the decode steps dominate).
fn profiles(graph: &str, info: &ModelInfo, max_context: usize) -> [String; 3] {
    let join = |shapes: Vec<(String, Vec<usize>)>| {
        shapes
            .iter()
            .map(|(name, dims)| {
                let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
                format!("{name}:{}", dims.join("x"))
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let s = info.image_size as usize;
    let decoder = |new: usize, past: usize, mask: usize| {
        let mut shapes = vec![
            ("inputs_embeds".to_owned(), vec![1, new, info.hidden]),
            ("attention_mask".to_owned(), vec![1, mask]),
            ("position_ids".to_owned(), vec![1, new]),
        ];
        for layer in 0..info.layers {
            for kind in ["key", "value"] {
                shapes.push((
                    format!("past_key_values.{layer}.{kind}"),
                    vec![1, info.kv_heads, past, info.head_dim],
                ));
            }
        }
        join(shapes)
    };
    match graph {
        "vision_encoder" => {
            let fixed = join(vec![
                ("pixel_values".to_owned(), vec![1, 1, 3, s, s]),
                ("pixel_attention_mask".to_owned(), vec![1, 1, s, s]),
            ]);
            [fixed.clone(), fixed.clone(), fixed]
        }
        "embed_tokens" => {
            [1, 1, max_context].map(|n| join(vec![("input_ids".to_owned(), vec![1, n])]))
        }
        // Each dim on its own: step 0 has an empty past, a prompt can fill
        // the context, a decode step can follow almost all of it.
        _ => [
            decoder(1, 0, 1),
            decoder(1, max_context / 2, max_context / 2 + 1),
            decoder(max_context, max_context - 1, max_context),
        ],
    }
}

/// The engine cache folder name: a digest of everything a TensorRT engine
/// depends on. ONNX Runtime's own cache names hash the graph's structure,
/// not its weights, so new weights under the same file names would reuse a
/// stale engine; the model's bytes are part of this key.
pub fn engine_cache_key(model_digest: &str, runtime: &str, gpu: &str, profile: &str) -> String {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    for part in ["glimpse-trt-1", model_digest, runtime, gpu, profile] {
        hash.update(part.as_bytes());
        // Separators keep ("ab", "c") and ("a", "bc") apart.
        hash.update(&[0]);
    }
    hex(&hash.finish().as_ref()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a graph file and its external data files (`<name>.onnx_data`
/// and the like, beside it).
fn graph_digest(graph: &GraphInfo) -> Result<String, InferError> {
    let fail = |file: &Path, e: std::io::Error| InferError::Folder {
        file: file.to_owned(),
        reason: format!("cannot read: {e}"),
    };
    let mut files = vec![graph.file.clone()];
    if let (Some(dir), Some(name)) = (graph.file.parent(), graph.file.file_name()) {
        let name = name.to_string_lossy().into_owned();
        let mut data: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| fail(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .is_some_and(|n| n.len() > name.len() && n.starts_with(&name))
            })
            .collect();
        data.sort();
        files.extend(data);
    }
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    for file in &files {
        let mut f = std::fs::File::open(file).map_err(|e| fail(file, e))?;
        loop {
            let n = f.read(&mut buffer).map_err(|e| fail(file, e))?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
        }
    }
    Ok(hex(hash.finish().as_ref()))
}

/// The GPU's name: NVIDIA's driver on a PC, the device tree on a Jetson.
fn gpu_name() -> String {
    let desktop = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("information")).ok())
        .find_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_owned()))
        });
    desktop
        .or_else(|| {
            std::fs::read_to_string("/proc/device-tree/model")
                .ok()
                .map(|m| m.trim_end_matches('\0').trim().to_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// TensorRT's version, from the file name of `libnvinfer.so.X.Y.Z` in the
/// library folders (asking the library would mean loading it).
fn tensorrt_version() -> String {
    [
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/local/lib",
        "/usr/lib",
    ]
    .iter()
    .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten())
    .filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        Some(name.strip_prefix("libnvinfer.so.")?.to_owned())
    })
    .max_by_key(|v| v.len())
    .unwrap_or_else(|| "unknown".to_owned())
}

/// One graph's session, shared by the workers.
struct Graph {
    name: &'static str,
    session: Mutex<Session>,
}

impl Graph {
    /// Runs with inputs by name; returns the outputs named in `wanted`.
    fn run(
        &self,
        inputs: Vec<(String, DynValue)>,
        wanted: &[String],
    ) -> Result<Vec<DynValue>, InferError> {
        let fail = |message: String| InferError::Run {
            graph: self.name,
            message,
        };
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let mut outputs = session.run(inputs).map_err(|e| fail(e.to_string()))?;
        wanted
            .iter()
            .map(|name| {
                outputs
                    .remove(name)
                    .ok_or_else(|| fail(format!("no output {name:?}")))
            })
            .collect()
    }
}

/// The sessions of one model.
pub struct OrtModel {
    info: ModelInfo,
    floats: Floats,
    providers: Vec<Provider>,
    vision: Graph,
    embed: Graph,
    decoder: Graph,
}

impl OrtModel {
    /// Loads ONNX Runtime from `library` (once per process), picks the
    /// providers and creates the three sessions. TensorRT engines are cached
    /// under `state_dir/engines/` (rebuilt at every start without one).
    pub fn compile(
        folder: &ModelFolder,
        config: &ModelConfig,
        library: &Path,
        state_dir: Option<&Path>,
    ) -> Result<OrtModel, InferError> {
        let runtime = runtime(library)?;
        let providers = resolve_providers(&runtime.env, config, library)?;
        let tensorrt = providers.contains(&Provider::Tensorrt);
        let versions = if tensorrt {
            format!("{} tensorrt {}", ort::info(), tensorrt_version())
        } else {
            String::new()
        };
        let gpu = if tensorrt { gpu_name() } else { String::new() };
        if tensorrt && state_dir.is_none() {
            tracing::warn!("no state directory: TensorRT engines are rebuilt at every start");
        }
        let [vision, embed, decoder] = &folder.graphs;
        let session = |name: &'static str, graph: &GraphInfo| -> Result<Graph, InferError> {
            let fail = |e: String| InferError::Compile {
                file: graph.file.clone(),
                message: e,
            };
            let mut options = GraphOptions {
                fp16: config.tensorrt_fp16,
                ..GraphOptions::default()
            };
            if tensorrt {
                let profile = profiles(name, &folder.info, config.max_context);
                if let Some(dir) = state_dir {
                    let key = engine_cache_key(
                        &graph_digest(graph)?,
                        &versions,
                        &gpu,
                        &profile.join(";"),
                    );
                    let dir = dir.join("engines").join(format!("{name}-{key}"));
                    std::fs::create_dir_all(&dir).map_err(|e| InferError::Folder {
                        file: dir.clone(),
                        reason: format!("cannot create the engine cache: {e}"),
                    })?;
                    options.cache = Some(dir);
                }
                options.profile = Some(profile);
            }
            let eps: Vec<_> = providers.iter().map(|&p| dispatch(p, &options)).collect();
            let session = Session::builder(&runtime.env)
                .and_then(|b| Ok(b.with_intra_threads(config.threads)?))
                .and_then(|b| Ok(b.with_execution_providers(eps)?))
                .and_then(|mut b| b.commit_from_file(&graph.file))
                .map_err(|e| fail(e.to_string()))?;
            Ok(Graph {
                name,
                session: Mutex::new(session),
            })
        };
        Ok(OrtModel {
            info: folder.info.clone(),
            floats: folder.floats,
            vision: session("vision_encoder", vision)?,
            embed: session("embed_tokens", embed)?,
            decoder: session("decoder_model_merged", decoder)?,
            providers,
        })
    }

    /// `ort (tensorrt, cpu)`: the providers in use, in order.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name()).collect();
        if names.is_empty() {
            "ort (cpu kernels)".to_owned()
        } else {
            format!("ort ({})", names.join(", "))
        }
    }

    /// True when a GPU provider (TensorRT, CUDA) registered.
    pub fn on_gpu(&self) -> bool {
        self.providers.iter().any(|p| p.is_gpu())
    }

    /// A backend over the shared sessions.
    pub fn backend(self: &Arc<Self>) -> OrtBackend {
        OrtBackend {
            model: self.clone(),
        }
    }
}

/// One worker's handle on an [`OrtModel`].
pub struct OrtBackend {
    model: Arc<OrtModel>,
}

fn tensor<T>(shape: &[usize], data: Vec<T>) -> Result<DynValue, InferError>
where
    T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static,
{
    Tensor::from_array((shape.to_vec(), data))
        .map(|t| t.into_dyn())
        .map_err(|e| InferError::Input(e.to_string()))
}

/// `data` (f32) as a tensor of the graph's float type.
fn float_tensor(shape: &[usize], data: &[f32], float: Float) -> Result<DynValue, InferError> {
    match float {
        Float::F32 => tensor(shape, data.to_vec()),
        Float::F16 => tensor(
            shape,
            data.iter().map(|&v| half::f16::from_f32(v)).collect(),
        ),
    }
}

/// A float output as f32, whatever float type the graph gives.
fn floats(graph: &'static str, value: &DynValue) -> Result<Vec<f32>, InferError> {
    let fail = |e: ort::Error| InferError::Run {
        graph,
        message: format!("unexpected output: {e}"),
    };
    match value.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float16,
            ..
        } => value
            .try_extract_tensor::<half::f16>()
            .map(|(_, data)| data.iter().map(|v| v.to_f32()).collect())
            .map_err(fail),
        _ => value
            .try_extract_tensor::<f32>()
            .map(|(_, data)| data.to_vec())
            .map_err(fail),
    }
}

impl Backend for OrtBackend {
    fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    fn kind(&self) -> &'static str {
        "ort"
    }

    fn encode_image(&mut self, pixel_values: &[f32]) -> Result<Vec<f32>, InferError> {
        let s = self.model.info.image_size as usize;
        if pixel_values.len() != 3 * s * s {
            return Err(InferError::Input(format!(
                "an image of {} values, expected 3x{s}x{s}",
                pixel_values.len()
            )));
        }
        let outputs = self.model.vision.run(
            vec![
                (
                    "pixel_values".into(),
                    float_tensor(
                        &[1, 1, 3, s, s],
                        pixel_values,
                        self.model.floats.pixel_values,
                    )?,
                ),
                (
                    "pixel_attention_mask".into(),
                    tensor(&[1, 1, s, s], vec![true; s * s])?,
                ),
            ],
            &["image_features".into()],
        )?;
        let features = floats("vision_encoder", &outputs[0])?;
        let want = self.model.info.tokens_per_image() * self.model.info.hidden;
        if features.len() != want {
            return Err(InferError::Run {
                graph: "vision_encoder",
                message: format!(
                    "{} feature values, expected {want} (tokens x hidden from config.json)",
                    features.len()
                ),
            });
        }
        Ok(features)
    }

    fn embed(&mut self, ids: &[i64]) -> Result<Vec<f32>, InferError> {
        let outputs = self.model.embed.run(
            vec![("input_ids".into(), tensor(&[1, ids.len()], ids.to_vec())?)],
            &["inputs_embeds".into()],
        )?;
        floats("embed_tokens", &outputs[0])
    }

    fn new_cache(&self) -> KvCache {
        let i = &self.model.info;
        let empty: Vec<DynValue> = (0..2 * i.layers)
            .filter_map(|_| {
                float_tensor(
                    &[1, i.kv_heads, 0, i.head_dim],
                    &[],
                    self.model.floats.cache,
                )
                .ok()
            })
            .collect();
        KvCache::new(0, Box::new(empty))
    }

    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        positions: &[i64],
    ) -> Result<Vec<f32>, InferError> {
        let info = &self.model.info;
        let s = positions.len();
        if s == 0 || embeds.len() != s * info.hidden {
            return Err(InferError::Input(format!(
                "{} embedding values for {s} positions of width {}",
                embeds.len(),
                info.hidden
            )));
        }
        let past = cache
            .state
            .downcast_mut::<Vec<DynValue>>()
            .ok_or_else(|| InferError::Input("a KV cache from another backend".into()))?;
        if past.len() != 2 * info.layers {
            return Err(InferError::Input(format!(
                "a KV cache of {} tensors, expected {}",
                past.len(),
                2 * info.layers
            )));
        }
        let total = cache.len + s;
        let mut inputs = vec![
            (
                "inputs_embeds".to_owned(),
                float_tensor(
                    &[1, s, info.hidden],
                    embeds,
                    self.model.floats.inputs_embeds,
                )?,
            ),
            (
                "attention_mask".to_owned(),
                tensor(&[1, total], vec![1i64; total])?,
            ),
            (
                "position_ids".to_owned(),
                tensor(&[1, s], positions.to_vec())?,
            ),
        ];
        let mut wanted = vec!["logits".to_owned()];
        for (n, value) in std::mem::take(past).into_iter().enumerate() {
            let (layer, kind) = (n / 2, ["key", "value"][n % 2]);
            inputs.push((format!("past_key_values.{layer}.{kind}"), value));
            wanted.push(format!("present.{layer}.{kind}"));
        }
        let mut outputs = self.model.decoder.run(inputs, &wanted)?.into_iter();
        // `run` returned exactly `wanted`: the logits, then the presents.
        let logits = outputs.next().ok_or_else(|| InferError::Run {
            graph: "decoder_model_merged",
            message: "no logits".into(),
        })?;
        let all = floats("decoder_model_merged", &logits)?;
        let last = all
            .get(all.len().saturating_sub(info.vocab)..)
            .filter(|l| l.len() == info.vocab)
            .ok_or_else(|| InferError::Run {
                graph: "decoder_model_merged",
                message: format!(
                    "{} logits, expected a multiple of the vocabulary ({})",
                    all.len(),
                    info.vocab
                ),
            })?
            .to_vec();
        *past = outputs.collect();
        cache.len = total;
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_cache_key_follows_the_model_the_runtime_the_gpu_and_the_profile() {
        let base = engine_cache_key("aa11", "1.32 tensorrt 10.3.0", "Orin", "x:1x1");
        assert_eq!(base.len(), 16);
        assert_eq!(
            base,
            engine_cache_key("aa11", "1.32 tensorrt 10.3.0", "Orin", "x:1x1"),
            "pure: same inputs, same key"
        );
        for other in [
            engine_cache_key("aa12", "1.32 tensorrt 10.3.0", "Orin", "x:1x1"),
            engine_cache_key("aa11", "1.32 tensorrt 10.4.0", "Orin", "x:1x1"),
            engine_cache_key("aa11", "1.32 tensorrt 10.3.0", "unknown", "x:1x1"),
            engine_cache_key("aa11", "1.32 tensorrt 10.3.0", "Orin", "x:1x2"),
            // The separator: moving a character between parts changes it.
            engine_cache_key("aa1", "11.32 tensorrt 10.3.0", "Orin", "x:1x1"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_graph_digest_changes_with_the_graph_bytes_and_its_external_data() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("decoder_model_merged.onnx");
        let graph = GraphInfo {
            file: file.clone(),
            ..GraphInfo::default()
        };
        std::fs::write(&file, b"graph").unwrap();
        let first = graph_digest(&graph).unwrap();
        assert_eq!(first, graph_digest(&graph).unwrap());
        std::fs::write(&file, b"graph!").unwrap();
        let second = graph_digest(&graph).unwrap();
        assert_ne!(first, second, "the graph's bytes");
        std::fs::write(dir.path().join("decoder_model_merged.onnx_data"), b"w").unwrap();
        let third = graph_digest(&graph).unwrap();
        assert_ne!(second, third, "its external data");
        std::fs::write(dir.path().join("embed_tokens.onnx"), b"other").unwrap();
        assert_eq!(third, graph_digest(&graph).unwrap(), "not other graphs");
        let profile = |p| engine_cache_key(&third, "r", "g", p);
        assert_ne!(profile("a:1"), profile("a:2"));
    }

    #[test]
    fn profiles_are_static_for_vision_and_span_the_context_for_text() {
        let info = ModelInfo {
            image_size: 64,
            patch_size: 8,
            scale_factor: 1,
            grid: 8,
            hidden: 32,
            layers: 1,
            heads: 2,
            kv_heads: 1,
            head_dim: 16,
            vocab: 10,
            image_token_id: 3,
            image_before: Vec::new(),
            image_after: Vec::new(),
        };
        let [min, opt, max] = profiles("vision_encoder", &info, 256);
        assert_eq!(
            min,
            "pixel_values:1x1x3x64x64,pixel_attention_mask:1x1x64x64"
        );
        assert_eq!((&min, &min), (&opt, &max));
        assert_eq!(
            profiles("embed_tokens", &info, 256),
            ["input_ids:1x1", "input_ids:1x1", "input_ids:1x256"].map(String::from)
        );
        let [min, opt, max] = profiles("decoder_model_merged", &info, 256);
        assert_eq!(min, "inputs_embeds:1x1x32,attention_mask:1x1,position_ids:1x1,past_key_values.0.key:1x1x0x16,past_key_values.0.value:1x1x0x16");
        assert!(opt.contains("attention_mask:1x129,"), "{opt}");
        assert!(
            max.contains("inputs_embeds:1x256x32,attention_mask:1x256,position_ids:1x256,past_key_values.0.key:1x1x255x16"),
            "{max}"
        );
    }

    #[test]
    fn a_missing_library_is_an_error_not_a_panic() {
        let missing = Path::new("/nonexistent/libonnxruntime.so");
        assert_eq!(
            find_library(Some(missing)).unwrap_err(),
            "model.ort_library = /nonexistent/libonnxruntime.so: no such file"
        );
    }
}
