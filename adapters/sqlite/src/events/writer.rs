//! The single writer: its commands, the batches it runs in one transaction (each command in
//! its own savepoint), the append of one event and the purge.

use super::*;

pub(super) enum Command {
    Append {
        event: NewEvent,
        reply: Reply<Appended>,
    },
    Purge {
        job: Purge,
        reply: Reply<u64>,
    },
    EnsureSession {
        bot: BotId,
        now: DateTime<Utc>,
        reply: Reply<Session>,
    },
}

impl Command {
    fn weight(&self) -> usize {
        match self {
            Command::Append { event, .. } => event.body.len(),
            Command::Purge { .. } | Command::EnsureSession { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PurgeTarget {
    Events,
    Sessions,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Purge {
    pub(super) target: PurgeTarget,
    pub(super) now: i64,
    pub(super) limit: u32,
}

/// A request's result, held until the batch is committed.
pub(super) enum Done {
    Append(Reply<Appended>, Result<Appended, StoreError>),
    Purge(Reply<u64>, Result<u64, StoreError>),
    Session(Reply<Session>, Result<Session, StoreError>),
}

impl Done {
    fn fail(self, why: &str) -> Done {
        let err = || StoreError::Unavailable(why.to_owned());
        match self {
            Done::Append(reply, _) => Done::Append(reply, Err(err())),
            Done::Purge(reply, _) => Done::Purge(reply, Err(err())),
            Done::Session(reply, _) => Done::Session(reply, Err(err())),
        }
    }

    pub(super) fn send(self) {
        // A caller that stopped waiting no longer needs the answer; the write stands.
        match self {
            Done::Append(reply, result) => {
                let _ = reply.send(result);
            }
            Done::Purge(reply, result) => {
                let _ = reply.send(result);
            }
            Done::Session(reply, result) => {
                let _ = reply.send(result);
            }
        }
    }
}

pub(super) fn run_writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    retention: Retention,
    committed: watch::Sender<u64>,
) {
    // Blocks for the first request, then takes what queued up meanwhile (typically during
    // the previous fsync): the batch grows with the load, and an idle store commits at once.
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.weight();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.weight();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let done = run_batch(&mut conn, batch, retention);
        // Before the answers: a subscriber told of its event's 200 can count on the feed
        // having been woken for it.
        committed.send_modify(|n| *n = n.wrapping_add(1));
        for done in done {
            done.send();
        }
    }
}

/// Applies `batch` in one transaction, each request in its own savepoint, and commits once.
/// Results are handed back for sending only once they are durable; if the transaction cannot
/// be committed every request fails with `Unavailable`, since none of it happened.
pub(super) fn run_batch(
    conn: &mut Connection,
    batch: Vec<Command>,
    retention: Retention,
) -> Vec<Done> {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let why = format!("cannot begin a transaction: {e}");
            return batch.into_iter().map(|c| unrun(c, &why)).collect();
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    let mut aborted: Option<String> = None;
    for command in batch {
        if let Some(why) = &aborted {
            done.push(unrun(command, why));
            continue;
        }
        let mut undone = true;
        done.push(match command {
            Command::Append { event, reply } => {
                let r = in_savepoint(&mut tx, &mut undone, |c| append_one(c, event, retention));
                Done::Append(reply, r.map_err(StoreError::from))
            }
            Command::Purge { job, reply } => {
                let r = in_savepoint(&mut tx, &mut undone, |c| purge_step(c, job));
                Done::Purge(reply, r.map_err(StoreError::from))
            }
            Command::EnsureSession { bot, now, reply } => {
                let r = in_savepoint(&mut tx, &mut undone, |c| {
                    ensure_session_one(c, &bot, now, retention)
                });
                Done::Session(reply, r.map_err(StoreError::from))
            }
        });
        // Some errors (I/O, full disk) make SQLite roll back the whole transaction, taking
        // the requests already applied with it; and a failed request whose own changes could
        // not be undone must not be committed. Either way nothing in this batch may succeed.
        if tx.is_autocommit() || !undone {
            aborted = Some("the batch transaction was abandoned".into());
        }
    }
    if let Some(why) = aborted {
        drop(tx);
        return done.into_iter().map(|d| d.fail(&why)).collect();
    }
    match tx.commit() {
        Ok(()) => done,
        Err(e) => {
            let why = format!("commit failed: {e}");
            done.into_iter().map(|d| d.fail(&why)).collect()
        }
    }
}

/// Answer for a request the batch never ran.
pub(super) fn unrun(command: Command, why: &str) -> Done {
    let err = StoreError::Unavailable(why.to_owned());
    match command {
        Command::Append { reply, .. } => Done::Append(reply, Err(err)),
        Command::Purge { reply, .. } => Done::Purge(reply, Err(err)),
        Command::EnsureSession { reply, .. } => Done::Session(reply, Err(err)),
    }
}

/// Runs `f` in a savepoint so that, on error, only its own changes are undone and one bad
/// request does not sink the rest of the batch. `undone` turns false if that undo failed.
pub(super) fn in_savepoint<T>(
    tx: &mut rusqlite::Transaction<'_>,
    undone: &mut bool,
    f: impl FnOnce(&Connection) -> Result<T, Fault>,
) -> Result<T, Fault> {
    let sp = tx.savepoint_with_name("request")?;
    let result = f(&sp);
    match result {
        Ok(v) => match sp.commit() {
            Ok(()) => Ok(v),
            Err(e) => {
                // The savepoint is still open and rolled back by its drop; be conservative.
                *undone = false;
                Err(e.into())
            }
        },
        Err(e) => {
            *undone = sp.finish().is_ok();
            Err(e)
        }
    }
}

/// One append, inside the batch transaction: dedup on (bot, event id), then the session
/// machine, then the row and the session written together.
pub(super) fn ensure_session_one(
    conn: &Connection,
    bot: &BotId,
    now: DateTime<Utc>,
    retention: Retention,
) -> Result<Session, Fault> {
    if let Some(existing) = load_session(conn, bot)? {
        return Ok(existing);
    }
    let session = Session::new(bot.clone(), now);
    let doc = serde_json::to_string(&session)
        .map_err(|e| Fault::Corrupt(format!("session does not serialize: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO sessions (bot_id, seq, expires_at, doc, open_at) VALUES (?1, 0, ?2, ?3, ?4)",
    )?
    .execute((
        bot.as_str(),
        retention.expires_at(now),
        doc,
        open_at(&session),
    ))?;
    Ok(session)
}

pub(super) fn append_one(
    conn: &Connection,
    event: NewEvent,
    retention: Retention,
) -> Result<Appended, Fault> {
    let bot = event.bot_id.as_str();
    let mut stmt =
        conn.prepare_cached("SELECT seq, kind FROM events WHERE bot_id = ?1 AND event_id = ?2")?;
    let existing = stmt
        .query_row((bot, event.event_id.as_str()), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    // Also catches a copy stored earlier in this same batch: it is visible to this connection.
    if let Some((seq, kind)) = existing {
        return Ok(Appended::Duplicate {
            event_id: event.event_id,
            seq: decode_seq(seq)?,
            kind: decode_kind(&kind)?,
        });
    }

    let mut session = load_session(conn, &event.bot_id)?
        .unwrap_or_else(|| Session::new(event.bot_id.clone(), event.received_at));
    let applied = session.apply(&event);
    let kind = applied.kind;
    let seq = i64::try_from(session.seq)
        .map_err(|_| Fault::Corrupt(format!("session seq {} overflows", session.seq)))?;
    let expires_at = retention.expires_at(event.received_at);
    let received_at = event
        .received_at
        .to_rfc3339_opts(SecondsFormat::Nanos, true);
    conn.prepare_cached(
        "INSERT INTO events (bot_id, seq, event_id, idem_key, kind, source_event, family, \
         status_code, occurred_at, received_at, status, expires_at, repeat_of, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(rusqlite::params![
        bot,
        seq,
        event.event_id.as_str(),
        event.idempotency_key,
        kind.as_str(),
        event.source_event,
        event.family.as_str(),
        event.status_code,
        event.occurred_at,
        received_at,
        session.status.as_str(),
        expires_at,
        applied.repeat_of.as_ref().map(EventId::as_str),
        event.body,
    ])?;

    let doc = serde_json::to_string(&session)
        .map_err(|e| Fault::Corrupt(format!("session does not serialize: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO sessions (bot_id, seq, expires_at, doc, open_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (bot_id) DO UPDATE SET seq = excluded.seq, \
         expires_at = excluded.expires_at, doc = excluded.doc, open_at = excluded.open_at",
    )?
    .execute((
        bot,
        seq,
        retention.expires_at(session.last_updated),
        doc,
        open_at(&session),
    ))?;

    let status = session.status;
    let seq = session.seq;
    Ok(Appended::Stored(StoredEvent::from_new(
        event,
        seq,
        kind,
        status,
        expires_at,
        applied.repeat_of,
    )))
}

/// One bounded purge step; returns the rows deleted (fewer than the limit: done).
pub(super) fn purge_step(conn: &Connection, job: Purge) -> Result<u64, Fault> {
    let sql = match job.target {
        PurgeTarget::Events => {
            "DELETE FROM events WHERE id IN \
             (SELECT id FROM events WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"
        }
        // A session goes only once its bot has no events left: were it dropped earlier, the
        // bot's next event would restart at seq 1 and collide with the rows still stored.
        PurgeTarget::Sessions => {
            "DELETE FROM sessions WHERE bot_id IN \
             (SELECT s.bot_id FROM sessions s WHERE s.expires_at <= ?1 \
              AND NOT EXISTS (SELECT 1 FROM events e WHERE e.bot_id = s.bot_id) LIMIT ?2)"
        }
    };
    let n = conn.prepare_cached(sql)?.execute((job.now, job.limit))?;
    Ok(n as u64)
}
