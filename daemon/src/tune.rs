//! `glimpse tune`: runs a clip through capture, pixel gate, encoder and
//! token dropping with several settings at once, and reports what each
//! would keep: retention percentiles, the share of frames the gate sends to
//! the encoder, and when the scene trigger would fire. Writes a PNG with
//! the retention curves (triggers marked) over a contact sheet of sampled
//! frames, kept tokens highlighted. This is how a user picks `tau`,
//! `tau_pix` and `reference` for their own footage.
//!
//! The encoder runs once per frame whatever the settings (its output does
//! not depend on them), so trying many settings costs little more than one.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::capture::{self, Frame};
use crate::dtd::{DtdConfig, Kept, PixelGate, Reference, TokenDropper};
use crate::infer::{self, ModelConfig};
use crate::trigger::{SceneTrigger, TriggerConfig};
use crate::vision::{self, Preprocessor};

/// What to try.
#[derive(Debug, Clone)]
pub struct TuneRequest {
    /// The clip.
    pub clip: PathBuf,
    /// The model whose encoder decides.
    pub model: ModelConfig,
    /// Frames per second to sample.
    pub fps: f64,
    /// Every combination of these is tried.
    pub taus: Vec<f32>,
    /// Pixel-gate thresholds.
    pub tau_pixes: Vec<f32>,
    /// Token references.
    pub references: Vec<Reference>,
    /// The trigger whose firings are reported.
    pub trigger: TriggerConfig,
    /// Where to write the picture, if anywhere.
    pub png: Option<PathBuf>,
}

/// What one setting kept.
#[derive(Debug, Clone, Serialize)]
pub struct SettingReport {
    /// `tau`.
    pub tau: f32,
    /// `tau_pix`.
    pub tau_pix: f32,
    /// `reference`.
    pub reference: Reference,
    /// Mean retention over every sampled frame.
    pub retention_mean: f32,
    /// Median retention.
    pub retention_p50: f32,
    /// 90th percentile.
    pub retention_p90: f32,
    /// 99th percentile.
    pub retention_p99: f32,
    /// Share of sampled frames the gate sent to the encoder.
    pub encoded_share: f32,
    /// Stream times (s) at which the scene trigger fires.
    pub triggers_s: Vec<f64>,
    /// Retention per sampled frame.
    pub retention: Vec<f32>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    /// The clip.
    pub clip: PathBuf,
    /// Sampled frames.
    pub frames: usize,
    /// Their stream times (s).
    pub times_s: Vec<f64>,
    /// One report per setting.
    pub settings: Vec<SettingReport>,
}

struct Trial {
    dtd: DtdConfig,
    gate: PixelGate,
    dropper: TokenDropper,
    trigger: SceneTrigger,
    retention: Vec<f32>,
    encoded: usize,
    triggers: Vec<f64>,
}

/// Runs the clip; blocking (decoding and the encoder run here).
pub fn run(request: &TuneRequest) -> anyhow::Result<TuneReport> {
    let model = infer::load(&request.model)?;
    let pre = Preprocessor::from_folder(model.folder())?;
    let info = model.folder().info.clone();
    let mut backend = model.backend();
    let mut trials: Vec<Trial> = Vec::new();
    for &tau in &request.taus {
        for &tau_pix in &request.tau_pixes {
            for &reference in &request.references {
                let dtd = DtdConfig {
                    tau,
                    tau_pix,
                    reference,
                    ..DtdConfig::default()
                };
                trials.push(Trial {
                    gate: PixelGate::new(tau_pix, info.grid, info.grid),
                    dropper: TokenDropper::new(&dtd),
                    trigger: SceneTrigger::new(&request.trigger),
                    dtd,
                    retention: Vec::new(),
                    encoded: 0,
                    triggers: Vec::new(),
                });
            }
        }
    }
    anyhow::ensure!(!trials.is_empty(), "no setting to try");

    let mut times = Vec::new();
    let mut sheet = ContactSheet::new(info.grid);
    capture::read_clip(&request.clip, request.fps, info.image_size, |frame| {
        times.push(frame.pts.as_secs_f64());
        // Encode once, if any setting's gate lets the frame through.
        let passes: Vec<bool> = trials
            .iter_mut()
            .map(|t| t.gate.check(&frame).encode)
            .collect();
        let tokens = if passes.iter().any(|p| *p) {
            Some(vision::encode(backend.as_mut(), &pre, &frame)?)
        } else {
            None
        };
        let mut first_kept = None;
        for (trial, pass) in trials.iter_mut().zip(passes) {
            let kept = match (&tokens, pass) {
                (Some(tokens), true) => {
                    trial.encoded += 1;
                    trial.dropper.drop_unchanged(tokens.clone())
                }
                _ => Kept::nothing(frame.meta(), info.grid, info.grid, info.hidden),
            };
            let r = kept.retention();
            trial.retention.push(r);
            if trial.trigger.observe(frame.pts, r, frame.discont).describe {
                trial.triggers.push(frame.pts.as_secs_f64());
            }
            first_kept.get_or_insert(kept.mask);
        }
        sheet.add(&frame, first_kept.unwrap_or_default());
        Ok(())
    })?;
    anyhow::ensure!(
        !times.is_empty(),
        "{}: no frame could be read",
        request.clip.display()
    );

    let settings: Vec<SettingReport> = trials
        .into_iter()
        .map(|t| {
            let mut sorted = t.retention.clone();
            sorted.sort_by(f32::total_cmp);
            let pct = |p: f32| sorted[((sorted.len() - 1) as f32 * p).round() as usize];
            SettingReport {
                tau: t.dtd.tau,
                tau_pix: t.dtd.tau_pix,
                reference: t.dtd.reference,
                retention_mean: t.retention.iter().sum::<f32>() / t.retention.len() as f32,
                retention_p50: pct(0.5),
                retention_p90: pct(0.9),
                retention_p99: pct(0.99),
                encoded_share: t.encoded as f32 / t.retention.len() as f32,
                triggers_s: t.triggers,
                retention: t.retention,
            }
        })
        .collect();
    let report = TuneReport {
        clip: request.clip.clone(),
        frames: times.len(),
        times_s: times,
        settings,
    };
    if let Some(path) = &request.png {
        write_png(path, &report, &sheet)?;
    }
    Ok(report)
}

impl TuneReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!("{}: {} sampled frames\n", self.clip.display(), self.frames);
        out.push_str(&format!(
            "{:>6} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}  triggers (s)\n",
            "tau", "tau_pix", "reference", "mean", "p50", "p90", "p99", "encoded"
        ));
        for s in &self.settings {
            let triggers: Vec<String> = s.triggers_s.iter().map(|t| format!("{t:.1}")).collect();
            out.push_str(&format!(
                "{:>6.2} {:>8.3} {:>10} {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>8.1}%  {}\n",
                s.tau,
                s.tau_pix,
                match s.reference {
                    Reference::LastKept => "last_kept",
                    Reference::Previous => "previous",
                },
                100.0 * s.retention_mean,
                100.0 * s.retention_p50,
                100.0 * s.retention_p90,
                100.0 * s.retention_p99,
                100.0 * s.encoded_share,
                if triggers.is_empty() {
                    "none".to_owned()
                } else {
                    triggers.join(" ")
                }
            ));
        }
        out
    }
}

/// Thumbnails of sampled frames with the first setting's kept tokens.
struct ContactSheet {
    grid: u32,
    every: usize,
    seen: usize,
    tiles: Vec<(Vec<u8>, Vec<bool>)>,
}

const TILE: u32 = 96;
const TILES: usize = 24;

impl ContactSheet {
    fn new(grid: u32) -> Self {
        ContactSheet {
            grid,
            every: 1,
            seen: 0,
            tiles: Vec::new(),
        }
    }

    fn add(&mut self, frame: &Frame, mask: Vec<bool>) {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.every) {
            return;
        }
        self.tiles.push((
            crate::imageops::resize_bilinear(&frame.rgb, frame.width, frame.height, TILE, TILE),
            mask,
        ));
        // Keep at most TILES: thin out by two whenever full.
        if self.tiles.len() > TILES {
            let mut i = 0;
            self.tiles.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.every *= 2;
        }
    }
}

const COLOURS: [[u8; 3]; 6] = [
    [230, 60, 60],
    [60, 140, 230],
    [60, 180, 80],
    [230, 170, 40],
    [160, 80, 200],
    [40, 190, 190],
];

/// Retention curves (one colour per setting, triggers as vertical ticks)
/// above the contact sheet (kept tokens tinted).
fn write_png(path: &Path, report: &TuneReport, sheet: &ContactSheet) -> anyhow::Result<()> {
    let per_row = 8usize;
    let width = per_row as u32 * (TILE + 4) + 4;
    let plot_h = 200u32;
    let rows = sheet.tiles.len().div_ceil(per_row) as u32;
    let height = plot_h + 8 + rows * (TILE + 4) + 4;
    let mut img = vec![255u8; (width * height * 3) as usize];
    let mut put = |x: u32, y: u32, c: [u8; 3]| {
        if x < width && y < height {
            let i = ((y * width + x) * 3) as usize;
            img[i..i + 3].copy_from_slice(&c);
        }
    };
    // Axes: retention 0 at the bottom, 1 at the top; grid lines every 0.25.
    for q in 0..=4 {
        let y = 4 + (plot_h - 8) * q / 4;
        for x in 4..width - 4 {
            put(x, y, [220, 220, 220]);
        }
    }
    let n = report.frames.max(2);
    let x_of = |i: usize| 4 + ((width - 8) as usize * i / (n - 1)) as u32;
    let y_of = |r: f32| 4 + ((plot_h - 8) as f32 * (1.0 - r.clamp(0.0, 1.0))) as u32;
    for (k, setting) in report.settings.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        for (i, pair) in setting.retention.windows(2).enumerate() {
            let (x0, x1) = (x_of(i), x_of(i + 1));
            let (y0, y1) = (y_of(pair[0]) as i64, y_of(pair[1]) as i64);
            for x in x0..=x1 {
                let t = if x1 == x0 {
                    0.0
                } else {
                    f64::from(x - x0) / f64::from(x1 - x0)
                };
                let y = y0 as f64 + (y1 - y0) as f64 * t;
                put(x, y as u32, colour);
            }
        }
        for t in &setting.triggers_s {
            let i = report.times_s.iter().position(|s| s >= t).unwrap_or(0);
            for y in plot_h - 12..plot_h - 4 {
                put(x_of(i), y - 2 * k as u32, colour);
            }
        }
    }
    // The contact sheet.
    let cell = TILE as f32 / sheet.grid as f32;
    for (t, (tile, mask)) in sheet.tiles.iter().enumerate() {
        let (ox, oy) = (
            4 + (t % per_row) as u32 * (TILE + 4),
            plot_h + 8 + (t / per_row) as u32 * (TILE + 4),
        );
        for y in 0..TILE {
            for x in 0..TILE {
                let i = ((y * TILE + x) * 3) as usize;
                let mut px = [tile[i], tile[i + 1], tile[i + 2]];
                let token = (y as f32 / cell) as u32 * sheet.grid + (x as f32 / cell) as u32;
                if mask.get(token as usize).copied().unwrap_or(false) {
                    px = [px[0] / 2 + 127, px[1] / 2 + 20, px[2] / 2];
                }
                put(ox + x, oy + y, px);
            }
        }
    }
    let file =
        std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&img)?;
    Ok(())
}
