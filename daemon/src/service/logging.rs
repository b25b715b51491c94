//! Logging: readable lines on a terminal, structured fields in journald.
//!
//! Under systemd (`JOURNAL_STREAM` set) events go to journald with their
//! fields (`CAMERA=front`, ...); elsewhere they are printed to stderr. The
//! level comes from `service.log_level` and can change on reload, unless
//! `RUST_LOG` is set, which always wins.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// The installed logger; lets a reload change the level.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

/// Installs the global logger at `info` (or `RUST_LOG`).
pub fn init() -> Logging {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let initial = rust_log
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(with_quiet_broker("info")));
    let (filter, handle) = reload::Layer::new(initial);

    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier("glimpse".to_owned()));
    let terminal = journald.is_none().then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    });
    // Only fails if a logger is already installed (tests): keep that one.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(terminal)
        .try_init();
    Logging {
        filter: handle,
        from_env: rust_log.is_some(),
    }
}

impl Logging {
    /// Applies `service.log_level`, unless `RUST_LOG` decides.
    pub fn set_level(&self, level: &str) {
        if self.from_env {
            return;
        }
        match EnvFilter::try_new(with_quiet_broker(level)) {
            Ok(filter) => {
                if let Err(e) = self.filter.reload(filter) {
                    tracing::warn!("cannot change the log level: {e}");
                }
            }
            // `validate` already refused such a level; keep the current one.
            Err(e) => tracing::warn!("ignoring log level {level:?}: {e}"),
        }
    }
}

/// The embedded broker (rumqttd) logs every connection at INFO and normal
/// disconnects at ERROR; its failures that matter (a taken port) glimpse
/// detects itself. It stays silent unless the filter names it, e.g.
/// `log_level = "info,rumqttd=info"`. Likewise the `ort` crate logs each
/// provider it registers per session at INFO; glimpse logs the outcome
/// once, so `ort` shows warnings only unless named.
fn with_quiet_broker(level: &str) -> String {
    let mut filter = level.to_owned();
    if !level.contains("rumqttd") {
        filter.push_str(",rumqttd=off");
    }
    if !level.split(',').any(|d| d.starts_with("ort")) {
        filter.push_str(",ort=warn");
    }
    filter
}
