//! The file's schema, its migrations and the writer connection's settings: what opening a
//! file of any earlier version does before the writer runs.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use relay_core::domain::session::Session;
use relay_core::ports::store::StoreError;
use rusqlite::Connection;

use super::{BUSY_TIMEOUT, Fault};

/// Bumped when the schema changes; a file from a newer build is refused rather than misread,
/// one from an older build is migrated (`MIGRATIONS`).
pub(super) const SCHEMA_VERSION: i64 = 3;

/// What turns a file of version N (index N - 1) into version N + 1.
pub(super) const MIGRATIONS: [&str; 2] = [
    // 2: an outcome delivered again by another path names the first one.
    "ALTER TABLE events ADD COLUMN repeat_of TEXT;",
    // 3: the open-session index reconciliation reads (filled from the documents by
    // `backfill_open_index` in the same transaction).
    "ALTER TABLE sessions ADD COLUMN open_at TEXT;",
];

pub(super) const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    event_id     TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    source_event TEXT    NOT NULL,
    family       TEXT    NOT NULL,
    status_code  TEXT,
    occurred_at  TEXT,
    received_at  TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    repeat_of    TEXT,
    UNIQUE (bot_id, seq),
    UNIQUE (bot_id, event_id)
) STRICT;
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expires_at);
CREATE TABLE IF NOT EXISTS sessions (
    bot_id     TEXT    PRIMARY KEY NOT NULL,
    seq        INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc        TEXT    NOT NULL,
    open_at    TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
-- Only open sessions are in it: `open_at` is the session's last change, fixed-width text
-- (`index_key` order), NULL once final.
CREATE INDEX IF NOT EXISTS sessions_open ON sessions (open_at, bot_id) WHERE open_at IS NOT NULL;
";

// ---------------------------------------------------------------------------------------------
// Connections

pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(Fault::from)?;
    configure_writer(&conn).map_err(StoreError::from)?;
    Ok(conn)
}

pub(super) fn configure_writer(conn: &Connection) -> Result<(), Fault> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers run alongside the writer and makes a commit one sequential append.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fault::Unavailable(format!(
            "SQLite refused WAL mode (got {mode:?}); the store needs it"
        )));
    }
    // FULL: the WAL is fsynced at every commit, so `append` returns only after a durable
    // write (NORMAL could lose the last commits on power loss).
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Keeps the WAL from staying at its high-water mark after a burst of large bodies.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -16 * 1024)?;
    conn.set_prepared_statement_cache_capacity(32);

    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Fault::Unavailable(format!(
            "database schema version {version} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    // A file that has tables already is migrated step by step; a new one gets the schema.
    let has_tables: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
        [],
        |r| r.get(0),
    )?;
    let migrations: String = if has_tables {
        MIGRATIONS
            .iter()
            .skip(usize::try_from(version.max(1) - 1).unwrap_or(0))
            .copied()
            .collect()
    } else {
        String::new()
    };
    let migrate = || -> Result<(), Fault> {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {migrations} {SCHEMA}"))?;
        if has_tables && version < 3 {
            backfill_open_index(conn)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))?;
        Ok(())
    };
    migrate().inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// Fills `open_at` for the sessions of a file from before the open-session index.
pub(super) fn backfill_open_index(conn: &Connection) -> Result<(), Fault> {
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT bot_id, doc FROM sessions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = conn.prepare("UPDATE sessions SET open_at = ?2 WHERE bot_id = ?1")?;
    for (bot, doc) in rows {
        let session: Session = serde_json::from_str(&doc)
            .map_err(|e| Fault::Corrupt(format!("session of bot {bot} does not decode: {e}")))?;
        update.execute((bot, open_at(&session)))?;
    }
    Ok(())
}

/// The session's `open_at` column: its last change while open, else NULL.
pub(super) fn open_at(session: &Session) -> Option<String> {
    session
        .is_open()
        .then(|| fixed_instant(session.last_updated))
}

pub(super) fn fixed_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}
