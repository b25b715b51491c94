//! Cost of change blindness per frame, against the encoder it saves:
//! the pixel gate on 512x512 and 64x64 frames, and token dropping on
//! SmolVLM's 64 tokens of 576 and on a bigger 1024 x 768 grid, next to the
//! test model's encoder. Run: `cargo bench --bench dtd`. Prints a table.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use glimpse::dtd::{DtdConfig, PixelGate, Reference, TokenDropper};
use glimpse::frame::{Frame, FrameMeta};
use glimpse::vision::FrameTokens;

fn frame(size: u32, seq: u64) -> Frame {
    let n = (size * size * 3) as usize;
    Frame {
        camera: Arc::from("bench"),
        seq,
        pts: Duration::from_millis(seq * 500),
        wall_time: SystemTime::now(),
        discont: seq == 0,
        width: size,
        height: size,
        // Mostly static with a little noise, as a real camera.
        rgb: (0..n)
            .map(|i| (100 + ((i as u64 * 2654435761 + seq * 97) % 5)) as u8)
            .collect(),
    }
}

fn tokens(grid: u32, dim: usize, seq: u64) -> FrameTokens {
    let n = (grid * grid) as usize * dim;
    FrameTokens {
        meta: FrameMeta {
            camera: Arc::from("bench"),
            seq,
            pts: Duration::from_millis(seq * 500),
            wall_time: SystemTime::now(),
            discont: seq == 0,
        },
        rows: grid,
        cols: grid,
        dim,
        features: (0..n)
            .map(|i| ((i * 7919 + seq as usize * 31) % 1000) as f32 / 1000.0)
            .collect(),
    }
}

fn time<F: FnMut(u64)>(iterations: u64, mut f: F) -> Duration {
    f(0);
    let started = Instant::now();
    for i in 1..=iterations {
        f(i);
    }
    started.elapsed() / iterations as u32
}

fn main() {
    println!("{:<44} {:>12}", "stage", "µs/frame");
    for (size, grid) in [(512u32, 8u32), (64, 8)] {
        let frames: Vec<Frame> = (0..8).map(|s| frame(size, s)).collect();
        let mut gate = PixelGate::new(0.02, grid, grid);
        let t = time(200, |i| {
            gate.check(&frames[(i % 8) as usize]);
        });
        println!(
            "{:<44} {:>12.1}",
            format!("pixel gate, {size}x{size} RGB, {grid}x{grid} patches"),
            t.as_secs_f64() * 1e6
        );
    }
    for (grid, dim) in [(8u32, 576usize), (32, 768)] {
        for reference in [Reference::LastKept, Reference::Previous] {
            let inputs: Vec<FrameTokens> = (0..8).map(|s| tokens(grid, dim, s)).collect();
            let mut dropper = TokenDropper::new(&DtdConfig {
                reference,
                ..DtdConfig::default()
            });
            let t = time(200, |i| {
                let mut input = inputs[(i % 8) as usize].clone();
                input.meta.discont = i == 0;
                dropper.drop_unchanged(input);
            });
            println!(
                "{:<44} {:>12.1}",
                format!(
                    "token dropping, {} tokens x {dim}, {reference:?}",
                    grid * grid
                ),
                t.as_secs_f64() * 1e6
            );
        }
    }
    let model = glimpse::infer::load(&glimpse::infer::ModelConfig {
        path: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny"),
        threads: 1,
        ..glimpse::infer::ModelConfig::new("")
    })
    .unwrap();
    let mut backend = model.backend();
    let pixels = vec![0.1f32; 3 * 64 * 64];
    let t = time(50, |_| {
        backend.encode_image(&pixels).unwrap();
    });
    println!(
        "{:<44} {:>12.1}",
        "test-tiny vision encoder, 64x64",
        t.as_secs_f64() * 1e6
    );
    println!("(SmolVLM-256M's encoder: 1.4-2.8 s per 512 px frame on 2 cores, FACTS.md)");
}
