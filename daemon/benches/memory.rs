//! Memory: prefill tokens and answer latency with a full memory against
//! feeding every frame's full tokens over the same time window, and RSS as
//! the stream grows. Uses the test model (models/test-tiny): its sizes are
//! small, the ratios are what matter. Run: `cargo bench --bench memory`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use glimpse::dtd::Kept;
use glimpse::frame::FrameMeta;
use glimpse::infer::{self, ModelConfig};
use glimpse::llm::{Responder, Seen, Visual};
use glimpse::memory::{MemoryBank, MemoryConfig};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A frame keeping about 15% of its tokens (the paper's figure at tau 0.5
/// is 17%), every 10th frame a bigger change.
fn kept(k: u64, grid: u32, dim: usize) -> Kept {
    let n = grid * grid;
    let share = if k.is_multiple_of(10) { 50 } else { 15 };
    let positions: Vec<u32> = (0..n)
        .filter(|p| (p * 7 + k as u32 * 13) % 100 < share)
        .collect();
    let mut mask = vec![false; n as usize];
    positions.iter().for_each(|&p| mask[p as usize] = true);
    let tokens = (0..positions.len() * dim)
        .map(|i| ((i as u64 * 31 + k * 17) % 97) as f32 / 97.0 - 0.5)
        .collect();
    Kept {
        meta: FrameMeta {
            camera: Arc::from("bench"),
            seq: k,
            pts: Duration::from_millis(k * 500),
            wall_time: SystemTime::now(),
            discont: k == 0,
        },
        rows: grid,
        cols: grid,
        dim,
        mask,
        positions,
        tokens,
    }
}

fn main() {
    let model = infer::load(&ModelConfig {
        path: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny"),
        threads: 1,
        ..ModelConfig::new("")
    })
    .unwrap();
    let info = model.folder().info.clone();
    let responder = Responder::from_folder(model.folder(), 8).unwrap();
    let mut backend = model.backend();
    let (grid, dim) = (info.grid, info.hidden);
    let mut bank = MemoryBank::new(grid, dim, &MemoryConfig::default());
    println!(
        "{:>9} {:>10} {:>12} {:>12}",
        "frames", "RSS MiB", "bank KiB", "levels"
    );
    let mut pushed = 0u64;
    for target in [1_000u64, 10_000, 100_000] {
        while pushed < target {
            bank.push(&kept(pushed, grid, dim));
            pushed += 1;
        }
        println!(
            "{target:>9} {:>10.1} {:>12.1} {:>12}",
            rss_mib(),
            bank.token_bytes() as f64 / 1024.0,
            format!("{:?}", bank.lens())
        );
    }

    // The same question with the memory readout, and with every frame of
    // the window the memory covers, whole (what a model without dropping
    // and pyramid would need).
    let canvas = bank.canvas();
    let readout = bank.readout(&canvas);
    let window = readout
        .iter()
        .filter(|i| !i.now)
        .map(|i| i.pts)
        .min()
        .unwrap_or_default();
    let frames_in_window =
        (Duration::from_millis((pushed - 1) * 500) - window).as_millis() as u64 / 500 + 1;
    let memory_context: Vec<Seen<'_>> = readout
        .iter()
        .map(|i| Seen {
            at: i.pts,
            now: i.now,
            visual: Visual {
                grid: (i.side * i.side) as usize,
                positions: i.cells,
                tokens: i.tokens,
            },
        })
        .collect();
    let full_cells: Vec<u32> = (0..grid * grid).collect();
    let full_tokens = vec![0.1f32; (grid * grid) as usize * dim];
    // Capped so that the tiny model's position table is not exceeded.
    let full_frames = frames_in_window.min(48);
    let full_context: Vec<Seen<'_>> = (0..full_frames)
        .map(|f| Seen {
            at: Duration::from_secs(f),
            now: false,
            visual: Visual {
                grid: (grid * grid) as usize,
                positions: &full_cells,
                tokens: &full_tokens,
            },
        })
        .collect();
    let time = |context: &[Seen<'_>], backend: &mut dyn glimpse::infer::Backend| {
        let started = Instant::now();
        let answer = responder.ask(backend, context, "what changed ?").unwrap();
        (answer, started.elapsed())
    };
    let (with_memory, memory_latency) = time(&memory_context, backend.as_mut());
    let (with_all, all_latency) = time(&full_context, backend.as_mut());
    println!();
    println!(
        "memory covers {:.0} s of stream = {frames_in_window} frames; token bound {}",
        window.as_secs_f64().max(0.0) - (pushed as f64 * 0.5),
        bank.token_bound()
    );
    println!(
        "{:<36} {:>10} {:>10} {:>12}",
        "context", "prompt", "visual", "answer ms"
    );
    println!(
        "{:<36} {:>10} {:>10} {:>12.1}",
        "memory readout + canvas",
        with_memory.prompt_tokens,
        with_memory.visual_tokens,
        memory_latency.as_secs_f64() * 1e3
    );
    println!(
        "{:<36} {:>10} {:>10} {:>12.1}",
        format!("{full_frames} whole frames (of {frames_in_window})"),
        with_all.prompt_tokens,
        with_all.visual_tokens,
        all_latency.as_secs_f64() * 1e3
    );
    let all_visual = frames_in_window as f64 * f64::from(grid * grid);
    println!(
        "visual tokens: all frames of the window {:.0} vs memory {} -> {:.1}x fewer",
        all_visual,
        with_memory.visual_tokens,
        all_visual / with_memory.visual_tokens.max(1) as f64
    );
}
