//! The durable outbox and the event history, in one SQLite file in the
//! state directory (`mqtt.sqlite`).
//!
//! Every event and answer is written here before it is published and
//! deleted only once the broker acknowledged it (PUBACK), so a broker
//! outage or a restart loses nothing. The outbox is bounded: past
//! `mqtt.outbox_capacity` the oldest message is dropped, counted and
//! logged. Events are also kept in a separate, bounded history table that
//! `glimpse events` reads. Watch rules set over MQTT live here too, so that
//! they survive a restart.
//!
//! A message that retrying cannot deliver (a topic rumqttc or the broker
//! refuses, a payload over the packet limit, an MQTT 5 PUBACK with a
//! reason code of 0x80 or more) moves to the `dead_letters` table, with the
//! reason and the time, so that it never blocks the messages behind it and
//! is never deleted as if it had been delivered; `glimpse events` shows
//! it. That table is bounded like the outbox (`mqtt.outbox_capacity`).
//!
//! Blocking: every method does file I/O. The driver calls them through
//! `spawn_blocking`; the CLI calls them directly.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::MqttError;
use crate::event::Event;

/// File name of the database inside the state directory.
pub const FILE_NAME: &str = "mqtt.sqlite";

/// Which topic of a camera a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `<prefix>/<camera>/event`.
    Event,
    /// `<prefix>/<camera>/answer` (or the question's MQTT 5 response topic).
    Answer,
    /// `<prefix>/<camera>/rules/error` (or the MQTT 5 response topic of the
    /// refused rules change).
    RulesError,
    /// `<prefix>/<camera>/analysis/error`: a refused pause or resume.
    AnalysisError,
}

impl Channel {
    /// The last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Event => "event",
            Channel::Answer => "answer",
            Channel::RulesError => "rules/error",
            Channel::AnalysisError => "analysis/error",
        }
    }

    fn parse(text: &str) -> Channel {
        match text {
            "answer" => Channel::Answer,
            "rules/error" => Channel::RulesError,
            "analysis/error" => Channel::AnalysisError,
            _ => Channel::Event,
        }
    }
}

/// A message waiting for the broker's acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Row id: increases with every message written, never reused.
    pub id: i64,
    /// The camera it is about (a topic level).
    pub camera: String,
    /// Which topic.
    pub channel: Channel,
    /// MQTT 5 response topic that overrides the answer topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data to send back with it.
    pub correlation: Option<Vec<u8>>,
    /// The JSON payload.
    pub payload: String,
}

/// The outbox and history database.
pub struct Outbox {
    db: Connection,
    path: PathBuf,
    capacity: u64,
    history_capacity: u64,
    /// Rows in each table, kept here so that bounding costs no COUNT(*).
    pending: u64,
    history: u64,
    dead: u64,
    /// Rows the broker acknowledged whose DELETE failed (a full disk):
    /// never handed out again, deleted when the database takes writes.
    acknowledged: std::collections::BTreeSet<i64>,
}

/// A message that could not be delivered, from the `dead_letters` table.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message as it was in the outbox (same id).
    pub message: Pending,
    /// The topic it was, or would have been, published on.
    pub topic: String,
    /// Why it cannot be delivered.
    pub reason: String,
    /// When it was written to the outbox, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it was given up, in ms since the Unix epoch.
    pub failed_ms: u64,
}

fn sql_error(path: &Path, e: rusqlite::Error) -> MqttError {
    MqttError::Outbox {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

impl Outbox {
    /// Opens (creating if needed) the database in `state_dir`.
    pub fn open(
        state_dir: &Path,
        capacity: u64,
        history_capacity: u64,
    ) -> Result<Outbox, MqttError> {
        let path = state_dir.join(FILE_NAME);
        let err = |e| sql_error(&path, e);
        let db = Connection::open(&path).map_err(err)?;
        // WAL + NORMAL: a commit survives the process being killed (the
        // case we promise); only a power cut may lose the last commits.
        db.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        db.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(err)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                camera TEXT NOT NULL,
                channel TEXT NOT NULL,
                response_topic TEXT,
                correlation BLOB,
                payload TEXT NOT NULL,
                created_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS history (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL,
                camera TEXT NOT NULL,
                kind TEXT NOT NULL,
                wall_time_ms INTEGER NOT NULL,
                json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS history_time ON history (wall_time_ms);
             CREATE TABLE IF NOT EXISTS rules (
                camera TEXT NOT NULL,
                position INTEGER NOT NULL,
                rule TEXT NOT NULL,
                PRIMARY KEY (camera, position));
             CREATE TABLE IF NOT EXISTS paused (camera TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS dead_letters (
                id INTEGER PRIMARY KEY,
                camera TEXT NOT NULL,
                channel TEXT NOT NULL,
                response_topic TEXT,
                correlation BLOB,
                payload TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                topic TEXT NOT NULL,
                reason TEXT NOT NULL,
                failed_ms INTEGER NOT NULL);",
        )
        .map_err(err)?;
        let count = |table: &str| -> Result<u64, MqttError> {
            db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| sql_error(&path, e))
        };
        let pending = count("outbox")?;
        let history = count("history")?;
        let dead = count("dead_letters")?;
        Ok(Outbox {
            db,
            path,
            capacity,
            history_capacity,
            pending,
            history,
            dead,
            acknowledged: Default::default(),
        })
    }

    /// Changes the bounds (on reload); they apply from the next write.
    pub fn set_capacity(&mut self, capacity: u64, history_capacity: u64) {
        self.capacity = capacity;
        self.history_capacity = history_capacity;
    }

    /// Messages waiting for the broker (acknowledged ones whose row could
    /// not be deleted yet do not count).
    pub fn pending(&self) -> u64 {
        self.pending.saturating_sub(self.acknowledged.len() as u64)
    }

    /// Messages in the dead-letter table.
    pub fn dead_letters(&self) -> u64 {
        self.dead
    }

    /// Moves message `id` from the outbox to the dead letters, with the
    /// `topic` it was meant for and the `reason` it cannot be delivered.
    /// Returns false when the message is no longer in the outbox (dropped
    /// meanwhile). The dead letters keep at most `mqtt.outbox_capacity`
    /// rows; the oldest go first.
    pub fn dead_letter(&mut self, id: i64, topic: &str, reason: &str) -> Result<bool, MqttError> {
        let path = self.path.clone();
        let err = |e| sql_error(&path, e);
        let tx = self.db.transaction().map_err(err)?;
        let moved = tx
            .execute(
                "INSERT OR REPLACE INTO dead_letters
                   (id, camera, channel, response_topic, correlation, payload, created_ms, topic, reason, failed_ms)
                 SELECT id, camera, channel, response_topic, correlation, payload, created_ms, ?2, ?3, ?4
                 FROM outbox WHERE id = ?1",
                params![id, topic, reason, now_ms() as i64],
            )
            .map_err(err)?;
        if moved == 0 {
            return Ok(false);
        }
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map_err(err)?;
        let mut dead = self.dead + 1;
        if dead > self.capacity {
            dead -= tx
                .execute(
                    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?1)",
                    params![(dead - self.capacity) as i64],
                )
                .map_err(err)? as u64;
        }
        tx.commit().map_err(err)?;
        self.pending = self.pending.saturating_sub(1);
        self.dead = dead;
        Ok(true)
    }

    /// Writes a message (and, for events and answers, its history entry)
    /// in one transaction. Returns how many old messages were dropped to
    /// stay within the capacity.
    pub fn push(&mut self, message: &Pending, event: Option<&Event>) -> Result<u64, MqttError> {
        let path = self.path.clone();
        let err = |e| sql_error(&path, e);
        let tx = self.db.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO outbox (camera, channel, response_topic, correlation, payload, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                message.camera,
                message.channel.as_str(),
                message.response_topic,
                message.correlation,
                message.payload,
                now_ms()
            ],
        )
        .map_err(err)?;
        let mut dropped = 0;
        if self.pending + 1 > self.capacity {
            let excess = self.pending + 1 - self.capacity;
            dropped = tx
                .execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?1)",
                    params![excess as i64],
                )
                .map_err(err)? as u64;
        }
        let mut history = self.history;
        if let Some(event) = event {
            let json = serde_json::to_string(event).map_err(|e| MqttError::Outbox {
                path: self.path.clone(),
                reason: format!("cannot encode event {}: {e}", event.id),
            })?;
            let kind = serde_json::to_value(event.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            tx.execute(
                "INSERT INTO history (event_id, camera, kind, wall_time_ms, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![event.id, event.camera, kind, event.wall_time_ms as i64, json],
            )
            .map_err(err)?;
            history += 1;
            if history > self.history_capacity {
                let excess = history - self.history_capacity;
                history -= tx
                    .execute(
                        "DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?1)",
                        params![excess as i64],
                    )
                    .map_err(err)? as u64;
            }
        }
        tx.commit().map_err(err)?;
        self.pending = self.pending + 1 - dropped;
        self.history = history;
        Ok(dropped)
    }

    /// Up to `limit` messages with an id above `after`, oldest first.
    pub fn after(&self, after: i64, limit: usize) -> Result<Vec<Pending>, MqttError> {
        let err = |e| sql_error(&self.path, e);
        let mut statement = self
            .db
            .prepare_cached(
                "SELECT id, camera, channel, response_topic, correlation, payload FROM outbox
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(err)?;
        let mut found = Vec::new();
        let mut from = after;
        loop {
            let rows = statement
                .query_map(params![from, limit as i64], |r| {
                    Ok(Pending {
                        id: r.get(0)?,
                        camera: r.get(1)?,
                        channel: Channel::parse(&r.get::<_, String>(2)?),
                        response_topic: r.get(3)?,
                        correlation: r.get(4)?,
                        payload: r.get(5)?,
                    })
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            let more = rows.len() == limit;
            from = rows.last().map_or(from, |r| r.id);
            // An acknowledged row that could not be deleted is never sent
            // again (issue 43: one was sent three times); the rows behind
            // it are read on, so a window of them does not stall the pump.
            found.extend(
                rows.into_iter()
                    .filter(|r| !self.acknowledged.contains(&r.id)),
            );
            if found.len() >= limit || !more {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }

    /// Deletes acknowledged messages; ids already gone (dropped) are fine.
    /// When the database cannot take the DELETE (a full disk), the ids are
    /// remembered as delivered: [`Outbox::after`] skips them, and the next
    /// successful delete (or [`Outbox::retry_deletes`]) removes them.
    pub fn delete(&mut self, ids: &[i64]) -> Result<(), MqttError> {
        self.acknowledged.extend(ids.iter().copied());
        self.retry_deletes()
    }

    /// Deletes the rows that were acknowledged but not deleted yet.
    pub fn retry_deletes(&mut self) -> Result<(), MqttError> {
        if self.acknowledged.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| sql_error(&path, e);
        let tx = self.db.transaction().map_err(err)?;
        let mut deleted = 0;
        {
            let mut statement = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1")
                .map_err(err)?;
            for id in &self.acknowledged {
                deleted += statement.execute(params![id]).map_err(err)? as u64;
            }
        }
        tx.commit().map_err(err)?;
        self.pending = self.pending.saturating_sub(deleted);
        self.acknowledged.clear();
        Ok(())
    }

    /// Caps the database at `pages` pages (`None`: no cap), so that a
    /// test can fill it as a full disk would.
    #[cfg(test)]
    pub fn set_page_limit_for_tests(&self, pages: Option<i64>) {
        let pages = pages.unwrap_or(1_073_741_823);
        let _: i64 = self
            .db
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .unwrap();
    }

    /// Deletes up to `limit` of the oldest history entries made before the
    /// oldest message still waiting for the broker (what is still to be
    /// delivered stays), to make room on a full disk. Returns how many.
    pub fn trim_history(&mut self, limit: u64) -> Result<u64, MqttError> {
        let path = self.path.clone();
        let deleted = self
            .db
            .execute(
                "DELETE FROM history WHERE id IN (
                   SELECT id FROM history
                   WHERE wall_time_ms < (SELECT COALESCE(MIN(created_ms), 9223372036854775807) FROM outbox)
                   ORDER BY id LIMIT ?1)",
                params![limit as i64],
            )
            .map_err(|e| sql_error(&path, e))? as u64;
        self.history = self.history.saturating_sub(deleted);
        Ok(deleted)
    }

    /// The watch rules of every camera, in the order they were added.
    pub fn rules(&self) -> Result<Vec<(String, String)>, MqttError> {
        let err = |e| sql_error(&self.path, e);
        let mut statement = self
            .db
            .prepare("SELECT camera, rule FROM rules ORDER BY camera, position")
            .map_err(err)?;
        let rows = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// The cameras whose analysis is paused.
    pub fn paused(&self) -> Result<std::collections::BTreeSet<String>, MqttError> {
        let err = |e| sql_error(&self.path, e);
        let mut statement = self.db.prepare("SELECT camera FROM paused").map_err(err)?;
        let rows = statement.query_map([], |r| r.get(0)).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// Pauses (or resumes) one camera's analysis.
    pub fn set_paused(&mut self, camera: &str, paused: bool) -> Result<(), MqttError> {
        let sql = if paused {
            "INSERT OR IGNORE INTO paused (camera) VALUES (?1)"
        } else {
            "DELETE FROM paused WHERE camera = ?1"
        };
        self.db
            .execute(sql, params![camera])
            .map(drop)
            .map_err(|e| sql_error(&self.path, e))
    }

    /// Replaces one camera's watch rules.
    pub fn set_rules(&mut self, camera: &str, rules: &[String]) -> Result<(), MqttError> {
        let path = self.path.clone();
        let err = |e| sql_error(&path, e);
        let tx = self.db.transaction().map_err(err)?;
        tx.execute("DELETE FROM rules WHERE camera = ?1", params![camera])
            .map_err(err)?;
        for (position, rule) in rules.iter().enumerate() {
            tx.execute(
                "INSERT INTO rules (camera, position, rule) VALUES (?1, ?2, ?3)",
                params![camera, position as i64, rule],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

/// Opens the outbox file read-only if it exists and has `table` (a daemon
/// that never ran, or an older one, may have neither).
fn open_read_only(path: &Path, table: &str) -> Result<Option<Connection>, MqttError> {
    if !path.exists() {
        return Ok(None);
    }
    let err = |e| sql_error(path, e);
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    let has_table: Option<i64> = db
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    Ok(has_table.map(|_| db))
}

/// Reads the event history without taking part in publishing (the
/// `glimpse events` command). Returns the events' JSON, oldest first.
pub fn read_history(
    state_dir: &Path,
    since_ms: u64,
    camera: Option<&str>,
) -> Result<Vec<Event>, MqttError> {
    let path = state_dir.join(FILE_NAME);
    let err = |e| sql_error(&path, e);
    let Some(db) = open_read_only(&path, "history")? else {
        return Ok(Vec::new());
    };
    let mut statement = db
        .prepare(
            "SELECT json FROM history WHERE wall_time_ms >= ?1 AND (?2 IS NULL OR camera = ?2)
             ORDER BY wall_time_ms, id",
        )
        .map_err(err)?;
    let rows = statement
        .query_map(params![since_ms as i64, camera], |r| r.get::<_, String>(0))
        .map_err(err)?;
    let mut events = Vec::new();
    for json in rows {
        let json = json.map_err(err)?;
        match serde_json::from_str(&json) {
            Ok(event) => events.push(event),
            Err(e) => tracing::warn!("skipping an unreadable history entry: {e}"),
        }
    }
    Ok(events)
}

/// Reads the dead letters that failed since `since_ms` (the `glimpse
/// events` command), oldest first; read-only, like [`read_history`].
pub fn read_dead_letters(
    state_dir: &Path,
    since_ms: u64,
    camera: Option<&str>,
) -> Result<Vec<DeadLetter>, MqttError> {
    let path = state_dir.join(FILE_NAME);
    let err = |e| sql_error(&path, e);
    let Some(db) = open_read_only(&path, "dead_letters")? else {
        return Ok(Vec::new());
    };
    let mut statement = db
        .prepare(
            "SELECT id, camera, channel, response_topic, correlation, payload, created_ms, topic, reason, failed_ms
             FROM dead_letters WHERE failed_ms >= ?1 AND (?2 IS NULL OR camera = ?2) ORDER BY id",
        )
        .map_err(err)?;
    let rows = statement
        .query_map(params![since_ms as i64, camera], |r| {
            Ok(DeadLetter {
                message: Pending {
                    id: r.get(0)?,
                    camera: r.get(1)?,
                    channel: Channel::parse(&r.get::<_, String>(2)?),
                    response_topic: r.get(3)?,
                    correlation: r.get(4)?,
                    payload: r.get(5)?,
                },
                created_ms: r.get::<_, i64>(6)? as u64,
                topic: r.get(7)?,
                reason: r.get(8)?,
                failed_ms: r.get::<_, i64>(9)? as u64,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use std::time::Duration;

    fn message(camera: &str, n: usize) -> Pending {
        Pending {
            id: 0,
            camera: camera.into(),
            channel: Channel::Event,
            response_topic: None,
            correlation: None,
            payload: format!("{{\"n\":{n}}}"),
        }
    }

    #[test]
    fn acknowledged_rows_not_deleted_are_skipped_without_hiding_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 100, 100).unwrap();
        for n in 0..5 {
            outbox.push(&message("a", n), None).unwrap();
        }
        let ids: Vec<i64> = outbox.after(0, 10).unwrap().iter().map(|r| r.id).collect();
        // The first two were acknowledged, their DELETE failed (a full disk).
        outbox.acknowledged.extend(&ids[..2]);
        let next: Vec<i64> = outbox.after(0, 2).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(
            next,
            ids[2..4],
            "a window of acknowledged rows hid the rest"
        );
        assert_eq!(outbox.pending(), 3);
        outbox.retry_deletes().unwrap();
        assert_eq!(outbox.after(0, 10).unwrap().len(), 3);
        assert_eq!(outbox.pending(), 3);
    }

    #[test]
    fn bounded_oldest_dropped_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 3, 2).unwrap();
        let mut dropped = 0;
        for n in 0..5 {
            let event = Event::new(
                "a",
                EventKind::Description,
                format!("e{n}"),
                (Duration::ZERO, Duration::ZERO),
            );
            dropped += outbox.push(&message("a", n), Some(&event)).unwrap();
        }
        assert_eq!(dropped, 2);
        assert_eq!(outbox.pending(), 3);
        let rows = outbox.after(0, 10).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>(),
            ["{\"n\":2}", "{\"n\":3}", "{\"n\":4}"]
        );
        outbox.delete(&[rows[0].id, 9999]).unwrap();
        assert_eq!(outbox.pending(), 2);
        drop(outbox);
        let outbox = Outbox::open(dir.path(), 3, 2).unwrap();
        assert_eq!(outbox.pending(), 2);
        assert_eq!(outbox.after(rows[0].id, 1).unwrap()[0].id, rows[1].id);
        let history = read_history(dir.path(), 0, Some("a")).unwrap();
        assert_eq!(
            history.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
            ["e3", "e4"]
        );
        assert!(read_history(dir.path(), 0, Some("b")).unwrap().is_empty());
    }

    #[test]
    fn a_dead_letter_leaves_the_outbox_and_stays_visible() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 2, 10).unwrap();
        for n in 0..2 {
            outbox.push(&message("a", n), None).unwrap();
        }
        let rows = outbox.after(0, 10).unwrap();
        assert!(outbox
            .dead_letter(rows[0].id, "me/+/x", "bad topic")
            .unwrap());
        assert!(
            !outbox.dead_letter(rows[0].id, "me/+/x", "again").unwrap(),
            "already moved"
        );
        assert_eq!((outbox.pending(), outbox.dead_letters()), (1, 1));
        // The row behind it is next: nothing blocks it.
        assert_eq!(outbox.after(0, 10).unwrap(), rows[1..]);
        drop(outbox);
        let mut outbox = Outbox::open(dir.path(), 2, 10).unwrap();
        assert_eq!((outbox.pending(), outbox.dead_letters()), (1, 1));
        let dead = read_dead_letters(dir.path(), 0, None).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message, rows[0]);
        assert_eq!(
            (dead[0].topic.as_str(), dead[0].reason.as_str()),
            ("me/+/x", "bad topic")
        );
        assert!(dead[0].failed_ms >= dead[0].created_ms);
        assert!(read_dead_letters(dir.path(), 0, Some("b"))
            .unwrap()
            .is_empty());
        assert!(read_dead_letters(dir.path(), now_ms() + 60_000, None)
            .unwrap()
            .is_empty());
        // Bounded by the outbox capacity (2): the oldest dead letter goes.
        for n in 2..4 {
            outbox.push(&message("a", n), None).unwrap();
        }
        for row in outbox.after(0, 10).unwrap() {
            assert!(outbox.dead_letter(row.id, "t", "r").unwrap());
        }
        assert_eq!((outbox.pending(), outbox.dead_letters()), (0, 2));
        let dead = read_dead_letters(dir.path(), 0, None).unwrap();
        assert_eq!(
            dead.iter()
                .map(|d| d.message.payload.as_str())
                .collect::<Vec<_>>(),
            ["{\"n\":2}", "{\"n\":3}"]
        );
    }

    #[test]
    fn paused_cameras_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 3, 2).unwrap();
        outbox.set_paused("a", true).unwrap();
        outbox.set_paused("a", true).unwrap();
        outbox.set_paused("b", true).unwrap();
        outbox.set_paused("b", false).unwrap();
        drop(outbox);
        let outbox = Outbox::open(dir.path(), 3, 2).unwrap();
        assert_eq!(outbox.paused().unwrap(), ["a".to_owned()].into());
    }

    #[test]
    fn rules_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 3, 2).unwrap();
        outbox.set_rules("a", &["x".into(), "y".into()]).unwrap();
        outbox.set_rules("a", &["y".into()]).unwrap();
        assert_eq!(
            outbox.rules().unwrap(),
            vec![("a".to_owned(), "y".to_owned())]
        );
    }
}
