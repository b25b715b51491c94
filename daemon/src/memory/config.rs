//! `[cameras.NAME.memory]`: how much of the past a camera keeps.

use serde::{Deserialize, Serialize};

use crate::settings::Problems;

/// `[cameras.NAME.memory]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Frames kept per level: full grid, 2×2-pooled, 4×4-pooled. Each at
    /// least 2. Default: [4, 8, 24].
    #[serde(default = "default_capacities")]
    pub capacities: [usize; 3],
    /// Seconds between snapshots to the state directory (one is also
    /// written at shutdown); 0 writes only at shutdown. Default: 300.
    #[serde(default = "default_snapshot_interval_s")]
    pub snapshot_interval_s: u64,
}

/// Longest snapshot interval: a week (longer ones are as good as 0 and
/// would overflow timers).
const MAX_SNAPSHOT_INTERVAL_S: u64 = 7 * 86_400;

fn default_capacities() -> [usize; 3] {
    [4, 8, 24]
}
fn default_snapshot_interval_s() -> u64 {
    300
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            capacities: default_capacities(),
            snapshot_interval_s: default_snapshot_interval_s(),
        }
    }
}

impl MemoryConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        for (level, &c) in self.capacities.iter().enumerate() {
            if !(2..=1024).contains(&c) {
                problems.push(
                    format!("{key}.capacities[{level}]"),
                    format!("must be between 2 and 1024, got {c}"),
                );
            }
        }
        if self.snapshot_interval_s > MAX_SNAPSHOT_INTERVAL_S {
            problems.push(
                format!("{key}.snapshot_interval_s"),
                format!(
                    "must be between 0 and {MAX_SNAPSHOT_INTERVAL_S} (a week), got {}",
                    self.snapshot_interval_s
                ),
            );
        }
    }
}
