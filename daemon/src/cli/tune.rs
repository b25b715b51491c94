//! `glimpse tune`: token-dropping settings tried on a clip (the work is
//! in [`crate::tune`]; this is the command line around it).

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{self, Environment};

/// `glimpse tune`'s options (the command's doc is its help).
#[derive(clap::Args)]
pub struct TuneArgs {
    /// The clip (any file GStreamer decodes).
    pub clip: PathBuf,
    /// The model folder whose encoder decides (default: the config's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A config file to take the model from.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Token thresholds to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub tau: Vec<f32>,
    /// Pixel-gate thresholds to try, comma-separated.
    #[arg(long = "tau-pix", value_delimiter = ',', default_value = "0.02")]
    pub tau_pix: Vec<f32>,
    /// References to try: last_kept, previous (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "last_kept")]
    pub reference: Vec<String>,
    /// Frames per second to sample.
    #[arg(long, default_value_t = 2.0)]
    pub fps: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where to write the picture.
    #[arg(long, default_value = "tune.png")]
    pub png: PathBuf,
    /// Also write a self-contained HTML report here (the picture and
    /// the table).
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// `glimpse tune`: resolves the model, runs the clip, prints the report.
pub fn tune(
    TuneArgs {
        clip,
        model,
        config,
        tau: taus,
        tau_pix: tau_pixes,
        reference: references,
        fps,
        json,
        png,
        html,
    }: TuneArgs,
) -> anyhow::Result<()> {
    let loaded = config
        .as_deref()
        .map(|p| config::load(p, &Environment::from_process()))
        .transpose()?;
    let model = match (model, loaded.as_ref().and_then(|c| c.model.clone())) {
        (Some(path), from_config) => crate::infer::ModelConfig {
            path,
            ..from_config.unwrap_or(crate::infer::ModelConfig::new(PathBuf::new()))
        },
        (None, Some(m)) => m,
        (None, None) => {
            anyhow::bail!("no model: pass --model PATH, or --config FILE with a [model] table")
        }
    };
    let references = references
        .iter()
        .map(|r| {
            toml::Value::String(r.clone())
                .try_into()
                .with_context(|| format!("--reference {r:?}: use last_kept or previous"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let camera = loaded
        .as_ref()
        .and_then(|c| c.cameras.values().next().cloned());
    let report = crate::tune::run(&crate::tune::TuneRequest {
        clip,
        model,
        fps,
        taus,
        tau_pixes,
        references,
        masks: camera.as_ref().map(|c| c.masks.clone()).unwrap_or_default(),
        trigger: camera.map(|c| c.trigger).unwrap_or_default(),
        png: Some(png.clone()),
        html: html.clone(),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        eprintln!("wrote {}", png.display());
        if let Some(html) = html {
            eprintln!("wrote {}", html.display());
        }
    }
    Ok(())
}
