//! A whole clip through the capture stage, for the offline tools
//! (`glimpse tune`, `glimpse eval`): the pipeline of a `file` camera at the
//! model's square size, as fast as it decodes (not in real time), through a
//! queue large enough never to drop, so that every sampled frame is seen.
//!
//! A folder instead of a video is a clip decoded beforehand: its PNG files,
//! in name order, are the frames already sampled and scaled (what
//! `scripts/gpu-bundle.sh` writes for machines without GStreamer).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{start, CameraState, CaptureConfig, CaptureHandle, Frame, Privacy, SourceConfig};
use crate::queue;
use crate::region::Polygon;

/// Calls `each` with every frame of `path` sampled at `fps`, scaled to
/// `size`×`size`, the `privacy` masks blacked out, in order. Returns how
/// many there were; a clip that cannot be read is an error naming it.
pub fn read_clip(
    path: &Path,
    fps: f64,
    size: u32,
    privacy: &[Polygon],
    mut each: impl FnMut(Frame) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    if path.is_dir() {
        let mut masks = Privacy::new(privacy.to_vec());
        return read_frames(path, fps, size, |mut frame| {
            masks.apply(&mut frame.rgb, frame.width, frame.height);
            each(frame)
        });
    }
    let camera = CaptureConfig {
        fps,
        width: size,
        height: size,
        ..CaptureConfig::new(SourceConfig::File {
            path: path.to_owned(),
            looped: false,
            realtime: false,
        })
    };
    let camera = CaptureConfig {
        privacy: privacy.to_vec(),
        ..camera
    };
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

/// The PNG frames of a decoded clip folder, in name order, at `fps`; each
/// must be `size`x`size` RGB (the folder was written for this model).
fn read_frames(
    dir: &Path,
    fps: f64,
    size: u32,
    mut each: impl FnMut(Frame) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    use anyhow::Context;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no .png frames", dir.display());
    let camera: Arc<str> = Arc::from("clip");
    for (seq, file) in files.iter().enumerate() {
        let fail = || format!("{}: not a readable PNG frame", file.display());
        let mut reader = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(fail)?,
        ))
        .read_info()
        .with_context(fail)?;
        let mut rgb = vec![0; reader.output_buffer_size().with_context(fail)?];
        let info = reader.next_frame(&mut rgb).with_context(fail)?;
        anyhow::ensure!(
            info.color_type == png::ColorType::Rgb
                && info.bit_depth == png::BitDepth::Eight
                && (info.width, info.height) == (size, size),
            "{}: {}x{} {:?} {:?}, expected {size}x{size} 8-bit RGB (decode the clip for this model)",
            file.display(),
            info.width,
            info.height,
            info.color_type,
            info.bit_depth
        );
        rgb.truncate(info.buffer_size());
        each(Frame {
            camera: camera.clone(),
            seq: seq as u64,
            pts: Duration::from_secs_f64(seq as f64 / fps),
            wall_time: SystemTime::now(),
            discont: seq == 0,
            width: size,
            height: size,
            rgb,
        })?;
    }
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, size: u32, color: png::ColorType, fill: u8) {
        let channels = if color == png::ColorType::Rgb { 3 } else { 1 };
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(file, size, size);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![fill; (size * size) as usize * channels])
            .unwrap();
    }

    #[test]
    fn a_folder_of_png_frames_is_a_clip_in_name_order_at_its_fps() {
        let dir = tempfile::tempdir().unwrap();
        // Written out of order: the names decide.
        write_png(&dir.path().join("00002.png"), 8, png::ColorType::Rgb, 200);
        write_png(&dir.path().join("00001.png"), 8, png::ColorType::Rgb, 100);
        std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
        let mut seen = Vec::new();
        let n = read_clip(dir.path(), 2.0, 8, &[], |f| {
            seen.push((f.seq, f.pts, f.discont, f.rgb.len(), f.rgb[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            seen,
            [
                (0, Duration::ZERO, true, 192, 100),
                (1, Duration::from_millis(500), false, 192, 200)
            ]
        );
        // A frame of another size or colour type is refused, named.
        write_png(
            &dir.path().join("00003.png"),
            8,
            png::ColorType::Grayscale,
            0,
        );
        let err = read_clip(dir.path(), 2.0, 8, &[], |_| Ok(())).unwrap_err();
        assert!(
            err.to_string()
                .contains("00003.png: 8x8 Grayscale Eight, expected 8x8 8-bit RGB"),
            "{err}"
        );
        let err = read_clip(dir.path(), 2.0, 16, &[], |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("00001.png: 8x8 Rgb"), "{err}");
    }
}
