//! `glimpse zones`' picture: one frame of a camera, as glimpse samples it
//! (privacy masks already black), with the model's patch grid, coordinate
//! ticks in fractions of the frame, the patches each motion mask and each
//! zone covers, and the polygons' outlines: what a user needs to write
//! `[cameras.NAME.masks]` and `[cameras.NAME.zones]` polygons and to see
//! which tokens they take (docs/configuration.md, "Masks, zones and what a
//! camera asks").

use anyhow::Context;
use plotters::prelude::*;

use crate::capture::Frame;
use crate::chart::{font, Canvas, Picture, COLOURS, GREY};
use crate::pipeline::CameraConfig;
use crate::region::{self, Polygon};

/// Side of the drawn frame, in pixels.
const SIDE: u32 = 720;
/// Room for the ticks (left, top) and the legend (right).
const MARGIN: u32 = 48;
const LEGEND_W: u32 = 300;

/// Draws `frame` of `camera` (named `name`) with a `grid` × `grid` patch
/// grid.
pub fn draw(
    name: &str,
    camera: &CameraConfig,
    frame: &Frame,
    grid: u32,
) -> anyhow::Result<Picture> {
    let width = MARGIN + SIDE + LEGEND_W;
    let height = MARGIN + SIDE + MARGIN / 2;
    let mut rgb = vec![255u8; (width * height * 3) as usize];
    {
        let root = Canvas::new(&mut rgb, (width, height))?.into_drawing_area();
        root.fill(&WHITE)?;
        let motion = region::patches(&camera.masks.motion, grid, grid);
        let zones: Vec<(&String, Vec<bool>)> = camera
            .zones
            .iter()
            .map(|(z, c)| (z, c.points.patches(grid, grid)))
            .collect();
        let picture = scaled(frame, &motion, &zones, grid);
        let at = (MARGIN as i32, MARGIN as i32);
        root.draw(
            &BitMapElement::with_owned_buffer(at, (SIDE, SIDE), picture)
                .context("the frame of the wrong size")?,
        )?;
        draw_grid(&root, grid)?;
        let point = |[x, y]: [f64; 2]| {
            (
                MARGIN as i32 + (x * f64::from(SIDE)).round() as i32,
                MARGIN as i32 + (y * f64::from(SIDE)).round() as i32,
            )
        };
        let outline = |polygon: &Polygon, colour: RGBColor| {
            let mut points: Vec<(i32, i32)> = polygon.0.iter().map(|&p| point(p)).collect();
            points.push(points[0]);
            PathElement::new(points, colour.stroke_width(3))
        };
        for p in &camera.masks.privacy {
            root.draw(&outline(p, RGBColor(0, 0, 0)))?;
        }
        for p in &camera.masks.motion {
            root.draw(&outline(p, MOTION))?;
        }
        for (k, (_, zone)) in camera.zones.iter().enumerate() {
            root.draw(&outline(&zone.points, COLOURS[k % COLOURS.len()]))?;
        }
        draw_legend(&root, name, camera, frame, grid)?;
        root.present()?;
    }
    Ok(Picture { width, height, rgb })
}

/// Motion masks' colour.
const MOTION: RGBColor = RGBColor(230, 180, 0);

/// The frame scaled to `SIDE` (nearest neighbour), the motion masks'
/// patches tinted yellow and each zone's in its colour.
fn scaled(frame: &Frame, motion: &[bool], zones: &[(&String, Vec<bool>)], grid: u32) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let side = SIDE as usize;
    let mut out = vec![0u8; side * side * 3];
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (x * w / side, y * h / side);
            let src = &frame.rgb[(sy * w + sx) * 3..][..3];
            let patch = (y * grid as usize / side) * grid as usize + x * grid as usize / side;
            let mut px = [src[0], src[1], src[2]];
            let tint = |px: &mut [u8; 3], c: RGBColor| {
                for (v, t) in px.iter_mut().zip([c.0, c.1, c.2]) {
                    *v = ((u16::from(*v) * 3 + u16::from(t) * 2) / 5) as u8;
                }
            };
            if motion.get(patch).copied().unwrap_or(false) {
                tint(&mut px, MOTION);
            }
            for (k, (_, patches)) in zones.iter().enumerate() {
                if patches[patch] {
                    tint(&mut px, COLOURS[k % COLOURS.len()]);
                }
            }
            out[(y * side + x) * 3..][..3].copy_from_slice(&px);
        }
    }
    out
}

/// The patch grid over the frame, and ticks every 0.1 on both axes.
fn draw_grid(root: &DrawingArea<Canvas, plotters::coord::Shift>, grid: u32) -> anyhow::Result<()> {
    let (m, side) = (MARGIN as i32, SIDE as i32);
    for i in 0..=grid as i32 {
        let at = m + i * side / grid as i32;
        let line = GREY.mix(0.6).stroke_width(1);
        root.draw(&PathElement::new(vec![(at, m), (at, m + side)], line))?;
        root.draw(&PathElement::new(vec![(m, at), (m + side, at)], line))?;
    }
    for t in 0..=10 {
        let at = m + t * side / 10;
        let label = format!("{:.1}", f64::from(t) / 10.0);
        root.draw(&Text::new(label.clone(), (at - 10, m - 20), font(13)))?;
        root.draw(&Text::new(label, (4, at - 7), font(13)))?;
    }
    Ok(())
}

/// What is drawn: the camera, the grid, and each mask and zone with the
/// patches it covers.
fn draw_legend(
    root: &DrawingArea<Canvas, plotters::coord::Shift>,
    name: &str,
    camera: &CameraConfig,
    frame: &Frame,
    grid: u32,
) -> anyhow::Result<()> {
    let x = (MARGIN + SIDE + 16) as i32;
    let mut y = MARGIN as i32;
    let mut line = |text: String, colour: RGBColor, size: u32| -> anyhow::Result<()> {
        root.draw(&Text::new(text, (x, y), font(size).color(&colour)))?;
        y += size as i32 + 8;
        Ok(())
    };
    line(format!("camera {name}"), BLACK, 20)?;
    line(format!("{}×{} frame", frame.width, frame.height), GREY, 14)?;
    line(format!("{grid}×{grid} patches (tokens)"), GREY, 14)?;
    line("x right, y down, 0 to 1".into(), GREY, 14)?;
    line(String::new(), GREY, 2)?;
    let count = |p: &[Polygon]| {
        region::patches(p, grid, grid)
            .iter()
            .filter(|b| **b)
            .count()
    };
    if !camera.masks.privacy.is_empty() {
        let n = camera.masks.privacy.len();
        line(format!("privacy masks: {n} (black)"), BLACK, 15)?;
    }
    if !camera.masks.motion.is_empty() {
        let n = count(&camera.masks.motion);
        line(format!("motion masks: {n} patches"), MOTION, 15)?;
    }
    for (k, (zone, config)) in camera.zones.iter().enumerate() {
        let n = count(std::slice::from_ref(&config.points));
        line(
            format!("zone {zone}: {n} patches"),
            COLOURS[k % COLOURS.len()],
            15,
        )?;
    }
    Ok(())
}
