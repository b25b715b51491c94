//! `glimpse events`: the event history and the dead letters, read from
//! the outbox database in the state directory, and an event's snapshot.
//! A command: it reads what the service wrote and runs nothing.

use crate::config::Config;
use crate::mqtt::{now_ms, read_dead_letters, read_history, DeadLetter, MqttError, OUTBOX_FILE};
use crate::snapshot;

use super::{load_config, EX_SOFTWARE};

/// The command: lists the history since `since` (of one camera, as text
/// or JSON lines), or writes the snapshot `snapshot` to `out`.
pub fn events(
    path: &std::path::Path,
    since: std::time::Duration,
    camera: Option<&str>,
    json: bool,
    snapshot: Option<(String, std::path::PathBuf)>,
) -> std::process::ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let done = match snapshot {
        Some((id, out)) => write_snapshot(&config, &id, &out).map(|_| ()),
        None => print_history(&config, since, camera, json).map_err(|e| e.to_string()),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// Writes the snapshot of an event to `out` (`-`: standard output) and
/// returns its name. `id` is the event's `snapshot` (`<id>.jpg`) or the
/// event's id: events made together share the first one's snapshot, which
/// the history names.
pub fn write_snapshot(config: &Config, id: &str, out: &std::path::Path) -> Result<String, String> {
    let Some(dir) = config.service.state_dir() else {
        return Err("no state directory was resolved".into());
    };
    let name = match snapshot::read(dir, id) {
        Ok(_) => snapshot::file_name(id).map_err(|e| e.to_string())?,
        Err(first) => {
            let stem = id.strip_suffix(".jpg").unwrap_or(id);
            let events = read_history(dir, 0, None).map_err(|e| e.to_string())?;
            match events.iter().find(|e| e.id == stem) {
                Some(event) => event
                    .snapshot
                    .clone()
                    .ok_or_else(|| format!("event {stem} has no snapshot"))?,
                None => return Err(first.to_string()),
            }
        }
    };
    let jpeg = snapshot::read(dir, &name).map_err(|e| {
        format!("{e} (removed to keep service.snapshot_max_count or service.snapshot_max_bytes?)")
    })?;
    let written = if out.as_os_str() == "-" {
        use std::io::Write;
        std::io::stdout().lock().write_all(&jpeg)
    } else {
        std::fs::write(out, &jpeg)
    };
    written.map_err(|e| format!("write {}: {e}", out.display()))?;
    Ok(name)
}

/// `glimpse events`: prints the history of the last `since`, oldest first,
/// as text lines or (with `json`) one JSON object per line, and the
/// messages that could not be delivered (the dead letters): an event that
/// went there is marked with the reason (`not delivered: …`; in JSON, a
/// `dead_letter` object is added to it), any other message (an error
/// answer) gets a line of its own (JSON: `"kind": "dead_letter"`).
pub fn print_history(
    config: &Config,
    since: std::time::Duration,
    camera: Option<&str>,
    json: bool,
) -> Result<(), MqttError> {
    use std::io::Write;
    let Some(dir) = config.service.state_dir() else {
        return Err(MqttError::Closed("no state directory was resolved".into()));
    };
    let since_ms = now_ms().saturating_sub(since.as_millis() as u64);
    let events = read_history(dir, since_ms, camera)?;
    let dead = read_dead_letters(dir, since_ms, camera)?;
    // Dead letters that are events of the history, by event id; the rest
    // (error answers) are listed on their own.
    let mut dead_events = std::collections::HashMap::new();
    let mut others = Vec::new();
    for letter in &dead {
        match event_id(&letter.message.payload) {
            Some(id) if events.iter().any(|e| e.id == id) => {
                dead_events.insert(id, letter);
            }
            _ => others.push(letter),
        }
    }
    let mut lines: Vec<(u64, String)> = Vec::new();
    for event in &events {
        let letter = dead_events.get(&event.id);
        let line = if json {
            let mut value = serde_json::to_value(event).unwrap_or_default();
            if let (Some(letter), Some(object)) = (letter, value.as_object_mut()) {
                object.insert("dead_letter".into(), dead_letter_json(letter, false));
            }
            value.to_string()
        } else {
            let kind = serde_json::to_value(event.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mark = letter
                .map(|l| format!("  [not delivered: {}]", l.reason))
                .unwrap_or_default();
            let zones = if event.zones.is_empty() {
                String::new()
            } else {
                format!("  [zones: {}]", event.zones.join(", "))
            };
            format!(
                "{}  {}  {kind}  {}{zones}{mark}",
                format_time(event.wall_time_ms),
                event.camera,
                event.text
            )
        };
        lines.push((event.wall_time_ms, line));
    }
    for letter in others {
        let line = if json {
            serde_json::json!({
                "camera": letter.message.camera,
                "kind": "dead_letter",
                "wall_time_ms": letter.failed_ms,
                "dead_letter": dead_letter_json(letter, true),
            })
            .to_string()
        } else {
            let payload: String = letter.message.payload.chars().take(200).collect();
            format!(
                "{}  {}  not delivered  {}: {}; payload {payload}",
                format_time(letter.failed_ms),
                letter.message.camera,
                letter.topic,
                letter.reason
            )
        };
        lines.push((letter.failed_ms, line));
    }
    // Stable: events keep their order at equal times.
    lines.sort_by_key(|(time, _)| *time);
    let mut out = std::io::stdout().lock();
    for (_, line) in &lines {
        // A closed pipe (`| head`) ends the listing quietly.
        if writeln!(out, "{line}").is_err() {
            return Ok(());
        }
    }
    if !json {
        if lines.is_empty() {
            eprintln!("no events in the last {}s", since.as_secs());
        } else if !dead.is_empty() {
            eprintln!(
                "{} message(s) could not be delivered (marked \"not delivered\"); they stay in the dead letters of {}",
                dead.len(),
                dir.join(OUTBOX_FILE).display()
            );
        }
    }
    Ok(())
}

/// The event id of an outbox payload that is an event or an answer (error
/// answers have no `kind`).
fn event_id(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get("kind")?;
    value.get("id")?.as_str().map(str::to_owned)
}

fn dead_letter_json(letter: &DeadLetter, with_payload: bool) -> serde_json::Value {
    let mut value = serde_json::json!({
        "topic": letter.topic,
        "reason": letter.reason,
        "channel": letter.message.channel.as_str(),
        "created_ms": letter.created_ms,
        "failed_ms": letter.failed_ms,
    });
    if with_payload {
        value["payload"] = letter.message.payload.clone().into();
    }
    value
}

/// Parses a duration such as `90s`, `15m`, `1h` or `2d`.
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 15m, 1h or 2d"))?;
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ))
        }
    };
    Ok(std::time::Duration::from_secs(n * seconds))
}

/// Formats milliseconds since the Unix epoch as UTC `YYYY-MM-DD hh:mm:ss`.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times() {
        assert_eq!(parse_age("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_age("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_age("2d").unwrap().as_secs(), 172_800);
        assert!(parse_age("1w").is_err() && parse_age("h").is_err());
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_798_370_455_000), "2026-12-27 11:20:55");
    }
}
