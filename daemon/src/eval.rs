//! `glimpse eval`: the accuracy benchmark on the shapes world ("shapes-
//! stream", docs/architecture.md §9). Each held-out clip comes with its ground truth (a
//! JSON file written by `models/shapes/make_clips.py`: the questions asked
//! at given frames and their answers). The clip runs through the daemon's
//! own stages (capture → pixel gate → encoder → token dropping → memory →
//! responder) once per setting, every question is asked where the daemon
//! would ask it, and the answers are scored per task type, with the tokens
//! the model was shown.
//!
//! Beside exact match, a description is scored by its events (precision,
//! recall and F1, region apart: [`events`]), and each task's accuracy
//! comes with its trivial baselines and a bootstrap 95% interval over clips
//! ([`stats`]). Answers get the daemon's token limit
//! ([`crate::llm::MAX_ANSWER_TOKENS`]), so a long description is cut where
//! the daemon would cut it.
//!
//! Settings: full tokens (every frame encoded, nothing dropped), token
//! dropping at several τ with both references, and several memory sizes.
//! Scoring is exact match after trimming and lower-casing, except that a
//! watch rule is scored on its first word (yes/no) and a time on being
//! within one second (a frame the memory pooled or evicted can only be
//! placed roughly).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::capture::{self, Frame};
use crate::dtd::{DtdConfig, Reference};
use crate::infer::ModelConfig;
use crate::pipeline::analysis::{CameraAnalysis, ModelStages};
use crate::pipeline::CameraConfig;

pub mod calibration;
pub mod events;
pub mod reliability;
pub mod run;
pub mod stats;

use calibration::Calibration;

/// The calibrations a report shows: key of [`SettingScore::calibration`],
/// what it holds (the table's words, the chart's).
pub const CALIBRATED: [(&str, &str, &str); 3] = [
    (
        "all",
        "descriptions (true by their events) and rule answers",
        "descriptions and rule answers",
    ),
    ("describe", "descriptions alone", "descriptions"),
    ("rule", "rule answers alone", "rule answers"),
];
use events::EventScore;
use stats::Baseline;

/// Task types, in the order the report prints them.
pub const TASKS: [&str; 10] = [
    "describe",
    "count",
    "colour",
    "where",
    "when_appeared",
    "when_left",
    "last_appeared",
    "last_left",
    "rule",
    "kind",
];

/// One setting to evaluate.
#[derive(Debug, Clone)]
pub struct Setting {
    /// How the report names it.
    pub name: String,
    /// Gate and dropping.
    pub dtd: DtdConfig,
    /// Memory capacities per level.
    pub memory: [usize; 3],
}

impl Setting {
    /// Every frame encoded, every token kept.
    pub fn full(memory: [usize; 3]) -> Setting {
        Setting {
            name: format!("full tokens, memory {}", show(&memory)),
            dtd: DtdConfig {
                tau_pix: 0.0,
                // Above any cosine: nothing is dropped.
                tau: 2.0,
                ..DtdConfig::default()
            },
            memory,
        }
    }

    /// Dropping at `tau` with `reference`, gate at `tau_pix`.
    pub fn dropping(tau: f32, tau_pix: f32, reference: Reference, memory: [usize; 3]) -> Setting {
        let name = match reference {
            Reference::LastKept => "last_kept",
            Reference::Previous => "previous",
        };
        Setting {
            name: format!(
                "tau {tau}, {name}, tau_pix {tau_pix}, memory {}",
                show(&memory)
            ),
            dtd: DtdConfig {
                tau,
                tau_pix,
                reference,
                ..DtdConfig::default()
            },
            memory,
        }
    }
}

fn show(memory: &[usize; 3]) -> String {
    format!("{}/{}/{}", memory[0], memory[1], memory[2])
}

/// A clip's ground truth, as `make_clips.py` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    /// The video file, relative to the JSON file.
    pub video: PathBuf,
    /// Frames per second of the clip (one sampled frame per clip frame).
    pub fps: f64,
    /// The questions.
    pub questions: Vec<TruthQuestion>,
    /// Per frame: its events, `[verb, colour, kind, region]` (what
    /// `glimpse eval --events` judges a run against).
    #[serde(default)]
    pub events: Vec<Vec<[String; 4]>>,
    /// Per frame: the shapes on screen.
    #[serde(default)]
    pub scenes: Vec<Vec<Shape>>,
}

/// A shape on screen in a truth's frame.
#[derive(Debug, Clone, Deserialize)]
pub struct Shape {
    /// circle, square or triangle.
    pub kind: String,
    /// red, green, blue or yellow.
    pub colour: String,
    /// Centre, in pixels.
    pub x: f64,
    /// Centre, in pixels.
    pub y: f64,
}

/// A question asked after a given frame.
#[derive(Debug, Clone, Deserialize)]
pub struct TruthQuestion {
    /// Index of the sampled frame after which it is asked.
    pub frame: usize,
    /// Task type (one of [`TASKS`]).
    pub task: String,
    /// The question as the daemon gets it.
    pub question: String,
    /// The right answer.
    pub answer: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The ground-truth JSON files.
    pub clips: Vec<PathBuf>,
    /// The model.
    pub model: ModelConfig,
    /// The settings.
    pub settings: Vec<Setting>,
    /// Where to write every prompt's layout (JSON lines), for the parity
    /// test with the training code.
    pub dump: Option<PathBuf>,
}

/// Scores of one setting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SettingScore {
    /// The setting's name.
    pub setting: String,
    /// Per task: (right, asked).
    pub tasks: BTreeMap<String, (usize, usize)>,
    /// Visual tokens kept over the visual tokens of every sampled frame.
    pub kept_share: f64,
    /// Share of sampled frames that were encoded.
    pub encoded_share: f64,
    /// Mean visual tokens shown per answer.
    pub visual_per_answer: f64,
    /// Mean prompt tokens per answer.
    pub prompt_per_answer: f64,
    /// Mean visual tokens of all frames up to the question (what showing
    /// every frame whole would cost).
    pub window_per_answer: f64,
    /// Describe answers scored by their events.
    pub describe_events: EventScore,
    /// Describe answers everything of which is true ([`events::is_true`]):
    /// (true, asked).
    pub describe_true: (usize, usize),
    /// Descriptions and rule answers with their confidence and truth:
    /// "all" (what one `min_confidence` acts on), "describe", "rule".
    pub calibration: BTreeMap<String, Calibration>,
    /// Whether this setting is the daemon's default dropping (`[dtd]`'s
    /// defaults), whose calibration the report prints.
    pub daemon_default: bool,
    /// Per task, and "all": the bootstrap 95% interval of the accuracy
    /// over clips.
    pub ci: BTreeMap<String, (f64, f64)>,
    /// Per task: (right, asked) per clip, in the request's clip order.
    #[serde(skip)]
    per_clip: BTreeMap<String, Vec<(usize, usize)>>,
}

impl SettingScore {
    /// Right answers over questions, all tasks.
    pub fn accuracy(&self) -> f64 {
        let (right, asked) = self
            .tasks
            .values()
            .fold((0, 0), |(r, a), (r2, a2)| (r + r2, a + a2));
        right as f64 / asked.max(1) as f64
    }

    fn task(&self, task: &str) -> Option<f64> {
        self.tasks
            .get(task)
            .map(|(r, a)| *r as f64 / (*a).max(1) as f64)
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// What ran the graphs (`tract`, `tract-cuda (...)`, `ort (cpu)`).
    pub runtime: String,
    /// Clips evaluated.
    pub clips: usize,
    /// Questions per setting.
    pub questions: usize,
    /// One score per setting, in the request's order.
    pub settings: Vec<SettingScore>,
    /// Per task: the majority answer's baseline, then the fixed answer's
    /// ("nothing changed", "yes", "one") where the task has one.
    pub baselines: BTreeMap<String, Vec<Baseline>>,
}

/// Is `predicted` right for `truth` on `task`?
pub fn score(task: &str, predicted: &str, truth: &str) -> bool {
    let (p, t) = (predicted.trim().to_lowercase(), truth.trim().to_lowercase());
    if task == "rule" {
        return p.split_whitespace().next() == t.split_whitespace().next();
    }
    if task.starts_with("when_") {
        let time = |s: &str| -> Option<f64> {
            let mut words = s.split_whitespace();
            (words.next() == Some("at"))
                .then(|| words.next()?.parse().ok())
                .flatten()
        };
        if let (Some(a), Some(b)) = (time(&p), time(&t)) {
            return (a - b).abs() <= 1.0;
        }
    }
    p == t
}

/// Runs every clip under every setting; blocking.
pub fn run(request: &EvalRequest, progress: &mut dyn FnMut(&str)) -> anyhow::Result<EvalReport> {
    let stages = crate::pipeline::build_model_stages(&request.model, None)?;
    let info = &stages.model.folder().info;
    let (size, grid_tokens) = (info.image_size, info.tokens_per_image());
    let mut dump = match &request.dump {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => None,
    };
    let mut scores: Vec<SettingScore> = request.settings.iter().map(SettingScore::new).collect();
    let mut tallies = vec![Tally::default(); request.settings.len()];
    let mut questions = 0;
    // Per task, every true answer asked: the baselines answer them.
    let mut truths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (clip, json) in request.clips.iter().enumerate() {
        let (truth, video, frames) = read_truth(json, size)?;
        questions += truth.questions.len();
        for q in &truth.questions {
            truths
                .entry(q.task.clone())
                .or_default()
                .push(q.answer.clone());
        }
        let run = ClipRun {
            stages: &stages,
            json,
            truth: &truth,
            frames: &frames,
            clip,
            clips: request.clips.len(),
            grid_tokens,
        };
        for (i, setting) in request.settings.iter().enumerate() {
            progress(&format!("{} · {}", video.display(), setting.name));
            let dump = dump.as_mut().map(|d| d as &mut dyn Write);
            run.setting(setting, &mut scores[i], &mut tallies[i], dump)?;
        }
    }
    for (score, tally) in scores.iter_mut().zip(&tallies) {
        score.finish(tally, request.clips.len(), grid_tokens);
    }
    if let Some(mut out) = dump {
        out.flush()?;
    }
    Ok(EvalReport {
        runtime: stages.model.runtime(),
        clips: request.clips.len(),
        questions,
        settings: scores,
        baselines: baselines(&truths),
    })
}

/// A clip's ground truth (its questions sorted by frame), its video's
/// path and its frames, decoded at the model's input size.
fn read_truth(json: &Path, size: u32) -> anyhow::Result<(Truth, PathBuf, Vec<Frame>)> {
    let mut truth: Truth = serde_json::from_str(
        &std::fs::read_to_string(json)
            .with_context(|| format!("cannot read {}", json.display()))?,
    )
    .with_context(|| format!("{}: not a ground-truth file", json.display()))?;
    // The frames are walked once; questions may come in any order (stable:
    // those about one frame keep theirs).
    truth.questions.sort_by_key(|q| q.frame);
    let video = json.parent().unwrap_or(Path::new(".")).join(&truth.video);
    let mut frames: Vec<Frame> = Vec::new();
    capture::read_clip(&video, truth.fps, size, &[], |f| {
        frames.push(f);
        Ok(())
    })?;
    Ok((truth, video, frames))
}

/// Token counts of one setting, summed over clips.
#[derive(Debug, Clone, Default)]
struct Tally {
    /// Visual tokens kept, and of every analysed frame.
    kept: f64,
    tokens: f64,
    /// Frames encoded.
    encoded: f64,
    /// Per answer: visual tokens shown, prompt tokens, and the visual
    /// tokens of every frame up to the question.
    visual: f64,
    prompt: f64,
    window: f64,
}

/// One clip, read once, run under each setting.
struct ClipRun<'a> {
    stages: &'a ModelStages,
    json: &'a Path,
    truth: &'a Truth,
    frames: &'a [Frame],
    /// Its index in the request, and how many clips there are.
    clip: usize,
    clips: usize,
    grid_tokens: usize,
}

impl ClipRun<'_> {
    /// The clip through the daemon's own stages under `setting`: every
    /// question asked after its frame, scored into `scores`.
    fn setting(
        &self,
        setting: &Setting,
        scores: &mut SettingScore,
        tally: &mut Tally,
        mut dump: Option<&mut dyn Write>,
    ) -> anyhow::Result<()> {
        let stages = self.stages;
        let camera = camera_for(setting)?;
        let mut analysis = CameraAnalysis::new("eval", &camera, stages, None);
        let mut backend = stages.model.backend();
        let mut asked = self.truth.questions.iter().peekable();
        for (n, frame) in self.frames.iter().enumerate() {
            let (encoded, kept) = analysis.observe(frame, stages)?;
            tally.kept += kept.positions.len() as f64;
            tally.tokens += kept.mask.len() as f64;
            tally.encoded += f64::from(u8::from(encoded));
            while let Some(q) = asked.next_if(|q| q.frame == n) {
                let context = analysis.context_for(&q.question);
                let seen = context.seen();
                let answer = stages.responder.ask(backend.as_mut(), &seen, &q.question)?;
                let right = score(&q.task, &answer.text, &q.answer);
                if let Some(out) = dump.as_deref_mut() {
                    let prompt = stages.responder.prompt(&seen, &q.question)?;
                    let line = serde_json::json!({
                        "clip": self.truth.video,
                        "setting": setting.name, "frame": n,
                        "tau": setting.dtd.tau, "tau_pix": setting.dtd.tau_pix,
                        "reference": setting.dtd.reference, "similarity": setting.dtd.similarity,
                        "memory": setting.memory,
                        "question": q.question,
                        "labels": context.items.iter().map(|c| crate::llm::glimpse_label(c.pts, c.now)).collect::<Vec<_>>(),
                        "grids": context.items.iter().map(|c| c.grid).collect::<Vec<_>>(),
                        "cells": context.items.iter().map(|c| &c.cells).collect::<Vec<_>>(),
                        "ids": prompt.ids, "positions": prompt.positions,
                        "task": q.task, "truth": q.answer,
                        "answer": answer.text, "confidence": answer.confidence, "right": right,
                    });
                    writeln!(out, "{line}")?;
                }
                scores.record(
                    q,
                    &answer.text,
                    answer.confidence,
                    right,
                    self.clip,
                    self.clips,
                );
                tally.visual += answer.visual_tokens as f64;
                tally.prompt += answer.prompt_tokens as f64;
                tally.window += ((n + 1) * self.grid_tokens) as f64;
            }
        }
        if let Some(q) = asked.next() {
            anyhow::bail!(
                "{}: a question is asked after frame {} but the clip has {} frames",
                self.json.display(),
                q.frame,
                self.frames.len()
            );
        }
        Ok(())
    }
}

impl SettingScore {
    /// An empty score of `setting`.
    fn new(setting: &Setting) -> SettingScore {
        let default = DtdConfig::default();
        SettingScore {
            setting: setting.name.clone(),
            daemon_default: setting.dtd.tau == default.tau
                && setting.dtd.reference == default.reference,
            ..SettingScore::default()
        }
    }

    /// One answer to `q` (of clip `clip` of `clips`), right or not.
    fn record(
        &mut self,
        q: &TruthQuestion,
        answer: &str,
        confidence: f32,
        right: bool,
        clip: usize,
        clips: usize,
    ) {
        let entry = self.tasks.entry(q.task.clone()).or_default();
        entry.0 += usize::from(right);
        entry.1 += 1;
        let per_clip = self.per_clip.entry(q.task.clone()).or_default();
        per_clip.resize(clips, (0, 0));
        per_clip[clip].0 += usize::from(right);
        per_clip[clip].1 += 1;
        if q.task == "describe" {
            self.describe_events.add(answer, &q.answer);
            let truly = events::is_true(answer, &q.answer);
            self.describe_true.0 += usize::from(truly);
            self.describe_true.1 += 1;
            for key in ["all", "describe"] {
                let c = self.calibration.entry(key.to_owned()).or_default();
                c.add(confidence, truly);
            }
        } else if q.task == "rule" {
            for key in ["all", "rule"] {
                let c = self.calibration.entry(key.to_owned()).or_default();
                c.add(confidence, right);
            }
        }
    }

    /// The shares and means from `tally`, and the intervals over clips.
    fn finish(&mut self, tally: &Tally, clips: usize, grid_tokens: usize) {
        let answers: usize = self.tasks.values().map(|(_, a)| a).sum();
        let answers = answers.max(1) as f64;
        self.kept_share = tally.kept / tally.tokens.max(1.0);
        self.encoded_share = tally.encoded / (tally.tokens / grid_tokens as f64).max(1.0);
        self.visual_per_answer = tally.visual / answers;
        self.prompt_per_answer = tally.prompt / answers;
        self.window_per_answer = tally.window / answers;
        let mut all = vec![(0, 0); clips];
        for (task, per_clip) in &self.per_clip {
            for (a, c) in all.iter_mut().zip(per_clip) {
                a.0 += c.0;
                a.1 += c.1;
            }
            if let Some(ci) = stats::bootstrap_ci(per_clip) {
                self.ci.insert(task.clone(), ci);
            }
        }
        if let Some(ci) = stats::bootstrap_ci(&all) {
            self.ci.insert("all".to_owned(), ci);
        }
    }
}

/// Per task: the majority answer's baseline, and the fixed answer's where
/// the task has one.
fn baselines(truths: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<Baseline>> {
    truths
        .iter()
        .map(|(task, answers)| {
            let answers = || answers.iter().map(String::as_str);
            let mut b: Vec<Baseline> = stats::majority(answers())
                .map(|m| stats::baseline(task, &m, answers()))
                .into_iter()
                .collect();
            if let Some(fixed) = stats::fixed_answer(task) {
                b.push(stats::baseline(task, fixed, answers()));
            }
            (task.clone(), b)
        })
        .collect()
}

fn camera_for(setting: &Setting) -> anyhow::Result<CameraConfig> {
    let mut camera: CameraConfig = toml::from_str("source = { kind = \"synthetic\" }")?;
    camera.dtd = setting.dtd.clone();
    camera.memory.capacities = setting.memory;
    Ok(camera)
}

impl EvalReport {
    /// The table: accuracy per task, tokens, and each setting against the
    /// first (full tokens).
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} clips, {} questions per setting, on {}\n\n",
            self.clips, self.questions, self.runtime
        );
        out += &format!("{:<44} {:>6} {:>8}", "setting", "kept", "encoded");
        for t in TASKS {
            out += &format!(" {:>8}", short(t));
            if t == "describe" {
                out += &format!(" {:>6}", "ev_F1");
            }
        }
        out += &format!(
            " {:>6} {:>13} {:>9} {:>11}\n",
            "all", "95% CI", "vs full", "visual/ans"
        );
        let base = self.settings.first().map(SettingScore::accuracy);
        for s in &self.settings {
            out += &format!(
                "{:<44} {:>5.1}% {:>7.1}%",
                s.setting,
                100.0 * s.kept_share,
                100.0 * s.encoded_share
            );
            for t in TASKS {
                match s.task(t) {
                    Some(a) => out += &format!(" {:>7.1}%", 100.0 * a),
                    None => out += &format!(" {:>8}", "-"),
                }
                if t == "describe" {
                    match s.task(t) {
                        Some(_) => out += &format!(" {:>6.2}", s.describe_events.f1()),
                        None => out += &format!(" {:>6}", "-"),
                    }
                }
            }
            let vs = base.map_or(f64::NAN, |b| s.accuracy() / b.max(1e-9));
            out += &format!(
                " {:>5.1}% {:>13} {:>8.1}% {:>6.0}/{:<5.0}\n",
                100.0 * s.accuracy(),
                ci(s.ci.get("all")),
                100.0 * vs,
                s.visual_per_answer,
                s.window_per_answer
            );
        }
        out += "\nkept: visual tokens kept of all sampled frames' tokens; encoded: frames the gate sent to the encoder;\n\
                vs full: accuracy over the first setting's; visual/ans: visual tokens shown per answer / all tokens of the frames so far;\n\
                ev_F1: describe answers scored by their events (verb, colour, kind), pooled over answers; describe is exact match.\n";
        if let Some(first) = self.settings.first() {
            out += &self.per_task(first);
        }
        if let Some(s) = self.calibrated() {
            for (key, what, _) in CALIBRATED {
                if let Some(c) = s.calibration.get(key).filter(|c| !c.is_empty()) {
                    out += &c.table(&format!("{}: {what}, by confidence", s.setting));
                }
            }
        }
        out
    }

    /// The setting whose calibration the daemon's min_confidence is chosen
    /// from: its own dropping settings when they were run, else the first.
    pub fn calibrated(&self) -> Option<&SettingScore> {
        self.settings
            .iter()
            .find(|s| s.daemon_default)
            .or(self.settings.first())
    }

    /// Per task of `s`: accuracy, its interval over clips, and the
    /// baselines; then the describe events in detail.
    fn per_task(&self, s: &SettingScore) -> String {
        let mut out = format!(
            "\n{}: per task, 95% CI over clips ({} resamples), baselines on the same questions\n",
            s.setting,
            stats::RESAMPLES
        );
        out += &format!(
            "{:<14} {:>6} {:>13}   {:<34} {}\n",
            "task", "model", "95% CI", "majority answer", "fixed answer"
        );
        for t in TASKS {
            let (Some(a), Some(b)) = (s.task(t), self.baselines.get(t)) else {
                continue;
            };
            let show = |b: Option<&Baseline>| {
                b.map_or("-".to_owned(), |b| {
                    format!("{:>5.1}% {}", 100.0 * b.accuracy, b.answer)
                })
            };
            let fixed = stats::fixed_answer(t).and_then(|_| b.last());
            out += &format!(
                "{:<14} {:>5.1}% {:>13}   {:<34} {}\n",
                t,
                100.0 * a,
                ci(s.ci.get(t)),
                show(b.first()),
                show(fixed)
            );
        }
        let e = &s.describe_events;
        if s.task("describe").is_some() {
            out += &format!(
                "describe true by its events (everything said happened): {}/{} ({:.1}%)\n",
                s.describe_true.0,
                s.describe_true.1,
                100.0 * s.describe_true.0 as f64 / s.describe_true.1.max(1) as f64
            );
            out += &format!(
                "describe events: precision {:.2}, recall {:.2}, F1 {:.2} ({} said, {} true, {} matched); \
                 region right {}/{} matched appearances ({:.0}%)\n",
                e.precision(),
                e.recall(),
                e.f1(),
                e.predicted,
                e.truth,
                e.matched,
                e.region_right,
                e.region_asked,
                100.0 * e.region()
            );
        }
        out
    }
}

fn ci(interval: Option<&(f64, f64)>) -> String {
    interval.map_or("-".to_owned(), |(lo, hi)| {
        format!("[{:.1}, {:.1}]", 100.0 * lo, 100.0 * hi)
    })
}

fn short(task: &str) -> &str {
    match task {
        "when_appeared" => "when_app",
        "when_left" => "when_lft",
        "last_appeared" => "last_app",
        "last_left" => "last_lft",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_rules() {
        assert!(score("count", " Two ", "two"));
        assert!(!score("count", "three", "two"));
        assert!(score("rule", "yes , there is", "yes"));
        assert!(!score("rule", "no", "yes"));
        assert!(score("when_appeared", "at 12.5 s", "at 13.0 s"));
        assert!(score("when_left", "at 12.0 s", "at 13.0 s"));
        assert!(!score("when_left", "at 11.5 s", "at 13.0 s"));
        assert!(!score("when_left", "at s", "at 13.0 s"));
        assert!(score(
            "describe",
            "the red square appeared at the top left",
            "the red square appeared at the top left"
        ));
        assert!(!score(
            "describe",
            "the red square appeared",
            "the red square appeared at the top left"
        ));
    }
}
