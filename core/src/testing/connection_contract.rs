//! The one behavioural suite every [`ConnectionStore`] adapter must pass; adapter test files
//! call [`connection_store_contract!`](crate::connection_store_contract).

use std::sync::Arc;

use chrono::Utc;

use crate::domain::bot_id::BotId;
use crate::domain::token::Scope;
use crate::ports::connections::{Connection, ConnectionId, ConnectionStore, Subscriber};
use crate::testing::store_contract::fresh_bot;

pub fn fresh_connection(bots: &[&BotId]) -> Connection {
    let n: u64 = rand::random();
    let now = Utc::now();
    Connection {
        id: ConnectionId::parse(&format!("c{n:016x}=")).expect("valid id"),
        sub: "user-1".into(),
        bots: bots.iter().map(|b| b.to_string()).collect(),
        scope: Scope::Read,
        token_exp: now.timestamp() + 3600,
        connected_at: now,
        expires_at: Connection::expiry_for(now),
    }
}

fn sorted(v: Vec<ConnectionId>) -> Vec<ConnectionId> {
    let mut v = v;
    v.sort();
    v
}

/// The ids of a subscriber list, in its order.
pub fn ids(subscribers: Vec<Subscriber>) -> Vec<ConnectionId> {
    subscribers.into_iter().map(|s| s.id).collect()
}

pub async fn put_get_remove(store: Arc<dyn ConnectionStore>) {
    let bot = fresh_bot("conn");
    let c = fresh_connection(&[&bot]);
    assert_eq!(store.get(&c.id).await.expect("get"), None);
    store.put(&c).await.expect("put");
    assert_eq!(store.get(&c.id).await.expect("get"), Some(c.clone()));
    store.remove(&c.id).await.expect("remove");
    assert_eq!(store.get(&c.id).await.expect("get"), None);
    store.remove(&c.id).await.expect("removing twice is fine");
}

pub async fn subscribers_are_found_by_bot(store: Arc<dyn ConnectionStore>) {
    let (a, b) = (fresh_bot("subs"), fresh_bot("subs"));
    let c1 = fresh_connection(&[&a, &b]);
    let c2 = fresh_connection(&[&a]);
    let c3 = fresh_connection(&[&b]);
    for c in [&c1, &c2, &c3] {
        store.put(c).await.expect("put");
    }
    store.subscribe(&c1, &a).await.expect("sub");
    store
        .subscribe(&c1, &a)
        .await
        .expect("subscribing twice is idempotent");
    store.subscribe(&c1, &b).await.expect("sub");
    store.subscribe(&c2, &a).await.expect("sub");
    store.subscribe(&c3, &b).await.expect("sub");
    assert_eq!(
        sorted(ids(store.subscribers(&a).await.expect("subs"))),
        sorted(vec![c1.id.clone(), c2.id.clone()])
    );
    assert_eq!(
        sorted(ids(store.subscribers(&b).await.expect("subs"))),
        sorted(vec![c1.id.clone(), c3.id.clone()])
    );
    assert!(
        store
            .subscribers(&fresh_bot("subs"))
            .await
            .expect("subs")
            .is_empty()
    );

    store.unsubscribe(&c1.id, &a).await.expect("unsub");
    assert_eq!(
        ids(store.subscribers(&a).await.expect("subs")),
        vec![c2.id.clone()]
    );
    store
        .unsubscribe(&c1.id, &a)
        .await
        .expect("unsubscribing twice is fine");
}

pub async fn removing_a_connection_removes_its_subscriptions(store: Arc<dyn ConnectionStore>) {
    let (a, b) = (fresh_bot("rm"), fresh_bot("rm"));
    let c1 = fresh_connection(&[&a, &b]);
    let c2 = fresh_connection(&[&a]);
    for c in [&c1, &c2] {
        store.put(c).await.expect("put");
    }
    store.subscribe(&c1, &a).await.expect("sub");
    store.subscribe(&c1, &b).await.expect("sub");
    store.subscribe(&c2, &a).await.expect("sub");
    store.remove(&c1.id).await.expect("remove");
    assert_eq!(
        ids(store.subscribers(&a).await.expect("subs")),
        vec![c2.id.clone()]
    );
    assert!(store.subscribers(&b).await.expect("subs").is_empty());
}

pub async fn many_subscribers_of_one_bot(store: Arc<dyn ConnectionStore>) {
    let bot = fresh_bot("many");
    let mut ids = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let c = fresh_connection(&[&bot]);
        ids.push(c.id.clone());
        let (store, bot) = (store.clone(), bot.clone());
        tasks.spawn(async move {
            store.put(&c).await?;
            store.subscribe(&c, &bot).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("put+subscribe");
    }
    // More than one DynamoDB page of keys would hold if items were large; all are returned.
    assert_eq!(
        sorted(self::ids(store.subscribers(&bot).await.expect("subs"))),
        sorted(ids)
    );
}

pub async fn records_carry_their_expiry(store: Arc<dyn ConnectionStore>) {
    let bot = fresh_bot("ttl");
    let c = fresh_connection(&[&bot]);
    store.put(&c).await.expect("put");
    let got = store.get(&c.id).await.expect("get").expect("exists");
    assert_eq!(
        got.expires_at,
        c.connected_at.timestamp() + 2 * 3600 + 15 * 60
    );
}

/// Each subscriber comes with its token's expiry, from the same lookup.
pub async fn subscribers_carry_their_token_expiry(store: Arc<dyn ConnectionStore>) {
    let bot = fresh_bot("exp");
    let mut soon = fresh_connection(&[&bot]);
    soon.token_exp = Utc::now().timestamp() + 5;
    let later = fresh_connection(&[&bot]);
    for c in [&soon, &later] {
        store.put(c).await.expect("put");
        store.subscribe(c, &bot).await.expect("sub");
    }
    let mut got = store.subscribers(&bot).await.expect("subs");
    got.sort();
    let mut want = vec![
        Subscriber {
            id: soon.id.clone(),
            token_exp: soon.token_exp,
        },
        Subscriber {
            id: later.id.clone(),
            token_exp: later.token_exp,
        },
    ];
    want.sort();
    assert_eq!(got, want);
}

/// Expands to one `#[tokio::test]` per case; `$make` is an async expression yielding an
/// `Arc<dyn ConnectionStore>`.
#[macro_export]
macro_rules! connection_store_contract {
    ($make:expr) => {
        $crate::connection_store_contract!(@cases $make;
            put_get_remove,
            subscribers_are_found_by_bot,
            removing_a_connection_removes_its_subscriptions,
            many_subscribers_of_one_bot,
            records_carry_their_expiry,
            subscribers_carry_their_token_expiry
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::ports::connections::ConnectionStore> = $make.await;
                $crate::testing::connection_contract::$case(store).await;
            }
        )*
    };
}
