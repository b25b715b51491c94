//! The pictures of `glimpse tune`: a titled chart of retention (%) against
//! stream time (s), one curve per setting with the scene trigger's firings
//! marked on it and a legend naming each setting, over a contact sheet of
//! sampled frames labelled with their time and kept share. Drawn with
//! `plotters` into an RGB buffer (its bitmap backend, no image crate) with
//! a font compiled into the binary, so it draws the same on a headless box
//! without fontconfig; encoded with the `png` crate. Text goes through
//! `Canvas`, which places each glyph by its bearing: plotters 0.3.7's own
//! `ab_glyph` drawing drops it and runs letters together ("0.30· τ").
//! `--html` wraps the same PNG, as a data URI, and the table in one
//! self-contained page.
//!
//! Runs on the `tune` command's thread, once, after the clip.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use anyhow::Context;
use base64::Engine;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

use super::{reference_name, ContactSheet, SettingReport, TuneReport, TILE};

/// DejaVu Sans cut to Latin, Latin-1 and Greek (`daemon/assets/README.md`
/// says how, and its licence).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
/// The family the font is registered under; plotters' `ab_glyph` backend
/// looks fonts up by this name.
const FAMILY: &str = "sans-serif";

/// Picture width; the chart and the sheet share it.
const WIDTH: u32 = 1080;
const MARGIN: i32 = 12;
const TITLE_H: u32 = 58;
const CHART_H: u32 = 400;
/// The chart's plotting part; the rest of its row is the legend.
const PLOT_W: u32 = 700;
const SHEET_HEADER_H: u32 = 30;
const PER_ROW: u32 = 8;
/// A sheet cell: the tile and its caption below.
const CELL_W: u32 = (WIDTH - 2 * MARGIN as u32) / PER_ROW;
const CELL_H: u32 = TILE + 22;

/// One colour per setting, in the order given (Tableau 10); repeats past
/// ten.
const COLOURS: [RGBColor; 10] = [
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
const GREY: RGBColor = RGBColor(110, 110, 110);

/// An RGB picture.
pub(super) struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

fn font(size: u32) -> TextStyle<'static> {
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
struct Canvas<'a> {
    inner: BitMapBackend<'a>,
    font: &'static FontRef<'static>,
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

/// How a setting is named in the legend.
fn setting_name(s: &SettingReport) -> String {
    format!(
        "τ {:.2} · τ_pix {:.3} · {}",
        s.tau,
        s.tau_pix,
        reference_name(s.reference)
    )
}

/// Draws the chart and the sheet.
pub(super) fn draw(report: &TuneReport, sheet: &ContactSheet) -> anyhow::Result<Picture> {
    let font = embedded_font()?;
    let rows = (sheet.tiles.len() as u32).div_ceil(PER_ROW);
    let height = TITLE_H + CHART_H + SHEET_HEADER_H + rows * CELL_H + MARGIN as u32;
    let mut rgb = vec![255u8; (WIDTH * height * 3) as usize];
    {
        let root = Canvas {
            inner: BitMapBackend::with_buffer(&mut rgb, (WIDTH, height)),
            font,
        }
        .into_drawing_area();
        root.fill(&WHITE)?;
        let (title, rest) = root.split_vertically(TITLE_H);
        let (chart, sheet_area) = rest.split_vertically(CHART_H);
        draw_title(&title, report)?;
        let (plot, legend) = chart.split_horizontally(PLOT_W);
        draw_curves(&plot, report)?;
        draw_legend(&legend, report)?;
        draw_sheet(&sheet_area, report, sheet)?;
        root.present()?;
    }
    Ok(Picture {
        width: WIDTH,
        height,
        rgb,
    })
}

fn draw_title(area: &DrawingArea<Canvas, Shift>, report: &TuneReport) -> anyhow::Result<()> {
    let clip = report.clip.file_name().map_or_else(
        || report.clip.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    area.draw(&Text::new(
        format!("glimpse tune: {clip}"),
        (MARGIN, 10),
        font(24),
    ))?;
    let span = report.times_s.last().copied().unwrap_or(0.0);
    area.draw(&Text::new(
        format!(
            "{} sampled frames over {span:.1} s; retention is the share of the frame's tokens kept",
            report.frames
        ),
        (MARGIN, 38),
        font(14).color(&GREY),
    ))?;
    Ok(())
}

fn draw_curves(area: &DrawingArea<Canvas, Shift>, report: &TuneReport) -> anyhow::Result<()> {
    let t_end = report.times_s.last().copied().unwrap_or(0.0).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .margin_left(MARGIN as u32)
        .margin_right(10)
        .margin_top(6)
        .margin_bottom(4)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(0f64..t_end, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("stream time (s)")
        .y_desc("retention (% of tokens kept)")
        .axis_desc_style(font(15))
        .label_style(font(13))
        .x_label_formatter(&|t| format!("{t:.0}"))
        .y_label_formatter(&|r| format!("{r:.0}%"))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    for (k, setting) in report.settings.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points = || {
            report
                .times_s
                .iter()
                .zip(&setting.retention)
                .map(|(t, r)| (*t, 100.0 * f64::from(*r)))
        };
        chart.draw_series(LineSeries::new(points(), colour.stroke_width(2)))?;
        // A firing sits on the curve at the frame that fired it.
        let fired = points().filter(|(t, _)| setting.triggers_s.contains(t));
        chart.draw_series(fired.map(|p| {
            EmptyElement::at(p)
                + TriangleMarker::new((0, 0), 10, BLACK.filled())
                + TriangleMarker::new((0, 0), 7, colour.filled())
        }))?;
    }
    Ok(())
}

fn draw_legend(area: &DrawingArea<Canvas, Shift>, report: &TuneReport) -> anyhow::Result<()> {
    let (x, mut y) = (8, 10);
    area.draw(&Text::new("settings", (x, y), font(15)))?;
    y += 26;
    // Two lines per setting while they fit, one line each past that.
    let two_lines = report.settings.len() <= 7;
    let step = if two_lines { 38 } else { 20 };
    let room = (CHART_H as i32 - 50 - y) / step;
    let shown = report.settings.len().min(room.max(1) as usize);
    for (k, setting) in report.settings.iter().take(shown).enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        area.draw(&PathElement::new(
            vec![(x, y + 8), (x + 26, y + 8)],
            colour.stroke_width(3),
        ))?;
        area.draw(&Text::new(setting_name(setting), (x + 34, y), font(14)))?;
        if two_lines {
            // Markers of settings that fire together hide each other: the
            // times say which fired.
            let times: Vec<String> = setting
                .triggers_s
                .iter()
                .map(|t| format!("{t:.1}"))
                .collect();
            let fired = match times.len() {
                0 => "never fires".to_owned(),
                n if n <= 4 => format!("fires at {} s", times.join(", ")),
                n => format!("fires {n} times"),
            };
            area.draw(&Text::new(
                format!(
                    "mean {:.1}% · p90 {:.1}% · {fired}",
                    100.0 * setting.retention_mean,
                    100.0 * setting.retention_p90
                ),
                (x + 34, y + 18),
                font(12).color(&GREY),
            ))?;
        }
        y += step;
    }
    if shown < report.settings.len() {
        area.draw(&Text::new(
            format!("and {} more (see the table)", report.settings.len() - shown),
            (x + 34, y),
            font(13).color(&GREY),
        ))?;
        y += step;
    }
    y += 6;
    area.draw(
        &(EmptyElement::at((x + 13, y + 8))
            + TriangleMarker::new((0, 0), 10, BLACK.filled())
            + TriangleMarker::new((0, 0), 7, WHITE.filled())),
    )?;
    area.draw(&Text::new(
        "the scene trigger fires (curve's colour)",
        (x + 34, y),
        font(14),
    ))?;
    Ok(())
}

fn draw_sheet(
    area: &DrawingArea<Canvas, Shift>,
    report: &TuneReport,
    sheet: &ContactSheet,
) -> anyhow::Result<()> {
    let Some(first) = report.settings.first() else {
        return Ok(());
    };
    area.draw(&Text::new(
        format!(
            "sampled frames; tinted red: the tokens kept by {}",
            setting_name(first)
        ),
        (MARGIN, 6),
        font(15),
    ))?;
    let cell = TILE as f32 / sheet.grid as f32;
    for (n, tile) in sheet.tiles.iter().enumerate() {
        let n = n as u32;
        let x = MARGIN + ((n % PER_ROW) * CELL_W) as i32;
        let y = (SHEET_HEADER_H + (n / PER_ROW) * CELL_H) as i32;
        let mut rgb = tile.rgb.clone();
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let (tx, ty) = ((i as u32 % TILE) as f32, (i as u32 / TILE) as f32);
            let token = (ty / cell) as u32 * sheet.grid + (tx / cell) as u32;
            if tile.mask.get(token as usize).copied().unwrap_or(false) {
                px.copy_from_slice(&[px[0] / 2 + 127, px[1] / 2 + 20, px[2] / 2]);
            }
        }
        let bitmap = BitMapElement::with_owned_buffer((x, y), (TILE, TILE), rgb)
            .context("a contact-sheet tile of the wrong size")?;
        area.draw(&bitmap)?;
        area.draw(&Text::new(
            format!("{:.1} s · {:.0}% kept", tile.time_s, 100.0 * tile.retention),
            (x, y + TILE as i32 + 4),
            font(12),
        ))?;
    }
    Ok(())
}

impl Picture {
    /// The picture as a PNG file's bytes.
    pub(super) fn png(&self) -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header()?.write_image_data(&self.rgb)?;
        Ok(bytes)
    }
}

/// A self-contained page: the picture as a data URI and the table.
pub(super) fn html(report: &TuneReport, png: &[u8]) -> String {
    let clip = escape(&report.clip.display().to_string());
    let mut rows = String::new();
    for s in &report.settings {
        let cells: Vec<String> = s.cells().iter().map(|c| format!("<td>{c}</td>")).collect();
        rows.push_str(&format!("<tr>{}</tr>\n", cells.concat()));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>glimpse tune: {clip}</title>\n<style>\
         body{{font-family:sans-serif;margin:1.5em;color:#222}}\
         table{{border-collapse:collapse;margin-top:1em}}\
         th,td{{padding:.25em .7em;text-align:right;border-bottom:1px solid #ddd}}\
         img{{max-width:100%}}</style></head>\n<body>\n\
         <h1>glimpse tune: {clip}</h1>\n\
         <p>{} sampled frames. Retention: the share of a frame's tokens kept; \
         encoded: the share of frames the pixel gate sent to the encoder.</p>\n\
         <img alt=\"retention curves and contact sheet\" src=\"data:image/png;base64,{}\">\n\
         <table>\n<tr><th>τ</th><th>τ_pix</th><th>reference</th><th>mean</th><th>p50</th>\
         <th>p90</th><th>p99</th><th>encoded</th><th>triggers (s)</th></tr>\n{rows}</table>\n\
         </body></html>\n",
        report.frames,
        base64::engine::general_purpose::STANDARD.encode(png),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes `bytes` to `path`, naming the path on failure.
pub(super) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("{}", path.display()))
}
