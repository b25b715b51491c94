//! Privacy masks on pixels: every frame's pixels inside a mask are made
//! black before the frame leaves capture, so nothing of a masked area
//! reaches the gate, the encoder, the memory, snapshots or the status page.

use crate::region::{self, Polygon};

/// A camera's privacy masks, and their pixels for the last frame size.
#[derive(Debug, Clone, Default)]
pub struct Privacy {
    polygons: Vec<Polygon>,
    /// Which pixels are inside, for frames of this width and height.
    pixels: Option<(u32, u32, Vec<bool>)>,
}

impl Privacy {
    /// The masks `polygons` (none: frames pass untouched).
    pub fn new(polygons: Vec<Polygon>) -> Privacy {
        Privacy {
            polygons,
            pixels: None,
        }
    }

    /// Blacks out the masked pixels of a `width` × `height` RGB picture.
    pub fn apply(&mut self, rgb: &mut [u8], width: u32, height: u32) {
        if self.polygons.is_empty() {
            return;
        }
        if !matches!(&self.pixels, Some((w, h, _)) if (*w, *h) == (width, height)) {
            let inside = region::pixels(&self.polygons, width, height);
            self.pixels = Some((width, height, inside));
        }
        if let Some((_, _, inside)) = &self.pixels {
            for (pixel, _) in rgb
                .chunks_exact_mut(3)
                .zip(inside)
                .filter(|(_, inside)| **inside)
            {
                pixel.fill(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_pixels_are_black_and_the_rest_untouched() {
        let left = Polygon(vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]);
        let mut privacy = Privacy::new(vec![left]);
        let mut rgb = vec![200u8; 4 * 2 * 3];
        privacy.apply(&mut rgb, 4, 2);
        let row: Vec<u8> = rgb[..12].chunks(3).map(|p| p[0]).collect();
        assert_eq!(row, [0, 0, 200, 200]);
        // Another size: the mask follows the frame.
        let mut small = vec![90u8; 2 * 2 * 3];
        privacy.apply(&mut small, 2, 2);
        assert_eq!(
            small.chunks(3).map(|p| p[1]).collect::<Vec<_>>(),
            [0, 90, 0, 90]
        );
    }
}
