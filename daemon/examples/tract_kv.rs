//! Does tract-transformers' decoder rewriting help the tract backend? Three
//! ways to run the same decoder graph, compared in one run (the figures are
//! meant as ratios: the machine is shared and noisy):
//!
//! - `plain`: today's backend, `into_optimized`, the KV cache as explicit
//!   `past_key_values.*` inputs and `present.*` outputs fed back each step;
//! - `fused`: `detect_apply_rope`, `detect_scaled_masked_softmax` and
//!   `detect_sdpa_kv_cache_broadcast` first, the cache still explicit;
//! - `stateful`: `transformers_detect_all`, the cache kept inside the
//!   plan's run state (`DynKeyValueCache` ops), one state per generation.
//!
//! For each model: which rewrites matched (op counts after the transform and
//! after optimisation), prefill tokens/s of a 300-token prompt, decode
//! tokens/s of 64 steps after it (medians of the rounds, 1 thread), and the
//! largest logit difference against `plain` on a prompt whose position ids
//! have gaps (0..10 then 50..60, then decode steps, then a chunk at 100..103):
//! the daemon passes such positions, so a rewrite must keep honouring them.
//!
//! Run: `cargo run --release --example tract_kv [-- MODEL_DIR...]` (default:
//! models/shapes/model and models/test-tiny). Prints; asserts nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::transform::get_transform;
use tract_onnx::tract_hir::internal::DimLike;

const PROMPT: usize = 300;
const STEPS: usize = 64;
const ROUNDS: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Plain,
    Fused,
    Stateful,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Plain, Variant::Fused, Variant::Stateful];

    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Fused => "fused",
            Variant::Stateful => "stateful",
        }
    }

    /// The registered tract model transforms applied before optimisation.
    fn transforms(self) -> &'static [&'static str] {
        match self {
            Variant::Plain => &[],
            Variant::Fused => &[
                "detect_apply_rope",
                "detect_scaled_masked_softmax",
                "detect_sdpa_kv_cache_broadcast",
            ],
            Variant::Stateful => &["transformers_detect_all"],
        }
    }
}

/// The ops the rewrites introduce, by their tract names.
const REWRITTEN: [&str; 6] = [
    "DynamicKeyValueCache",
    "RotateHalf",
    "ApplyRope",
    "ScaledMaskedSoftmax",
    "SDPA",
    "DiagGather",
];

fn census(model: &TypedModel) -> String {
    let counts: Vec<String> = REWRITTEN
        .iter()
        .map(|op| {
            let n = model
                .nodes()
                .iter()
                .filter(|n| n.op().name() == *op)
                .count();
            (op, n)
        })
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    if counts.is_empty() {
        "none".to_owned()
    } else {
        counts.join(", ")
    }
}

/// One compiled decoder variant.
struct Decoder {
    variant: Variant,
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Rewritten ops after the transform, then after optimisation.
    matched: (String, String),
    hidden: usize,
    /// `[1, kv_heads, 0, head_dim]`: an empty explicit cache tensor.
    empty_past: Vec<usize>,
}

fn compile(file: &Path, variant: Variant) -> TractResult<Decoder> {
    let model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(file)?;
    // InferenceModel::into_optimized is into_typed + declutter + optimise;
    // the rewrites expect the decluttered graph, as in tract's own tools.
    let mut typed = model.into_typed()?.into_decluttered()?;
    for name in variant.transforms() {
        get_transform(name)?
            .with_context(|| format!("no tract transform {name:?}"))?
            .transform(&mut typed)?;
    }
    let after_transform = census(&typed);
    let optimized = typed.into_optimized()?;
    let matched = (after_transform, census(&optimized));
    let inputs: Vec<String> = optimized
        .input_outlets()?
        .iter()
        .map(|o| optimized.node(o.node).name.clone())
        .collect();
    let outputs = optimized
        .output_outlets()?
        .iter()
        .map(|o| {
            optimized
                .outlet_label(*o)
                .map_or_else(|| optimized.node(o.node).name.clone(), str::to_owned)
        })
        .collect();
    let dims = |name: &str| -> TractResult<Vec<usize>> {
        let at = inputs.iter().position(|n| n == name);
        // The stateful variant has no past inputs: the state knows them.
        let Some(at) = at else { return Ok(vec![]) };
        let fact = optimized.input_fact(at)?;
        Ok(fact
            .shape
            .iter()
            .map(|d| d.to_usize().unwrap_or(0))
            .collect())
    };
    let hidden = dims("inputs_embeds")?[2];
    let empty_past = dims("past_key_values.0.key")?;
    Ok(Decoder {
        variant,
        plan: optimized.into_runnable()?,
        inputs,
        outputs,
        matched,
        hidden,
        empty_past,
    })
}

/// One generation on a decoder: the cache as explicit tensors, or the run
/// state that holds it.
struct Session<'a> {
    decoder: &'a Decoder,
    past: Vec<(String, TValue)>,
    state: TypedSimpleState,
    len: usize,
}

impl<'a> Session<'a> {
    fn new(decoder: &'a Decoder) -> TractResult<Self> {
        let past = decoder
            .inputs
            .iter()
            .filter(|n| n.starts_with("past_key_values."))
            .map(|n| {
                Ok((
                    n.clone(),
                    Tensor::zero::<f32>(&decoder.empty_past)?.into_tvalue(),
                ))
            })
            .collect::<TractResult<_>>()?;
        Ok(Session {
            decoder,
            past,
            state: decoder.plan.spawn()?,
            len: 0,
        })
    }

    /// Runs `embeds` at `positions`; returns every position's logits.
    fn step(&mut self, embeds: &[f32], positions: &[i64]) -> TractResult<Vec<f32>> {
        let d = self.decoder;
        let s = positions.len();
        let total = self.len + s;
        let mut named = vec![
            (
                "inputs_embeds".to_owned(),
                Tensor::from_shape(&[1, s, d.hidden], embeds)?.into_tvalue(),
            ),
            (
                "attention_mask".to_owned(),
                Tensor::from_shape(&[1, total], &vec![1i64; total])?.into_tvalue(),
            ),
            (
                "position_ids".to_owned(),
                Tensor::from_shape(&[1, s], positions)?.into_tvalue(),
            ),
        ];
        named.append(&mut self.past);
        let mut inputs = TVec::new();
        for name in &d.inputs {
            let at = named
                .iter()
                .position(|(n, _)| n == name)
                .with_context(|| format!("no value for {name}"))?;
            inputs.push(named.swap_remove(at).1);
        }
        // Today's backend runs the shared plan afresh each step; the
        // stateful variant must keep its state for the whole generation.
        let outputs = match d.variant {
            Variant::Stateful => self.state.run(inputs)?,
            _ => d.plan.run(inputs)?,
        };
        let mut logits = None;
        for (name, value) in d.outputs.iter().zip(outputs) {
            if name == "logits" {
                logits = Some(value);
            } else if let Some(rest) = name.strip_prefix("present.") {
                self.past.push((format!("past_key_values.{rest}"), value));
            }
        }
        self.len = total;
        let logits = logits.context("no logits output")?;
        Ok(logits.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    }
}

/// Deterministic values in [-1, 1] (splitmix64).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The position ids of each call of the equivalence check: a prompt with a
/// gap, single decode steps, then a chunk after another gap.
fn gapped_calls() -> Vec<Vec<i64>> {
    let mut calls = vec![(0..10).chain(50..60).collect::<Vec<i64>>()];
    calls.extend((60..68).map(|p| vec![p]));
    calls.push((100..103).collect());
    calls
}

/// Every logit of the calls `positions`, in order, on a fresh session.
fn logits_of(decoder: &Decoder, calls: &[Vec<i64>]) -> TractResult<Vec<f32>> {
    let mut session = Session::new(decoder)?;
    let mut all = Vec::new();
    for (i, positions) in calls.iter().enumerate() {
        let embeds = noise(positions.len() * decoder.hidden, 7 + i as u64);
        all.extend(session.step(&embeds, positions)?);
    }
    Ok(all)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One timed generation: (prefill time, decode time, last logits).
fn timed(decoder: &Decoder) -> TractResult<(Duration, Duration, Vec<f32>)> {
    let mut session = Session::new(decoder)?;
    let prompt = noise(PROMPT * decoder.hidden, 1);
    let positions: Vec<i64> = (0..PROMPT as i64).collect();
    let started = Instant::now();
    let mut logits = session.step(&prompt, &positions)?;
    let prefill = started.elapsed();
    let started = Instant::now();
    for step in 0..STEPS {
        let embed = noise(decoder.hidden, 100 + step as u64);
        logits = session.step(&embed, &[(PROMPT + step) as i64])?;
    }
    Ok((prefill, started.elapsed(), logits))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench(dir: &Path) -> TractResult<()> {
    let file = dir.join("onnx/decoder_model_merged.onnx");
    println!("\nmodel: {}", file.display());
    let decoders: Vec<Decoder> = Variant::ALL
        .iter()
        .map(|&v| compile(&file, v))
        .collect::<TractResult<_>>()?;

    let calls = gapped_calls();
    let reference = logits_of(&decoders[0], &calls)?;
    let contiguous: Vec<Vec<i64>> = {
        let mut next = 0;
        calls
            .iter()
            .map(|c| {
                let p = (next..next + c.len() as i64).collect();
                next += c.len() as i64;
                p
            })
            .collect()
    };
    // Shows the check can fail: the same inputs without the gaps differ.
    let gap_effect = max_diff(&reference, &logits_of(&decoders[0], &contiguous)?);
    println!("plain, gapped against contiguous positions: max logit diff {gap_effect:.3e}");

    // Rounds interleave the variants so load changes hit them alike; the
    // first round warms up and is not counted.
    let mut prefill = vec![Vec::new(); decoders.len()];
    let mut decode = vec![Vec::new(); decoders.len()];
    let mut last_diff = vec![0f32; decoders.len()];
    for round in 0..=ROUNDS {
        let mut last = Vec::new();
        for (i, decoder) in decoders.iter().enumerate() {
            let (p, d, logits) = timed(decoder)?;
            if i == 0 {
                last = logits;
            } else {
                last_diff[i] = last_diff[i].max(max_diff(&last, &logits));
            }
            if round > 0 {
                prefill[i].push(PROMPT as f64 / p.as_secs_f64());
                decode[i].push(STEPS as f64 / d.as_secs_f64());
            }
        }
    }

    println!(
        "{:<9} {:>13} {:>8} {:>12} {:>8} {:>11} {:>11}  matched (after transform | after optimise)",
        "variant", "prefill tok/s", "x plain", "decode tok/s", "x plain", "gap diff", "300+64 diff"
    );
    let base = (median(prefill[0].clone()), median(decode[0].clone()));
    for (i, decoder) in decoders.iter().enumerate() {
        let diff = if i == 0 {
            0.0
        } else {
            max_diff(&reference, &logits_of(decoder, &calls)?)
        };
        let (p, d) = (median(prefill[i].clone()), median(decode[i].clone()));
        println!(
            "{:<9} {:>13.0} {:>7.2}x {:>12.0} {:>7.2}x {:>11.2e} {:>11.2e}  {} | {}",
            decoder.variant.name(),
            p,
            p / base.0,
            d,
            d / base.1,
            diff,
            last_diff[i],
            decoder.matched.0,
            decoder.matched.1
        );
    }
    Ok(())
}

fn main() -> TractResult<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut dirs: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        dirs = vec![root.join("shapes/model"), root.join("test-tiny")];
    }
    println!(
        "tract decoder variants, 1 thread, prompt {PROMPT} tokens, {STEPS} decode steps, \
         median of {ROUNDS} rounds"
    );
    for dir in &dirs {
        bench(dir)?;
    }
    Ok(())
}
