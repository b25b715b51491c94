//! Model runtime speed, tract against ONNX Runtime on the same model and
//! inputs in one run: vision encoder ms/frame, prefill tokens/s, decode
//! tokens/s, with 1 and 2 threads, then ONNX Runtime's speed-ups over tract.
//!
//! Run: `cargo bench --bench infer [-- MODEL_DIR]` (default: the test
//! model, models/test-tiny). ONNX Runtime comes from `ORT_DYLIB_PATH`, else
//! the onnxruntime pip wheel that `python3` imports; its providers from
//! `GLIMPSE_BENCH_PROVIDERS` (default `cpu`; e.g. `cuda,cpu` on a GPU).
//! Without the library only tract runs. Prints a table; nothing is asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use glimpse::infer::{self, BackendKind, ModelConfig, Provider};
use glimpse::llm::{self, Prompt, Sampling};

/// Peak resident set size of this process, from /proc.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

#[path = "../../tests/ort_wheel.rs"]
mod ort_wheel;

/// `ORT_DYLIB_PATH`, else the library of the onnxruntime pip wheel.
fn ort_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(path.into());
    }
    ort_wheel::wheel_library().ok()
}

fn providers() -> Vec<Provider> {
    let names = std::env::var("GLIMPSE_BENCH_PROVIDERS").unwrap_or_else(|_| "cpu".into());
    names
        .split(',')
        .map(|n| match n.trim() {
            "tensorrt" => Provider::Tensorrt,
            "cuda" => Provider::Cuda,
            "cpu" => Provider::Cpu,
            other => panic!("GLIMPSE_BENCH_PROVIDERS: unknown provider {other:?}"),
        })
        .collect()
}

/// What one runtime did.
struct Figures {
    load: Duration,
    vision: Duration,
    prefill_tps: f64,
    decode_tps: f64,
}

fn measure(config: &ModelConfig) -> (String, Figures, usize) {
    let loading = Instant::now();
    let model = infer::load(config).expect("load the model");
    let load = loading.elapsed();
    let mut backend = model.backend();
    let info = backend.info().clone();
    let side = info.image_size as usize;
    let pixels: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i % 255) as f32 / 127.5) - 1.0)
        .collect();

    // Vision: one warm-up, then the mean of 10 frames.
    let features = backend.encode_image(&pixels).unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        backend.encode_image(&pixels).unwrap();
    }
    let vision = started.elapsed() / 10;

    // A prompt like the daemon's: a frame's visual tokens in text.
    let mut ids = vec![1i64; 8];
    ids.extend(std::iter::repeat_n(
        info.image_token_id,
        info.tokens_per_image(),
    ));
    ids.extend([1i64; 12]);
    let prompt = Prompt {
        positions: (0..ids.len() as i64).collect(),
        ids,
        visual: features,
    };
    let sampling = Sampling {
        max_new_tokens: 32,
        ..Sampling::default()
    };
    let mut prefill = Duration::ZERO;
    let mut decode = Duration::ZERO;
    let mut decoded = 0;
    // One warm-up generation (first-run allocations), then three timed.
    for round in 0..4 {
        let g = llm::generate(
            backend.as_mut(),
            &prompt,
            &sampling,
            &[],
            false,
            &mut |_| true,
        )
        .unwrap();
        if round == 0 {
            continue;
        }
        prefill += g.prefill;
        decode += g.decode;
        // The first token comes from the prefill; the rest are decode steps.
        decoded += g.tokens.len().saturating_sub(1);
    }
    let figures = Figures {
        load,
        vision,
        prefill_tps: 3.0 * prompt.ids.len() as f64 / prefill.as_secs_f64(),
        decode_tps: decoded as f64 / decode.as_secs_f64(),
    };
    (model.runtime(), figures, prompt.ids.len())
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny"));
    let library = ort_library();
    println!("model: {}", path.display());
    match &library {
        Some(l) => println!("ONNX Runtime: {}", l.display()),
        None => println!("ONNX Runtime: not found (set ORT_DYLIB_PATH); tract only"),
    }
    println!(
        "{:<16} {:>7} {:>8} {:>16} {:>14} {:>13} {:>9}",
        "runtime",
        "threads",
        "load s",
        "vision ms/frame",
        "prefill tok/s",
        "decode tok/s",
        "peak MiB"
    );
    let mut ratios = Vec::new();
    for threads in [1, 2] {
        let row = |config: ModelConfig| {
            let (runtime, f, prompt) = measure(&config);
            println!(
                "{runtime:<16} {threads:>7} {:>8.2} {:>16.2} {:>14.0} {:>13.0} {:>9.0}   (prompt {prompt} tokens)",
                f.load.as_secs_f64(),
                f.vision.as_secs_f64() * 1000.0,
                f.prefill_tps,
                f.decode_tps,
                peak_rss_mib()
            );
            f
        };
        let tract = row(ModelConfig {
            backend: BackendKind::Tract,
            threads,
            ..ModelConfig::new(&path)
        });
        if let Some(library) = &library {
            let ort = row(ModelConfig {
                backend: BackendKind::Ort,
                threads,
                ort_library: Some(library.clone()),
                providers: providers(),
                ..ModelConfig::new(&path)
            });
            ratios.push((threads, tract, ort));
        }
    }
    if !ratios.is_empty() {
        println!("\nONNX Runtime speed-up over tract (>1: ONNX Runtime faster)");
        println!(
            "{:>7} {:>8} {:>8} {:>8}",
            "threads", "vision", "prefill", "decode"
        );
        for (threads, tract, ort) in ratios {
            println!(
                "{threads:>7} {:>7.2}x {:>7.2}x {:>7.2}x",
                tract.vision.as_secs_f64() / ort.vision.as_secs_f64(),
                ort.prefill_tps / tract.prefill_tps,
                ort.decode_tps / tract.decode_tps
            );
        }
    }
}
