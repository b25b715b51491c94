//! `glimpse tune`: runs a clip through capture, pixel gate, encoder and
//! token dropping with several settings at once, and reports what each
//! would keep: retention percentiles, the share of frames the gate sends to
//! the encoder, and when the scene trigger would fire. Draws the retention
//! curves (triggers marked) over a contact sheet of sampled frames, kept
//! tokens tinted, as a PNG and optionally an HTML page (`plot`). This is
//! how a user picks `tau`, `tau_pix` and `reference` for their own footage.
//!
//! The encoder runs once per frame whatever the settings (its output does
//! not depend on them), so trying many settings costs little more than one.

use std::path::PathBuf;

use serde::Serialize;

mod plot;

use crate::capture::{self, Frame};
use crate::dtd::{DtdConfig, Kept, PixelGate, Reference, TokenDropper};
use crate::infer::{self, ModelConfig};
use crate::pipeline::MasksConfig;
use crate::region;
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
    /// The camera's masks: privacy masks black out the frames (the
    /// picture too), motion masks blind the gate and the trigger.
    pub masks: MasksConfig,
    /// Where to write the picture, if anywhere.
    pub png: Option<PathBuf>,
    /// Where to write the HTML report (the picture and the table), if
    /// anywhere.
    pub html: Option<PathBuf>,
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

impl SettingReport {
    /// The row's cells as the table and the HTML report print them: τ,
    /// τ_pix, reference, mean/p50/p90/p99 retention, encoded share,
    /// trigger times.
    pub fn cells(&self) -> [String; 9] {
        let pct = |v: f32| format!("{:.1}%", 100.0 * v);
        [
            format!("{:.2}", self.tau),
            format!("{:.3}", self.tau_pix),
            reference_name(self.reference).to_owned(),
            pct(self.retention_mean),
            pct(self.retention_p50),
            pct(self.retention_p90),
            pct(self.retention_p99),
            pct(self.encoded_share),
            self.trigger_times(),
        ]
    }

    /// When the trigger fired, in seconds (`none`): one spelling for the
    /// table and the report.
    pub fn trigger_times(&self) -> String {
        if self.triggers_s.is_empty() {
            return "none".to_owned();
        }
        let times: Vec<String> = self.triggers_s.iter().map(|t| format!("{t:.1}")).collect();
        times.join(" ")
    }
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

/// One trial per combination of the request's settings, on a `grid` ×
/// `grid` token grid, blind to the `motion` patches.
fn trials(request: &TuneRequest, grid: u32, motion: &[bool]) -> Vec<Trial> {
    let mut trials = Vec::new();
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
                    gate: PixelGate::new(tau_pix, grid, grid).ignoring(motion.to_vec()),
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
    trials
}

/// Runs the clip; blocking (decoding and the encoder run here).
pub fn run(request: &TuneRequest) -> anyhow::Result<TuneReport> {
    let model = infer::load(&request.model)?;
    let pre = Preprocessor::from_folder(model.folder())?;
    let info = model.folder().info.clone();
    let mut backend = model.backend();
    let motion = if request.masks.motion.is_empty() {
        Vec::new()
    } else {
        region::patches(&request.masks.motion, info.grid, info.grid)
    };
    let mut trials = trials(request, info.grid, &motion);
    anyhow::ensure!(!trials.is_empty(), "no setting to try");

    let mut times = Vec::new();
    let mut sheet = ContactSheet::new(info.grid, motion.clone());
    let privacy = &request.masks.privacy;
    capture::read_clip(
        &request.clip,
        request.fps,
        info.image_size,
        privacy,
        |frame| {
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
            let mut first_retention = None;
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
                first_retention.get_or_insert(r);
                let moved = kept.retention_outside(&motion);
                if trial
                    .trigger
                    .observe(frame.pts, moved, frame.discont)
                    .describe
                {
                    trial.triggers.push(frame.pts.as_secs_f64());
                }
                first_kept.get_or_insert(kept.mask);
            }
            sheet.add(
                &frame,
                first_kept.unwrap_or_default(),
                first_retention.unwrap_or(0.0),
            );
            Ok(())
        },
    )?;
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
    if request.png.is_some() || request.html.is_some() {
        let png = plot::draw(&report, &sheet)?.png()?;
        if let Some(path) = &request.png {
            crate::chart::write(path, &png)?;
        }
        if let Some(path) = &request.html {
            crate::chart::write(path, plot::html(&report, &png).as_bytes())?;
        }
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
            let [tau, tau_pix, reference, mean, p50, p90, p99, encoded, triggers] = s.cells();
            out.push_str(&format!(
                "{tau:>6} {tau_pix:>8} {reference:>10} {mean:>8} {p50:>8} {p90:>8} {p99:>8} {encoded:>9}  {triggers}\n"
            ));
        }
        out
    }
}

/// A reference as the config spells it.
fn reference_name(reference: Reference) -> &'static str {
    match reference {
        Reference::LastKept => "last_kept",
        Reference::Previous => "previous",
    }
}

/// Thumbnails of sampled frames with the first setting's kept tokens.
struct ContactSheet {
    grid: u32,
    /// The motion masks' patches (row-major; empty for none), drawn over
    /// every tile.
    motion: Vec<bool>,
    every: usize,
    seen: usize,
    tiles: Vec<Tile>,
}

/// One thumbnail: `TILE`×`TILE` RGB, the first setting's kept-token mask
/// (row-major over the token grid), its time and retention.
struct Tile {
    rgb: Vec<u8>,
    mask: Vec<bool>,
    time_s: f64,
    retention: f32,
}

/// Thumbnail side (px); eight fit the picture's width.
const TILE: u32 = 112;
const TILES: usize = 24;

impl ContactSheet {
    fn new(grid: u32, motion: Vec<bool>) -> Self {
        ContactSheet {
            grid,
            motion,
            every: 1,
            seen: 0,
            tiles: Vec::new(),
        }
    }

    fn add(&mut self, frame: &Frame, mask: Vec<bool>, retention: f32) {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.every) {
            return;
        }
        self.tiles.push(Tile {
            rgb: crate::imageops::resize_bilinear(
                &frame.rgb,
                frame.width,
                frame.height,
                TILE,
                TILE,
            ),
            mask,
            time_s: frame.pts.as_secs_f64(),
            retention,
        });
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
