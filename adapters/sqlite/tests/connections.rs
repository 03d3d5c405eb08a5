//! The SQLite connection store: the shared contract suite, then what only this adapter
//! promises (records survive a reopen, expired rows are ignored and purged).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use relay_core::BotId;
use relay_core::ports::connections::{Connection, ConnectionId, ConnectionStore, Subscriber};
use relay_core::ports::store::StoreError;
use relay_core::testing::connection_contract::{fresh_connection, ids};
use relay_core::testing::store_contract::fresh_bot;
use relay_sqlite::connections::SqliteConnections;
use tempfile::TempDir;

/// A store that deletes its directory when the contract case drops it.
struct TempStore {
    // Declared first so the file is closed before the directory goes.
    store: SqliteConnections,
    _dir: TempDir,
}

#[async_trait]
impl ConnectionStore for TempStore {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
        self.store.put(connection).await
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.store.get(id).await
    }

    async fn remove(&self, id: &ConnectionId) -> Result<(), StoreError> {
        self.store.remove(id).await
    }

    async fn subscribe(&self, connection: &Connection, bot: &BotId) -> Result<(), StoreError> {
        self.store.subscribe(connection, bot).await
    }

    async fn unsubscribe(&self, id: &ConnectionId, bot: &BotId) -> Result<(), StoreError> {
        self.store.unsubscribe(id, bot).await
    }

    async fn subscribers(&self, bot: &BotId) -> Result<Vec<Subscriber>, StoreError> {
        self.store.subscribers(bot).await
    }
}

fn temp_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    // A subdirectory that does not exist yet: `open` must create it.
    let path = dir.path().join("data").join("connections.sqlite3");
    (dir, path)
}

relay_core::connection_store_contract!(async {
    let (dir, path) = temp_path();
    let store = SqliteConnections::open(&path).unwrap();
    Arc::new(TempStore { store, _dir: dir }) as Arc<dyn ConnectionStore>
});

/// A connection that connected `ago` before now (so it expires 2 h 15 min after that).
fn connected_ago(bots: &[&BotId], ago: Duration) -> Connection {
    let mut c = fresh_connection(bots);
    c.connected_at = Utc::now() - ago;
    c.expires_at = Connection::expiry_for(c.connected_at);
    c
}

fn sorted(mut v: Vec<ConnectionId>) -> Vec<ConnectionId> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_survives_drop_and_reopen() {
    let (_dir, path) = temp_path();
    let (a, b) = (fresh_bot("reopen"), fresh_bot("reopen"));
    let (c1, c2) = (fresh_connection(&[&a, &b]), fresh_connection(&[&a]));
    let store = SqliteConnections::open(&path).unwrap();
    for c in [&c1, &c2] {
        store.put(c).await.unwrap();
    }
    store.subscribe(&c1, &a).await.unwrap();
    store.subscribe(&c1, &b).await.unwrap();
    store.subscribe(&c2, &a).await.unwrap();
    drop(store);

    let store = SqliteConnections::open(&path).unwrap();
    assert_eq!(store.get(&c1.id).await.unwrap(), Some(c1.clone()));
    assert_eq!(store.get(&c2.id).await.unwrap(), Some(c2.clone()));
    assert_eq!(
        sorted(ids(store.subscribers(&a).await.unwrap())),
        sorted(vec![c1.id.clone(), c2.id.clone()])
    );
    assert_eq!(
        ids(store.subscribers(&b).await.unwrap()),
        vec![c1.id.clone()]
    );
    // And it carries on: removal after a restart takes the subscriptions with it.
    store.remove(&c1.id).await.unwrap();
    assert_eq!(
        ids(store.subscribers(&a).await.unwrap()),
        vec![c2.id.clone()]
    );
    assert!(store.subscribers(&b).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_expired_removes_only_expired_rows() {
    let (_dir, path) = temp_path();
    let store = SqliteConnections::open(&path).unwrap();
    let (a, b) = (fresh_bot("purge"), fresh_bot("purge"));
    // `old` expires an hour before `new`; purging as of `old`'s expiry drops only `old`.
    let old = connected_ago(&[&a, &b], Duration::hours(1));
    let new = fresh_connection(&[&a]);
    for c in [&old, &new] {
        store.put(c).await.unwrap();
    }
    store.subscribe(&old, &a).await.unwrap();
    store.subscribe(&old, &b).await.unwrap();
    store.subscribe(&new, &a).await.unwrap();

    // `expires_at` is the first second at which a row may go.
    assert_eq!(store.purge_expired(old.expires_at - 1).await.unwrap(), 0);
    assert_eq!(
        sorted(ids(store.subscribers(&a).await.unwrap())),
        sorted(vec![old.id.clone(), new.id.clone()])
    );

    assert_eq!(store.purge_expired(old.expires_at).await.unwrap(), 1);
    assert_eq!(store.purge_expired(old.expires_at).await.unwrap(), 0);
    assert_eq!(store.get(&old.id).await.unwrap(), None);
    assert_eq!(store.get(&new.id).await.unwrap(), Some(new.clone()));
    assert_eq!(
        ids(store.subscribers(&a).await.unwrap()),
        vec![new.id.clone()]
    );
    assert!(store.subscribers(&b).await.unwrap().is_empty());

    // The rows are gone from the file, not just hidden.
    let db = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM connections"), 1);
    assert_eq!(count("SELECT count(*) FROM subscriptions"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_works_through_more_rows_than_one_step() {
    let (_dir, path) = temp_path();
    let store = Arc::new(SqliteConnections::open(&path).unwrap());
    let bot = fresh_bot("bulk");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..2_100 {
        let (store, bot) = (store.clone(), bot.clone());
        tasks.spawn(async move {
            let c = fresh_connection(&[&bot]);
            store.put(&c).await?;
            store.subscribe(&c, &bot).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let later = Connection::expiry_for(Utc::now()) + 1;
    assert_eq!(store.purge_expired(later).await.unwrap(), 2_100);
    assert!(store.subscribers(&bot).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_records_are_ignored_before_the_purge() {
    let (_dir, path) = temp_path();
    let store = SqliteConnections::open(&path).unwrap();
    let bot = fresh_bot("expired");
    let (live, stale) = (fresh_connection(&[&bot]), fresh_connection(&[&bot]));
    for c in [&live, &stale] {
        store.put(c).await.unwrap();
        store.subscribe(c, &bot).await.unwrap();
    }
    // Age `stale` behind the store's back, as if its socket had vanished hours ago.
    let db = rusqlite::Connection::open(&path).unwrap();
    for sql in [
        "UPDATE connections SET expires_at = 1 WHERE id = ?1",
        "UPDATE subscriptions SET expires_at = 1 WHERE connection_id = ?1",
    ] {
        db.execute(sql, [stale.id.as_str()]).unwrap();
    }
    drop(db);

    assert_eq!(store.get(&stale.id).await.unwrap(), None);
    assert_eq!(
        ids(store.subscribers(&bot).await.unwrap()),
        vec![live.id.clone()]
    );
    // Subscribing an expired (or unknown) connection writes nothing.
    let other = fresh_bot("expired");
    store.subscribe(&stale, &other).await.unwrap();
    let unknown = fresh_connection(&[&other]);
    store.subscribe(&unknown, &other).await.unwrap();
    assert!(store.subscribers(&other).await.unwrap().is_empty());
    assert_eq!(
        store.purge_expired(Utc::now().timestamp()).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_rows_are_reported_as_corrupt() {
    let (_dir, path) = temp_path();
    let store = SqliteConnections::open(&path).unwrap();
    let bot = fresh_bot("bad");
    let c = fresh_connection(&[&bot]);
    store.put(&c).await.unwrap();
    store.subscribe(&c, &bot).await.unwrap();

    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute(
        "UPDATE connections SET doc = 'not json' WHERE id = ?1",
        [c.id.as_str()],
    )
    .unwrap();
    db.execute(
        "UPDATE subscriptions SET connection_id = 'not an id!' WHERE bot_id = ?1",
        [bot.as_str()],
    )
    .unwrap();
    drop(db);

    assert!(matches!(
        store.get(&c.id).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.subscribers(&bot).await,
        Err(StoreError::Corrupt(_))
    ));
}
