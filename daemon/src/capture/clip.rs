//! A whole clip through the capture stage, for the offline tools
//! (`glimpse tune`, `glimpse eval`): the pipeline of a `file` camera at the
//! model's square size, as fast as it decodes (not in real time), through a
//! queue large enough never to drop, so that every sampled frame is seen.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{start, CameraConfig, CameraState, CaptureHandle, Frame};
use crate::queue;

/// Calls `each` with every frame of `path` sampled at `fps`, scaled to
/// `size`×`size`, in order. Returns how many there were; a clip that
/// cannot be read is an error naming it.
pub fn read_clip(
    path: &Path,
    fps: f64,
    size: u32,
    mut each: impl FnMut(Frame) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let camera: CameraConfig = toml::from_str(&format!(
        "fps = {fps}\nwidth = {size}\nheight = {size}\nsource = {{ kind = \"file\", path = {path:?}, realtime = false }}",
    ))?;
    let (tx, mut frames) = queue::channel(4096);
    let failure = Arc::new(Mutex::new(None));
    let seen = failure.clone();
    let handle = start(
        "clip",
        &camera,
        tx,
        Box::new(move |state| {
            if let CameraState::Failed { error } | CameraState::Retrying { error, .. } = state {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
            }
        }),
        CancellationToken::new(),
    )?;
    let failed = || failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut count = 0;
    while let Some(frame) = next_frame(&mut frames, &handle) {
        if let Some(error) = failed() {
            anyhow::bail!("{}: {error}", path.display());
        }
        each(frame)?;
        count += 1;
    }
    handle.join();
    if let Some(error) = failed() {
        anyhow::bail!("{}: {error}", path.display());
    }
    anyhow::ensure!(count > 0, "{}: no frame could be read", path.display());
    Ok(count)
}

fn next_frame(frames: &mut queue::Receiver<Frame>, handle: &CaptureHandle) -> Option<Frame> {
    loop {
        if let Some(frame) = frames.try_recv() {
            return Some(frame);
        }
        if handle.is_finished() {
            return frames.try_recv();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
