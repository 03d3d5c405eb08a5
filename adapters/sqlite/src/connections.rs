//! SQLite adapter of the connection store, for `relay serve`: its own small file (e.g.
//! `connections.sqlite3`), apart from the events database, so connection churn never waits
//! behind (or adds to) the event writer's fsyncs.
//!
//! Writes are rare and tiny (one per `$connect`, `$disconnect`, subscribe), so instead of the
//! event store's queue and group commit there is one read-write connection behind an async
//! mutex, used on the blocking pool. Reads (`get`, and `subscribers` on every fan-out) go through
//! the event store's pool of read-only connections: in WAL mode they never wait behind a write.
//!
//! Every subscription row carries the expiry its connection had when it subscribed, so reads
//! can ignore expired rows without a join, and [`SqliteConnections::purge_expired`] drops them.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection as Db, OptionalExtension, TransactionBehavior};
use tokio::sync::Mutex;

use relay_core::domain::bot_id::BotId;
use relay_core::ports::connections::{Connection, ConnectionId, ConnectionStore, Subscriber};
use relay_core::ports::store::StoreError;

use crate::events::decode::Fault;
use crate::events::{BUSY_TIMEOUT, ReadPool};

/// Bumped when the schema changes; a file from a newer build is refused rather than misread.
const SCHEMA_VERSION: i64 = 2;
/// Rows one purge step deletes per table; each step is its own short write transaction, so a
/// large purge never holds the writer (and the `$connect`s queued behind it) for long.
const PURGE_STEP: u32 = 1000;

/// `subscriptions` is clustered on (bot_id, connection_id): `subscribers` reads one contiguous
/// key range. The `connection_id` index serves `remove`; the expiry indexes serve the purge.
const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS connections (
    id         TEXT    PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    doc        TEXT    NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS connections_by_expiry ON connections (expires_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    bot_id        TEXT    NOT NULL,
    connection_id TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    token_exp     INTEGER NOT NULL,
    PRIMARY KEY (bot_id, connection_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_by_connection ON subscriptions (connection_id);
CREATE INDEX IF NOT EXISTS subscriptions_by_expiry ON subscriptions (expires_at);
";

const SELECT_SUBSCRIBERS: &str =
    "SELECT connection_id, token_exp FROM subscriptions WHERE bot_id = ?1 AND expires_at > ?2";

/// The SQLite connection store. Cheap to share behind an `Arc`.
pub struct SqliteConnections {
    writer: Arc<Mutex<Db>>,
    readers: Arc<ReadPool>,
}

impl SqliteConnections {
    /// Opens (creating the parent directories, the file and the schema if needed). Blocking
    /// file I/O: call it at startup, not on a hot async path.
    pub fn open(path: &Path) -> Result<SqliteConnections, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = Db::open(path).map_err(Fault::from)?;
        configure(&conn)?;
        Ok(SqliteConnections {
            writer: Arc::new(Mutex::new(conn)),
            readers: Arc::new(ReadPool::new(path)),
        })
    }

    /// Deletes connections whose `expires_at` is at or before `now_unix`, with their
    /// subscriptions, and any other subscription expired by then. Returns the number of
    /// connections deleted. Records of connections that closed without `$disconnect` (a
    /// crashed host, a lost network) go this way.
    pub async fn purge_expired(&self, now_unix: i64) -> Result<u64, StoreError> {
        let mut connections = 0;
        loop {
            let (conns, subs) = self
                .write(move |db| purge_step(db, now_unix, PURGE_STEP))
                .await?;
            connections += conns;
            if conns < u64::from(PURGE_STEP) && subs < u64::from(PURGE_STEP) {
                return Ok(connections);
            }
        }
    }

    /// Runs `f` on the read-write connection, one write at a time, off the async threads.
    /// Waiting for the connection is async, so queued writes hold no blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut db = self.writer.clone().lock_owned().await;
        match tokio::task::spawn_blocking(move || f(&mut db)).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(e) => Err(StoreError::Unavailable(format!(
                "connection store write task failed: {e}"
            ))),
        }
    }
}

impl Drop for SqliteConnections {
    fn drop(&mut self) {
        // Idle readers first, so the writer's connection is the last one and its close
        // checkpoints the WAL into the main file.
        self.readers.close_idle();
    }
}

#[async_trait]
impl ConnectionStore for SqliteConnections {
    /// Inserts or replaces the record; subscriptions already written keep their expiry.
    async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
        let doc = serde_json::to_string(connection)
            .map_err(|e| StoreError::Corrupt(format!("connection does not serialize: {e}")))?;
        let (id, expires_at) = (connection.id.clone(), connection.expires_at);
        self.write(move |db| {
            db.prepare_cached(
                "INSERT INTO connections (id, expires_at, doc) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, doc = excluded.doc",
            )?
            .execute((id.as_str(), expires_at, doc))?;
            Ok(())
        })
        .await
    }

    /// An expired record reads as absent, as in the DynamoDB adapter (whose TTL is lazy).
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let (id, now) = (id.clone(), now());
        self.readers
            .read(move |db| {
                let doc: Option<String> = db
                    .prepare_cached(
                        "SELECT doc FROM connections WHERE id = ?1 AND expires_at > ?2",
                    )?
                    .query_row((id.as_str(), now), |r| r.get(0))
                    .optional()?;
                doc.map(|doc| decode_connection(&id, &doc)).transpose()
            })
            .await
    }

    async fn remove(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE connection_id = ?1")?
                .execute([id.as_str()])?;
            tx.prepare_cached("DELETE FROM connections WHERE id = ?1")?
                .execute([id.as_str()])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Copies the connection's expiry onto the subscription in the same statement, so there
    /// is never a subscription without its connection. Subscribing a connection that is not
    /// stored (already removed, or expired) writes nothing: there is no one to deliver to,
    /// and the port has no "not found" error to report it with.
    async fn subscribe(&self, connection: &Connection, bot: &BotId) -> Result<(), StoreError> {
        let (id, bot, now) = (connection.id.clone(), bot.clone(), now());
        self.write(move |db| {
            db.prepare_cached(
                "INSERT INTO subscriptions (bot_id, connection_id, expires_at, token_exp) \
                 SELECT ?1, id, expires_at, json_extract(doc, '$.token_exp') FROM connections \
                 WHERE id = ?2 AND expires_at > ?3 \
                 ON CONFLICT (bot_id, connection_id) DO UPDATE SET expires_at = excluded.expires_at, \
                 token_exp = excluded.token_exp",
            )?
            .execute((bot.as_str(), id.as_str(), now))?;
            Ok(())
        })
        .await
    }

    async fn unsubscribe(&self, id: &ConnectionId, bot: &BotId) -> Result<(), StoreError> {
        let (id, bot) = (id.clone(), bot.clone());
        self.write(move |db| {
            db.prepare_cached(
                "DELETE FROM subscriptions WHERE bot_id = ?1 AND connection_id = ?2",
            )?
            .execute((bot.as_str(), id.as_str()))?;
            Ok(())
        })
        .await
    }

    /// One primary-key range read on `bot_id`; expired rows are skipped, not returned.
    async fn subscribers(&self, bot: &BotId) -> Result<Vec<Subscriber>, StoreError> {
        let (bot, now) = (bot.clone(), now());
        self.readers
            .read(move |db| {
                let mut stmt = db.prepare_cached(SELECT_SUBSCRIBERS)?;
                let mut rows = stmt.query((bot.as_str(), now))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let raw: String = row.get(0)?;
                    let token_exp: i64 = row.get(1)?;
                    let id = ConnectionId::parse(&raw).ok_or_else(|| {
                        Fault::Corrupt(format!("stored connection id {raw:?} does not decode"))
                    })?;
                    out.push(Subscriber { id, token_exp });
                }
                Ok(out)
            })
            .await
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn configure(db: &Db) -> Result<(), Fault> {
    db.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets the readers run alongside the writer.
    let mode: String = db.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fault::Unavailable(format!(
            "SQLite refused WAL mode (got {mode:?}); the connection store needs it"
        )));
    }
    // NORMAL: in WAL mode a commit survives a crash of the process, and only a power loss or
    // an OS crash can lose the last few. Those records describe sockets that died with the
    // machine (they live in the host's memory) and expire within hours anyway, so an fsync per
    // `$connect` or subscribe would buy nothing.
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.set_prepared_statement_cache_capacity(16);

    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Fault::Unavailable(format!(
            "connection database schema version {version} is newer than this build \
             ({SCHEMA_VERSION})"
        )));
    }
    // Version 1 subscriptions had no token expiry; they are transient (sockets do not outlive
    // the process), so they are dropped rather than migrated.
    let upgrade = if (1..2).contains(&version) {
        "DROP TABLE IF EXISTS subscriptions;"
    } else {
        ""
    };
    db.execute_batch(&format!(
        "BEGIN IMMEDIATE; {upgrade} {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = db.execute_batch("ROLLBACK");
    })?;
    Ok(())
}

fn decode_connection(id: &ConnectionId, doc: &str) -> Result<Connection, Fault> {
    let connection: Connection = serde_json::from_str(doc)
        .map_err(|e| Fault::Corrupt(format!("connection {id} does not decode: {e}")))?;
    if &connection.id != id {
        return Err(Fault::Corrupt(format!(
            "connection stored under {id} is {}",
            connection.id
        )));
    }
    Ok(connection)
}

/// One bounded purge step in one transaction: up to `limit` expired connections with all
/// their subscriptions, then up to `limit` other expired subscriptions. Returns both counts.
fn purge_step(db: &mut Db, now: i64, limit: u32) -> Result<(u64, u64), Fault> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<String> = tx
        .prepare_cached("SELECT id FROM connections WHERE expires_at <= ?1 LIMIT ?2")?
        .query_map((now, limit), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        tx.prepare_cached("DELETE FROM subscriptions WHERE connection_id = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM connections WHERE id = ?1")?
            .execute([id])?;
    }
    let subs = tx
        .prepare_cached(
            "DELETE FROM subscriptions WHERE (bot_id, connection_id) IN \
             (SELECT bot_id, connection_id FROM subscriptions WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute((now, limit))?;
    tx.commit()?;
    Ok((ids.len() as u64, subs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteConnections) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteConnections::open(&dir.path().join("connections.sqlite3")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn writer_is_wal_with_normal_sync() {
        let (_dir, store) = open();
        let db = store.writer.lock().await;
        let mode: String = db
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = db
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 1), "1 is NORMAL");
    }

    #[tokio::test]
    async fn subscribers_is_a_primary_key_search_not_a_scan() {
        let (_dir, store) = open();
        let db = store.writer.lock().await;
        let mut stmt = db
            .prepare(&format!("EXPLAIN QUERY PLAN {SELECT_SUBSCRIBERS}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(("bot", 0), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH subscriptions USING PRIMARY KEY (bot_id=?"),
            "{plan:?}"
        );
    }

    #[test]
    fn a_file_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connections.sqlite3");
        drop(SqliteConnections::open(&path).unwrap());
        let db = Db::open(&path).unwrap();
        db.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(db);
        assert!(matches!(
            SqliteConnections::open(&path),
            Err(StoreError::Unavailable(_))
        ));
    }
}
