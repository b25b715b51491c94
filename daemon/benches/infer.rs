//! Model runtime speed: vision encoder ms/frame, prefill tokens/s, decode
//! tokens/s and peak RSS, with 1 and 2 threads.
//!
//! Run: `cargo bench --bench infer [-- MODEL_DIR]` (default: the test
//! model, models/test-tiny). Prints a table; nothing is asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use glimpse::infer::{self, BackendKind, ModelConfig};
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

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny"));
    println!("model: {}", path.display());
    println!(
        "{:>7} {:>10} {:>16} {:>16} {:>16} {:>10}",
        "threads", "load s", "vision ms/frame", "prefill tok/s", "decode tok/s", "peak MiB"
    );
    for threads in [1, 2] {
        let loading = Instant::now();
        let model = infer::load(&ModelConfig {
            path: path.clone(),
            variant: String::new(),
            backend: BackendKind::Tract,
            threads,
        })
        .expect("load the model");
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
        for _ in 0..3 {
            let g = llm::generate(
                backend.as_mut(),
                &prompt,
                &sampling,
                &[],
                false,
                &mut |_| true,
            )
            .unwrap();
            prefill += g.prefill;
            decode += g.decode;
            // The first token comes from the prefill; the rest are decode steps.
            decoded += g.tokens.len().saturating_sub(1);
        }
        if threads == 1 {
            println!(
                "(prompt: {} tokens, {} of them visual)",
                prompt.ids.len(),
                info.tokens_per_image()
            );
        }
        println!(
            "{threads:>7} {:>10.2} {:>16.2} {:>16.0} {:>16.0} {:>10.0}",
            load.as_secs_f64(),
            vision.as_secs_f64() * 1000.0,
            3.0 * prompt.ids.len() as f64 / prefill.as_secs_f64(),
            decoded as f64 / decode.as_secs_f64(),
            peak_rss_mib()
        );
    }
}
