//! The `glimpse` binary: parses the command line and dispatches to the
//! commands in `glimpse::cli`, which print their own output and errors
//! and return the exit code (listed in `cli`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use glimpse::cli::{self, eval::EvalArgs, tune::TuneArgs};

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
    /// Check everything a deployment of the config needs (model, ONNX
    /// Runtime and its providers, GPU device nodes, GStreamer elements,
    /// V4L2 devices, state directory, broker, HTTP port): one line each,
    /// with the fix; exits 69 when one fails.
    Doctor {
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
        #[arg(long, default_value = "1h", value_parser = cli::events::parse_age)]
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
    /// Draw a frame of a camera with the model's patch grid, its masks and
    /// zones, and coordinates in fractions of the frame: to write polygons.
    Zones {
        #[command(flatten)]
        config: ConfigArg,
        /// The camera.
        #[arg(long)]
        camera: String,
        /// Where to write the picture.
        #[arg(long, default_value = "zones.png")]
        png: PathBuf,
    },
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

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => cli::run::run(config.path),
        Command::Check { config, quiet } => cli::check::check(&config.path, quiet),
        Command::Doctor { config } => cli::doctor::doctor(&config.path),
        Command::Tune(args) => cli::exit_code(cli::tune::tune(args), cli::EX_DATAERR),
        Command::Events {
            config,
            since,
            camera,
            json,
            snapshot,
            out,
        } => cli::events::events(
            &config.path,
            since,
            camera.as_deref(),
            json,
            snapshot.zip(out),
        ),
        Command::Ask {
            config,
            camera,
            timeout_s,
            json,
            question,
        } => cli::ask::ask(
            &config.path,
            &camera,
            &question,
            Duration::from_secs(timeout_s),
            json,
        ),
        Command::Eval(EvalArgs {
            events: Some(events),
            truth,
            json,
            ..
        }) => cli::exit_code(cli::eval::score_run(&events, &truth, json), cli::EX_DATAERR),
        Command::Eval(args) => cli::exit_code(cli::eval::eval(args), cli::EX_DATAERR),
        Command::Zones {
            config,
            camera,
            png,
        } => cli::zones::zones(&config.path, &camera, &png),
        Command::Model {
            command: ModelCommand::Inspect { path, variant },
        } => cli::model::inspect(&path, &variant),
        Command::Model {
            command: ModelCommand::Warmup { config },
        } => cli::model::warmup_command(&config.path),
    }
}
