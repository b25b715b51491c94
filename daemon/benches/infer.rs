//! Model runtime speed, tract against ONNX Runtime on the same model and
//! inputs in one run: load s, vision encoder ms/frame, prefill tokens/s,
//! decode ms/token and the peak RSS of each (model loaded and run alone),
//! per graph variant and thread count, then ONNX Runtime's speed-ups over
//! tract.
//!
//! Run: `cargo bench --bench infer [-- MODEL_DIR] [--variant V]...
//! [--threads N]... [--frames N]` (default: the test model,
//! models/test-tiny; the fp32 graphs; 1 and 2 threads; 10 frames). E.g.
//! `-- /tmp/smolvlm2-random --variant "" --variant _quantized --threads 2`.
//! ONNX Runtime comes from `ORT_DYLIB_PATH`, else
//! the onnxruntime pip wheel that `python3` imports; its providers from
//! `GLIMPSE_BENCH_PROVIDERS` (default `cpu`; e.g. `cuda,cpu` on a GPU).
//! Without the library only tract runs. A float16 variant (`_fp16`,
//! `_q4f16`) gets a second tract row, `tract f16`: the graph run as float16
//! (`model.tract_float16 = "native"`) beside the default, which converts it
//! to float32 on a CPU without float16 arithmetic. Prints a table; nothing
//! is asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use glimpse::infer::{self, BackendKind, ModelConfig, Provider, TractFloat16};
use glimpse::llm::{self, Prompt, Sampling};

/// Starts a new peak: the kernel resets VmHWM to the current RSS when 5 is
/// written to clear_refs (Linux >= 4.0), so each row's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

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

fn measure(config: &ModelConfig, frames: u32) -> (String, Figures, usize) {
    reset_peak_rss();
    let loading = Instant::now();
    let model = infer::load(config).expect("load the model");
    let load = loading.elapsed();
    let mut backend = model.backend();
    let info = backend.info().clone();
    let side = info.image_size as usize;
    let pixels: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i % 255) as f32 / 127.5) - 1.0)
        .collect();

    // Vision: one warm-up, then the mean of `frames` frames.
    let features = backend.encode_image(&pixels).unwrap();
    let started = Instant::now();
    for _ in 0..frames {
        backend.encode_image(&pixels).unwrap();
    }
    let vision = started.elapsed() / frames;

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

/// The command line: the model folder, then `--variant V`, `--threads N`
/// (each may repeat) and `--frames N`.
struct Args {
    path: PathBuf,
    variants: Vec<String>,
    threads: Vec<usize>,
    frames: u32,
}

fn args() -> Args {
    let mut args = Args {
        path: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny"),
        variants: Vec::new(),
        threads: Vec::new(),
        frames: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--variant" => args.variants.push(value("--variant")),
            "--threads" => args
                .threads
                .push(value("--threads").parse().expect("--threads N")),
            "--frames" => args.frames = value("--frames").parse().expect("--frames N"),
            // cargo bench passes --bench to the harness.
            a if a.starts_with('-') => {}
            path => args.path = PathBuf::from(path),
        }
    }
    if args.variants.is_empty() {
        args.variants.push(String::new());
    }
    if args.threads.is_empty() {
        args.threads = vec![1, 2];
    }
    args.frames = args.frames.max(1);
    args
}

fn main() {
    let Args {
        path,
        variants,
        threads: thread_counts,
        frames,
    } = args();
    let library = ort_library();
    println!("model: {}", path.display());
    match &library {
        Some(l) => println!("ONNX Runtime: {}", l.display()),
        None => println!("ONNX Runtime: not found (set ORT_DYLIB_PATH); tract only"),
    }
    println!(
        "{:<16} {:<11} {:>7} {:>7} {:>16} {:>14} {:>14} {:>9}",
        "runtime",
        "variant",
        "threads",
        "load s",
        "vision ms/frame",
        "prefill tok/s",
        "decode ms/tok",
        "peak MiB"
    );
    let mut ratios = Vec::new();
    for variant in &variants {
        let shown = if variant.is_empty() { "fp32" } else { variant };
        for &threads in &thread_counts {
            let row = |config: ModelConfig| {
                let (mut runtime, f, prompt) = measure(&config, frames);
                if config.tract_float16 == TractFloat16::Native {
                    runtime.push_str(" f16");
                }
                println!(
                    "{runtime:<16} {shown:<11} {threads:>7} {:>7.2} {:>16.1} {:>14.0} {:>14.1} {:>9.0}   (prompt {prompt} tokens)",
                    f.load.as_secs_f64(),
                    f.vision.as_secs_f64() * 1000.0,
                    f.prefill_tps,
                    1000.0 / f.decode_tps,
                    peak_rss_mib()
                );
                f
            };
            let tract = row(ModelConfig {
                backend: BackendKind::Tract,
                variant: variant.clone(),
                threads,
                ..ModelConfig::new(&path)
            });
            let half = infer::ModelFolder::open(&path, variant).is_ok_and(|f| f.floats.has_f16());
            if half {
                // Before and after: the float16 graph as it is (tract
                // emulates float16 on CPUs without it: the "f16" row).
                row(ModelConfig {
                    backend: BackendKind::Tract,
                    variant: variant.clone(),
                    threads,
                    tract_float16: TractFloat16::Native,
                    ..ModelConfig::new(&path)
                });
            }
            if let Some(library) = &library {
                let ort = row(ModelConfig {
                    backend: BackendKind::Ort,
                    variant: variant.clone(),
                    threads,
                    ort_library: Some(library.clone()),
                    providers: providers(),
                    ..ModelConfig::new(&path)
                });
                ratios.push((shown, threads, tract, ort));
            }
        }
    }
    if !ratios.is_empty() {
        println!("\nONNX Runtime speed-up over tract (>1: ONNX Runtime faster)");
        println!(
            "{:<11} {:>7} {:>8} {:>8} {:>8}",
            "variant", "threads", "vision", "prefill", "decode"
        );
        for (variant, threads, tract, ort) in ratios {
            println!(
                "{variant:<11} {threads:>7} {:>7.2}x {:>7.2}x {:>7.2}x",
                tract.vision.as_secs_f64() / ort.vision.as_secs_f64(),
                ort.prefill_tps / tract.prefill_tps,
                ort.decode_tps / tract.decode_tps
            );
        }
    }
}
