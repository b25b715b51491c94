//! `glimpse eval`: the accuracy benchmark over the shapes clips, and
//! `--events`, a daemon run's events judged against its clip (the work is
//! in [`crate::eval`]; this is the command line around it).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `glimpse eval`'s options (the command's doc is its help).
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Ground-truth JSON files, or folders of them. The dev set by
    /// default (for choosing settings and checkpoints); the test set,
    /// models/shapes/clips/eval/test, is for reporting only.
    #[arg(default_value = "models/shapes/clips/eval/dev")]
    pub clips: Vec<PathBuf>,
    /// Score these events (`glimpse events --json` output, from a run
    /// that started with a fresh state directory) against --truth
    /// instead: is every description and rule transition true?
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// The clip the scored run looped (with --events).
    #[arg(long, default_value = "models/shapes/clips/demo.json")]
    pub truth: PathBuf,
    /// The model folder.
    #[arg(long, default_value = "models/shapes/model")]
    pub model: PathBuf,
    /// What runs the graphs: auto, tract, tract-cuda, ort (as
    /// `model.backend`).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Token thresholds to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.3,0.5,0.7")]
    pub tau: Vec<f32>,
    /// The pixel gate's threshold for the dropping settings.
    #[arg(long = "tau-pix", default_value_t = 0.02)]
    pub tau_pix: f32,
    /// References to try: last_kept, previous (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "last_kept,previous")]
    pub reference: Vec<String>,
    /// Memory capacities, e.g. 4,8,24; repeat to compare sizes (the
    /// first is used for the τ settings, the others at the defaults).
    #[arg(long, default_values = ["4,8,24", "2,4,8", "2,2,4"])]
    pub memory: Vec<String>,
    /// Leave out the full-token baseline.
    #[arg(long)]
    pub no_full: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the reliability diagram (accuracy per confidence bin,
    /// at the daemon's default dropping) into this PNG file.
    #[arg(long)]
    pub reliability: Option<PathBuf>,
    /// Write every prompt's layout, the model's answer and its score
    /// here (JSON lines).
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

/// `glimpse eval`: builds the settings, runs the clips, prints the report.
pub fn eval(
    EvalArgs {
        clips,
        events: _,
        truth: _,
        model,
        backend,
        tau: taus,
        tau_pix,
        reference: references,
        memory: memories,
        no_full,
        json,
        reliability,
        dump,
    }: EvalArgs,
) -> anyhow::Result<()> {
    use crate::eval::Setting;
    let memories = memories
        .iter()
        .map(|m| {
            let sizes: Vec<usize> = m
                .split(',')
                .map(|v| v.trim().parse())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--memory {m:?}: three numbers, e.g. 4,8,24"))?;
            <[usize; 3]>::try_from(sizes)
                .ok()
                .filter(|s| s.iter().all(|&c| c >= 2))
                .with_context(|| format!("--memory {m:?}: three capacities of at least 2"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = *memories.first().context("--memory: give at least one")?;
    let defaults = crate::dtd::DtdConfig::default();
    let mut settings = Vec::new();
    if !no_full {
        settings.push(Setting::full(first));
    }
    for &tau in &taus {
        for r in &references {
            let reference = toml::Value::String(r.clone())
                .try_into()
                .with_context(|| format!("--reference {r:?}: use last_kept or previous"))?;
            settings.push(Setting::dropping(tau, tau_pix, reference, first));
        }
    }
    for &m in &memories[1..] {
        settings.push(Setting::dropping(
            defaults.tau,
            tau_pix,
            defaults.reference,
            m,
        ));
    }
    let mut files = Vec::new();
    for path in clips {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            found.sort();
            anyhow::ensure!(
                !found.is_empty(),
                "{}: no ground-truth .json files",
                path.display()
            );
            files.extend(found);
        } else {
            files.push(path);
        }
    }
    let clip_count = files.len();
    let model_name = model.display().to_string();
    let mut model = crate::infer::ModelConfig::new(model);
    model.backend = toml::Value::String(backend.clone())
        .try_into()
        .with_context(|| format!("--backend {backend:?}: use auto, tract, tract-cuda or ort"))?;
    let mut problems = crate::config::Problems::default();
    model.validate("model", &mut problems);
    anyhow::ensure!(problems.is_empty(), "{problems}");
    let report = crate::eval::run(
        &crate::eval::EvalRequest {
            clips: files,
            model,
            settings,
            dump,
        },
        &mut |step| eprintln!("eval: {step}"),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = reliability {
        let s = report
            .calibrated()
            .context("--reliability: no setting was run")?;
        let panels: Vec<_> = crate::eval::CALIBRATED
            .iter()
            .filter_map(|(key, _, label)| Some((*label, s.calibration.get(*key)?)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        let picture = crate::eval::reliability::draw(
            &format!("glimpse eval: does confidence say an answer is true? ({model_name})"),
            &format!("{}, {clip_count} clips; bars: share true per confidence bin (count above), dot: the bin's mean confidence", s.setting),
            &panels,
        )?;
        crate::chart::write(&path, &picture.png()?)?;
        eprintln!("eval: reliability diagram in {}", path.display());
    }
    Ok(())
}

/// `glimpse eval --events`: a run's events judged against its clip.
pub fn score_run(events: &Path, truth: &Path, json: bool) -> anyhow::Result<()> {
    use crate::eval::run;
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("cannot read {}", events.display()))?;
    let (events, skipped) = run::read_events(&text);
    let clip: crate::eval::Truth = serde_json::from_str(
        &std::fs::read_to_string(truth)
            .with_context(|| format!("cannot read {}", truth.display()))?,
    )
    .with_context(|| format!("{}: not a clip's ground truth", truth.display()))?;
    anyhow::ensure!(
        !clip.events.is_empty() && clip.events.len() == clip.scenes.len(),
        "{}: no frames, or events and scenes of different lengths",
        truth.display()
    );
    let score = run::score(&clip, &events);
    if json {
        let report = serde_json::json!({
            "truth": truth,
            "skipped_lines": skipped,
            "summary": run::summary(&score),
            "judged": score.judged,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", score.table());
        if skipped > 0 {
            println!("{skipped} lines were not events (dead letters), skipped");
        }
    }
    Ok(())
}
