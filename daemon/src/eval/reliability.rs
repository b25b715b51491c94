//! The reliability diagram of `glimpse eval --reliability FILE.png`: per
//! kind of answer (descriptions and rule answers pooled, each alone), the
//! accuracy of the answers in each confidence bin against the bin's mean
//! confidence. A calibrated model's bars reach the diagonal; bars under it
//! are over-confident. The bins are [`super::calibration::EDGES`]'s, so the
//! picture and the printed table agree. Drawn through [`crate::chart`].

use plotters::coord::Shift;
use plotters::prelude::*;

use super::calibration::Calibration;
use crate::chart::{font, Canvas, Picture, COLOURS, GREY};

const PANEL_W: u32 = 460;
const PANEL_H: u32 = 470;
const TITLE_H: u32 = 62;
const MARGIN: i32 = 12;

/// Draws one panel per (label, calibration), side by side, under `title`
/// and `subtitle`.
pub fn draw(
    title: &str,
    subtitle: &str,
    panels: &[(&str, &Calibration)],
) -> anyhow::Result<Picture> {
    anyhow::ensure!(!panels.is_empty(), "no answers to draw");
    let width = PANEL_W * panels.len() as u32;
    let height = TITLE_H + PANEL_H;
    let mut rgb = vec![255u8; (width * height * 3) as usize];
    {
        let root = Canvas::new(&mut rgb, (width, height))?.into_drawing_area();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(TITLE_H);
        top.draw(&Text::new(title.to_owned(), (MARGIN, 8), font(22)))?;
        top.draw(&Text::new(
            subtitle.to_owned(),
            (MARGIN, 36),
            font(14).color(&GREY),
        ))?;
        for (k, (area, (label, calibration))) in rest
            .split_evenly((1, panels.len()))
            .iter()
            .zip(panels)
            .enumerate()
        {
            draw_panel(area, label, calibration, COLOURS[k % COLOURS.len()])?;
        }
        root.present()?;
    }
    Ok(Picture { width, height, rgb })
}

fn draw_panel(
    area: &DrawingArea<Canvas, Shift>,
    label: &str,
    calibration: &Calibration,
    colour: RGBColor,
) -> anyhow::Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{label}: {} answers, ECE {:.3}",
                calibration.len(),
                calibration.ece()
            ),
            font(15),
        )
        .margin(MARGIN as u32)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..1f64, 0f64..1.08f64)?;
    chart
        .configure_mesh()
        .x_desc("confidence (lowest token probability)")
        .y_desc("share of answers true")
        .axis_desc_style(font(14))
        .label_style(font(12))
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    // Where a calibrated model's bars end.
    chart.draw_series(DashedLineSeries::new(
        [(0.0, 0.0), (1.0, 1.0)],
        6,
        4,
        GREY.stroke_width(1),
    ))?;
    for bin in calibration.bins().iter().filter(|b| b.answers > 0) {
        let accuracy = bin.right as f64 / bin.answers as f64;
        let (low, high) = (f64::from(bin.low), f64::from(bin.high));
        chart.draw_series([Rectangle::new(
            [(low, 0.0), (high, accuracy)],
            colour.mix(0.35).filled(),
        )])?;
        chart.draw_series([Rectangle::new(
            [(low, 0.0), (high, accuracy)],
            colour.stroke_width(1),
        )])?;
        // The bin's mean confidence: how far the bar is from the diagonal
        // there is the bin's calibration error.
        chart.draw_series([Circle::new(
            (bin.mean_confidence, accuracy),
            4,
            BLACK.filled(),
        )])?;
        chart.draw_series([Text::new(
            format!("{}", bin.answers),
            ((low + high) / 2.0, (accuracy + 0.05).min(1.06)),
            font(11).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            )),
        )])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagram_has_a_bar_where_answers_are() {
        let mut c = Calibration::default();
        for i in 0..20 {
            c.add(0.2, i < 2);
            c.add(0.95, i < 18);
        }
        let picture = draw("t", "s", &[("descriptions", &c)]).unwrap();
        assert_eq!(picture.width, PANEL_W);
        // The 0.95–0.99 bin's bar (90% true) is drawn in the series colour,
        // the empty 0.5–0.7 bin is not: look along a row at 50% accuracy.
        let row = |y: u32, x0: u32, x1: u32| {
            (x0..x1)
                .map(|x| {
                    let i = ((y * picture.width + x) * 3) as usize;
                    &picture.rgb[i..i + 3]
                })
                .filter(|p| {
                    let [r, g, b] = [p[0], p[1], p[2]].map(i32::from);
                    r > g + 40 && r > b + 40
                })
                .count()
        };
        let png = picture.png().unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let mid = TITLE_H + PANEL_H / 2;
        assert!(
            row(mid, PANEL_W * 3 / 4, PANEL_W) > 5,
            "no bar at high confidence"
        );
        assert_eq!(
            row(mid, PANEL_W / 2, PANEL_W * 3 / 5),
            0,
            "a bar where no answer is"
        );
    }
}
