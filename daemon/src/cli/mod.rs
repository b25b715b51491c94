//! The commands, one module each (docs/architecture.md §1: the top
//! layer). `main.rs` parses the command line and dispatches here; each
//! command prints its own output and errors and returns the exit code:
//! 0 success, 78 bad config (EX_CONFIG; for `check` and `run` that
//! includes a missing file and a model folder that does not load), 65 bad
//! input data (EX_DATAERR: `model inspect`, `tune`, `eval`, an answer
//! that is an error), 70 internal error (EX_SOFTWARE).

pub mod ask;
pub mod check;
pub mod doctor;
pub mod eval;
pub mod events;
pub mod model;
pub mod run;
pub mod tune;
pub mod zones;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config, Environment};
use crate::service::logging::Logging;

/// A bad config (sysexits' EX_CONFIG; the unit's RestartPreventExitStatus).
pub const EX_CONFIG: u8 = 78;
/// An internal error (EX_SOFTWARE).
pub const EX_SOFTWARE: u8 = 70;
/// Bad input data (EX_DATAERR).
pub const EX_DATAERR: u8 = 65;

/// Success, or the error (with its causes) printed and `code`.
pub fn exit_code(result: anyhow::Result<()>, code: u8) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Loads the config or prints why not; the error is the exit code (78).
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path, &Environment::from_process()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// The logger, then the config, whose `service.log_level` it takes: for
/// the commands that log as the daemon does.
pub fn start_logging(path: &Path) -> Result<(Logging, Config), ExitCode> {
    let logging = crate::service::logging::init();
    let config = load_config(path)?;
    logging.set_level(&config.service.log_level);
    Ok((logging, config))
}
