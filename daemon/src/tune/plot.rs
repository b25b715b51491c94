//! The pictures of `glimpse tune`: a titled chart of retention (%) against
//! stream time (s), one curve per setting with the scene trigger's firings
//! marked on it and a legend naming each setting, over a contact sheet of
//! sampled frames labelled with their time and kept share. Drawn through
//! [`crate::chart`].
//! `--html` wraps the same PNG, as a data URI, and the table in one
//! self-contained page.
//!
//! Runs on the `tune` command's thread, once, after the clip.

use anyhow::Context;
use base64::Engine;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::chart::{font, Canvas, Picture, COLOURS, GREY};

use super::{reference_name, ContactSheet, SettingReport, TuneReport, TILE};

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
    let rows = (sheet.tiles.len() as u32).div_ceil(PER_ROW);
    let height = TITLE_H + CHART_H + SHEET_HEADER_H + rows * CELL_H + MARGIN as u32;
    let mut rgb = vec![255u8; (WIDTH * height * 3) as usize];
    {
        let root = Canvas::new(&mut rgb, (WIDTH, height))?.into_drawing_area();
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
            "sampled frames; tinted red: the tokens kept by {}{}",
            setting_name(first),
            if sheet.motion.contains(&true) {
                "; hatched yellow: motion masks"
            } else {
                ""
            }
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
            // Motion masks: a yellow hatch (every fourth diagonal), so the
            // kept tint still shows through.
            let hatched = (tx as u32 + ty as u32).is_multiple_of(4);
            if hatched && sheet.motion.get(token as usize).copied().unwrap_or(false) {
                px.copy_from_slice(&[230, 180, 0]);
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
