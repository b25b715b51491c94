//! Capture throughput: decode + convert + scale, frames per second and CPU
//! time per frame, for a 1280x720 H.264 clip and a 1280x720 MJPEG clip,
//! scaled to 512x512 and to 128x128. Also the same clips sampled at 2 fps,
//! where videorate drops frames before conversion. The clips are a
//! scrolling SMPTE pattern: sharp edges and motion on every frame, harder
//! to decode than a mostly static camera.
//!
//! Run: `cargo bench --bench capture`. Prints a table; nothing is asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use glimpse::capture::{self, CaptureConfig, SourceConfig};
use glimpse::queue;
use tokio_util::sync::CancellationToken;

const SECONDS: u32 = 10;
const RATE: u32 = 30;

fn make_clip(dir: &Path, name: &str, encoder: &str) -> PathBuf {
    let path = dir.join(name);
    let pipeline = format!(
        "videotestsrc num-buffers={} pattern=smpte horizontal-speed=4 ! video/x-raw,format=I420,width=1280,height=720,framerate={RATE}/1 ! {encoder} ! filesink location={}",
        SECONDS * RATE,
        path.display()
    );
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split(' '))
        .status()
        .expect("gst-launch-1.0");
    assert!(status.success(), "{pipeline}");
    path
}

/// User + system CPU time of this process (all threads, GStreamer's included).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs the clip through capture as fast as it decodes; returns
/// (source frames, frames delivered, wall time, cpu time).
fn run(clip: &Path, size: u32, fps: u32) -> (u64, u64, Duration, Duration) {
    let config = CaptureConfig {
        fps: fps.into(),
        width: size,
        height: size,
        ..CaptureConfig::new(SourceConfig::File {
            path: clip.into(),
            looped: false,
            realtime: false,
        })
    };
    // A queue big enough to never drop: we measure capture, not the consumer.
    let (tx, mut rx) = queue::channel(100_000);
    let (wall, cpu) = (Instant::now(), cpu_time());
    let handle = capture::start(
        "bench",
        &config,
        tx,
        Box::new(|_| {}),
        CancellationToken::new(),
    )
    .unwrap();
    let mut delivered = 0u64;
    while !handle.is_finished() {
        while rx.try_recv().is_some() {
            delivered += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    while rx.try_recv().is_some() {
        delivered += 1;
    }
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    handle.join();
    ((SECONDS * RATE) as u64, delivered, wall, cpu)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!("making 1280x720 {RATE} fps clips of {SECONDS} s ...");
    let clips = [
        (
            "H.264",
            make_clip(
                dir.path(),
                "clip.mp4",
                "x264enc speed-preset=veryfast ! mp4mux",
            ),
        ),
        (
            "MJPEG",
            make_clip(dir.path(), "clip.avi", "jpegenc ! avimux"),
        ),
    ];
    println!(
        "{:<6} {:>9} {:>7} {:>10} {:>12} {:>14} {:>14}",
        "codec", "out size", "fps", "delivered", "wall s", "source fr/s", "cpu ms/src fr"
    );
    for (codec, clip) in &clips {
        for size in [512, 128] {
            for fps in [RATE, 2] {
                let (source, delivered, wall, cpu) = run(clip, size, fps);
                println!(
                    "{codec:<6} {:>9} {fps:>7} {delivered:>10} {:>12.2} {:>14.1} {:>14.2}",
                    format!("{size}x{size}"),
                    wall.as_secs_f64(),
                    source as f64 / wall.as_secs_f64(),
                    cpu.as_secs_f64() * 1000.0 / source as f64
                );
            }
        }
    }
    println!(
        "(machine: {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
