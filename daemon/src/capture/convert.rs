//! Pixel conversions for sources that do not go through GStreamer (the
//! direct V4L2 backend): YUYV and MJPEG to RGB. Scaling is in
//! [`crate::imageops`]. Where GStreamer is used it does all of this itself
//! (videoconvert, videoscale).

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
}
