//! The SQLite adapter: the shared contract suite, then what only this adapter promises
//! (restart durability, group commit under load, purging, the change-feed position).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use relay_core::ports::store::{EventPage, EventStore, OpenSession, StoreError};
use relay_core::testing::store_contract::{RETENTION, fresh_bot, new_event};
use relay_core::{Appended, BotId, EventId, EventKind, NewEvent, Session, StoredEvent};
use relay_sqlite::events::SqliteStore;
use tempfile::TempDir;

/// A store that deletes its directory when the contract case drops it.
struct TempStore {
    // Declared first so it is dropped (writer joined, file closed) before the directory goes.
    store: SqliteStore,
    _dir: TempDir,
}

#[async_trait]
impl EventStore for TempStore {
    async fn append(&self, event: NewEvent) -> Result<Appended, StoreError> {
        self.store.append(event).await
    }

    async fn session(&self, bot: &BotId) -> Result<Option<Session>, StoreError> {
        self.store.session(bot).await
    }

    async fn ensure_session(
        &self,
        bot: &BotId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Session, StoreError> {
        self.store.ensure_session(bot, now).await
    }

    async fn events_after(
        &self,
        bot: &BotId,
        after: u64,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        self.store.events_after(bot, after, limit).await
    }

    async fn event(
        &self,
        bot: &BotId,
        event_id: &EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.store.event(bot, event_id).await
    }

    async fn open_sessions(
        &self,
        idle_before: chrono::DateTime<chrono::Utc>,
        cursor: Option<&OpenSession>,
        limit: u32,
    ) -> Result<Vec<OpenSession>, StoreError> {
        self.store.open_sessions(idle_before, cursor, limit).await
    }

    async fn recent_sessions(&self, limit: u32) -> Result<Vec<Session>, StoreError> {
        self.store.recent_sessions(limit).await
    }
}

fn temp_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    // A subdirectory that does not exist yet: `open` must create it.
    let path = dir.path().join("data").join("events.db");
    (dir, path)
}

fn temp_store() -> (TempDir, SqliteStore) {
    let (dir, path) = temp_path();
    let store = SqliteStore::open(&path, RETENTION).unwrap();
    (dir, store)
}

relay_core::event_store_contract!(async {
    let (dir, store) = temp_store();
    Arc::new(TempStore { store, _dir: dir }) as Arc<dyn EventStore>
});

fn status(bot: &BotId, key: &str, code: &str) -> NewEvent {
    let body =
        relay_core::testing::testdata::v1_status_change(bot.as_str(), code, "2026-11-29T09:00:00Z");
    new_event(bot, key, EventKind::BotStatusChange, Some(code), body)
}

fn plain(bot: &BotId, key: &str) -> NewEvent {
    new_event(
        bot,
        key,
        EventKind::Unknown,
        None,
        format!(r#"{{"key":"{key}"}}"#),
    )
}

fn received_days_ago(mut e: NewEvent, days: i64) -> NewEvent {
    e.received_at = Utc::now() - Duration::days(days);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_survives_drop_and_reopen() {
    let (_dir, path) = temp_path();
    let (bot, other) = (fresh_bot("reopen"), fresh_bot("reopen"));
    let store = SqliteStore::open(&path, RETENTION).unwrap();
    let started = status(&bot, "b", "in_call_recording");
    for e in [
        status(&bot, "a", "joining_call"),
        started.clone(),
        plain(&bot, "c"),
        plain(&other, "x"),
    ] {
        assert!(!store.append(e).await.unwrap().is_duplicate());
    }
    let session = store.session(&bot).await.unwrap().unwrap();
    let events = store.events_after(&bot, 0, 100).await.unwrap();
    let feed = store.events_since_position(0, 100).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path, RETENTION).unwrap();
    assert_eq!(store.session(&bot).await.unwrap(), Some(session));
    assert_eq!(store.events_after(&bot, 0, 100).await.unwrap(), events);
    assert_eq!(store.events_since_position(0, 100).await.unwrap(), feed);
    // Idempotency and the session machine carry on where they stopped.
    assert_eq!(
        store.append(started.clone()).await.unwrap(),
        Appended::Duplicate {
            event_id: started.event_id,
            seq: 2,
            kind: EventKind::MeetingStarted
        }
    );
    let Appended::Stored(next) = store.append(plain(&bot, "d")).await.unwrap() else {
        panic!("a new key after restart is stored")
    };
    assert_eq!(next.seq, 4);
    assert_eq!(next.status, relay_core::Status::Recording);
    // Feed positions keep growing across a restart.
    let after = store.events_since_position(feed[3].0, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].0 > feed[3].0);
    assert_eq!(after[0].1, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_across_bots_are_gap_free() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let bots: Vec<BotId> = (0..5).map(|_| fresh_bot("load")).collect();
    const PER_BOT: u64 = 100;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PER_BOT {
        for bot in &bots {
            let (store, e) = (store.clone(), plain(bot, &format!("k{i}")));
            tasks.spawn(async move { store.append(e).await });
        }
    }
    let mut stored = 0;
    while let Some(r) = tasks.join_next().await {
        assert!(matches!(r.unwrap().unwrap(), Appended::Stored(_)));
        stored += 1;
    }
    assert_eq!(stored, 500);
    for bot in &bots {
        let page = store.events_after(bot, 0, 1000).await.unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=PER_BOT).collect::<Vec<_>>(), "bot {bot}");
        assert!(!page.more);
        let session = store.session(bot).await.unwrap().unwrap();
        assert_eq!(session.seq, PER_BOT);
    }
    // The feed holds every row once, in commit order, and each bot's seqs rise along it.
    let feed = store.events_since_position(0, 1000).await.unwrap();
    assert_eq!(feed.len(), 500);
    assert!(feed.windows(2).all(|w| w[0].0 < w[1].0));
    for bot in &bots {
        let seqs: Vec<u64> = feed
            .iter()
            .filter(|(_, e)| &e.bot_id == bot)
            .map(|(_, e)| e.seq)
            .collect();
        assert_eq!(seqs, (1..=PER_BOT).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_expired_removes_only_expired_rows() {
    let (_dir, store) = temp_store();
    let (old, mixed, fresh) = (fresh_bot("old"), fresh_bot("mixed"), fresh_bot("new"));
    for key in ["a", "b", "c"] {
        let e = received_days_ago(plain(&old, key), 10);
        store.append(e).await.unwrap();
    }
    store
        .append(received_days_ago(plain(&mixed, "a"), 10))
        .await
        .unwrap();
    let Appended::Stored(kept) = store.append(plain(&mixed, "b")).await.unwrap() else {
        panic!("stored")
    };
    for key in ["a", "b"] {
        store.append(plain(&fresh, key)).await.unwrap();
    }
    let fresh_before = store.events_after(&fresh, 0, 100).await.unwrap();

    let now = Utc::now().timestamp();
    assert_eq!(store.purge_expired(now).await.unwrap(), 4);
    assert_eq!(store.purge_expired(now).await.unwrap(), 0, "nothing left");

    // Every event of `old` is gone, and so is its session: it outlived its retention.
    assert!(
        store
            .events_after(&old, 0, 100)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(store.session(&old).await.unwrap(), None);
    // `mixed` keeps its live event and its session (updated recently).
    let left = store.events_after(&mixed, 0, 100).await.unwrap();
    assert_eq!(left.events, vec![kept.clone()]);
    assert_eq!(store.session(&mixed).await.unwrap().map(|s| s.seq), Some(2));
    assert_eq!(
        store.events_after(&fresh, 0, 100).await.unwrap(),
        fresh_before
    );

    // `expires_at` is the first second at which a row may go.
    assert_eq!(store.purge_expired(kept.expires_at - 1).await.unwrap(), 0);
    assert!(store.purge_expired(kept.expires_at).await.unwrap() >= 1);
    assert!(
        store
            .events_after(&mixed, 0, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );

    // A purged bot starts over cleanly.
    let again = store.append(plain(&old, "d")).await.unwrap();
    assert_eq!(again.seq(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_works_through_more_rows_than_one_step() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let bot = fresh_bot("bulk");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2_100 {
        let (store, e) = (
            store.clone(),
            received_days_ago(plain(&bot, &format!("{i}")), 30),
        );
        tasks.spawn(async move { store.append(e).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let now = Utc::now().timestamp();
    assert_eq!(store.purge_expired(now).await.unwrap(), 2_100);
    assert!(store.events_since_position(0, 10).await.unwrap().is_empty());
    assert_eq!(store.session(&bot).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_feed_returns_rows_in_insertion_order() {
    let (_dir, store) = temp_store();
    let bots: Vec<BotId> = (0..3).map(|_| fresh_bot("feed")).collect();
    let mut inserted = Vec::new();
    for i in 0..4 {
        for bot in &bots {
            let e = plain(bot, &format!("k{i}"));
            inserted.push(e.event_id.clone());
            store.append(e).await.unwrap();
        }
    }
    let all = store.events_since_position(0, 1000).await.unwrap();
    let ids: Vec<EventId> = all.iter().map(|(_, e)| e.event_id.clone()).collect();
    assert_eq!(ids, inserted);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));

    // Paging from the last position seen walks the same sequence.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_since_position(after, 5).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.0;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(
        store
            .events_since_position(after, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A limit of 0 is clamped to 1, like `events_after`.
    assert_eq!(store.events_since_position(0, 0).await.unwrap().len(), 1);
    let first = store.events_after(&bots[0], 0, 0).await.unwrap();
    assert_eq!((first.events.len(), first.more), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_rows_are_reported_as_corrupt() {
    let (_dir, path) = temp_path();
    let store = SqliteStore::open(&path, RETENTION).unwrap();
    let (bot, other) = (fresh_bot("bad"), fresh_bot("ok"));
    let e = plain(&bot, "a");
    let id = e.event_id.clone();
    store.append(e).await.unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE events SET kind = 'bogus' WHERE bot_id = ?1",
        [bot.as_str()],
    )
    .unwrap();
    raw.execute(
        "UPDATE sessions SET doc = 'not json' WHERE bot_id = ?1",
        [bot.as_str()],
    )
    .unwrap();
    drop(raw);

    assert!(matches!(
        store.event(&bot, &id).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.events_after(&bot, 0, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.session(&bot).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.append(plain(&bot, "b")).await,
        Err(StoreError::Corrupt(_))
    ));
    // Other bots are unaffected.
    assert_eq!(store.append(plain(&other, "a")).await.unwrap().seq(), 1);
}
