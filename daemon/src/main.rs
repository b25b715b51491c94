//! The `glimpse` binary: parses the command line and hands over to the
//! library. Exit codes: 0 success, 78 bad config (EX_CONFIG; for `check`
//! and `run` that includes a missing file and a model folder that does not
//! load), 65 bad input data (EX_DATAERR: `model inspect`, `tune`, `eval`),
//! 70 internal error (EX_SOFTWARE).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use glimpse::config::{self, Environment};
use glimpse::service;

const EX_CONFIG: u8 = 78;
const EX_SOFTWARE: u8 = 70;
const EX_DATAERR: u8 = 65;

/// Edge video-analytics daemon: watches cameras, feeds a compact video LLM
/// only what changed, and publishes events and answers over MQTT.
#[derive(Parser)]
#[command(name = "glimpse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a config file and print it with every default filled in.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Only validate; print nothing unless the config is broken.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Try token-dropping settings on a clip: retention, encoder share,
    /// trigger times, and a PNG of the retention curves over sampled frames.
    Tune(TuneArgs),
    /// Print the event history (events and answers published over MQTT).
    Events {
        #[command(flatten)]
        config: ConfigArg,
        /// How far back: 30s, 15m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = glimpse::cli::events::parse_age)]
        since: std::time::Duration,
        /// Only this camera.
        #[arg(long)]
        camera: Option<String>,
        /// One JSON event per line instead of text.
        #[arg(long)]
        json: bool,
        /// Write this event's snapshot (an event id, or the event's
        /// `snapshot` name) to `--out` instead of listing events.
        #[arg(long, requires = "out")]
        snapshot: Option<String>,
        /// Where `--snapshot` writes the JPEG (`-`: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ask a running glimpse a question about a camera, over MQTT, and
    /// print the answer.
    Ask {
        #[command(flatten)]
        config: ConfigArg,
        /// The camera.
        #[arg(long)]
        camera: String,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
        /// The question.
        question: String,
    },
    /// The accuracy benchmark: run the shapes eval clips through the
    /// pipeline under several settings and score the answers per task; or,
    /// with --events, score a daemon run's events against its clip.
    Eval(EvalArgs),
    /// Look at model folders.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Check a model folder and print its graphs, token grid and sizes.
    Inspect {
        /// The model folder (onnx-community layout).
        path: PathBuf,
        /// Graph precision suffix, e.g. _fp16 ("" for fp32).
        #[arg(long, default_value = "")]
        variant: String,
    },
    /// Load the config's model as `run` would and run it once: builds and
    /// caches the TensorRT engines ahead of time (models/build-engines.sh),
    /// and prints the runtime and its timings.
    Warmup {
        #[command(flatten)]
        config: ConfigArg,
    },
}

// `glimpse tune`'s options (the variant's doc is its help).
#[derive(clap::Args)]
struct TuneArgs {
    /// The clip (any file GStreamer decodes).
    clip: PathBuf,
    /// The model folder whose encoder decides (default: the config's).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A config file to take the model from.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Token thresholds to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    tau: Vec<f32>,
    /// Pixel-gate thresholds to try, comma-separated.
    #[arg(long = "tau-pix", value_delimiter = ',', default_value = "0.02")]
    tau_pix: Vec<f32>,
    /// References to try: last_kept, previous (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "last_kept")]
    reference: Vec<String>,
    /// Frames per second to sample.
    #[arg(long, default_value_t = 2.0)]
    fps: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Where to write the picture.
    #[arg(long, default_value = "tune.png")]
    png: PathBuf,
    /// Also write a self-contained HTML report here (the picture and
    /// the table).
    #[arg(long)]
    html: Option<PathBuf>,
}

// `glimpse eval`'s options (the variant's doc is its help).
#[derive(clap::Args)]
struct EvalArgs {
    /// Ground-truth JSON files, or folders of them. The dev set by
    /// default (for choosing settings and checkpoints); the test set,
    /// models/shapes/clips/eval/test, is for reporting only.
    #[arg(default_value = "models/shapes/clips/eval/dev")]
    clips: Vec<PathBuf>,
    /// Score these events (`glimpse events --json` output, from a run
    /// that started with a fresh state directory) against --truth
    /// instead: is every description and rule transition true?
    #[arg(long)]
    events: Option<PathBuf>,
    /// The clip the scored run looped (with --events).
    #[arg(long, default_value = "models/shapes/clips/demo.json")]
    truth: PathBuf,
    /// The model folder.
    #[arg(long, default_value = "models/shapes/model")]
    model: PathBuf,
    /// What runs the graphs: auto, tract, tract-cuda, ort (as
    /// `model.backend`).
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Token thresholds to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.3,0.5,0.7")]
    tau: Vec<f32>,
    /// The pixel gate's threshold for the dropping settings.
    #[arg(long = "tau-pix", default_value_t = 0.02)]
    tau_pix: f32,
    /// References to try: last_kept, previous (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "last_kept,previous")]
    reference: Vec<String>,
    /// Memory capacities, e.g. 4,8,24; repeat to compare sizes (the
    /// first is used for the τ settings, the others at the defaults).
    #[arg(long, default_values = ["4,8,24", "2,4,8", "2,2,4"])]
    memory: Vec<String>,
    /// Leave out the full-token baseline.
    #[arg(long)]
    no_full: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw the reliability diagram (accuracy per confidence bin,
    /// at the daemon's default dropping) into this PNG file.
    #[arg(long)]
    reliability: Option<PathBuf>,
    /// Write every prompt's layout, the model's answer and its score
    /// here (JSON lines).
    #[arg(long)]
    dump: Option<PathBuf>,
}

/// The config file, shared by every subcommand that reads one.
#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(
        long = "config",
        short = 'c',
        env = "GLIMPSE_CONFIG",
        default_value = "/etc/glimpse/glimpse.toml"
    )]
    path: PathBuf,
}

/// Success, or the error (with its causes) printed and `code`.
fn exit_code(result: anyhow::Result<()>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Loads the config or prints why not; the error is the exit code (78).
fn load_config(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load(path, &Environment::from_process()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// The logger, then the config, whose `service.log_level` it takes: for
/// the subcommands that log as the daemon does.
fn start_logging(
    path: &std::path::Path,
) -> Result<(service::logging::Logging, config::Config), ExitCode> {
    let logging = service::logging::init();
    let config = load_config(path)?;
    logging.set_level(&config.service.log_level);
    Ok((logging, config))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check {
            config: ConfigArg { path },
            quiet,
        } => match config::load(&path, &Environment::from_process()) {
            Ok(config) => {
                if !quiet {
                    print!("{}", config.to_toml());
                    for warning in config.mqtt.warnings() {
                        eprintln!("warning: {warning}");
                    }
                    eprintln!("{}: OK", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EX_CONFIG)
            }
        },
        Command::Events {
            config: ConfigArg { path },
            since,
            camera,
            json,
            snapshot,
            out,
        } => {
            let config = match load_config(&path) {
                Ok(config) => config,
                Err(code) => return code,
            };
            if let (Some(id), Some(out)) = (snapshot, out) {
                return match glimpse::cli::events::write_snapshot(&config, &id, &out) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(EX_SOFTWARE)
                    }
                };
            }
            match glimpse::cli::events::print_history(&config, since, camera.as_deref(), json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EX_SOFTWARE)
                }
            }
        }
        Command::Ask {
            config: ConfigArg { path },
            camera,
            timeout_s,
            json,
            question,
        } => {
            let config = match load_config(&path) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let asked = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(glimpse::mqtt::ask(
                        &config.mqtt,
                        &camera,
                        &question,
                        std::time::Duration::from_secs(timeout_s),
                    ))
                });
            match asked {
                Ok(answer) if json => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Ok(answer) => match (answer["text"].as_str(), answer["error"].as_str()) {
                    (Some(text), _) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    (_, Some(error)) => {
                        eprintln!("error: glimpse could not answer: {error}");
                        ExitCode::from(EX_DATAERR)
                    }
                    _ => {
                        println!("{answer}");
                        ExitCode::SUCCESS
                    }
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EX_SOFTWARE)
                }
            }
        }
        Command::Model {
            command: ModelCommand::Inspect { path, variant },
        } => match glimpse::infer::ModelFolder::open(&path, &variant) {
            Ok(folder) => {
                print!("{folder}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EX_DATAERR)
            }
        },
        Command::Model {
            command:
                ModelCommand::Warmup {
                    config: ConfigArg { path },
                },
        } => {
            let (_logging, config) = match start_logging(&path) {
                Ok(started) => started,
                Err(code) => return code,
            };
            exit_code(warmup(&config), EX_CONFIG)
        }
        Command::Tune(args) => exit_code(tune(args), EX_DATAERR),
        Command::Eval(EvalArgs {
            events: Some(events),
            truth,
            json,
            ..
        }) => exit_code(score_run(&events, &truth, json), EX_DATAERR),
        Command::Eval(args) => exit_code(eval(args), EX_DATAERR),
        Command::Run {
            config: ConfigArg { path },
        } => {
            let (logging, config) = match start_logging(&path) {
                Ok(started) => started,
                Err(code) => return code,
            };
            // Tokio only does I/O here (signals, timers, MQTT); model work
            // has its own threads, so two runtime threads are plenty.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("glimpse-io")
                .enable_all()
                .build();
            let result = match runtime {
                Ok(rt) => rt.block_on(service::run(path, config, logging)),
                Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
            };
            match result {
                Ok(()) if glimpse::workers::abandoned() => {
                    // A model call is still running on an abandoned worker:
                    // end now, without the exit handlers that would pull
                    // the backend from under it (docs/architecture.md §8).
                    // The logs are written synchronously; nothing is lost.
                    // SAFETY: _exit only ends the process.
                    unsafe { libc::_exit(0) }
                }
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    // A model that cannot load (its graphs, its tokenizer or
                    // chat template) is the config's fault: systemd must not
                    // restart into the same failure (the unit's
                    // RestartPreventExitStatus=78).
                    use glimpse::pipeline::PipelineError;
                    let model_error = e.chain().any(|cause| {
                        matches!(
                            cause.downcast_ref::<PipelineError>(),
                            Some(PipelineError::Model(_) | PipelineError::Text(_))
                        )
                    });
                    if model_error {
                        ExitCode::from(EX_CONFIG)
                    } else {
                        ExitCode::from(EX_SOFTWARE)
                    }
                }
            }
        }
    }
}

/// `glimpse tune`: resolves the model, runs the clip, prints the report.
fn tune(
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
    use anyhow::Context;
    let loaded = config
        .as_deref()
        .map(|p| config::load(p, &Environment::from_process()))
        .transpose()?;
    let model = match (model, loaded.as_ref().and_then(|c| c.model.clone())) {
        (Some(path), from_config) => glimpse::infer::ModelConfig {
            path,
            ..from_config.unwrap_or(glimpse::infer::ModelConfig::new(PathBuf::new()))
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
    let report = glimpse::tune::run(&glimpse::tune::TuneRequest {
        clip,
        model,
        fps,
        taus,
        tau_pixes,
        references,
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

/// `glimpse eval`: builds the settings, runs the clips, prints the report.
fn eval(
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
    use anyhow::Context;
    use glimpse::eval::Setting;
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
    let defaults = glimpse::dtd::DtdConfig::default();
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
    let mut model = glimpse::infer::ModelConfig::new(model);
    model.backend = toml::Value::String(backend.clone())
        .try_into()
        .with_context(|| format!("--backend {backend:?}: use auto, tract, tract-cuda or ort"))?;
    let mut problems = glimpse::config::Problems::default();
    model.validate("model", &mut problems);
    anyhow::ensure!(problems.is_empty(), "{problems}");
    let report = glimpse::eval::run(
        &glimpse::eval::EvalRequest {
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
        let panels: Vec<_> = glimpse::eval::CALIBRATED
            .iter()
            .filter_map(|(key, _, label)| Some((*label, s.calibration.get(*key)?)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        let picture = glimpse::eval::reliability::draw(
            &format!("glimpse eval: does confidence say an answer is true? ({model_name})"),
            &format!("{}, {clip_count} clips; bars: share true per confidence bin (count above), dot: the bin's mean confidence", s.setting),
            &panels,
        )?;
        glimpse::chart::write(&path, &picture.png()?)?;
        eprintln!("eval: reliability diagram in {}", path.display());
    }
    Ok(())
}

/// `glimpse eval --events`: a run's events judged against its clip.
fn score_run(events: &Path, truth: &Path, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    use glimpse::eval::run;
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("cannot read {}", events.display()))?;
    let (events, skipped) = run::read_events(&text);
    let clip: glimpse::eval::Truth = serde_json::from_str(
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

/// `glimpse model warmup`: one frame and one short answer, timed.
fn warmup(config: &config::Config) -> anyhow::Result<()> {
    use glimpse::llm::{self, Prompt, Sampling};
    use std::time::Instant;
    let Some(model_config) = &config.model else {
        anyhow::bail!("the config has no [model] table");
    };
    let started = Instant::now();
    let model = glimpse::infer::load_in(model_config, config.service.state_dir())?;
    println!("runtime        {}", model.runtime());
    println!("load           {:.1} s", started.elapsed().as_secs_f64());
    let mut backend = model.backend();
    let info = backend.info().clone();
    let side = info.image_size as usize;
    let pixels = vec![0.0f32; 3 * side * side];
    for pass in ["first", "second"] {
        let encoding = Instant::now();
        let visual = backend.encode_image(&pixels)?;
        let encoded = encoding.elapsed();
        let mut ids = vec![1i64; 4];
        ids.extend(std::iter::repeat_n(
            info.image_token_id,
            info.tokens_per_image(),
        ));
        ids.extend([1i64; 4]);
        let prompt = Prompt {
            positions: (0..ids.len() as i64).collect(),
            ids,
            visual,
        };
        let sampling = Sampling {
            max_new_tokens: 8,
            ..Sampling::default()
        };
        let g = llm::generate(
            backend.as_mut(),
            &prompt,
            &sampling,
            &[],
            false,
            &mut |_| true,
        )?;
        println!(
            "{pass:<6} run     encoder {:.0} ms, prefill {} tokens {:.0} ms, {} tokens decoded in {:.0} ms",
            encoded.as_secs_f64() * 1e3,
            g.prompt_tokens,
            g.prefill.as_secs_f64() * 1e3,
            g.tokens.len(),
            g.decode.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
