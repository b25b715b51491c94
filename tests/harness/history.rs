//! What the daemon stored, read as an operator reads it (`glimpse events`)
//! or straight from its SQLite outbox.

use std::collections::BTreeSet;
use std::path::Path;

use super::{glimpse, output_ok};

/// `glimpse events ARGS --config CONFIG`, which must succeed; its stdout.
pub fn events(config: &Path, args: &[&str]) -> String {
    let out = output_ok(
        glimpse()
            .arg("events")
            .args(args)
            .arg("--config")
            .arg(config),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The last hour of the daemon's history (`glimpse events --json`), one
/// value per event, dead letters included.
pub fn history(config: &Path) -> Vec<serde_json::Value> {
    events(config, &["--since", "1h", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The id of every event in the daemon's history.
pub fn history_ids(config: &Path) -> BTreeSet<String> {
    history(config)
        .iter()
        // Dead letters that are not events (error answers) have no id.
        .filter(|event| event["kind"] != "dead_letter")
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Rows in `table` of the outbox database in the daemon's `state` folder.
pub fn outbox_rows(state: &Path, table: &str) -> i64 {
    let db = rusqlite::Connection::open(state.join(glimpse::mqtt::OUTBOX_FILE)).unwrap();
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}
