//! Pixel conversions for sources that do not go through GStreamer (the
//! direct V4L2 backend): YUYV and MJPEG to RGB, and scaling with square
//! pixels into the camera's frame size. Where GStreamer is used it does all
//! of this itself (videoconvert, videoscale).

/// Converts packed YUYV 4:2:2 (BT.601, limited range, as webcams send it)
/// to packed RGB. `stride` is the length of a source row in bytes.
pub fn yuyv_to_rgb(src: &[u8], width: u32, height: u32, stride: usize) -> Result<Vec<u8>, String> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || stride < w * 2 || src.len() < stride * (h.max(1) - 1) + w * 2 {
        return Err(format!(
            "a YUYV frame of {} bytes cannot hold {w}x{h} (stride {stride})",
            src.len()
        ));
    }
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        let line = &src[y * stride..y * stride + w * 2];
        let out = &mut rgb[y * w * 3..(y + 1) * w * 3];
        for (pair, px) in line.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
            let (y0, u, y1, v) = (pair[0], pair[1], pair[2], pair[3]);
            px[..3].copy_from_slice(&ycbcr_to_rgb(y0, u, v));
            px[3..].copy_from_slice(&ycbcr_to_rgb(y1, u, v));
        }
    }
    Ok(rgb)
}

/// One BT.601 limited-range pixel, in fixed point (8 fractional bits).
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16) * 298;
    let d = i32::from(cb) - 128;
    let e = i32::from(cr) - 128;
    let clamp = |v: i32| ((v + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

/// Decodes one MJPEG frame to packed RGB; returns it with its size.
pub fn mjpeg_to_rgb(jpeg: &[u8]) -> Result<(Vec<u8>, u32, u32), String> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(jpeg, options);
    let rgb = decoder
        .decode()
        .map_err(|e| format!("cannot decode an MJPEG frame: {e:?}"))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or("an MJPEG frame without dimensions")?;
    Ok((rgb, w as u32, h as u32))
}

/// Scales RGB `src` (`sw`×`sh`) into a `dw`×`dh` frame with square pixels:
/// the picture keeps its aspect and the rest is black (letterbox), as
/// GStreamer's videoscale does. Bilinear sampling.
pub fn letterbox(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let mut out = vec![0u8; dw * dh * 3];
    if sw == 0 || sh == 0 {
        return out;
    }
    let scale = f64::min(dw as f64 / sw as f64, dh as f64 / sh as f64);
    let (iw, ih) = (
        ((sw as f64 * scale).round() as usize).clamp(1, dw),
        ((sh as f64 * scale).round() as usize).clamp(1, dh),
    );
    let (x0, y0) = ((dw - iw) / 2, (dh - ih) / 2);
    let (fx, fy) = (sw as f64 / iw as f64, sh as f64 / ih as f64);
    for y in 0..ih {
        let sy = ((y as f64 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f64);
        let (ya, wy) = (sy.floor() as usize, sy.fract());
        let yb = (ya + 1).min(sh - 1);
        for x in 0..iw {
            let sx = ((x as f64 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f64);
            let (xa, wx) = (sx.floor() as usize, sx.fract());
            let xb = (xa + 1).min(sw - 1);
            let o = ((y0 + y) * dw + x0 + x) * 3;
            for c in 0..3 {
                let p = |xx: usize, yy: usize| f64::from(src[(yy * sw + xx) * 3 + c]);
                let top = p(xa, ya) * (1.0 - wx) + p(xb, ya) * wx;
                let bottom = p(xa, yb) * (1.0 - wx) + p(xb, yb) * wx;
                out[o + c] = (top * (1.0 - wy) + bottom * wy).round() as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/v4l2")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Mean absolute difference per channel value.
    fn mad(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.len() as f64
    }

    // The fixtures are real bytes produced by GStreamer from one SMPTE test
    // frame (tests/fixtures/v4l2/make.sh): the same picture as YUY2, as
    // JPEG and as RGB. Decoding must land close to GStreamer's own RGB.

    #[test]
    fn yuyv_bytes_decode_like_gstreamer() {
        let rgb = yuyv_to_rgb(&fixture("smpte-64x48.yuyv"), 64, 48, 128).unwrap();
        let reference = fixture("smpte-64x48.yuyv.rgb");
        let d = mad(&rgb, &reference);
        // GStreamer's fixed-point matrix lands a few levels lower (white is
        // 253) and it blends chroma across the bar edges: within 8 levels.
        assert!(d < 8.0, "mean difference {d}");
        // Away from edges the colours agree closely: the first bar is white.
        assert!(rgb[..12]
            .iter()
            .zip(&reference[..12])
            .all(|(a, b)| a.abs_diff(*b) <= 3));
    }

    #[test]
    fn mjpeg_bytes_decode_like_gstreamer() {
        let (rgb, w, h) = mjpeg_to_rgb(&fixture("smpte-64x48.jpg")).unwrap();
        assert_eq!((w, h), (64, 48));
        let d = mad(&rgb, &fixture("smpte-64x48.jpg.rgb"));
        // JPEG is lossy at the sharp SMPTE bar edges.
        assert!(d < 8.0, "mean difference {d}");
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        assert!(yuyv_to_rgb(&[0; 100], 64, 48, 128).is_err());
        assert!(mjpeg_to_rgb(&fixture("smpte-64x48.jpg")[..50]).is_err());
    }

    #[test]
    fn letterbox_keeps_aspect_and_pads_black() {
        // A white 4x2 picture into 4x4: rows 0 and 3 are padding.
        let out = letterbox(&[255; 4 * 2 * 3], 4, 2, 4, 4);
        let row = |y: usize| &out[y * 12..(y + 1) * 12];
        assert!(row(0).iter().all(|&v| v == 0));
        assert!(row(1).iter().all(|&v| v == 255));
        assert!(row(2).iter().all(|&v| v == 255));
        assert!(row(3).iter().all(|&v| v == 0));
    }
}
