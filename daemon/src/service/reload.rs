//! A reload on SIGHUP: the config is read again off the runtime; an
//! invalid one is refused and the running one stays; a new model loads in
//! the background while the old one serves, and is switched to when ready
//! (docs/architecture.md §8).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{enabled_cameras, Notifier, Service};
use crate::config::{self as cfg, Config, Environment};
use crate::pipeline::{self, ModelStages, PipelineError};

/// A reload waiting for its model to load in the background.
pub(super) struct PendingReload {
    config: Config,
    load: JoinHandle<Result<Arc<ModelStages>, PipelineError>>,
    started: Instant,
}

impl Service {
    /// SIGHUP: reads the config again; applies it at once, or starts
    /// loading its new model (one reload at a time: a SIGHUP during a load
    /// is acted on after it).
    pub(super) async fn sighup(&mut self) {
        if self.reload.pending.is_some() {
            tracing::info!("SIGHUP received while a model loads; reloading again once it is done");
            self.reload.again = true;
            return;
        }
        self.notifier.reloading();
        tracing::info!(config = %self.config_path.display(), "SIGHUP received; reloading the config");
        let new = match read_config(&self.config_path, &self.config).await {
            Ok(new) => new,
            Err(status) => {
                self.notifier.ready(&status);
                return;
            }
        };
        match new
            .model
            .clone()
            .filter(|_| self.pipeline.model_changed(&new.pipeline()))
        {
            Some(model) => {
                self.reload.pending = Some(start_model_load(
                    new,
                    model,
                    &self.state_dir,
                    &self.notifier,
                ))
            }
            None => self.apply(new, None).await,
        }
    }

    /// The background model load of the pending reload ended: switches
    /// every camera to the new model, or refuses the reload.
    pub(super) async fn model_loaded(&mut self, loaded: Result<Arc<ModelStages>, PipelineError>) {
        let Some(reload) = self.reload.pending.take() else {
            return;
        };
        match loaded {
            Ok(model) => {
                tracing::info!(
                    load_s = format_args!("{:.1}", reload.started.elapsed().as_secs_f64()),
                    "the new model is loaded; switching every camera to it"
                );
                self.apply(reload.config, Some(model)).await;
            }
            Err(e) => {
                let status = format!("reload refused, still running the previous config: {e}");
                tracing::error!("{status}");
                self.notifier.ready(&status);
            }
        }
    }

    /// Applies a valid new config (its model, if changed, is `loaded`),
    /// tells MQTT what changed for it, and says READY with what happened.
    async fn apply(&mut self, new: Config, loaded: Option<Arc<ModelStages>>) {
        self.logging.set_level(&new.service.log_level);
        self.stall_timeout
            .store(new.service.stall_timeout_ms, Ordering::Relaxed);
        let status = match self.pipeline.apply(&new.pipeline(), loaded).await {
            Ok(changes) if changes.is_empty() => "config reloaded; nothing to restart".to_owned(),
            Ok(changes) => {
                let mut status = format!(
                    "config reloaded; cameras started {:?}, restarted {:?}, stopped {:?}",
                    changes.started, changes.restarted, changes.stopped
                );
                if changes.workers_resized {
                    status.push_str("; model workers resized");
                }
                if changes.model_reloaded {
                    status.push_str("; model reloaded");
                }
                status
            }
            Err(e) => {
                tracing::error!("reload partly failed: {e:#}");
                format!("reload partly failed: {e}")
            }
        };
        tracing::info!("{status}");
        if new.http != self.config.http {
            tracing::warn!(
                "[http] changes take effect at the next restart; the endpoint keeps its settings"
            );
        }
        if new.mqtt != self.config.mqtt || enabled_cameras(&new) != enabled_cameras(&self.config) {
            self.mqtt.reconfigure(&new.mqtt, enabled_cameras(&new));
        }
        self.config = new;
        self.stats_tick = stats_tick(&self.config).await;
        self.notifier.ready(&status);
    }
}

/// Reads the config again for a reload, off the runtime (the check opens
/// the model folder: seconds for a large one); an invalid one is refused
/// (the error is logged, and the returned line is the STATUS to show).
async fn read_config(path: &Path, running: &Config) -> Result<Config, String> {
    let owned = path.to_owned();
    let loaded =
        tokio::task::spawn_blocking(move || cfg::load(&owned, &Environment::from_process())).await;
    match loaded {
        Ok(Ok(new)) => {
            if new.service.state_dir != running.service.state_dir {
                tracing::warn!("service.state_dir changes take effect at the next restart");
            }
            Ok(new)
        }
        Ok(Err(e)) => {
            tracing::error!("reload refused, still running the previous config: {e}");
            Err("reload refused (see the log); still running the previous config".to_owned())
        }
        Err(e) => {
            tracing::error!("reload refused: reading the config failed: {e}");
            Err("reload refused (see the log); still running the previous config".to_owned())
        }
    }
}

/// Starts loading `model` (the one `config` names), in the background: the
/// old model serves and the watchdog pings go on until it is ready.
fn start_model_load(
    config: Config,
    model: crate::infer::ModelConfig,
    state_dir: &Path,
    notifier: &Notifier,
) -> PendingReload {
    tracing::info!(model = %model.path.display(), "loading the new model in the background; the previous model serves meanwhile");
    notifier.status("reloading: loading the new model; the previous model serves meanwhile");
    let state_dir = state_dir.to_owned();
    let load = tokio::spawn(async move { pipeline::load_model(&model, Some(&state_dir)).await });
    PendingReload {
        config,
        load,
        started: Instant::now(),
    }
}

/// The outcome of the pending model load; never resolves without one.
pub(super) async fn model_loaded(
    pending: &mut Option<PendingReload>,
) -> Result<Arc<ModelStages>, PipelineError> {
    match pending {
        Some(reload) => match (&mut reload.load).await {
            Ok(loaded) => loaded,
            Err(e) => Err(PipelineError::Model(crate::infer::InferError::Input(
                format!("the model loader stopped: {e}"),
            ))),
        },
        None => std::future::pending().await,
    }
}

/// The statistics timer, at the config's interval; its first tick (at
/// once) is taken.
pub(super) async fn stats_tick(config: &Config) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs(config.service.stats_interval_s));
    tick.tick().await;
    tick
}
