//! The per-bot session and its status machine: signals move it by MeetingBaaS's clock, only
//! outcomes make it final (`completed` beats `failed`), a repeated outcome changes nothing.
//!
//! Deliveries arrive late, twice and out of order, and any permutation of a bot's deliveries
//! must end in the same session. Applying each delivery's rule to the status alone cannot give
//! that (a bot that left the call, was retried and recorded again would end wherever the last
//! delivery left it), so the session keeps a few registers, each the maximum of what was fed to
//! it: the newest signal by MeetingBaaS's clock, the newest `retrying`, the newest signal that
//! left the call, the newest failure signal, the highest status an untimed delivery asked for,
//! the first outcome of each kind. What the session shows (status, error, attempt/max, status
//! code) is computed from them after every event, as if the signals had arrived in
//! MeetingBaaS's order. A maximum does not depend on the order it was fed in, so neither does
//! the session.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, EventKind, NewEvent};

pub use crate::domain::status::{BotError, Code, Outcome, Status};

impl Outcome {
    /// The outcome an event's kind alone reports.
    pub fn of_kind(kind: EventKind) -> Option<Self> {
        match kind {
            EventKind::MeetingCompleted => Some(Outcome::Completed),
            EventKind::MeetingFailed => Some(Outcome::Failed),
            _ => None,
        }
    }
}
/// Parses a sender's time as an instant: RFC 3339 / ISO 8601 with any offset (`Z`, `+02:00`,
/// `+0200`) and any fractional precision; without an offset it is UTC. `None`: not a time.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.to_utc());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    None
}

/// What one delivery tells the status machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A status change: its code and, when sent and parseable, MeetingBaaS's time of it
    /// (`status.created_at`). Without a time it counts as an untimed delivery.
    Signal {
        code: String,
        at: Option<DateTime<Utc>>,
    },
    /// A delivery without a time that asks for a status (the seed's `meeting.started`): moves
    /// the status forward only.
    Untimed(Status),
    /// A final outcome, whatever its time.
    Outcome(Outcome),
    /// Nothing about the lifecycle (chat, transcription, unknown shapes).
    Nothing,
}

impl Report {
    /// What `event` reports: its explicit `outcome` if set, else the outcome of its kind, else
    /// the status code of a status change.
    pub fn of(event: &NewEvent) -> Self {
        if let Some(outcome) = event.outcome.or_else(|| Outcome::of_kind(event.kind)) {
            return Report::Outcome(outcome);
        }
        match (event.kind, event.status_code.as_deref()) {
            (
                EventKind::BotStatusChange | EventKind::MeetingStarted | EventKind::BotReconciled,
                Some(code),
            ) => Report::Signal {
                code: code.to_owned(),
                at: event.occurred_at.as_deref().and_then(parse_instant),
            },
            (EventKind::MeetingStarted, None) => Report::Untimed(Status::InCall),
            _ => Report::Nothing,
        }
    }
}

/// What applying one event did, for the store to persist and broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The event's final kind (the first in-call status change becomes `meeting.started`).
    pub kind: EventKind,
    /// The event reports an outcome the session already had: the `event_id` of the first
    /// event that reported it. The event changed nothing (`repeat_of`, `"repeat": true`).
    pub repeat_of: Option<EventId>,
}

/// A timed signal: when MeetingBaaS says it happened, and its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub at: DateTime<Utc>,
    pub code: String,
}

impl Mark {
    fn key(&self) -> (DateTime<Utc>, u8, &str) {
        (self.at, Code::of(&self.code).tie_rank(), &self.code)
    }
}

/// The newest `retrying` (`at: None`: it came without a time, older than any timed one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Retry {
    pub at: Option<DateTime<Utc>>,
    pub attempt: Option<u32>,
    pub max: Option<u32>,
}

/// The newest failure signal and its error (`at: None`: untimed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure {
    pub at: Option<DateTime<Utc>>,
    pub error: BotError,
}

/// The registers the session's lifecycle is computed from (see the module comment). Each
/// keeps a maximum, so the order events arrive in does not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lifecycle {
    /// Newest timed signal whose code is in the code map.
    pub newest: Option<Mark>,
    /// Newest timed signal of any code: what `status_code` shows.
    pub newest_code: Option<Mark>,
    /// Newest `retrying`.
    pub retry: Option<Retry>,
    /// Time of the newest timed signal that left the call.
    pub ended_at: Option<DateTime<Utc>>,
    /// Newest failure signal.
    pub failure: Option<Failure>,
    /// Highest status an untimed delivery asked for.
    pub untimed: Option<Status>,
    /// Code of the last untimed status change received (shown while no timed one came).
    pub untimed_code: Option<String>,
    /// Error of the first failure outcome.
    pub outcome_error: Option<BotError>,
}

fn keep_max<T, K: Ord>(slot: &mut Option<T>, new: T, key: impl Fn(&T) -> K) {
    if slot.as_ref().is_none_or(|old| key(&new) > key(old)) {
        *slot = Some(new);
    }
}

impl Lifecycle {
    fn signal(&mut self, code: &str, at: Option<DateTime<Utc>>, event: &NewEvent) {
        let meaning = Code::of(code);
        match meaning {
            Code::Retrying => keep_max(
                &mut self.retry,
                Retry {
                    at,
                    attempt: event.attempt,
                    max: event.max,
                },
                Clone::clone,
            ),
            Code::Ended { failure: true } => {
                let reported = event.error.as_deref().cloned().unwrap_or_default();
                let error = BotError {
                    code: reported.code.or_else(|| Some(code.to_owned())),
                    message: reported.message,
                };
                keep_max(&mut self.failure, Failure { at, error }, Clone::clone);
            }
            _ => {}
        }
        let Some(at) = at else {
            if let Some(status) = meaning.status()
                && self.untimed.is_none_or(|old| status.rank() > old.rank())
            {
                self.untimed = Some(status);
            }
            self.untimed_code = Some(code.to_owned());
            return;
        };
        let mark = Mark {
            at,
            code: code.to_owned(),
        };
        if matches!(meaning, Code::Ended { .. }) {
            keep_max(&mut self.ended_at, at, |t| *t);
        }
        if meaning != Code::Other {
            keep_max(&mut self.newest, mark.clone(), |m| {
                let (a, r, c) = m.key();
                (a, r, c.to_owned())
            });
        }
        keep_max(&mut self.newest_code, mark, |m| (m.at, m.code.clone()));
    }

    fn untimed(&mut self, status: Status) {
        if self.untimed.is_none_or(|old| status.rank() > old.rank()) {
            self.untimed = Some(status);
        }
    }

    /// Whether something at `at` happened after the newest `retrying` (at the same instant,
    /// the retry is the later one).
    fn after_retry(&self, at: Option<DateTime<Utc>>) -> bool {
        self.retry.as_ref().is_none_or(|r| at > r.at)
    }

    /// The status while no outcome came. The timed signals, in MeetingBaaS's order: the
    /// newest one, unless the bot left the call after its last `retrying` (`ended` is left
    /// only by a retry or an outcome). An untimed delivery only moves that forward.
    fn open_status(&self) -> Status {
        let timed = self.newest.as_ref().and_then(|newest| {
            if self.ended_at.is_some() && self.after_retry(self.ended_at) {
                Some(Status::Ended)
            } else {
                Status::from_code(&newest.code)
            }
        });
        match (timed, self.untimed) {
            (Some(t), Some(u)) if u.rank() > t.rank() => u,
            (Some(t), _) => t,
            (None, Some(u)) => u,
            (None, None) => Status::Starting,
        }
    }

    /// The newest failure signal's error, unless a `retrying` came after it.
    fn provisional_error(&self) -> Option<BotError> {
        self.failure
            .as_ref()
            .filter(|f| self.after_retry(f.at))
            .map(|f| f.error.clone())
    }
}

fn lenient_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    // Sessions stored before kept the sender's text as it came.
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.as_deref().and_then(parse_instant))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub bot_id: BotId,
    pub status: Status,
    /// Code of the newest status change by MeetingBaaS's clock (of the last one received
    /// while none carried a time), whether or not it moved the status.
    pub status_code: Option<String>,
    /// MeetingBaaS's time of the newest signal the session shows (`status.created_at`, as an
    /// instant).
    #[serde(default, deserialize_with = "lenient_instant")]
    pub status_at: Option<DateTime<Utc>>,
    pub last_event: Option<EventKind>,
    pub last_event_id: Option<EventId>,
    /// Highest `seq` stored for this bot (0: none yet).
    pub seq: u64,
    pub meeting_started: bool,
    /// What went wrong: a failure outcome's error, else (while not completed) the provisional
    /// error of the newest failure signal since the last `retrying`.
    #[serde(default)]
    pub error: Option<BotError>,
    /// Of the newest `retrying`: which attempt this is, out of how many.
    #[serde(default)]
    pub attempt: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
    /// `event_id` of the first event that reported the completion.
    #[serde(default)]
    pub completed_by: Option<EventId>,
    /// `event_id` of the first event that reported a failure outcome.
    #[serde(default)]
    pub failed_by: Option<EventId>,
    /// What the fields above are computed from; `None` only in a session stored before
    /// (upgraded on its next event).
    #[serde(default)]
    pub lifecycle: Option<Box<Lifecycle>>,
    pub created_at: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

impl Session {
    pub fn new(bot_id: BotId, now: DateTime<Utc>) -> Self {
        Self {
            bot_id,
            status: Status::Starting,
            status_code: None,
            status_at: None,
            last_event: None,
            last_event_id: None,
            seq: 0,
            meeting_started: false,
            error: None,
            attempt: None,
            max: None,
            completed_by: None,
            failed_by: None,
            lifecycle: Some(Box::default()),
            created_at: now,
            last_updated: now,
        }
    }

    /// Not final and a real bot: what the open-session index holds and reconciliation asks
    /// MeetingBaaS about.
    pub fn is_open(&self) -> bool {
        !self.status.is_terminal() && !self.bot_id.is_account_level()
    }

    /// Applies one newly stored event (at `self.seq + 1`) by what it reports
    /// ([`Report::of`]). Pure, so both store adapters apply exactly the same rules inside
    /// their transactions.
    pub fn apply(&mut self, event: &NewEvent) -> Applied {
        self.apply_report(event, &Report::of(event))
    }

    /// Applies `event` as reporting `report` (a `bot.reconciled` event says what MeetingBaaS
    /// reported: a status or an outcome). Every event counts in `seq`, whatever it does.
    pub fn apply_report(&mut self, event: &NewEvent, report: &Report) -> Applied {
        self.upgrade();
        let mut kind = event.kind;
        let mut repeat_of = None;
        let lifecycle = self.lifecycle.get_or_insert_with(Box::default);
        match report {
            Report::Signal { code, at } => {
                let in_call =
                    matches!(code.as_str(), "in_call_not_recording" | "in_call_recording");
                if kind == EventKind::BotStatusChange && in_call && !self.meeting_started {
                    kind = EventKind::MeetingStarted;
                }
                lifecycle.signal(code, *at, event);
            }
            Report::Untimed(status) => lifecycle.untimed(*status),
            Report::Outcome(outcome) => {
                let first = match outcome {
                    Outcome::Completed => &mut self.completed_by,
                    Outcome::Failed => &mut self.failed_by,
                };
                match first {
                    Some(id) => repeat_of = Some(id.clone()),
                    None => {
                        *first = Some(event.event_id.clone());
                        if *outcome == Outcome::Failed {
                            lifecycle.outcome_error = event.error.as_deref().cloned();
                        }
                    }
                }
            }
            Report::Nothing => {}
        }
        if kind == EventKind::MeetingStarted {
            self.meeting_started = true;
        }
        self.refresh();
        self.seq += 1;
        self.last_event = Some(kind);
        self.last_event_id = Some(event.event_id.clone());
        self.last_updated = self.last_updated.max(event.received_at);
        Applied { kind, repeat_of }
    }

    /// Recomputes what the session shows from its registers.
    fn refresh(&mut self) {
        let Some(l) = &self.lifecycle else { return };
        self.status = if self.completed_by.is_some() {
            Status::Completed
        } else if self.failed_by.is_some() {
            Status::Failed
        } else {
            l.open_status()
        };
        self.error = match self.status {
            // The recording exists: only a failure outcome is an error worth showing.
            Status::Completed => l.outcome_error.clone(),
            Status::Failed => l.outcome_error.clone().or_else(|| l.provisional_error()),
            _ => l.provisional_error(),
        };
        (self.attempt, self.max) = l
            .retry
            .as_ref()
            .map_or((None, None), |r| (r.attempt, r.max));
        self.status_code = l
            .newest_code
            .as_ref()
            .map(|m| m.code.clone())
            .or_else(|| l.untimed_code.clone());
        self.status_at = l.newest.as_ref().map(|m| m.at);
    }

    /// A session stored before the registers existed: what it shows becomes where the
    /// registers start (its status a floor, a final status an outcome of the last event).
    fn upgrade(&mut self) {
        if self.lifecycle.is_some() {
            return;
        }
        let mut l = Lifecycle {
            untimed_code: self.status_code.clone(),
            ..Lifecycle::default()
        };
        let by = || {
            self.last_event_id
                .clone()
                .unwrap_or_else(|| EventId::derive(&self.bot_id, "legacy-outcome"))
        };
        match self.status {
            Status::Completed => self.completed_by = Some(by()),
            Status::Failed => self.failed_by = Some(by()),
            open => l.untimed = (open != Status::Starting).then_some(open),
        }
        if self.status.is_terminal() {
            l.outcome_error.clone_from(&self.error);
        } else if let Some(error) = &self.error {
            l.failure = Some(Failure {
                at: None,
                error: error.clone(),
            });
        }
        self.lifecycle = Some(Box::new(l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Family;

    fn bot() -> BotId {
        BotId::parse("b").unwrap()
    }

    fn t0() -> DateTime<Utc> {
        parse_instant("2026-01-01T00:00:00Z").unwrap()
    }

    /// One delivery; `key` makes its event id (a redelivery by another path has another key).
    fn event(key: &str, kind: EventKind, code: Option<&str>, at: Option<&str>) -> NewEvent {
        NewEvent {
            event_id: EventId::derive(&bot(), key),
            bot_id: bot(),
            idempotency_key: key.into(),
            kind,
            source_event: kind.as_str().into(),
            family: Family::V2,
            status_code: code.map(Into::into),
            occurred_at: at.map(Into::into),
            error: None,
            attempt: None,
            max: None,
            outcome: None,
            received_at: t0(),
            body: "{}".into(),
        }
    }

    fn ev(kind: EventKind, code: Option<&str>, at: Option<&str>) -> NewEvent {
        event(&format!("{kind}{code:?}{at:?}"), kind, code, at)
    }

    /// A timed status change at `10:MM:00Z`.
    fn sig(code: &str, minute: u32) -> NewEvent {
        let at = format!("2026-01-01T10:{minute:02}:00Z");
        ev(EventKind::BotStatusChange, Some(code), Some(&at))
    }

    fn failing(mut e: NewEvent, code: Option<&str>, message: Option<&str>) -> NewEvent {
        e.error = BotError::new(code.map(Into::into), message.map(Into::into)).map(Box::new);
        e
    }

    fn completed(key: &str) -> NewEvent {
        event(key, EventKind::MeetingCompleted, None, None)
    }

    fn failed(key: &str, code: &str, message: &str) -> NewEvent {
        failing(
            event(key, EventKind::MeetingFailed, None, None),
            Some(code),
            Some(message),
        )
    }

    fn retrying(minute: u32, attempt: u32, max: u32) -> NewEvent {
        let mut e = sig("retrying", minute);
        (e.attempt, e.max) = (Some(attempt), Some(max));
        e
    }

    fn session() -> Session {
        Session::new(bot(), t0())
    }

    fn run(events: &[&NewEvent]) -> Session {
        let mut s = session();
        for e in events {
            s.apply(e);
        }
        s
    }

    fn err(code: &str, message: Option<&str>) -> Option<BotError> {
        BotError::new(Some(code.into()), message.map(Into::into))
    }

    /// What may depend on arrival order: which event came last, which of two deliveries of
    /// one outcome came first.
    fn order_free(mut s: Session) -> Session {
        s.last_event = None;
        s.last_event_id = None;
        let mark = |id: &mut Option<EventId>| {
            if id.is_some() {
                *id = Some(EventId::derive(&bot(), "first"));
            }
        };
        mark(&mut s.completed_by);
        mark(&mut s.failed_by);
        s
    }

    /// Calls `visit` with every permutation of `items` (Heap's algorithm).
    fn permutations<T: Clone>(items: &[T], mut visit: impl FnMut(&[T])) {
        let mut items = items.to_vec();
        let n = items.len();
        let mut c = vec![0; n];
        visit(&items);
        let mut i = 0;
        while i < n {
            if c[i] < i {
                items.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
                visit(&items);
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
    }

    /// Applies `events` in order, then checks that every permutation of them, with `extra`
    /// (redeliveries) mixed in, ends in the same session. Returns the in-order session.
    fn same_in_every_order(events: &[NewEvent], extra: &[NewEvent]) -> Session {
        let in_order = run(&events.iter().collect::<Vec<_>>());
        let all: Vec<&NewEvent> = events.iter().chain(extra).collect();
        let want = order_free(run(&all));
        let without_seq = |mut s: Session| {
            s.seq = 0;
            s
        };
        assert_eq!(
            without_seq(want.clone()),
            without_seq(order_free(in_order.clone())),
            "redeliveries change nothing but seq"
        );
        assert_eq!(want.seq, all.len() as u64);
        let mut count = 0usize;
        permutations(&all, |order| {
            count += 1;
            let got = order_free(run(order));
            if got != want {
                let codes: Vec<_> = order
                    .iter()
                    .map(|e| (e.kind.as_str(), e.status_code.as_deref()))
                    .collect();
                panic!("order {codes:?}\n ends in {got:#?}\n not {want:#?}");
            }
        });
        assert_eq!(count, (1..=all.len()).product::<usize>());
        in_order
    }

    #[test]
    fn codes_map_as_the_contract_says() {
        use Status::*;
        let table = [
            ("queued", Code::To(Starting)),
            ("pickup_delayed", Code::To(Starting)),
            ("joining_call", Code::To(Joining)),
            ("in_waiting_room", Code::To(Waiting)),
            ("in_waiting_for_host", Code::To(Waiting)),
            ("in_call_not_recording", Code::To(InCall)),
            ("in_call_recording", Code::To(Recording)),
            ("recording_resumed", Code::To(Recording)),
            ("recording_paused", Code::To(Paused)),
            ("call_ended", Code::Ended { failure: false }),
            ("recording_succeeded", Code::Ended { failure: false }),
            ("recording_failed", Code::Ended { failure: false }),
            ("transcribing", Code::Ended { failure: false }),
            ("api_request_stop", Code::Ended { failure: false }),
            ("completed", Code::Ended { failure: false }),
            ("failed", Code::Ended { failure: false }),
            ("bot_rejected", Code::Ended { failure: true }),
            ("bot_removed", Code::Ended { failure: true }),
            ("bot_removed_too_early", Code::Ended { failure: true }),
            ("waiting_room_timeout", Code::Ended { failure: true }),
            ("invalid_meeting_url", Code::Ended { failure: true }),
            ("meeting_error", Code::Ended { failure: true }),
            ("retrying", Code::Retrying),
            ("MEET_LOGIN_REQUIRED", Code::Other),
            ("awaiting_reconciliation", Code::Other),
            ("transcription_failed", Code::Other),
            ("IN_CALL_RECORDING", Code::Other),
            ("something_new", Code::Other),
        ];
        for (code, want) in table {
            assert_eq!(Code::of(code), want, "{code}");
            let status = match want {
                Code::To(s) => Some(s),
                Code::Ended { .. } => Some(Ended),
                Code::Retrying => Some(Starting),
                Code::Other => None,
            };
            assert_eq!(Status::from_code(code), status, "{code}");
        }
        // A signal never makes a session final.
        assert!(Status::ALL.iter().all(|s| {
            !s.is_terminal() || table.iter().all(|(c, _)| Status::from_code(c) != Some(*s))
        }));
    }

    #[test]
    fn every_code_moves_a_fresh_session_as_mapped() {
        for (code, want) in [
            ("queued", Status::Starting),
            ("joining_call", Status::Joining),
            ("in_waiting_for_host", Status::Waiting),
            ("in_call_not_recording", Status::InCall),
            ("recording_resumed", Status::Recording),
            ("recording_paused", Status::Paused),
            ("transcribing", Status::Ended),
            ("bot_removed_too_early", Status::Ended),
            ("retrying", Status::Starting),
            ("MEET_LOGIN_REQUIRED", Status::Starting),
        ] {
            let s = run(&[&sig(code, 1)]);
            assert_eq!(s.status, want, "{code}");
            assert_eq!(s.status_code.as_deref(), Some(code));
        }
    }

    #[test]
    fn instants_not_text() {
        let at = |s: &str| parse_instant(s).unwrap_or_else(|| panic!("{s}"));
        assert!(at("2026-01-01T10:00:00.500Z") > at("2026-01-01T10:00:00Z"));
        assert_eq!(at("2026-01-01T12:00:00+02:00"), at("2026-01-01T10:00:00Z"));
        assert_eq!(at("2026-01-01T12:00:00+0200"), at("2026-01-01T10:00:00Z"));
        assert_eq!(at("2026-01-01T10:00:00"), at("2026-01-01T10:00:00Z"));
        assert_eq!(
            at("2026-01-01 10:00:00.25"),
            at("2026-01-01T10:00:00.250000Z")
        );
        assert_eq!(at("2026-01-01t10:00:00z"), at("2026-01-01T10:00:00Z"));
        assert_eq!(
            at("2026-01-01T10:00:00.123456789Z") - at("2026-01-01T10:00:00.123456Z"),
            chrono::Duration::nanoseconds(789)
        );
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_instant(""), None);

        // As text "11:30+02:00" sorts after "10:00Z"; as an instant it is 09:30Z, before it.
        let timed = |code, at: &str| ev(EventKind::BotStatusChange, Some(code), Some(at));
        let s = run(&[
            &timed("in_call_recording", "2026-01-01T10:00:00Z"),
            &timed("recording_paused", "2026-01-01T11:30:00+02:00"),
        ]);
        assert_eq!(s.status, Status::Recording);
        // Half a second later is later.
        let s = run(&[
            &timed("recording_paused", "2026-01-01T10:00:00.500Z"),
            &timed("in_call_recording", "2026-01-01T10:00:00Z"),
        ]);
        assert_eq!(s.status, Status::Paused);
        assert_eq!(s.status_at, Some(at("2026-01-01T10:00:00.5Z")));
        assert_eq!(s.status_code.as_deref(), Some("recording_paused"));
    }

    #[test]
    fn first_in_call_is_meeting_started_once() {
        let mut s = session();
        let k1 = s.apply(&ev(EventKind::BotStatusChange, Some("joining_call"), None));
        let k2 = s.apply(&ev(
            EventKind::BotStatusChange,
            Some("in_call_not_recording"),
            None,
        ));
        let k3 = s.apply(&ev(
            EventKind::BotStatusChange,
            Some("in_call_recording"),
            None,
        ));
        assert_eq!(
            [k1.kind, k2.kind, k3.kind],
            [
                EventKind::BotStatusChange,
                EventKind::MeetingStarted,
                EventKind::BotStatusChange
            ]
        );
        assert_eq!(
            [k1.repeat_of, k2.repeat_of, k3.repeat_of],
            [None, None, None]
        );
        assert_eq!(s.status, Status::Recording);
        assert!(s.meeting_started);
        assert_eq!(s.seq, 3);
    }

    #[test]
    fn untimed_deliveries_only_move_forward() {
        let mut s = session();
        s.apply(&ev(EventKind::MeetingStarted, None, None));
        assert_eq!((s.status, s.meeting_started), (Status::InCall, true));
        s.apply(&ev(EventKind::BotStatusChange, Some("joining_call"), None));
        assert_eq!(s.status, Status::InCall);
        s.apply(&ev(EventKind::BotStatusChange, Some("call_ended"), None));
        s.apply(&ev(
            EventKind::BotStatusChange,
            Some("in_call_recording"),
            None,
        ));
        assert_eq!(s.status, Status::Ended);
        s.apply(&ev(EventKind::MeetingCompleted, None, None));
        s.apply(&ev(EventKind::MeetingFailed, None, None));
        s.apply(&ev(
            EventKind::BotStatusChange,
            Some("in_call_recording"),
            None,
        ));
        assert_eq!(s.status, Status::Completed);
        assert_eq!(s.status_code.as_deref(), Some("in_call_recording"));
        assert_eq!(s.seq, 7);
    }

    #[test]
    fn timed_signals_show_the_newest_whatever_the_rank() {
        // Paused and recording alternate; a bot is sent back to the waiting room.
        let s = run(&[&sig("in_call_recording", 0), &sig("recording_paused", 5)]);
        assert_eq!(s.status, Status::Paused);
        let s = run(&[
            &sig("in_call_recording", 0),
            &sig("recording_paused", 5),
            &sig("recording_resumed", 1),
        ]);
        assert_eq!(
            s.status,
            Status::Paused,
            "a resume sent before the pause loses"
        );
        let s = run(&[&sig("recording_paused", 5), &sig("recording_resumed", 6)]);
        assert_eq!(s.status, Status::Recording);
        let s = run(&[&sig("in_call_not_recording", 1), &sig("in_waiting_room", 2)]);
        assert_eq!(s.status, Status::Waiting);
        // An older signal is counted but moves nothing.
        let s = run(&[&sig("in_waiting_room", 2), &sig("joining_call", 1)]);
        assert_eq!((s.status, s.seq), (Status::Waiting, 2));
        assert_eq!(s.status_code.as_deref(), Some("in_waiting_room"));
    }

    #[test]
    fn ended_is_left_only_by_retrying_or_an_outcome() {
        let s = run(&[&sig("bot_removed", 5), &sig("in_call_recording", 6)]);
        assert_eq!(s.status, Status::Ended);
        assert_eq!(s.error, err("bot_removed", None));
        let s = run(&[
            &sig("bot_rejected", 5),
            &sig("in_call_recording", 9),
            &retrying(6, 2, 3),
        ]);
        assert_eq!(
            s.status,
            Status::Recording,
            "the retried attempt's signals count"
        );
        assert_eq!(
            (s.attempt, s.max, s.error.clone()),
            (Some(2), Some(3), None)
        );
        let s = run(&[&sig("call_ended", 5), &completed("c")]);
        assert_eq!(s.status, Status::Completed);
    }

    #[test]
    fn unknown_codes_are_recorded_without_moving_status() {
        let s = run(&[&sig("joining_call", 1), &sig("MEET_LOGIN_REQUIRED", 2)]);
        assert_eq!(s.status, Status::Joining);
        assert_eq!(s.status_code.as_deref(), Some("MEET_LOGIN_REQUIRED"));
        assert_eq!(s.status_at, parse_instant("2026-01-01T10:01:00Z"));
        let s = run(&[&sig("joining_call", 3), &sig("awaiting_reconciliation", 2)]);
        assert_eq!(s.status_code.as_deref(), Some("joining_call"));
    }

    #[test]
    fn failure_signal_errors_are_provisional() {
        let meeting_error = failing(
            sig("meeting_error", 2),
            Some("CannotJoinMeeting"),
            Some("The meeting could not be joined"),
        );
        let s = run(&[&sig("joining_call", 1), &meeting_error]);
        assert_eq!(
            (s.status, s.error.clone()),
            (
                Status::Ended,
                err("CannotJoinMeeting", Some("The meeting could not be joined"))
            )
        );
        // The outcome's own error replaces it.
        let s = run(&[
            &sig("joining_call", 1),
            &meeting_error,
            &failed("f", "MEETING_NOT_FOUND", "gone"),
        ]);
        assert_eq!(
            (s.status, s.error.clone()),
            (Status::Failed, err("MEETING_NOT_FOUND", Some("gone")))
        );
        // An outcome without one keeps it.
        let s = run(&[
            &meeting_error,
            &event("f", EventKind::MeetingFailed, None, None),
        ]);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error,
            err("CannotJoinMeeting", Some("The meeting could not be joined"))
        );
        // The recording exists: a completion shows no provisional error.
        let s = run(&[&sig("bot_removed", 3), &completed("c")]);
        assert_eq!((s.status, s.error), (Status::Completed, None));
    }

    #[test]
    fn contract_sequence_removed_after_recording_completes() {
        let events = [
            sig("joining_call", 0),
            sig("in_call_recording", 1),
            sig("bot_removed", 2),
            completed("webhook"),
        ];
        let extra = [sig("in_call_recording", 1), completed("callback")];
        let s = same_in_every_order(&events, &extra);
        assert_eq!(s.status, Status::Completed);
        assert_eq!((s.error, s.attempt, s.max), (None, None, None));
        assert_eq!(s.completed_by, Some(events[3].event_id.clone()));
        assert!(s.meeting_started);
        assert_eq!(s.seq, 4);
    }

    #[test]
    fn contract_sequence_rejected_then_retried_records() {
        let events = [
            sig("queued", 0),
            sig("joining_call", 1),
            failing(sig("bot_rejected", 2), None, Some("not let in")),
            retrying(3, 2, 3),
            sig("joining_call", 4),
            sig("in_call_recording", 5),
        ];
        let extra = [sig("bot_rejected", 2), retrying(3, 2, 3)];
        let s = same_in_every_order(&events, &extra);
        assert_eq!(s.status, Status::Recording);
        assert_eq!((s.error, s.attempt, s.max), (None, Some(2), Some(3)));
        assert_eq!(s.status_code.as_deref(), Some("in_call_recording"));
        assert_eq!(s.status_at, parse_instant("2026-01-01T10:05:00Z"));
    }

    #[test]
    fn contract_sequence_waiting_room_timeout_fails_with_the_v2_code() {
        let events = [
            sig("joining_call", 0),
            sig("waiting_room_timeout", 1),
            failed(
                "webhook",
                "TIMEOUT_WAITING_TO_START",
                "nobody let the bot in",
            ),
        ];
        let extra = [
            sig("waiting_room_timeout", 1),
            failed(
                "callback",
                "TIMEOUT_WAITING_TO_START",
                "nobody let the bot in",
            ),
        ];
        let s = same_in_every_order(&events, &extra);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error,
            err("TIMEOUT_WAITING_TO_START", Some("nobody let the bot in"))
        );
        // Before the outcome: ended, the signal's code as the provisional error.
        let s = run(&[&events[0], &events[1]]);
        assert_eq!(
            (s.status, s.error),
            (Status::Ended, err("waiting_room_timeout", None))
        );
    }

    #[test]
    fn v1_happy_path() {
        let events = [
            sig("joining_call", 0),
            sig("in_waiting_room", 1),
            sig("in_call_not_recording", 2),
            sig("in_call_recording", 3),
            sig("recording_paused", 4),
            sig("recording_resumed", 5),
            sig("call_ended", 6),
            completed("complete"),
        ];
        let s = same_in_every_order(&events, &[]);
        assert_eq!((s.status, s.error), (Status::Completed, None));
        assert_eq!(s.status_code.as_deref(), Some("call_ended"));
        let before = run(&events[..7].iter().collect::<Vec<_>>());
        assert_eq!(before.status, Status::Ended);
    }

    #[test]
    fn v2_happy_path_with_post_call_statuses() {
        let events = [
            sig("joining_call", 0),
            sig("in_call_recording", 1),
            sig("call_ended", 2),
            sig("recording_succeeded", 3),
            sig("transcribing", 4),
            sig("completed", 5),
            completed("bot.completed"),
        ];
        let extra = [completed("callback")];
        let s = same_in_every_order(&events, &extra);
        assert_eq!((s.status, s.error), (Status::Completed, None));
        assert_eq!(s.status_code.as_deref(), Some("completed"));
        for n in 3..6 {
            let partial = run(&events[..n].iter().collect::<Vec<_>>());
            assert_eq!(partial.status, Status::Ended, "after {n} statuses");
        }
    }

    #[test]
    fn one_outcome_by_two_paths_is_a_repeat() {
        let webhook = completed("svix-1");
        let callback = completed("callback-1");
        let mut s = run(&[&sig("in_call_recording", 1)]);
        let first = s.apply(&webhook);
        assert_eq!(
            first,
            Applied {
                kind: EventKind::MeetingCompleted,
                repeat_of: None
            }
        );
        let before = s.clone();
        let second = s.apply(&callback);
        assert_eq!(second.repeat_of, Some(webhook.event_id.clone()));
        assert_eq!(second.kind, EventKind::MeetingCompleted);
        assert_eq!(s.seq, before.seq + 1, "a repeat still counts");
        assert_eq!(
            (s.status, s.completed_by.clone()),
            (Status::Completed, before.completed_by)
        );

        let f1 = failed("f1", "BOT_CRASHED", "x");
        let f2 = failed("f2", "BOT_CRASHED", "y");
        let mut s = session();
        assert_eq!(s.apply(&f1).repeat_of, None);
        assert_eq!(s.apply(&f2).repeat_of, Some(f1.event_id.clone()));
        assert_eq!(
            s.error,
            err("BOT_CRASHED", Some("x")),
            "a repeat changes nothing"
        );
    }

    #[test]
    fn both_outcomes_in_either_order() {
        let done = completed("c");
        let fail = failed("f", "TRANSCRIPTION_ERROR", "no transcript");
        let events = [
            sig("in_call_recording", 1),
            sig("call_ended", 2),
            done,
            fail,
        ];
        let s = same_in_every_order(&events, &[]);
        assert_eq!(s.status, Status::Completed, "completed beats failed");
        assert_eq!(s.error, err("TRANSCRIPTION_ERROR", Some("no transcript")));
        assert_eq!(s.completed_by, Some(events[2].event_id.clone()));
        assert_eq!(s.failed_by, Some(events[3].event_id.clone()));
        // Neither is a repeat of the other.
        let mut s = session();
        assert_eq!(s.apply(&events[3]).repeat_of, None);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(s.apply(&events[2]).repeat_of, None);
        assert_eq!(s.status, Status::Completed);
    }

    #[test]
    fn an_outcome_can_be_passed_in_explicitly() {
        let mut reconciled = event("reconciled", EventKind::Unknown, None, None);
        let mut s = run(&[&sig("call_ended", 1)]);
        assert_eq!(
            s.apply_report(&reconciled, &Report::Outcome(Outcome::Completed))
                .repeat_of,
            None
        );
        assert_eq!(
            (s.status, s.completed_by.clone()),
            (Status::Completed, Some(reconciled.event_id.clone()))
        );
        // The real delivery after it is a repeat of the reconciled one.
        assert_eq!(
            s.apply(&completed("late")).repeat_of,
            Some(reconciled.event_id.clone())
        );
        // The same through the event's own field, as the stores call `apply`.
        reconciled.outcome = Some(Outcome::Failed);
        assert_eq!(Report::of(&reconciled), Report::Outcome(Outcome::Failed));
        let mut s = session();
        s.apply(&reconciled);
        assert_eq!(s.status, Status::Failed);
    }

    #[test]
    fn reports_of_events() {
        let timed = sig("joining_call", 1);
        assert_eq!(
            Report::of(&timed),
            Report::Signal {
                code: "joining_call".into(),
                at: parse_instant("2026-01-01T10:01:00Z")
            }
        );
        let garbled = ev(
            EventKind::BotStatusChange,
            Some("joining_call"),
            Some("soon"),
        );
        assert_eq!(
            Report::of(&garbled),
            Report::Signal {
                code: "joining_call".into(),
                at: None
            }
        );
        assert_eq!(
            Report::of(&ev(EventKind::MeetingStarted, None, None)),
            Report::Untimed(Status::InCall)
        );
        assert_eq!(
            Report::of(&completed("c")),
            Report::Outcome(Outcome::Completed)
        );
        for kind in [
            EventKind::ChatMessage,
            EventKind::TranscriptionAvailable,
            EventKind::Unknown,
        ] {
            assert_eq!(
                Report::of(&ev(kind, Some("joining_call"), None)),
                Report::Nothing
            );
        }
    }

    #[test]
    fn the_document_keeps_old_sessions_decoding() {
        // As sessions were stored before: error a string, status_at the sender's text.
        let old = serde_json::json!({
            "bot_id": "b", "status": "failed", "status_code": "meeting_error",
            "status_at": "2026-11-29T09:00:00Z", "last_event": "meeting.failed",
            "last_event_id": EventId::derive(&bot(), "old").as_str(), "seq": 3,
            "meeting_started": true, "error": "CannotJoinMeeting: no",
            "created_at": "2026-11-29T08:00:00Z", "last_updated": "2026-11-29T09:00:00Z"
        });
        let mut s: Session = serde_json::from_value(old).unwrap();
        assert_eq!(
            s.error,
            BotError::new(None, Some("CannotJoinMeeting: no".into()))
        );
        assert_eq!(s.status_at, parse_instant("2026-11-29T09:00:00Z"));
        assert_eq!((s.attempt, s.max, s.lifecycle.clone()), (None, None, None));
        // Its next event: still failed, and a second failure is a repeat; a completion wins.
        let applied = s.apply(&failed("again", "X", "y"));
        assert_eq!(applied.repeat_of, Some(EventId::derive(&bot(), "old")));
        assert_eq!(s.status, Status::Failed);
        assert_eq!(
            s.error,
            BotError::new(None, Some("CannotJoinMeeting: no".into()))
        );
        s.apply(&completed("c"));
        assert_eq!((s.status, s.seq), (Status::Completed, 5));

        let null_error = serde_json::json!({
            "bot_id": "b", "status": "recording", "status_code": null, "status_at": "garbled",
            "last_event": null, "last_event_id": null, "seq": 1, "meeting_started": true,
            "error": null, "created_at": "2026-11-29T08:00:00Z",
            "last_updated": "2026-11-29T09:00:00Z"
        });
        let mut s: Session = serde_json::from_value(null_error).unwrap();
        assert_eq!((s.error.clone(), s.status_at), (None, None));
        // An open old status is a floor for what follows.
        s.apply(&ev(EventKind::BotStatusChange, Some("joining_call"), None));
        assert_eq!(s.status, Status::Recording);
        s.apply(&sig("call_ended", 1));
        assert_eq!(s.status, Status::Ended);
    }

    #[test]
    fn the_document_round_trips_with_the_new_fields() {
        let s = run(&[
            &failing(sig("bot_rejected", 1), None, Some("no")),
            &retrying(2, 2, 3),
            &sig("in_call_recording", 3),
            &sig("bot_removed", 4),
        ]);
        let doc = serde_json::to_value(&s).unwrap();
        assert_eq!(doc["attempt"], 2);
        assert_eq!(doc["max"], 3);
        assert_eq!(
            doc["error"],
            serde_json::json!({"code": "bot_removed", "message": null})
        );
        assert_eq!(doc["status"], "ended");
        let back: Session = serde_json::from_value(doc).unwrap();
        assert_eq!(back, s);
    }
}
