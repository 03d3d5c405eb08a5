//! SQLite adapter of the event store: one embedded file, the default store of `relay serve`.
//!
//! Writes go through a single writer thread that owns the only read-write connection and
//! commits in groups: each `append` is queued with a oneshot reply, the writer takes whatever
//! is queued (up to `MAX_BATCH`), applies every request in its own SAVEPOINT inside one
//! transaction and commits once. With `synchronous=FULL` one commit is one fsync, so the cost
//! of durability is shared by the whole batch instead of paid per webhook. Replies go out only
//! after that commit, because the host answers 2xx as soon as `append` returns.
//!
//! A single writer also keeps the change feed simple: `events.id` is assigned and committed
//! strictly in order, so a reader never sees position N+1 while N is still uncommitted.
//!
//! Reads use a small pool of read-only connections on the blocking pool; in WAL mode they see
//! the last committed state and never wait behind the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

pub(crate) mod decode;
mod schema;
mod writer;

use writer::{Command, Purge, PurgeTarget, run_writer};

use decode::*;
use schema::*;

use relay_core::domain::bot_id::BotId;
use relay_core::domain::event::{EventId, NewEvent, StoredEvent};
use relay_core::domain::session::{Session, Status};
use relay_core::ports::store::{
    Appended, EventPage, EventStore, MAX_PAGE, OpenSession, Retention, StoreError,
};

/// Most requests one commit carries; bounds how long the first request of a batch waits.
const MAX_BATCH: usize = 256;
/// A batch stops growing past this many body bytes, so a burst of multi-megabyte
/// transcripts does not make one transaction (and everyone's reply) arbitrarily slow.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Queue depth in front of the writer; when full, `append` waits (backpressure) instead of
/// buffering without bound.
const QUEUE: usize = 4 * MAX_BATCH;
/// Read connections kept open, and the most reads running at once.
const READERS: usize = 4;
/// How long a connection waits for a lock held by another connection or process.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows one purge step deletes; purges run between append batches in steps this small so
/// they never hold the writer (and the appends queued behind it) for long.
const PURGE_STEP: u32 = 1000;

/// Column list shared by every event read; `body` last so lookups that stop early never
/// touch its overflow pages.
const EVENT_COLUMNS: &str = "id, bot_id, event_id, seq, idem_key, kind, source_event, family, \
     status_code, occurred_at, received_at, status, expires_at, repeat_of, body";

/// The SQLite event store. Cheap to share behind an `Arc`; dropping it stops the writer
/// after the requests already queued.
pub struct SqliteStore {
    /// `None` only while dropping, so the writer sees the channel close.
    queue: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReadPool>,
    /// Bumped by the writer after each commit: the change feed waits on it instead of polling.
    commits: watch::Receiver<u64>,
}

impl SqliteStore {
    /// Opens (creating the parent directories, the file and the schema if needed) and starts
    /// the writer thread. Blocking file I/O: call it at startup, not on a hot async path.
    pub fn open(path: &Path, retention: Retention) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let conn = open_writer(path)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let (committed, commits) = watch::channel(0u64);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, rx, retention, committed))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(SqliteStore {
            queue: Some(queue),
            writer: Some(writer),
            readers: Arc::new(ReadPool::new(path)),
            commits,
        })
    }

    /// Changes after each commit of this store's writer (a count of commits): a change-feed
    /// reader marks it seen, reads, and when there was nothing waits for the next change.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Events of every bot with change-feed position `> after`, in commit order, at most
    /// `limit` (clamped to 1..=[`MAX_PAGE`]). Positions are increasing but not dense:
    /// purged rows leave holes, so resume from the last position seen, never count.
    pub async fn events_since_position(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, StoredEvent)>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let mut rows = stmt.query((after, limit))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let position: i64 = row.get(0)?;
                out.push((position, read_event(row)?));
            }
            Ok(out)
        })
        .await
    }

    /// Deletes events whose `expires_at` is at or before `now_unix`, then the sessions that
    /// have been idle for the whole retention and have no events left. Returns the number of
    /// events deleted. Runs on the writer in small steps interleaved with appends.
    pub async fn purge_expired(&self, now_unix: i64) -> Result<u64, StoreError> {
        let mut events = 0;
        for target in [PurgeTarget::Events, PurgeTarget::Sessions] {
            loop {
                let job = Purge {
                    target,
                    now: now_unix,
                    limit: PURGE_STEP,
                };
                let n = self.submit(|reply| Command::Purge { job, reply }).await?;
                if target == PurgeTarget::Events {
                    events += n;
                }
                if n < u64::from(PURGE_STEP) {
                    break;
                }
            }
        }
        Ok(events)
    }

    async fn submit<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let queue = self.queue.as_ref().ok_or_else(writer_gone)?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(command(reply))
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Runs `f` on a pooled read-only connection off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.readers.read(f).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Idle readers first, so the writer's connection is the last one and its close
        // checkpoints the WAL into the main file.
        self.readers.close_idle();
        // Closing the queue lets the writer finish what is queued and exit; joining it means
        // the file is closed once the store is gone, so it can be reopened at once.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    /// A caller that stops waiting once the request is queued does not cancel it: the event
    /// is still stored, and a retry of the delivery is then answered as a duplicate.
    async fn append(&self, event: NewEvent) -> Result<Appended, StoreError> {
        self.submit(|reply| Command::Append { event, reply }).await
    }

    async fn session(&self, bot: &BotId) -> Result<Option<Session>, StoreError> {
        let bot = bot.clone();
        self.read(move |conn| load_session(conn, &bot)).await
    }

    async fn open_sessions(
        &self,
        idle_before: DateTime<Utc>,
        cursor: Option<&OpenSession>,
        limit: u32,
    ) -> Result<Vec<OpenSession>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let before = fixed_instant(idle_before);
        let (after_at, after_bot) = cursor
            .map(|c| (fixed_instant(c.last_updated), c.bot_id.as_str().to_owned()))
            .unwrap_or_default();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT bot_id, open_at, json_extract(doc, '$.status') FROM sessions \
                 WHERE open_at IS NOT NULL AND open_at < ?1 AND (open_at, bot_id) > (?2, ?3) \
                 ORDER BY open_at, bot_id LIMIT ?4",
            )?;
            let rows = stmt.query_map((before, after_at, after_bot, limit), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut open = Vec::new();
            for row in rows {
                let (bot, at, status) = row?;
                open.push(OpenSession {
                    bot_id: BotId::parse(&bot).map_err(|_| corrupt("bot id", &bot))?,
                    status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                    last_updated: DateTime::parse_from_rfc3339(&at)
                        .map_err(|_| corrupt("open_at", &at))?
                        .with_timezone(&Utc),
                });
            }
            Ok(open)
        })
        .await
    }

    /// By `expires_at` (its index): a session's expiry is its last change plus the retention,
    /// so newest expiry is newest change; the page is then ordered by the exact instant.
    async fn recent_sessions(&self, limit: u32) -> Result<Vec<Session>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let now = Utc::now().timestamp();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT bot_id, doc FROM sessions WHERE expires_at > ?1 AND bot_id != ?2 \
                 ORDER BY expires_at DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                (now, relay_core::domain::payload::CALENDAR_BOT, limit),
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?;
            let mut sessions = Vec::new();
            for row in rows {
                let (bot, doc) = row?;
                let session: Session = serde_json::from_str(&doc).map_err(|e| {
                    Fault::Corrupt(format!("session of bot {bot} does not decode: {e}"))
                })?;
                if session.bot_id.as_str() != bot {
                    return Err(corrupt("session bot id", &bot));
                }
                sessions.push(session);
            }
            sessions.sort_by(|a, b| {
                b.last_updated
                    .cmp(&a.last_updated)
                    .then_with(|| a.bot_id.as_str().cmp(b.bot_id.as_str()))
            });
            Ok(sessions)
        })
        .await
    }

    async fn ensure_session(&self, bot: &BotId, now: DateTime<Utc>) -> Result<Session, StoreError> {
        let bot = bot.clone();
        self.submit(|reply| Command::EnsureSession { bot, now, reply })
            .await
    }

    async fn events_after(
        &self,
        bot: &BotId,
        after: u64,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let bot = bot.clone();
        let limit = limit.clamp(1, MAX_PAGE);
        // Past i64::MAX nothing can exist; clamping keeps the query well-formed.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE bot_id = ?1 AND seq > ?2 \
                 ORDER BY seq LIMIT ?3"
            ))?;
            // One extra row tells whether another page exists without a COUNT.
            let mut rows = stmt.query((bot.as_str(), after, limit + 1))?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(read_event(row)?);
            }
            let more = events.len() > limit as usize;
            events.truncate(limit as usize);
            Ok(EventPage { events, more })
        })
        .await
    }

    async fn event(
        &self,
        bot: &BotId,
        event_id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let (bot, event_id) = (bot.clone(), event_id.clone());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE bot_id = ?1 AND event_id = ?2"
            ))?;
            let mut rows = stmt.query((bot.as_str(), event_id.as_str()))?;
            match rows.next()? {
                Some(row) => Ok(Some(read_event(row)?)),
                None => Ok(None),
            }
        })
        .await
    }
}

fn open_reader(path: &Path) -> Result<Connection, Fault> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

pub(crate) struct ReadPool {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// At most [`READERS`] reads at once, so at most that many connections exist.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// A pool of read-only connections to the database at `path`, opened on demand. The
    /// file must already exist in WAL mode (its writer opens it first).
    pub(crate) fn new(path: &Path) -> ReadPool {
        ReadPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::with_capacity(READERS)),
            permits: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Runs `f` on a pooled read-only connection off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.clone();
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("read pool closed".into()))?;
        let joined = tokio::task::spawn_blocking(move || {
            // Held until the read is done even if the caller stops waiting: bounds connections.
            let _permit = permit;
            let conn = pool.take()?;
            let result = f(&conn);
            // A connection that just failed may be broken; let the next read open a fresh one.
            if result.is_ok() {
                pool.give_back(conn);
            }
            result
        })
        .await;
        match joined {
            Ok(result) => result.map_err(StoreError::from),
            Err(e) => Err(StoreError::Unavailable(format!("read task failed: {e}"))),
        }
    }

    /// Closes the idle connections (the owner does this before closing its writer, so the
    /// writer's close is the last one and checkpoints the WAL).
    pub(crate) fn close_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn take(&self) -> Result<Connection, Fault> {
        let idle = self
            .idle
            .lock()
            .map_err(|_| Fault::Unavailable("read pool lock poisoned".into()))?
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    /// Keeps `conn` for the next read; dropping it instead is always safe.
    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < READERS
        {
            idle.push(conn);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The writer (writer.rs runs the commands)

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

#[cfg(test)]
mod tests {
    use super::writer::run_batch;
    use super::*;
    use relay_core::domain::event::EventKind;
    use relay_core::testing::store_contract::{RETENTION, fresh_bot, new_event};

    fn writer() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("events.db")).unwrap();
        (dir, conn)
    }

    fn append(event: NewEvent) -> (Command, oneshot::Receiver<Result<Appended, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (Command::Append { event, reply }, rx)
    }

    fn run(conn: &mut Connection, commands: Vec<Command>) {
        for done in run_batch(conn, commands, RETENTION) {
            done.send();
        }
    }

    #[test]
    fn writer_is_wal_and_fsyncs_every_commit() {
        let (_dir, conn) = writer();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
    }

    #[test]
    fn identical_events_in_one_batch_store_once() {
        let (_dir, mut conn) = writer();
        let bot = fresh_bot("batch");
        let e = new_event(&bot, "k", EventKind::Unknown, None, "{}".into());
        let other = new_event(&bot, "k2", EventKind::Unknown, None, "{}".into());
        let (c1, r1) = append(e.clone());
        let (c2, r2) = append(e.clone());
        let (c3, r3) = append(other);
        run(&mut conn, vec![c1, c2, c3]);
        let first = r1.blocking_recv().unwrap().unwrap();
        assert!(matches!(&first, Appended::Stored(s) if s.seq == 1));
        assert_eq!(
            r2.blocking_recv().unwrap().unwrap(),
            Appended::Duplicate {
                event_id: e.event_id,
                seq: 1,
                kind: EventKind::Unknown
            }
        );
        assert_eq!(r3.blocking_recv().unwrap().unwrap().seq(), 2);
        let session = load_session(&conn, &bot).unwrap().unwrap();
        assert_eq!(session.seq, 2);
    }

    #[test]
    fn a_failing_request_does_not_sink_its_batch() {
        let (_dir, mut conn) = writer();
        let (good, bad) = (fresh_bot("good"), fresh_bot("bad"));
        conn.execute(
            "INSERT INTO sessions (bot_id, seq, expires_at, doc) VALUES (?1, 0, 0, 'not json')",
            [bad.as_str()],
        )
        .unwrap();
        let (c1, r1) = append(new_event(&good, "a", EventKind::Unknown, None, "{}".into()));
        let (c2, r2) = append(new_event(&bad, "b", EventKind::Unknown, None, "{}".into()));
        let (c3, r3) = append(new_event(&good, "c", EventKind::Unknown, None, "{}".into()));
        run(&mut conn, vec![c1, c2, c3]);
        assert_eq!(r1.blocking_recv().unwrap().unwrap().seq(), 1);
        assert!(matches!(
            r2.blocking_recv().unwrap(),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(r3.blocking_recv().unwrap().unwrap().seq(), 2);
        let count = |bot: &BotId| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM events WHERE bot_id = ?1",
                [bot.as_str()],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!((count(&good), count(&bad)), (2, 0));
    }

    /// A file written by the build before `repeat_of` existed opens, keeps its events and
    /// takes new ones.
    #[tokio::test]
    async fn a_version_1_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        {
            let conn = Connection::open(&path).unwrap();
            let v1 = schema_before_open_index().replace("    repeat_of    TEXT,\n", "");
            conn.execute_batch(&format!("{v1} PRAGMA user_version = 1;"))
                .unwrap();
        }
        let store = SqliteStore::open(&path, RETENTION).unwrap();
        let bot = fresh_bot("migrated");
        let e = new_event(&bot, "k1", EventKind::MeetingCompleted, None, "{}".into());
        let first = store.append(e).await.unwrap();
        let e = new_event(&bot, "k2", EventKind::MeetingCompleted, None, "{}".into());
        let Appended::Stored(again) = store.append(e).await.unwrap() else {
            panic!("stored");
        };
        assert_eq!(again.repeat_of.as_ref(), Some(first.event_id()));
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    fn schema_before_open_index() -> String {
        SCHEMA
            .replace(",\n    open_at    TEXT\n", "\n")
            .lines()
            .filter(|l| !l.contains("sessions_open") && !l.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A file from before the open-session index opens with its open sessions in the index
    /// and its final ones out of it.
    #[tokio::test]
    async fn a_version_2_file_gets_its_open_sessions_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let then = Utc::now() - chrono::Duration::hours(2);
        let (open, done) = (fresh_bot("was-open"), fresh_bot("was-done"));
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "{} PRAGMA user_version = 2;",
                schema_before_open_index()
            ))
            .unwrap();
            let mut finished = Session::new(done.clone(), then);
            finished.status = Status::Completed;
            for session in [Session::new(open.clone(), then), finished] {
                conn.execute(
                    "INSERT INTO sessions (bot_id, seq, expires_at, doc) VALUES (?1, 0, ?2, ?3)",
                    (
                        session.bot_id.as_str(),
                        RETENTION.expires_at(then),
                        serde_json::to_string(&session).unwrap(),
                    ),
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path, RETENTION).unwrap();
        let found = store.open_sessions(Utc::now(), None, 10).await.unwrap();
        assert_eq!(
            found,
            vec![OpenSession {
                bot_id: open,
                status: Status::Starting,
                last_updated: then
            }]
        );
    }

    #[test]
    fn a_file_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(open_writer(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path, RETENTION),
            Err(StoreError::Unavailable(_))
        ));
    }
}
