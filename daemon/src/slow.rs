//! Artificial slowness for the end-to-end tests, built only with the
//! `fault-injection` cargo feature: a model load that takes as long as a
//! TensorRT engine build, and frames that take as long as a large encoder
//! on a small CPU. A leaf (docs/architecture.md §1): the pipeline calls it;
//! the faults that drive the pipeline are in `faults`.

use std::time::Duration;

/// Makes every model load (at start and on reload) take this many more
/// milliseconds, as a TensorRT engine build does.
pub const SLOW_LOAD_ENV: &str = "GLIMPSE_DEBUG_MODEL_LOAD_MS";

/// Makes every frame's analysis take this many more milliseconds, as a
/// large encoder on a small CPU does: the workers fall behind the cameras.
pub const SLOW_ANALYSIS_ENV: &str = "GLIMPSE_DEBUG_ANALYSIS_MS";

fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok().filter(|ms| *ms > 0)
}

/// Sleeps [`SLOW_ANALYSIS_ENV`] milliseconds, if set (on a worker, per
/// frame taken from a camera).
pub fn slow_analysis() {
    static MS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    if let Some(ms) = *MS.get_or_init(|| env_ms(SLOW_ANALYSIS_ENV)) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Sleeps [`SLOW_LOAD_ENV`] milliseconds, if set (on the loading thread).
pub fn slow_model_load() {
    if let Some(ms) = env_ms(SLOW_LOAD_ENV) {
        tracing::warn!("{SLOW_LOAD_ENV} is set: this model load takes {ms} ms more");
        std::thread::sleep(Duration::from_millis(ms));
    }
}
