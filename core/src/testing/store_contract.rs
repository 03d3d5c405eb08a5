//! The one behavioural suite every [`EventStore`] adapter must pass. Adapter test files call
//! [`event_store_contract!`](crate::event_store_contract) with a constructor; each case uses
//! fresh bot ids, so one store (one moto server, one SQLite file) can serve all of them.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, EventKind, Family, NewEvent};
use crate::domain::session::Status;
use crate::ports::store::{Appended, EventStore, Retention};
use crate::testing::testdata;

/// The retention the suite's stores must be built with.
pub const RETENTION: Retention = Retention { days: 7 };

pub fn fresh_bot(label: &str) -> BotId {
    let n: u64 = rand::random();
    BotId::parse(&format!("{label}-{n:016x}")).expect("generated bot ids are valid")
}

pub fn new_event(
    bot: &BotId,
    key: &str,
    kind: EventKind,
    code: Option<&str>,
    body: String,
) -> NewEvent {
    NewEvent {
        bot_id: bot.clone(),
        event_id: EventId::derive(bot, key),
        idempotency_key: key.to_owned(),
        kind,
        source_event: kind.as_str().to_owned(),
        family: Family::V1,
        status_code: code.map(str::to_owned),
        occurred_at: None,
        error: None,
        attempt: None,
        max: None,
        outcome: None,
        received_at: Utc::now(),
        body,
    }
}

fn status_event(bot: &BotId, key: &str, code: &str) -> NewEvent {
    let body = testdata::v1_status_change(bot.as_str(), code, "2026-11-29T09:00:00Z");
    new_event(bot, key, EventKind::BotStatusChange, Some(code), body)
}

pub async fn new_then_duplicate(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("dup");
    let e = status_event(&bot, "key-1", "joining_call");
    let first = store.append(e.clone()).await.expect("append");
    let Appended::Stored(stored) = &first else {
        panic!("first delivery must be stored: {first:?}")
    };
    assert_eq!(stored.seq, 1);
    assert_eq!(stored.status, Status::Joining);

    let again = store.append(e.clone()).await.expect("append duplicate");
    assert_eq!(
        again,
        Appended::Duplicate {
            event_id: e.event_id.clone(),
            seq: 1,
            kind: EventKind::BotStatusChange
        }
    );
    let session = store
        .session(&bot)
        .await
        .expect("session")
        .expect("session exists");
    assert_eq!(session.seq, 1, "a duplicate must not advance the session");
    let page = store.events_after(&bot, 0, 100).await.expect("list");
    assert_eq!(page.events.len(), 1);

    // The same key under another bot is another event.
    let other = fresh_bot("dup");
    let e2 = status_event(&other, "key-1", "joining_call");
    assert!(matches!(
        store.append(e2).await.expect("append"),
        Appended::Stored(_)
    ));
}

pub async fn concurrent_identical_stores_store_once(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("race");
    let e = status_event(&bot, "same-delivery", "in_call_recording");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (store, e) = (store.clone(), e.clone());
        tasks.spawn(async move { store.append(e).await });
    }
    let mut stored = 0;
    let mut dups = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task").expect("append") {
            Appended::Stored(s) => {
                stored += 1;
                assert_eq!(s.seq, 1);
                assert_eq!(s.kind, EventKind::MeetingStarted);
            }
            Appended::Duplicate {
                event_id,
                seq,
                kind,
            } => {
                dups += 1;
                assert_eq!(
                    (event_id, seq, kind),
                    (e.event_id.clone(), 1, EventKind::MeetingStarted)
                );
            }
        }
    }
    assert_eq!((stored, dups), (1, 49));
    assert_eq!(
        store
            .events_after(&bot, 0, 100)
            .await
            .expect("list")
            .events
            .len(),
        1
    );
    assert_eq!(
        store.session(&bot).await.expect("session").map(|s| s.seq),
        Some(1)
    );
}

pub async fn seq_is_ordered_and_gap_free_per_bot(store: Arc<dyn EventStore>) {
    let bots: Vec<BotId> = (0..3).map(|_| fresh_bot("seq")).collect();
    const PER_BOT: usize = 20;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PER_BOT {
        for bot in &bots {
            let (store, bot) = (store.clone(), bot.clone());
            tasks.spawn(async move {
                let e = new_event(
                    &bot,
                    &format!("k{i}"),
                    EventKind::Unknown,
                    None,
                    format!(r#"{{"i":{i}}}"#),
                );
                store.append(e).await
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        assert!(matches!(
            r.expect("task").expect("append"),
            Appended::Stored(_)
        ));
    }
    for bot in &bots {
        let page = store.events_after(bot, 0, 1000).await.expect("list");
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=PER_BOT as u64).collect::<Vec<_>>(), "bot {bot}");
        assert!(page.events.iter().all(|e| &e.bot_id == bot));
        let mut keys: Vec<&str> = page
            .events
            .iter()
            .map(|e| e.idempotency_key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), PER_BOT);
        assert_eq!(
            store.session(bot).await.expect("session").map(|s| s.seq),
            Some(PER_BOT as u64)
        );
    }
}

pub async fn out_of_order_statuses_never_regress(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("order");
    for (key, code) in [
        ("a", "in_call_recording"),
        ("b", "joining_call"),
        ("c", "call_ended"),
        ("d", "in_waiting_room"),
    ] {
        store
            .append(status_event(&bot, key, code))
            .await
            .expect("append");
    }
    let s = store.session(&bot).await.expect("session").expect("exists");
    assert_eq!(s.status, Status::Ended);
    assert_eq!(s.status_code.as_deref(), Some("in_waiting_room"));
    assert!(s.meeting_started);

    let done = new_event(&bot, "e", EventKind::MeetingCompleted, None, "{}".into());
    store.append(done).await.expect("append");
    let failed = new_event(&bot, "f", EventKind::MeetingFailed, None, "{}".into());
    let Appended::Stored(late) = store.append(failed).await.expect("append") else {
        panic!("stored")
    };
    assert_eq!(late.status, Status::Completed, "terminal status sticks");
    let s = store.session(&bot).await.expect("session").expect("exists");
    assert_eq!((s.status, s.seq), (Status::Completed, 6));
    assert_eq!(s.last_event_id, Some(late.event_id));
}

pub async fn large_body_round_trips_exactly(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("big");
    let body = testdata::v1_complete_of_size(bot.as_str(), 5 * 1024 * 1024, 3);
    let e = new_event(&bot, "big", EventKind::MeetingCompleted, None, body.clone());
    let Appended::Stored(stored) = store.append(e.clone()).await.expect("append") else {
        panic!("stored")
    };
    let read = store
        .event(&bot, &stored.event_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.body.len(), body.len());
    assert!(read.body == body, "body must round-trip byte for byte");
    let want: Value = serde_json::from_str(&body).expect("json");
    let got: Value = serde_json::from_str(&read.body).expect("json");
    assert_eq!(got, want);
    let listed = store.events_after(&bot, 0, 10).await.expect("list");
    assert!(
        listed.events[0].body == body,
        "listing returns whole bodies too"
    );
    // Storing it again is still a duplicate, not a second copy.
    assert!(store.append(e).await.expect("append").is_duplicate());
}

pub async fn ttl_is_set_from_retention(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("ttl");
    let e = status_event(&bot, "t", "joining_call");
    let received = e.received_at;
    let Appended::Stored(stored) = store.append(e).await.expect("append") else {
        panic!("stored")
    };
    let want = received.timestamp() + 7 * 86_400;
    assert_eq!(stored.expires_at, want);
    let read = store
        .event(&bot, &stored.event_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.expires_at, want);
}

pub async fn list_pages_in_order(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("page");
    for i in 0..25 {
        store
            .append(new_event(
                &bot,
                &format!("p{i}"),
                EventKind::Unknown,
                None,
                format!(r#"{{"n":{i}}}"#),
            ))
            .await
            .expect("append");
    }
    let mut after = 0;
    let mut sizes = Vec::new();
    let mut bodies = Vec::new();
    loop {
        let page = store.events_after(&bot, after, 10).await.expect("list");
        sizes.push(page.events.len());
        bodies.extend(page.events.iter().map(|e| e.body.clone()));
        match page.events.last() {
            Some(last) if page.more => after = last.seq,
            _ => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(
        bodies,
        (0..25)
            .map(|i| format!(r#"{{"n":{i}}}"#))
            .collect::<Vec<_>>()
    );
    let tail = store.events_after(&bot, 22, 10).await.expect("list");
    assert_eq!(
        tail.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![23, 24, 25]
    );
    assert!(!tail.more);
    assert!(
        store
            .events_after(&bot, 25, 10)
            .await
            .expect("list")
            .events
            .is_empty()
    );
}

pub async fn reads_of_unknown_things_are_empty(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("none");
    assert!(store.session(&bot).await.expect("session").is_none());
    assert!(
        store
            .events_after(&bot, 0, 10)
            .await
            .expect("list")
            .events
            .is_empty()
    );
    let id = EventId::derive(&bot, "never");
    assert!(store.event(&bot, &id).await.expect("read").is_none());

    // An event is found only under its own bot.
    let e = status_event(&bot, "x", "joining_call");
    let id = e.event_id.clone();
    store.append(e).await.expect("append");
    assert!(store.event(&bot, &id).await.expect("read").is_some());
    assert!(
        store
            .event(&fresh_bot("none"), &id)
            .await
            .expect("read")
            .is_none()
    );
}

pub async fn ensure_session_creates_once_and_never_disturbs(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("start");
    let now = Utc::now();
    let created = store.ensure_session(&bot, now).await.expect("ensure");
    assert_eq!((created.status, created.seq), (Status::Starting, 0));
    assert_eq!(
        store.session(&bot).await.expect("session"),
        Some(created.clone())
    );
    assert_eq!(
        store.ensure_session(&bot, Utc::now()).await.expect("again"),
        created,
        "idempotent"
    );
    // Events then apply on top of it as usual, and a later ensure leaves them alone.
    store
        .append(status_event(&bot, "k1", "joining_call"))
        .await
        .expect("append");
    let later = store
        .ensure_session(&bot, Utc::now())
        .await
        .expect("ensure after events");
    assert_eq!((later.status, later.seq), (Status::Joining, 1));
    assert_eq!(later.created_at, created.created_at);
}

/// Expands to one `#[tokio::test]` per contract case; `$make` is an async expression that
/// yields an `Arc<dyn EventStore>` built with [`RETENTION`].
/// An event with every field set comes back from `event()` and `events_after()` exactly as
/// `append` returned it (times to the nanosecond).
pub async fn every_field_round_trips(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("fields");
    let body = testdata::v1_status_change(
        bot.as_str(),
        "in_waiting_room",
        "2026-11-29T09:00:00.123+02:00",
    );
    let mut event = new_event(
        &bot,
        "d:msg_every_field",
        EventKind::BotStatusChange,
        Some("in_waiting_room"),
        body,
    );
    event.source_event = "bot.status_change".to_owned();
    event.family = Family::V2;
    event.occurred_at = Some("2026-11-29T09:00:00.123+02:00".to_owned());
    event.received_at = chrono::DateTime::parse_from_rfc3339("2026-11-29T07:00:01.123456789Z")
        .expect("time")
        .with_timezone(&Utc);
    let Appended::Stored(stored) = store.append(event).await.expect("append") else {
        panic!("first delivery must be stored");
    };
    assert_eq!(stored.family, Family::V2);
    assert_eq!(stored.status_code.as_deref(), Some("in_waiting_room"));
    assert_eq!(stored.received_at.timestamp_subsec_nanos(), 123_456_789);
    let by_id = store
        .event(&bot, &stored.event_id)
        .await
        .expect("event")
        .expect("found");
    assert_eq!(by_id, stored);
    let page = store.events_after(&bot, 0, 10).await.expect("list");
    assert_eq!(page.events, vec![stored]);
}

/// The same outcome by a second path (webhook, then callback) is stored under its own key
/// as a repeat of the first, and changes nothing.
pub async fn an_outcome_by_a_second_path_is_a_repeat(store: Arc<dyn EventStore>) {
    let bot = fresh_bot("repeat");
    let body = |n: u32| format!(r#"{{"event":"complete","data":{{"bot_id":"{bot}","n":{n}}}}}"#);
    let first = store
        .append(new_event(
            &bot,
            "d:webhook",
            EventKind::MeetingCompleted,
            None,
            body(1),
        ))
        .await
        .expect("append");
    let again = store
        .append(new_event(
            &bot,
            "b:callback",
            EventKind::MeetingCompleted,
            None,
            body(2),
        ))
        .await
        .expect("append");
    let Appended::Stored(again) = again else {
        panic!("another delivery is another event");
    };
    assert_eq!(again.repeat_of.as_ref(), Some(first.event_id()));
    assert_eq!(again.status, Status::Completed);
    let read = store
        .event(&bot, &again.event_id)
        .await
        .expect("event")
        .expect("found");
    assert_eq!(read.repeat_of.as_ref(), Some(first.event_id()));
    let page = store.events_after(&bot, 0, 10).await.expect("list");
    assert_eq!(page.events[0].repeat_of, None);
    assert_eq!(page.events[1].repeat_of.as_ref(), Some(first.event_id()));
    let session = store.session(&bot).await.expect("session").expect("exists");
    assert_eq!((session.status, session.seq), (Status::Completed, 2));
}

/// An event of the account-level bot (no session lifecycle), received at `at`.
async fn append_account_level_event(store: &dyn EventStore, at: chrono::DateTime<Utc>) {
    let calendar = BotId::parse(crate::domain::payload::CALENDAR_BOT).expect("valid");
    let mut event = new_event(
        &calendar,
        &format!("cal-{}", fresh_bot("k")),
        EventKind::Unknown,
        None,
        "{}".into(),
    );
    event.received_at = at;
    store.append(event).await.expect("append");
}

/// The open-session index: open sessions idle past the cut, oldest first, paged by cursor;
/// a session leaves it when final, the account-level bot is never in it.
pub async fn open_sessions_are_indexed_oldest_first(store: Arc<dyn EventStore>) {
    let now = Utc::now();
    let hours = |h: i64| now - chrono::Duration::hours(h);
    let at = |mut e: NewEvent, when| {
        e.received_at = when;
        e
    };
    let (a, b, c, done, fresh) = (
        fresh_bot("open-a"),
        fresh_bot("open-b"),
        fresh_bot("open-c"),
        fresh_bot("open-done"),
        fresh_bot("open-fresh"),
    );
    store
        .append(at(status_event(&b, "j", "joining_call"), hours(2)))
        .await
        .expect("append");
    store
        .ensure_session(&a, hours(3))
        .await
        .expect("ensure session");
    store
        .append(at(status_event(&c, "r", "in_call_recording"), hours(1)))
        .await
        .expect("append");
    store
        .append(at(status_event(&done, "j", "joining_call"), hours(4)))
        .await
        .expect("append");
    let complete = format!(r#"{{"event":"complete","data":{{"bot_id":"{done}"}}}}"#);
    store
        .append(at(
            new_event(&done, "c", EventKind::MeetingCompleted, None, complete),
            hours(2),
        ))
        .await
        .expect("append");
    store
        .append(status_event(&fresh, "j", "joining_call"))
        .await
        .expect("append");
    append_account_level_event(&*store, hours(2)).await;

    // Page through everything idle for 30 minutes, two at a time (other cases' bots and
    // earlier runs may be there too), keeping ours.
    let cut = now - chrono::Duration::minutes(30);
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .open_sessions(cut, cursor.as_ref(), 2)
            .await
            .expect("open sessions");
        assert!(page.len() <= 2, "the limit holds");
        for open in &page {
            assert!(open.last_updated < cut, "only sessions idle past the cut");
            assert!(
                !open.bot_id.is_account_level(),
                "never the account-level bot"
            );
            assert!(!open.status.is_terminal(), "never a final session");
        }
        let Some(last) = page.last().cloned() else {
            break;
        };
        if let Some(previous) = &cursor {
            assert!(
                last.index_key() > previous.index_key(),
                "pages move forward"
            );
        }
        seen.extend(
            page.into_iter()
                .filter(|o| [&a, &b, &c, &done, &fresh].contains(&&o.bot_id)),
        );
        cursor = Some(last);
    }
    let ours: Vec<(&str, Status)> = seen.iter().map(|o| (o.bot_id.as_str(), o.status)).collect();
    assert_eq!(
        ours,
        vec![
            (a.as_str(), Status::Starting),
            (b.as_str(), Status::Joining),
            (c.as_str(), Status::Recording)
        ],
        "oldest first; the completed and the fresh sessions are not there"
    );
    assert_eq!(seen[0].last_updated, hours(3));
}

/// The recent-session index: every session, open or final, newest change first, the limit
/// held, never the account-level bot.
pub async fn recent_sessions_are_newest_first(store: Arc<dyn EventStore>) {
    let now = Utc::now();
    let later = |m: i64| now + chrono::Duration::minutes(m);
    let at = |mut e: NewEvent, when| {
        e.received_at = when;
        e
    };
    let (starting, recording, done) = (
        fresh_bot("recent-starting"),
        fresh_bot("recent-recording"),
        fresh_bot("recent-done"),
    );
    store
        .ensure_session(&starting, later(1))
        .await
        .expect("ensure session");
    store
        .append(at(
            status_event(&recording, "r", "in_call_recording"),
            later(2),
        ))
        .await
        .expect("append");
    store
        .append(at(status_event(&done, "j", "joining_call"), later(1)))
        .await
        .expect("append");
    let complete = format!(r#"{{"event":"complete","data":{{"bot_id":"{done}"}}}}"#);
    store
        .append(at(
            new_event(&done, "c", EventKind::MeetingCompleted, None, complete),
            later(3),
        ))
        .await
        .expect("append");
    append_account_level_event(&*store, later(4)).await;

    // Other cases' bots (and earlier runs') may be there too: keep ours, in the order given.
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed = store
            .recent_sessions(crate::ports::store::MAX_PAGE)
            .await
            .expect("recent sessions");
        let found = listed
            .iter()
            .filter(|s| [&starting, &recording, &done].contains(&&s.bot_id))
            .count();
        // The DynamoDB index is eventually consistent.
        if found == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].last_updated >= w[1].last_updated),
        "newest change first"
    );
    assert!(
        listed.iter().all(|s| !s.bot_id.is_account_level()),
        "never the account-level bot"
    );
    let ours: Vec<(&str, Status)> = listed
        .iter()
        .filter(|s| [&starting, &recording, &done].contains(&&s.bot_id))
        .map(|s| (s.bot_id.as_str(), s.status))
        .collect();
    assert_eq!(
        ours,
        vec![
            (done.as_str(), Status::Completed),
            (recording.as_str(), Status::Recording),
            (starting.as_str(), Status::Starting),
        ],
        "open and final sessions, newest change first"
    );
    let two = store.recent_sessions(2).await.expect("recent sessions");
    assert!(two.len() <= 2, "the limit holds");
}

#[macro_export]
macro_rules! event_store_contract {
    ($make:expr) => {
        $crate::event_store_contract!(@cases $make;
            new_then_duplicate,
            concurrent_identical_stores_store_once,
            seq_is_ordered_and_gap_free_per_bot,
            out_of_order_statuses_never_regress,
            large_body_round_trips_exactly,
            ttl_is_set_from_retention,
            list_pages_in_order,
            reads_of_unknown_things_are_empty,
            ensure_session_creates_once_and_never_disturbs,
            every_field_round_trips,
            an_outcome_by_a_second_path_is_a_repeat,
            open_sessions_are_indexed_oldest_first,
            recent_sessions_are_newest_first
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::ports::store::EventStore> = $make.await;
                $crate::testing::store_contract::$case(store).await;
            }
        )*
    };
}
