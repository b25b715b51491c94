//! Vision: turns a frame into the model's visual tokens.
//!
//! [`Preprocessor`] prepares pixels exactly as the model folder's
//! `preprocessor_config.json` says (resize, rescale, normalise, to the
//! encoder's square input); [`encode`] runs the vision encoder through a
//! [`Backend`] and returns [`FrameTokens`]: the token grid in the space the
//! language model consumes. Runs on a model worker thread.

use crate::frame::Frame;
use crate::imageops::resize_bilinear;
use crate::infer::timing::Call;
use crate::infer::{Backend, InferError, ModelFolder};
pub use crate::tokens::FrameTokens;

/// Pixel preparation from `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    /// Side of the square input, in pixels.
    pub size: u32,
    /// Resize frames of another size (bilinear), else refuse them.
    pub do_resize: bool,
    /// Multiply by `rescale_factor` (usually 1/255).
    pub rescale: Option<f32>,
    /// Per-channel mean and standard deviation, if normalising.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

impl Preprocessor {
    /// Reads the folder's preprocessor config. One frame is one image
    /// (no tiling), resized to the encoder's square input as SmolVLM's
    /// processor does for video frames.
    pub fn from_folder(folder: &ModelFolder) -> Result<Preprocessor, InferError> {
        let p = &folder.preprocessor_config;
        let file = folder.path.join("preprocessor_config.json");
        let broken = |reason: String| InferError::Folder {
            file: file.clone(),
            reason,
        };
        let flag = |key: &str, default: bool| p[key].as_bool().unwrap_or(default);
        let triple = |key: &str| -> Result<[f32; 3], InferError> {
            let v: Vec<f32> = p[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_f64())
                        .map(|x| x as f32)
                        .collect()
                })
                .unwrap_or_default();
            v.try_into()
                .map_err(|_| broken(format!("{key} must be three numbers")))
        };
        let size = folder.info.image_size;
        let declared = p["max_image_size"]["longest_edge"]
            .as_u64()
            .or_else(|| p["size"]["longest_edge"].as_u64())
            .or_else(|| p["size"]["height"].as_u64());
        if declared.is_some_and(|d| d != u64::from(size)) {
            return Err(broken(format!(
                "image size {} differs from vision_config.image_size {size} in config.json",
                declared.unwrap_or(0)
            )));
        }
        let normalize = if flag("do_normalize", true) {
            let std = triple("image_std")?;
            if std.iter().any(|s| *s <= 0.0) {
                return Err(broken("image_std must be > 0".into()));
            }
            Some((triple("image_mean")?, std))
        } else {
            None
        };
        Ok(Preprocessor {
            size,
            do_resize: flag("do_resize", true),
            rescale: flag("do_rescale", true)
                .then(|| p["rescale_factor"].as_f64().unwrap_or(1.0 / 255.0) as f32),
            normalize,
        })
    }

    /// `[3, size, size]` floats for an RGB frame.
    pub fn pixel_values(
        &self,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<Vec<f32>, InferError> {
        let s = self.size;
        if rgb.len() != width as usize * height as usize * 3 {
            return Err(InferError::Input(format!(
                "{} bytes for a {width}x{height} RGB frame",
                rgb.len()
            )));
        }
        let resized;
        let rgb = if (width, height) == (s, s) {
            rgb
        } else if self.do_resize {
            resized = resize_bilinear(rgb, width, height, s, s);
            &resized
        } else {
            return Err(InferError::Input(format!(
                "a {width}x{height} frame, but the model takes {s}x{s} and its preprocessor does not resize"
            )));
        };
        let plane = (s * s) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let mut v = f32::from(px[c]);
                if let Some(r) = self.rescale {
                    v *= r;
                }
                if let Some((mean, std)) = &self.normalize {
                    v = (v - mean[c]) / std[c];
                }
                out[c * plane + i] = v;
            }
        }
        Ok(out)
    }
}

/// Encodes one frame into its visual tokens.
pub fn encode(
    backend: &mut dyn Backend,
    pre: &Preprocessor,
    frame: &Frame,
) -> Result<FrameTokens, InferError> {
    let pixels = pre.pixel_values(&frame.rgb, frame.width, frame.height)?;
    let started = std::time::Instant::now();
    let features = backend.encode_image(&pixels)?;
    crate::infer::timing::record(backend.kind(), Call::Encoder, started.elapsed());
    crate::health::progress();
    let info = backend.info();
    Ok(FrameTokens {
        meta: frame.meta(),
        rows: info.grid,
        cols: info.grid,
        dim: info.hidden,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_then_normalise_per_channel() {
        let pre = Preprocessor {
            size: 1,
            do_resize: true,
            rescale: Some(1.0 / 255.0),
            normalize: Some(([0.5, 0.5, 0.5], [0.5, 0.25, 0.5])),
        };
        let v = pre.pixel_values(&[255, 0, 51], 1, 1).unwrap();
        for (got, want) in v.iter().zip([1.0, -2.0, -0.6]) {
            assert!((got - want).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn planes_are_channel_major_and_frames_are_resized() {
        let pre = Preprocessor {
            size: 2,
            do_resize: true,
            rescale: None,
            normalize: None,
        };
        let v = pre.pixel_values(&[1, 2, 3].repeat(16), 4, 4).unwrap();
        assert_eq!(
            v,
            vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0]
        );
        let strict = Preprocessor {
            do_resize: false,
            ..pre
        };
        assert!(strict.pixel_values(&[0; 48], 4, 4).is_err());
    }
}
