//! The tract backend: pure Rust, any CPU, nothing native to install.
//!
//! Each graph is loaded with its ONNX dim names as tract symbols (sequence
//! and past lengths are resolved per run), optimised for this machine once,
//! and kept as an `Arc` plan that every worker runs. The KV cache is a list
//! of tract tensors handed back to the decoder at every step, in the
//! decoder's own float type: float16 graphs get their inputs cast from f32
//! and their outputs cast back ([`Floats`]), and the cache is never
//! converted.
//!
//! The same code runs the graphs on a GPU through tract's CUDA runtime
//! ([`Target::Cuda`], the `cuda` cargo feature): each graph is translated
//! to CUDA when it is compiled, tensors go in and come out on the host, and
//! a graph that tract-cuda cannot take stays on the CPU (docs/architecture.md
//! §6).
//!
//! tract-transformers can rewrite the decoder to keep the cache in the
//! plan's state (`transformers_detect_all`). `examples/tract_kv.rs` measured
//! it on both bundled models: same logits, gapped position ids honoured, but
//! no faster (decode 1.00x, prefill 0.8x), so the cache stays explicit.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::cuda::Placement;
use super::{Backend, Float, Floats, InferError, KvCache, ModelFolder, ModelInfo};

/// A compiled graph: tract's CPU plan or its CUDA runtime's, run alike.
type Plan = Box<dyn Runnable>;

/// Where [`TractModel::compile`] puts the graphs.
#[derive(Clone, Copy)]
pub enum Target {
    /// tract's own CPU kernels.
    Cpu,
    /// tract's CUDA runtime (probed usable). With `required`, a graph it
    /// cannot take fails the load; without, that graph stays on the CPU.
    #[cfg(feature = "tract-cuda")]
    Cuda {
        /// The runtime.
        cuda: super::cuda::Cuda,
        /// `model.require_gpu`.
        required: bool,
    },
}

/// Where one graph ended up.
#[derive(Debug, Clone)]
pub enum Placed {
    /// tract's CPU plan.
    Cpu,
    /// tract's CPU plan because tract-cuda could not take the graph.
    CpuFallback(String),
    /// tract's CUDA plan, with its nodes counted.
    Gpu(Placement),
}

/// The compiled graphs of one model.
pub struct TractModel {
    info: ModelInfo,
    floats: Floats,
    vision: Graph,
    embed: Graph,
    decoder: Graph,
}

/// A plan with its inputs and outputs in graph order, by name.
struct Graph {
    plan: Plan,
    inputs: Vec<String>,
    outputs: Vec<String>,
    placed: Placed,
    /// Converted from float16 to float32 at load (its boundary is f32).
    widened: bool,
}

impl Graph {
    /// `widen`: convert a float16 graph to float32 if it lands on the CPU.
    fn compile(
        file: &Path,
        graph: &'static str,
        target: Target,
        widen: bool,
    ) -> Result<Graph, InferError> {
        let fail = |e: TractError| InferError::Compile {
            file: file.to_owned(),
            message: format!("{e:#}"),
        };
        let model = tract_onnx::onnx()
            // Exporters write value_info that tract's own inference knows
            // better; trusting it breaks some graphs (FACTS.md).
            .with_ignore_value_info(true)
            .model_for_path(file)
            .map_err(fail)?;
        let inputs = model
            .input_outlets()
            .map_err(fail)?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let outputs = model
            .output_outlets()
            .map_err(fail)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map_or_else(|| model.node(o.node).name.clone(), str::to_owned)
            })
            .collect();
        // Names the graph in tract-cuda's messages only.
        #[cfg(not(feature = "tract-cuda"))]
        let _ = graph;
        let (plan, placed, widened) = match target {
            Target::Cpu => {
                let (plan, widened) = cpu_plan(model, widen).map_err(fail)?;
                (plan, Placed::Cpu, widened)
            }
            #[cfg(feature = "tract-cuda")]
            Target::Cuda { cuda, required } => {
                let typed = model
                    .clone()
                    .into_typed()
                    .and_then(|m| m.into_decluttered())
                    .map_err(fail)?;
                match super::cuda::prepare(cuda, typed) {
                    Ok(plan) => {
                        let placement = plan
                            .typed_model()
                            .map(|m| Placement::of(m.nodes.iter().map(|n| n.op.name())))
                            .unwrap_or_default();
                        (plan, Placed::Gpu(placement), false)
                    }
                    Err(why) if required => {
                        return Err(InferError::Gpu {
                            reason: format!("{graph} ({}): {why}", file.display()),
                        })
                    }
                    Err(why) => {
                        tracing::warn!(
                            graph,
                            "tract-cuda cannot run this graph, it stays on the CPU: {why}"
                        );
                        let (plan, widened) = cpu_plan(model, widen).map_err(fail)?;
                        (plan, Placed::CpuFallback(why), widened)
                    }
                }
            }
        };
        Ok(Graph {
            plan,
            inputs,
            outputs,
            placed,
            widened,
        })
    }

    /// Runs with inputs given by name; returns the outputs by name.
    fn run(
        &self,
        graph: &'static str,
        mut named: Vec<(&str, TValue)>,
    ) -> Result<Vec<(String, TValue)>, InferError> {
        let mut inputs = TVec::new();
        for name in &self.inputs {
            let at = named
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| InferError::Run {
                    graph,
                    message: format!("no value for input {name:?}"),
                })?;
            inputs.push(named.swap_remove(at).1);
        }
        let outputs = self.plan.run(inputs).map_err(|e| InferError::Run {
            graph,
            message: format!("{e:#}"),
        })?;
        Ok(self.outputs.iter().cloned().zip(outputs).collect())
    }
}

/// tract's CPU plan; with `widen`, a graph holding float16 is converted to
/// float32 first (tract's own `f16_to_f32` transform: sources, constants,
/// casts and operators). Returns whether it was.
fn cpu_plan(model: InferenceModel, widen: bool) -> TractResult<(Plan, bool)> {
    let mut typed = model.into_typed()?.into_decluttered()?;
    let half = typed.nodes.iter().any(|n| {
        n.outputs
            .iter()
            .any(|o| o.fact.datum_type == DatumType::F16)
    });
    let widened = widen && half;
    if widened {
        let transform = tract_onnx::tract_core::transform::get_transform("f16_to_f32")?
            .ok_or_else(|| TractError::msg("tract has no f16_to_f32 transform"))?;
        typed = transform.transform_into(typed)?.into_decluttered()?;
    }
    let plan: Plan = Box::new(typed.into_optimized()?.into_runnable()?);
    Ok((plan, widened))
}

impl TractModel {
    /// Compiles the three graphs of `folder` for `target`.
    /// Float16 graphs that run on the CPU are converted to float32 as
    /// `float16` says (`model.tract_float16`), and their boundary becomes
    /// f32.
    pub fn compile(
        folder: &ModelFolder,
        target: Target,
        float16: super::TractFloat16,
    ) -> Result<TractModel, InferError> {
        let [vision, embed, decoder] = &folder.graphs;
        let graph = |file: &Path, name: &'static str| {
            Graph::compile(file, name, target, float16.widens_graph(name))
        };
        let vision = graph(&vision.file, "vision_encoder")?;
        let embed = graph(&embed.file, "embed_tokens")?;
        let decoder = graph(&decoder.file, "decoder_model_merged")?;
        let mut floats = folder.floats;
        if vision.widened {
            floats.pixel_values = Float::F32;
        }
        if decoder.widened {
            floats.inputs_embeds = Float::F32;
            floats.cache = Float::F32;
        }
        Ok(TractModel {
            info: folder.info.clone(),
            floats,
            vision,
            embed,
            decoder,
        })
    }

    /// The graphs converted from float16 to float32 at load, comma
    /// separated; `None` when none was.
    pub fn widened(&self) -> Option<String> {
        let names: Vec<&str> = [
            ("vision_encoder", &self.vision),
            ("embed_tokens", &self.embed),
            ("decoder_model_merged", &self.decoder),
        ]
        .iter()
        .filter(|(_, g)| g.widened)
        .map(|(name, _)| *name)
        .collect();
        (!names.is_empty()).then(|| names.join(", "))
    }

    /// Where each graph runs, by graph name.
    pub fn placement(&self) -> [(&'static str, &Placed); 3] {
        [
            ("vision_encoder", &self.vision.placed),
            ("embed_tokens", &self.embed.placed),
            ("decoder_model_merged", &self.decoder.placed),
        ]
    }

    /// `tract` on the CPU; `tract-cuda (...)` with each graph's place when
    /// any runs on the GPU.
    pub fn describe(&self) -> String {
        let placed = self.placement();
        if !placed.iter().any(|(_, p)| matches!(p, Placed::Gpu(_))) {
            return "tract".to_owned();
        }
        let each: Vec<String> = placed
            .iter()
            .map(|(name, p)| match p {
                Placed::Gpu(placement) if placement.cpu.is_empty() => format!("{name} gpu"),
                Placed::Gpu(placement) => format!(
                    "{name} gpu + cpu {}",
                    placement.cpu.keys().cloned().collect::<Vec<_>>().join("/")
                ),
                Placed::Cpu | Placed::CpuFallback(_) => format!("{name} cpu"),
            })
            .collect();
        format!("tract-cuda ({})", each.join(", "))
    }

    /// A backend over the shared plans.
    pub fn backend(self: &Arc<Self>) -> TractBackend {
        TractBackend {
            model: self.clone(),
        }
    }
}

/// One worker's handle on a [`TractModel`].
pub struct TractBackend {
    model: Arc<TractModel>,
}

fn tensor<T: Datum + Copy>(shape: &[usize], data: &[T]) -> Result<TValue, InferError> {
    Tensor::from_shape(shape, data)
        .map(|t| t.into_tvalue())
        .map_err(|e| InferError::Input(format!("{e:#}")))
}

fn datum(float: Float) -> DatumType {
    match float {
        Float::F32 => DatumType::F32,
        Float::F16 => DatumType::F16,
    }
}

/// `data` (f32) as a tensor of the graph's float type.
fn float_tensor(shape: &[usize], data: &[f32], float: Float) -> Result<TValue, InferError> {
    let fail = |e: TractError| InferError::Input(format!("{e:#}"));
    let tensor = Tensor::from_shape(shape, data).map_err(fail)?;
    let tensor = match float {
        Float::F32 => tensor,
        Float::F16 => tensor
            .cast_to_dt(DatumType::F16)
            .map_err(fail)?
            .into_owned(),
    };
    Ok(tensor.into_tvalue())
}

/// A float output as f32, whatever float type the graph gives.
fn floats(graph: &'static str, value: &TValue) -> Result<Vec<f32>, InferError> {
    value
        .cast_to::<f32>()
        .and_then(|t| {
            t.try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
        })
        .map_err(|e| InferError::Run {
            graph,
            message: format!("unexpected output: {e:#}"),
        })
}

impl Backend for TractBackend {
    fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    fn kind(&self) -> &'static str {
        "tract"
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
            "vision_encoder",
            vec![
                (
                    "pixel_values",
                    float_tensor(
                        &[1, 1, 3, s, s],
                        pixel_values,
                        self.model.floats.pixel_values,
                    )?,
                ),
                (
                    "pixel_attention_mask",
                    tensor(&[1, 1, s, s], &vec![true; s * s])?,
                ),
            ],
        )?;
        let features = floats(
            "vision_encoder",
            &named(&outputs, "image_features", "vision_encoder")?,
        )?;
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
            "embed_tokens",
            vec![("input_ids", tensor(&[1, ids.len()], ids)?)],
        )?;
        floats(
            "embed_tokens",
            &named(&outputs, "inputs_embeds", "embed_tokens")?,
        )
    }

    fn new_cache(&self) -> KvCache {
        let i = &self.model.info;
        let dt = datum(self.model.floats.cache);
        let empty: Vec<TValue> = (0..2 * i.layers)
            .map(|_| Tensor::zero_dt(dt, &[1, i.kv_heads, 0, i.head_dim]).map(|t| t.into_tvalue()))
            .collect::<TractResult<_>>()
            // Zero-length float tensors of a valid shape always build.
            .unwrap_or_default();
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
            .downcast_mut::<Vec<TValue>>()
            .ok_or_else(|| InferError::Input("a KV cache from another backend".into()))?;
        let total = cache.len + s;
        let names: Vec<String> = (0..info.layers)
            .flat_map(|l| {
                [
                    format!("past_key_values.{l}.key"),
                    format!("past_key_values.{l}.value"),
                ]
            })
            .collect();
        let mut inputs: Vec<(&str, TValue)> = vec![
            (
                "inputs_embeds",
                float_tensor(
                    &[1, s, info.hidden],
                    embeds,
                    self.model.floats.inputs_embeds,
                )?,
            ),
            ("attention_mask", tensor(&[1, total], &vec![1i64; total])?),
            ("position_ids", tensor(&[1, s], positions)?),
        ];
        for (name, value) in names.iter().zip(std::mem::take(past)) {
            inputs.push((name.as_str(), value));
        }
        let mut outputs = self.model.decoder.run("decoder_model_merged", inputs)?;
        let logits = named(&outputs, "logits", "decoder_model_merged")?;
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
        let mut presents = Vec::with_capacity(2 * info.layers);
        for l in 0..info.layers {
            for kind in ["key", "value"] {
                let name = format!("present.{l}.{kind}");
                let at = outputs
                    .iter()
                    .position(|(n, _)| *n == name)
                    .ok_or_else(|| InferError::Run {
                        graph: "decoder_model_merged",
                        message: format!("no output {name:?}"),
                    })?;
                presents.push(outputs.swap_remove(at).1);
            }
        }
        *past = presents;
        cache.len = total;
        Ok(last)
    }
}

fn named(
    outputs: &[(String, TValue)],
    name: &str,
    graph: &'static str,
) -> Result<TValue, InferError> {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| InferError::Run {
            graph,
            message: format!("no output {name:?}"),
        })
}
