//! `glimpse zones`: one frame of a camera with its patch grid, masks and
//! zones drawn over it ([`crate::zones`]), to write and check polygons.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{exit_code, load_config, EX_DATAERR};
use crate::capture;
use crate::infer::ModelFolder;
use crate::queue;

/// Grid side when the config names no model (SmolVLM2's and the demo
/// model's are 8).
const DEFAULT_GRID: u32 = 8;

/// Writes the picture of `camera` of the config at `path` to `png`.
pub fn zones(path: &Path, camera: &str, png: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    exit_code(draw(&config, camera, png), EX_DATAERR)
}

fn draw(config: &crate::config::Config, name: &str, png: &Path) -> anyhow::Result<()> {
    let camera = config.cameras.get(name).with_context(|| {
        let names: Vec<&String> = config.cameras.keys().collect();
        format!("no camera {name:?} in the config (cameras: {names:?})")
    })?;
    let grid = match &config.model {
        Some(model) => ModelFolder::open(&model.path, &model.variant)?.info.grid,
        None => DEFAULT_GRID,
    };
    let frame = first_frame(name, camera)?;
    let picture = crate::zones::draw(name, camera, &frame, grid)?;
    crate::chart::write(png, &picture.png()?)?;
    eprintln!("wrote {}", png.display());
    Ok(())
}

/// The first frame the camera's source gives, as capture hands it on
/// (sampled size, privacy masks applied), within 30 s.
fn first_frame(
    name: &str,
    camera: &crate::pipeline::CameraConfig,
) -> anyhow::Result<capture::Frame> {
    let (tx, mut frames) = queue::channel(2);
    let cancel = CancellationToken::new();
    let handle = capture::start(
        name,
        &camera.capture(),
        tx,
        Box::new(|_| {}),
        cancel.clone(),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let frame = loop {
        if let Some(frame) = frames.try_recv() {
            break Ok(frame);
        }
        if handle.is_finished() || Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "camera {name:?} gave no frame within 30 s (glimpse run logs why)"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    cancel.cancel();
    handle.join();
    frame
}
