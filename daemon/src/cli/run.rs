//! `glimpse run`: the daemon ([`crate::service`]) on its runtime, and the
//! exit code systemd acts on.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{start_logging, EX_CONFIG, EX_SOFTWARE};
use crate::pipeline::PipelineError;

/// Runs the service until it is stopped.
pub fn run(path: PathBuf) -> ExitCode {
    let (logging, config) = match start_logging(&path) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // Tokio only does I/O here (signals, timers, MQTT); model work has its
    // own threads, so two runtime threads are plenty.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("glimpse-io")
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(crate::service::run(path, config, logging)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match result {
        Ok(()) if crate::workers::abandoned() => {
            // A model call is still running on an abandoned worker: end
            // now, without the exit handlers that would pull the backend
            // from under it (docs/architecture.md §8). The logs are
            // written synchronously; nothing is lost.
            // SAFETY: _exit only ends the process.
            unsafe { libc::_exit(0) }
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A model that cannot load (its graphs, its tokenizer or chat
            // template) is the config's fault: systemd must not restart
            // into the same failure (the unit's RestartPreventExitStatus=78).
            let model_error = e.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<PipelineError>(),
                    Some(PipelineError::Model(_) | PipelineError::Text(_))
                )
            });
            ExitCode::from(if model_error { EX_CONFIG } else { EX_SOFTWARE })
        }
    }
}
