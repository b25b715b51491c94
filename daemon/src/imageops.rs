//! Small image operations on packed RGB, for the places GStreamer is not:
//! the direct V4L2 source and the model's preprocessing.

/// Resizes RGB `src` (`sw`×`sh`) to `dw`×`dh`, bilinear, with pixel centres
/// aligned as PIL and OpenCV do (`half-pixel`). Aspect is not kept.
pub fn resize_bilinear(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let mut out = vec![0u8; dw * dh * 3];
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return out;
    }
    let (fx, fy) = (sw as f32 / dw as f32, sh as f32 / dh as f32);
    // Horizontal taps are the same for every row: compute them once.
    let taps: Vec<(usize, usize, f32)> = (0..dw)
        .map(|x| {
            let sx = ((x as f32 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f32);
            let xa = sx.floor() as usize;
            (xa, (xa + 1).min(sw - 1), sx - xa as f32)
        })
        .collect();
    for y in 0..dh {
        let sy = ((y as f32 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f32);
        let ya = sy.floor() as usize;
        let (yb, wy) = ((ya + 1).min(sh - 1), sy - ya as f32);
        let (top, bottom) = (
            &src[ya * sw * 3..(ya + 1) * sw * 3],
            &src[yb * sw * 3..(yb + 1) * sw * 3],
        );
        let row = &mut out[y * dw * 3..(y + 1) * dw * 3];
        for (x, &(xa, xb, wx)) in taps.iter().enumerate() {
            for c in 0..3 {
                let t = f32::from(top[xa * 3 + c]) * (1.0 - wx) + f32::from(top[xb * 3 + c]) * wx;
                let b =
                    f32::from(bottom[xa * 3 + c]) * (1.0 - wx) + f32::from(bottom[xb * 3 + c]) * wx;
                row[x * 3 + c] = (t * (1.0 - wy) + b * wy).round() as u8;
            }
        }
    }
    out
}

/// Scales RGB `src` (`sw`×`sh`) into a `dw`×`dh` frame with square pixels:
/// the picture keeps its aspect, centred, and the rest is black
/// (letterbox), as GStreamer's videoscale does.
pub fn letterbox(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
    let mut out = vec![0u8; dw as usize * dh as usize * 3];
    if sw == 0 || sh == 0 {
        return out;
    }
    let scale = f64::min(f64::from(dw) / f64::from(sw), f64::from(dh) / f64::from(sh));
    let iw = ((f64::from(sw) * scale).round() as u32).clamp(1, dw);
    let ih = ((f64::from(sh) * scale).round() as u32).clamp(1, dh);
    let inner = resize_bilinear(src, sw, sh, iw, ih);
    let (x0, y0) = (((dw - iw) / 2) as usize, ((dh - ih) / 2) as usize);
    let (dw, iw) = (dw as usize, iw as usize);
    for (y, line) in inner.chunks_exact(iw * 3).enumerate() {
        let start = ((y0 + y) * dw + x0) * 3;
        out[start..start + iw * 3].copy_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn resizing_keeps_flat_colours_and_halves_a_ramp() {
        let flat = resize_bilinear(&[10, 20, 30].repeat(8 * 6), 8, 6, 3, 5);
        assert!(flat.chunks(3).all(|p| p == [10, 20, 30]));
        // A 4-pixel ramp 0, 100, 200, 255 halved: each output pixel is the
        // mean of two inputs (half-pixel centres).
        let ramp: Vec<u8> = [0u8, 100, 200, 255]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let half = resize_bilinear(&ramp, 4, 1, 2, 1);
        assert_eq!(half, vec![50, 50, 50, 228, 228, 228]);
    }
}
