//! Event snapshots: the picture an event is about, as a JPEG.
//!
//! A camera keeps a downscaled copy ([`Picture`]) of its last sampled
//! frame, with the mask of the visual tokens kept of it; a job that makes
//! events (a proactive response, an answer, a fault-injection test event)
//! encodes it on its model worker ([`encode`]; never on the async runtime)
//! and stores it in `<state_dir>/snapshots/` ([`SnapshotStore`], bounded
//! by count and bytes, oldest removed). Events name their snapshot
//! (`"snapshot": "<id>.jpg"`); the service publishes the bytes retained on
//! `<prefix>/<camera>/snapshot`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::frame::Frame;
use crate::settings::Problems;

/// `[cameras.<name>.snapshot]`: the picture attached to each event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Whether events of this camera carry a snapshot. Default: true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Longest side of the snapshot, in pixels; the frame is scaled down
    /// (aspect kept, never up) to fit. Default: 320.
    #[serde(default = "default_max_side")]
    pub max_side: u32,
    /// JPEG quality, 1 (smallest) to 100 (best). Default: 80.
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// Tint the visual tokens the model kept of the frame, as `glimpse
    /// tune` does, to show what it looked at. Default: false.
    #[serde(default)]
    pub tint_kept: bool,
}

fn default_enabled() -> bool {
    true
}
fn default_max_side() -> u32 {
    320
}
fn default_quality() -> u8 {
    80
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            enabled: default_enabled(),
            max_side: default_max_side(),
            quality: default_quality(),
            tint_kept: false,
        }
    }
}

impl SnapshotConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if !(16..=4096).contains(&self.max_side) {
            problems.push(
                format!("{key}.max_side"),
                format!("must be between 16 and 4096, got {}", self.max_side),
            );
        }
        if !(1..=100).contains(&self.quality) {
            problems.push(
                format!("{key}.quality"),
                format!("must be between 1 and 100, got {}", self.quality),
            );
        }
    }
}

/// Errors of the snapshot stage.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The JPEG encoder refused the picture.
    #[error("encode a {width}x{height} snapshot: {source}")]
    Encode {
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
        /// Why.
        source: jpeg_encoder::EncodingError,
    },
    /// A picture too large for a JPEG.
    #[error("a {width}x{height} snapshot is too large for a JPEG (65535 pixels a side at most)")]
    Size {
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
    },
    /// A file of the snapshot folder.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A name that is not a snapshot's.
    #[error("{0:?} is not a snapshot name (an event id, optionally with .jpg)")]
    BadName(String),
}

/// A downscaled copy of a sampled frame, kept until the next one: small
/// (`max_side`² pixels), so a camera never holds a full frame for its
/// snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Packed RGB.
    pub rgb: Vec<u8>,
    /// The visual tokens kept of the frame, on a `grid`×`grid` layout
    /// (empty when not tinted).
    pub kept: Vec<bool>,
    /// Side of the token grid.
    pub grid: u32,
}

impl Picture {
    /// `frame` scaled to fit `max_side` (aspect kept, never enlarged).
    pub fn from_frame(frame: &Frame, max_side: u32) -> Picture {
        let (width, height) = fit(frame.width, frame.height, max_side);
        let rgb = if (width, height) == (frame.width, frame.height) {
            frame.rgb.to_vec()
        } else {
            crate::imageops::resize_bilinear(&frame.rgb, frame.width, frame.height, width, height)
        };
        Picture {
            width,
            height,
            rgb,
            kept: Vec::new(),
            grid: 0,
        }
    }

    /// A test pattern of `width`×`height` (fault-injection test events).
    pub fn pattern(width: u32, height: u32, n: u64) -> Picture {
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            for x in 0..width {
                rgb.extend_from_slice(&[
                    (x * 255 / width.max(1)) as u8,
                    (y * 255 / height.max(1)) as u8,
                    (n.wrapping_mul(37) % 256) as u8,
                ]);
            }
        }
        Picture {
            width,
            height,
            rgb,
            kept: Vec::new(),
            grid: 0,
        }
    }
}

/// `w`×`h` scaled down to fit `max_side`, aspect kept, at least 1×1.
pub fn fit(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let longest = w.max(h);
    if longest <= max_side || longest == 0 {
        return (w.max(1), h.max(1));
    }
    let scale = |v: u32| {
        ((u64::from(v) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest)).max(1)
            as u32
    };
    (scale(w), scale(h))
}

/// Encodes `picture` as a JPEG of `quality`, tinting its kept tokens when
/// `tint` (on a worker thread: tens of milliseconds for a large picture).
pub fn encode(picture: &Picture, quality: u8, tint: bool) -> Result<Vec<u8>, SnapshotError> {
    let tinted;
    let rgb = if tint && picture.grid > 0 && !picture.kept.is_empty() {
        tinted = tint_kept(picture);
        &tinted
    } else {
        &picture.rgb
    };
    let error = |source| SnapshotError::Encode {
        width: picture.width,
        height: picture.height,
        source,
    };
    // The encoder takes u16 sides; validation keeps them at most 4096.
    let (Ok(w), Ok(h)) = (u16::try_from(picture.width), u16::try_from(picture.height)) else {
        return Err(SnapshotError::Size {
            width: picture.width,
            height: picture.height,
        });
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(error)?;
    Ok(out)
}

/// The picture with each kept token's patch blended towards red, as
/// `glimpse tune`'s contact sheet shows them.
fn tint_kept(p: &Picture) -> Vec<u8> {
    let mut rgb = p.rgb.clone();
    let (w, h, g) = (p.width as usize, p.height as usize, p.grid as usize);
    for y in 0..h {
        let gy = y * g / h;
        for x in 0..w {
            let gx = x * g / w;
            if p.kept.get(gy * g + gx).copied().unwrap_or(false) {
                let i = (y * w + x) * 3;
                rgb[i] = ((u16::from(rgb[i]) + 230) / 2) as u8;
                rgb[i + 1] /= 2;
                rgb[i + 2] /= 2;
            }
        }
    }
    rgb
}

/// The snapshot folder, bounded by count and bytes: the oldest snapshots
/// (names are event ids, ULIDs, so they sort by time) are removed first.
pub struct SnapshotStore {
    dir: PathBuf,
    max_count: usize,
    max_bytes: u64,
    // A std mutex: held for one file's bookkeeping (a write and a few
    // removals), on worker threads, never across an await.
    files: Mutex<Files>,
    /// Set while writing snapshots fails (a full disk): logged once when
    /// it starts and once when it ends, never per event.
    failing: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Files {
    /// Oldest first: name and size.
    list: VecDeque<(String, u64)>,
    bytes: u64,
}

impl SnapshotStore {
    /// Opens (creating) `dir`, bounded to `max_count` files and
    /// `max_bytes`; what is there already counts, and is pruned now.
    pub fn open(
        dir: &Path,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<Arc<SnapshotStore>, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".jpg") {
                let size = entry.metadata().map_or(0, |m| m.len());
                found.push((name, size));
            } else if name.ends_with(".jpg.part") {
                // Left by a write that was cut short (a kill, a full disk).
                let _ = std::fs::remove_file(entry.path());
            }
        }
        found.sort();
        let files = Files {
            bytes: found.iter().map(|(_, s)| s).sum(),
            list: found.into(),
        };
        let store = SnapshotStore {
            dir: dir.to_owned(),
            max_count: max_count.max(1),
            max_bytes,
            files: Mutex::new(files),
            failing: std::sync::atomic::AtomicU64::new(0),
        };
        store.prune(&mut store.files());
        Ok(Arc::new(store))
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        // The list is rebuilt whole on each change; a panic leaves it valid.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `jpeg` as `<id>.jpg` and removes the oldest snapshots past
    /// the bounds; returns the name.
    pub fn save(&self, id: &str, jpeg: &[u8]) -> Result<String, SnapshotError> {
        let name = file_name(id)?;
        let path = self.dir.join(&name);
        // Written aside then renamed: a reader never sees half a JPEG.
        let part = self.dir.join(format!("{name}.part"));
        let io = |source| SnapshotError::Io {
            path: path.clone(),
            source,
        };
        if let Err(e) = std::fs::write(&part, jpeg) {
            // A full disk leaves an empty or partial file: never keep it.
            let _ = std::fs::remove_file(&part);
            return Err(io(e));
        }
        // Room is made before the new file enters, under the lock: the
        // folder never holds more than the bounds, even for a moment.
        let mut files = self.files();
        files.list.push_back((name.clone(), jpeg.len() as u64));
        files.bytes += jpeg.len() as u64;
        self.prune(&mut files);
        if let Err(e) = std::fs::rename(&part, &path) {
            if let Some(i) = files.list.iter().rposition(|(n, _)| *n == name) {
                files.list.remove(i);
                files.bytes -= jpeg.len() as u64;
            }
            let _ = std::fs::remove_file(&part);
            return Err(io(e));
        }
        Ok(name)
    }

    fn prune(&self, files: &mut Files) {
        while files.list.len() > self.max_count
            || (files.bytes > self.max_bytes && files.list.len() > 1)
        {
            let Some((old, size)) = files.list.pop_front() else {
                break;
            };
            files.bytes -= size;
            if let Err(e) = std::fs::remove_file(self.dir.join(&old)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove the old snapshot {old}: {e}");
                }
            }
        }
    }

    /// Removes the oldest snapshot to free disk space (the outbox cannot
    /// be written); returns the bytes freed, 0 when none is left.
    pub fn remove_oldest(&self) -> u64 {
        let mut files = self.files();
        let Some((old, size)) = files.list.pop_front() else {
            return 0;
        };
        files.bytes -= size;
        match std::fs::remove_file(self.dir.join(&old)) {
            Ok(()) => size.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => size.max(1),
            Err(e) => {
                tracing::debug!("cannot remove the old snapshot {old}: {e}");
                0
            }
        }
    }

    /// Notes a failed write: true for the first of a spell (log it).
    fn failed(&self) -> bool {
        self.failing
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
    }

    /// Notes a successful write: the number of failures of the spell that
    /// it ends, 0 if there was none.
    fn succeeded(&self) -> u64 {
        self.failing.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// Snapshots held now, and their bytes.
    pub fn usage(&self) -> (usize, u64) {
        let files = self.files();
        (files.list.len(), files.bytes)
    }
}

/// A camera's name, and its snapshot settings with its frame width and
/// height when its events carry snapshots (for the test events).
pub type CameraSnapshots = (String, Option<(Snapshotter, u32, u32)>);

/// What a camera's jobs need to attach snapshots to their events: the
/// store and the camera's settings.
#[derive(Clone)]
pub struct Snapshotter {
    /// Where snapshots go.
    pub store: Arc<SnapshotStore>,
    /// The camera's settings.
    pub config: SnapshotConfig,
}

impl Snapshotter {
    /// Encodes `picture`, stores it under the first event's id and names it
    /// in every event of `events` (they are about the same frame); returns
    /// the bytes, for MQTT. On a worker thread. A failure is logged: the
    /// events go out without a picture rather than not at all.
    pub fn attach(
        &self,
        picture: &Picture,
        events: &mut [crate::event::Event],
    ) -> Option<Arc<Vec<u8>>> {
        let first = events.first()?;
        let started = std::time::Instant::now();
        let stored = encode(picture, self.config.quality, self.config.tint_kept).and_then(|jpeg| {
            let encode_us = started.elapsed().as_micros() as u64;
            let name = self.store.save(&first.id, &jpeg)?;
            Ok((name, jpeg, encode_us))
        });
        match stored {
            Ok((name, jpeg, encode_us)) => {
                let failed = self.store.succeeded();
                if failed > 0 {
                    tracing::info!(
                        failed,
                        "snapshots can be written again; {failed} event(s) went without theirs"
                    );
                }
                tracing::debug!(
                    camera = %first.camera,
                    snapshot = %name,
                    bytes = jpeg.len(),
                    encode_us,
                    width = picture.width,
                    height = picture.height,
                    "snapshot stored"
                );
                for event in events {
                    event.snapshot = Some(name.clone());
                }
                Some(Arc::new(jpeg))
            }
            Err(e) => {
                // Once per spell of failures (a full disk fails them all).
                if self.store.failed() {
                    tracing::warn!(camera = %first.camera, "events go without their snapshots until one can be written again: {e}")
                } else {
                    tracing::debug!(camera = %first.camera, "an event goes without its snapshot: {e}")
                }
                None
            }
        }
    }
}

/// The file name of snapshot `id` (an event id, with or without `.jpg`).
pub fn file_name(id: &str) -> Result<String, SnapshotError> {
    let stem = id.strip_suffix(".jpg").unwrap_or(id);
    // Names come from the CLI too: nothing that could leave the folder.
    if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SnapshotError::BadName(id.to_owned()));
    }
    Ok(format!("{stem}.jpg"))
}

/// Reads snapshot `id` from `state_dir`'s snapshot folder.
pub fn read(state_dir: &Path, id: &str) -> Result<Vec<u8>, SnapshotError> {
    let path = state_dir.join(FOLDER).join(file_name(id)?);
    std::fs::read(&path).map_err(|source| SnapshotError::Io { path, source })
}

/// The snapshot folder's name in the state directory.
pub const FOLDER: &str = "snapshots";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(512, 512, 128), (128, 128));
        assert_eq!(fit(640, 480, 320), (320, 240));
        assert_eq!(fit(100, 50, 320), (100, 50));
    }

    #[test]
    fn encodes_a_jpeg_of_the_picture_size_and_tints() {
        let mut p = Picture::pattern(64, 48, 1);
        let plain = encode(&p, 80, false).unwrap();
        assert_eq!(&plain[..2], &[0xFF, 0xD8]);
        let img = zune_jpeg::JpegDecoder::new(&plain).decode().unwrap();
        assert_eq!(img.len(), 64 * 48 * 3);
        p.grid = 2;
        p.kept = vec![true, false, false, false];
        assert_ne!(encode(&p, 80, true).unwrap(), plain);
    }

    #[test]
    fn the_store_keeps_the_newest_within_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), 3, 1000).unwrap();
        for i in 0..10 {
            store.save(&format!("A{i:02}"), &[0u8; 100]).unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["A07.jpg", "A08.jpg", "A09.jpg"]);
        // Bytes bound: 250-byte files, 600 bytes allowed.
        let store = SnapshotStore::open(dir.path(), 10, 600).unwrap();
        for i in 10..14 {
            store.save(&format!("A{i:02}"), &[0u8; 250]).unwrap();
        }
        assert_eq!(store.usage(), (2, 500));
        assert!(file_name("../x").is_err());
        assert_eq!(file_name("01ABC.jpg").unwrap(), "01ABC.jpg");
    }
}
