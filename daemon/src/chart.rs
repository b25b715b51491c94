//! Charts drawn into PNG files, for `glimpse tune` (docs/tune.png) and
//! `glimpse eval --reliability`: `plotters` into an RGB buffer (its bitmap
//! backend, no image crate) with a font compiled into the binary, so a
//! chart draws the same on a headless box without fontconfig; encoded with
//! the `png` crate. Text goes through [`Canvas`], which places each glyph by
//! its bearing: plotters 0.3.7's own `ab_glyph` drawing drops it and runs
//! letters together ("0.30· τ").

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use anyhow::Context;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

/// DejaVu Sans cut to Latin, Latin-1 and Greek (`daemon/assets/README.md`
/// says how, and its licence).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
/// The family the font is registered under; plotters' `ab_glyph` backend
/// looks fonts up by this name.
const FAMILY: &str = "sans-serif";

/// One colour per series, in order (Tableau 10); repeats past ten.
pub const COLOURS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];
/// Secondary text.
pub const GREY: RGBColor = RGBColor(110, 110, 110);

/// An RGB picture.
pub struct Picture {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// Row by row, three bytes a pixel.
    pub rgb: Vec<u8>,
}

/// Black text of the embedded font at `size` pixels.
pub fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// The embedded font, registered with plotters (which measures text with
/// it) once per process.
fn embedded_font() -> anyhow::Result<&'static FontRef<'static>> {
    static PARSED: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            let font = FontRef::try_from_slice(FONT).ok()?;
            register_font(FAMILY, FontStyle::Normal, FONT).ok()?;
            Some(font)
        })
        .as_ref()
        .context("the embedded font could not be read")
}

/// The bitmap backend with our own text drawing; everything else is
/// plotters'.
pub struct Canvas<'a> {
    inner: BitMapBackend<'a>,
    font: &'static FontRef<'static>,
}

impl<'a> Canvas<'a> {
    /// A canvas over `rgb` (width × height × 3 bytes).
    pub fn new(rgb: &'a mut [u8], size: (u32, u32)) -> anyhow::Result<Self> {
        Ok(Canvas {
            inner: BitMapBackend::with_buffer(rgb, size),
            font: embedded_font()?,
        })
    }
}

type DrawResult<E> = Result<(), DrawingErrorKind<E>>;

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> DrawResult<Self::ErrorType> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> DrawResult<Self::ErrorType> {
        self.inner.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_pixel(point, color)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> DrawResult<Self::ErrorType> {
        self.inner.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> DrawResult<Self::ErrorType> {
        self.inner.blit_bitmap(pos, size, src)
    }

    /// plotters' own `draw_text` with the glyphs placed by their bearings;
    /// the box (from plotters' measure) and the anchor and rotation
    /// handling are as there. The cap height is centred in the box, so
    /// centred labels sit level with their ticks.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> DrawResult<Self::ErrorType> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        let font = self.font.as_scaled(style.size() as f32);
        let cap = self
            .font
            .outline(font.glyph_id('H'))
            .map_or(0.6 * font.height(), |o| {
                o.bounds.max.y * font.v_scale_factor()
            });
        let baseline = (height as f32 + cap) / 2.0;
        let (mut pen, mut previous) = (0.0f32, None);
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(previous) = previous {
                pen += font.kern(previous, id);
            }
            previous = Some(id);
            let glyph = id.with_scale_and_position(font.scale(), ab_glyph::point(pen, baseline));
            pen += font.h_advance(id);
            let Some(outline) = self.font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let mut result = Ok(());
            outline.draw(|gx, gy, coverage| {
                let (x, y) = transform.transform(
                    bounds.min.x as i32 + gx as i32 + dx - min_x,
                    bounds.min.y as i32 + gy as i32 + dy - min_y,
                );
                let (x, y) = (pos.0 + x, pos.1 + y);
                if result.is_ok() && x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                    let ink = BackendColor {
                        alpha: color.alpha * f64::from(coverage),
                        rgb: color.rgb,
                    };
                    result = self.inner.draw_pixel((x, y), ink);
                }
            });
            result?;
        }
        Ok(())
    }
}

impl Picture {
    /// The picture as a PNG file's bytes.
    pub fn png(&self) -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header()?.write_image_data(&self.rgb)?;
        Ok(bytes)
    }
}

/// Writes `bytes` to `path`, naming the path on failure.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("{}", path.display()))
}
