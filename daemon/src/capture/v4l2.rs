//! The direct V4L2 source (`backend = "direct"`, build feature `v4l2`): for
//! installs without GStreamer. glimpse negotiates the format with the
//! device itself, streams through memory-mapped buffers, and decodes YUYV
//! or MJPEG to RGB in Rust ([`super::convert`]).

use std::path::PathBuf;
use std::time::Duration;

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::convert::{mjpeg_to_rgb, yuyv_to_rgb};
use super::{
    CaptureConfig, Picture, PixelFormat, Pulled, Session, Source, SourceConfig, SourceError,
};
use crate::imageops::letterbox;

const YUYV: [u8; 4] = *b"YUYV";
const MJPG: [u8; 4] = *b"MJPG";

pub(crate) struct V4l2Source {
    device: PathBuf,
    format: PixelFormat,
    capture_size: Option<(u32, u32)>,
    frame_rate: Option<u32>,
    out: (u32, u32),
}

impl V4l2Source {
    pub fn new(config: &CaptureConfig) -> Self {
        let SourceConfig::V4l2 {
            device,
            format,
            capture_width,
            capture_height,
            frame_rate,
            ..
        } = &config.source
        else {
            unreachable!("capture::open_source only routes v4l2 sources here");
        };
        V4l2Source {
            device: device.clone(),
            format: *format,
            capture_size: capture_width.zip(*capture_height),
            frame_rate: *frame_rate,
            out: (config.width, config.height),
        }
    }
}

impl Source for V4l2Source {
    fn open(&mut self) -> Result<Box<dyn Session>, SourceError> {
        let name = self.device.display();
        // An absent device may be plugged in later: keep retrying.
        let device = Device::with_path(&self.device)
            .map_err(|e| SourceError::transient(format!("{name}: {e}")))?;
        let mut format = device
            .format()
            .map_err(|e| SourceError::transient(format!("{name}: cannot read the format: {e}")))?;
        if let Some((w, h)) = self.capture_size {
            format.width = w;
            format.height = h;
        }
        let wanted = match self.format {
            PixelFormat::Yuyv => vec![YUYV],
            PixelFormat::Mjpeg => vec![MJPG],
            // MJPEG first: at the same USB bandwidth it gives larger frames.
            PixelFormat::Auto => vec![MJPG, YUYV],
        };
        let mut chosen = None;
        for fourcc in &wanted {
            format.fourcc = FourCC::new(fourcc);
            if let Ok(actual) = device.set_format(&format) {
                if actual.fourcc.repr == *fourcc {
                    chosen = Some(actual);
                    break;
                }
            }
        }
        let format = chosen.ok_or_else(|| {
            SourceError::permanent(format!(
                "{name}: the device offers neither {}",
                wanted
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect::<Vec<_>>()
                    .join(" nor ")
            ))
        })?;
        if let Some(rate) = self.frame_rate {
            if let Err(e) = device.set_params(&v4l::video::capture::Parameters::with_fps(rate)) {
                tracing::warn!(device = %name, "cannot set {rate} fps: {e}");
            }
        }
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, 4)
            .map_err(|e| SourceError::transient(format!("{name}: cannot map buffers: {e}")))?;
        stream.set_timeout(Duration::from_millis(100));
        tracing::debug!(device = %name, width = format.width, height = format.height, fourcc = %format.fourcc, "V4L2 streaming");
        Ok(Box::new(V4l2Session {
            _device: device,
            stream,
            fourcc: format.fourcc.repr,
            size: (format.width, format.height),
            stride: format.stride as usize,
            out: self.out,
            name: name.to_string(),
        }))
    }
}

struct V4l2Session {
    // Kept open for as long as the stream maps its buffers.
    _device: Device,
    stream: Stream<'static>,
    fourcc: [u8; 4],
    size: (u32, u32),
    stride: usize,
    out: (u32, u32),
    name: String,
}

impl Session for V4l2Session {
    fn pull(&mut self, timeout: Duration) -> Result<Pulled, SourceError> {
        self.stream.set_timeout(timeout);
        let (data, meta) = match self.stream.next() {
            Ok(next) => next,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(Pulled::Idle),
            // ENODEV and friends: the camera was unplugged.
            Err(e) => return Err(SourceError::transient(format!("{}: {e}", self.name))),
        };
        let data = &data[..(meta.bytesused as usize).min(data.len())];
        let (w, h) = self.size;
        let rgb = match self.fourcc {
            YUYV => yuyv_to_rgb(data, w, h, self.stride.max(w as usize * 2)),
            _ => mjpeg_to_rgb(data).map(|(rgb, dw, dh)| {
                if (dw, dh) == (w, h) {
                    rgb
                } else {
                    letterbox(&rgb, dw, dh, w, h)
                }
            }),
        };
        // One corrupt frame (common with MJPEG over a busy USB bus) is
        // skipped, not a reason to reconnect.
        let rgb = match rgb {
            Ok(rgb) => rgb,
            Err(e) => {
                tracing::debug!(device = %self.name, "skipping a frame: {e}");
                return Ok(Pulled::Idle);
            }
        };
        let (ow, oh) = self.out;
        let rgb = if (w, h) == (ow, oh) {
            rgb
        } else {
            letterbox(&rgb, w, h, ow, oh)
        };
        Ok(Pulled::Picture(Picture {
            pts: Some(Duration::from(meta.timestamp)),
            width: ow,
            height: oh,
            rgb,
        }))
    }
}

#[cfg(all(test, feature = "it-camera"))]
mod tests {
    use super::*;

    /// Needs a real camera at /dev/video0 (`--features it-camera`).
    #[test]
    fn a_real_camera_delivers_frames() {
        let config = CaptureConfig {
            width: 64,
            height: 64,
            ..CaptureConfig::new(super::super::config::inline_source(
                r#"{ kind = "v4l2", backend = "direct" }"#,
            ))
        };
        let mut source = V4l2Source::new(&config);
        let mut session = source.open().expect("open /dev/video0");
        for _ in 0..50 {
            if let Pulled::Picture(p) = session.pull(Duration::from_secs(1)).unwrap() {
                assert_eq!(p.rgb.len(), 64 * 64 * 3);
                return;
            }
        }
        panic!("no frame from /dev/video0 in 50 s");
    }
}
