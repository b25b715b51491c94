//! Frames and camera states: what capture hands on, a leaf every stage may
//! use (docs/architecture.md §1). A [`Frame`] carries its pixels; its
//! [`FrameMeta`] travels on with the tokens once the pixels are gone.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One sampled frame, packed RGB, as it leaves capture.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The camera's name.
    pub camera: Arc<str>,
    /// Number of this frame among the camera's sampled frames, from 0; a
    /// gap downstream means frames were dropped.
    pub seq: u64,
    /// Stream time: monotonic for the camera's whole run, across loops and
    /// reconnections.
    pub pts: Duration,
    /// When the frame was captured.
    pub wall_time: SystemTime,
    /// True for the first frame of a new stream (start, loop, reconnect):
    /// it has no predecessor to be compared with.
    pub discont: bool,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

/// Where and when a frame was taken: what travels with its tokens once the
/// pixels are gone.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMeta {
    /// The camera's name.
    pub camera: Arc<str>,
    /// Number among the camera's sampled frames.
    pub seq: u64,
    /// Stream time.
    pub pts: Duration,
    /// When it was captured.
    pub wall_time: SystemTime,
    /// First frame of a new stream.
    pub discont: bool,
}

impl Frame {
    /// The frame's metadata, without its pixels.
    pub fn meta(&self) -> FrameMeta {
        FrameMeta {
            camera: self.camera.clone(),
            seq: self.seq,
            pts: self.pts,
            wall_time: self.wall_time,
            discont: self.discont,
        }
    }
}

/// What a camera is doing, as reported to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraState {
    /// Opening its source for the first time.
    Starting,
    /// Delivering frames.
    Up,
    /// The source failed; another attempt follows after `retry_in`.
    Retrying {
        /// Failures in a row, from 1.
        attempt: u32,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Why the last attempt failed.
        error: String,
    },
    /// The source cannot work as configured; fix the config and reload.
    Failed {
        /// Why.
        error: String,
    },
    /// A file without `loop` reached its end.
    Ended,
}

impl fmt::Display for CameraState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CameraState::Starting => f.write_str("starting"),
            CameraState::Up => f.write_str("up"),
            CameraState::Retrying {
                attempt,
                retry_in,
                error,
            } => write!(
                f,
                "retrying ({error}; attempt {attempt}, next in {:.1} s)",
                retry_in.as_secs_f64()
            ),
            CameraState::Failed { error } => write!(f, "failed ({error})"),
            CameraState::Ended => f.write_str("ended"),
        }
    }
}
