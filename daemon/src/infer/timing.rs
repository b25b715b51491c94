//! How long model calls take, by backend: the vision encoder per frame, the
//! prefill per prompt, the decoder per generated token. Recorded by the
//! callers (`vision::encode`, `llm::generate`) on the model workers into
//! process-wide atomics (no lock on the hot path); read by `/metrics`.

use std::sync::LazyLock;
use std::time::Duration;

use crate::histogram::{Histogram, SECONDS};

/// A kind of model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// The vision encoder on one frame.
    Encoder,
    /// Embedding and decoding a whole prompt.
    Prefill,
    /// One decoding step (one generated token).
    DecodeToken,
}

impl Call {
    /// Every kind, in the order of the metrics.
    pub const ALL: [Call; 3] = [Call::Encoder, Call::Prefill, Call::DecodeToken];

    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            Call::Encoder => "encoder",
            Call::Prefill => "prefill",
            Call::DecodeToken => "decode_token",
        }
    }
}

/// The backends' names, as `Backend::kind` gives them.
pub const BACKENDS: [&str; 2] = ["tract", "ort"];

static TIMES: LazyLock<Vec<Histogram>> = LazyLock::new(|| {
    (0..BACKENDS.len() * Call::ALL.len())
        .map(|_| Histogram::new(SECONDS))
        .collect()
});

fn slot(backend: &str, call: Call) -> Option<&'static Histogram> {
    let b = BACKENDS.iter().position(|&n| n == backend)?;
    let c = Call::ALL.iter().position(|&k| k == call)?;
    TIMES.get(b * Call::ALL.len() + c)
}

/// Records that a `call` on `backend` took `took`.
pub fn record(backend: &str, call: Call, took: Duration) {
    if let Some(h) = slot(backend, call) {
        h.observe(took.as_secs_f64());
    }
}

/// The histogram of `call` on `backend` (none for an unknown backend).
pub fn histogram(backend: &str, call: Call) -> Option<&'static Histogram> {
    slot(backend, call)
}
