//! The per-bot session and its status machine. Deliveries arrive late, twice and out of order
//! (Svix does not guarantee ordering), so the status only ever moves forward and terminal
//! states stick.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, EventKind, NewEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Starting,
    Joining,
    Waiting,
    InCall,
    Recording,
    Paused,
    Ended,
    Completed,
    Failed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Starting,
        Status::Joining,
        Status::Waiting,
        Status::InCall,
        Status::Recording,
        Status::Paused,
        Status::Ended,
        Status::Completed,
        Status::Failed,
    ];

    /// Position in the lifecycle; `paused` shares `recording`'s rank so the two may alternate.
    fn rank(self) -> u8 {
        match self {
            Status::Starting => 0,
            Status::Joining => 1,
            Status::Waiting => 2,
            Status::InCall => 3,
            Status::Recording | Status::Paused => 4,
            Status::Ended => 5,
            Status::Completed | Status::Failed => 6,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Joining => "joining",
            Status::Waiting => "waiting",
            Status::InCall => "in_call",
            Status::Recording => "recording",
            Status::Paused => "paused",
            Status::Ended => "ended",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// MeetingBaaS status codes (v1 and v2). `None`: recorded, but the status stays.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "joining_call" => Status::Joining,
            "in_waiting_room" | "in_waiting_for_host" => Status::Waiting,
            "in_call_not_recording" => Status::InCall,
            "in_call_recording" | "recording_resumed" => Status::Recording,
            "recording_paused" => Status::Paused,
            "call_ended" => Status::Ended,
            "bot_rejected"
            | "bot_removed"
            | "waiting_room_timeout"
            | "invalid_meeting_url"
            | "meeting_error"
            | "failed" => Status::Failed,
            "completed" => Status::Completed,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the status an event asks for comes from.
pub fn status_for(kind: EventKind, status_code: Option<&str>) -> Option<Status> {
    match kind {
        EventKind::MeetingStarted => Some(
            status_code
                .and_then(Status::from_code)
                .unwrap_or(Status::InCall),
        ),
        EventKind::MeetingCompleted => Some(Status::Completed),
        EventKind::MeetingFailed => Some(Status::Failed),
        EventKind::BotStatusChange => status_code.and_then(Status::from_code),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub bot_id: BotId,
    pub status: Status,
    /// Last status code received, whether or not it moved the status.
    pub status_code: Option<String>,
    /// Sender timestamp of the event that last set `status`; breaks ties between same-rank
    /// statuses (recording/paused) delivered out of order.
    pub status_at: Option<String>,
    pub last_event: Option<EventKind>,
    pub last_event_id: Option<EventId>,
    /// Highest `seq` stored for this bot (0: none yet).
    pub seq: u64,
    pub meeting_started: bool,
    /// Error reported by a failure event, for display.
    pub error: Option<String>,
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
            created_at: now,
            last_updated: now,
        }
    }

    /// Applies one newly stored event (at `self.seq + 1`) and returns the event's final kind.
    /// Pure, so both store adapters apply exactly the same rules inside their transactions.
    pub fn apply(&mut self, event: &NewEvent) -> EventKind {
        let code = event.status_code.as_deref();
        let mut kind = event.kind;
        let first_in_call = matches!(code, Some("in_call_not_recording" | "in_call_recording"));
        if kind == EventKind::BotStatusChange && first_in_call && !self.meeting_started {
            kind = EventKind::MeetingStarted;
        }
        if kind == EventKind::MeetingStarted {
            self.meeting_started = true;
        }
        let was_terminal = self.status.is_terminal();
        if let Some(next) = status_for(kind, code) {
            self.advance(next, event.occurred_at.as_deref());
        }
        if code.is_some() {
            self.status_code = code.map(str::to_owned);
        }
        // Errors that arrive after the session ended do not overwrite the one that ended it.
        if event.error.is_some() && (!was_terminal || self.error.is_none()) {
            self.error.clone_from(&event.error);
        }
        self.seq += 1;
        self.last_event = Some(kind);
        self.last_event_id = Some(event.event_id.clone());
        self.last_updated = self.last_updated.max(event.received_at);
        kind
    }

    fn advance(&mut self, next: Status, at: Option<&str>) {
        if self.status.is_terminal() {
            return;
        }
        let moves = match next.rank().cmp(&self.status.rank()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // Same rank (recording ↔ paused): the later sender timestamp wins; ISO 8601 in
            // one format compares as text. Without timestamps, arrival order decides.
            std::cmp::Ordering::Equal => match (at, self.status_at.as_deref()) {
                (Some(new), Some(old)) => new >= old,
                _ => true,
            },
        };
        if moves {
            self.status = next;
            self.status_at = at.map(str::to_owned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Family;

    fn ev(kind: EventKind, code: Option<&str>, at: Option<&str>) -> NewEvent {
        let bot = BotId::parse("b").unwrap();
        NewEvent {
            event_id: EventId::derive(&bot, &format!("{kind}{code:?}{at:?}")),
            bot_id: bot,
            idempotency_key: String::new(),
            kind,
            source_event: kind.as_str().into(),
            family: Family::V1,
            status_code: code.map(Into::into),
            occurred_at: at.map(Into::into),
            error: None,
            received_at: Utc::now(),
            body: "{}".into(),
        }
    }

    fn session() -> Session {
        Session::new(BotId::parse("b").unwrap(), Utc::now())
    }

    #[test]
    fn codes_map_as_the_contract_says() {
        let table = [
            ("joining_call", Some(Status::Joining)),
            ("in_waiting_room", Some(Status::Waiting)),
            ("in_waiting_for_host", Some(Status::Waiting)),
            ("in_call_not_recording", Some(Status::InCall)),
            ("in_call_recording", Some(Status::Recording)),
            ("recording_resumed", Some(Status::Recording)),
            ("recording_paused", Some(Status::Paused)),
            ("call_ended", Some(Status::Ended)),
            ("bot_rejected", Some(Status::Failed)),
            ("bot_removed", Some(Status::Failed)),
            ("waiting_room_timeout", Some(Status::Failed)),
            ("invalid_meeting_url", Some(Status::Failed)),
            ("meeting_error", Some(Status::Failed)),
            ("queued", None),
            ("transcribing", None),
            ("something_new", None),
        ];
        for (code, want) in table {
            assert_eq!(Status::from_code(code), want, "{code}");
        }
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
            [k1, k2, k3],
            [
                EventKind::BotStatusChange,
                EventKind::MeetingStarted,
                EventKind::BotStatusChange
            ]
        );
        assert_eq!(s.status, Status::Recording);
        assert_eq!(s.seq, 3);
    }

    #[test]
    fn late_events_never_move_backwards_and_terminal_sticks() {
        let mut s = session();
        s.apply(&ev(EventKind::BotStatusChange, Some("call_ended"), None));
        s.apply(&ev(EventKind::BotStatusChange, Some("joining_call"), None));
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
    }

    #[test]
    fn paused_and_recording_alternate_by_sender_time() {
        let mut s = session();
        s.apply(&ev(
            EventKind::BotStatusChange,
            Some("in_call_recording"),
            Some("2026-01-01T10:00:00Z"),
        ));
        s.apply(&ev(
            EventKind::BotStatusChange,
            Some("recording_paused"),
            Some("2026-01-01T10:05:00Z"),
        ));
        assert_eq!(s.status, Status::Paused);
        // A resume sent before the pause but delivered after it does not win.
        s.apply(&ev(
            EventKind::BotStatusChange,
            Some("recording_resumed"),
            Some("2026-01-01T10:01:00Z"),
        ));
        assert_eq!(s.status, Status::Paused);
        s.apply(&ev(
            EventKind::BotStatusChange,
            Some("recording_resumed"),
            Some("2026-01-01T10:06:00Z"),
        ));
        assert_eq!(s.status, Status::Recording);
    }

    #[test]
    fn unknown_codes_are_recorded_without_moving_status() {
        let mut s = session();
        s.apply(&ev(EventKind::BotStatusChange, Some("joining_call"), None));
        s.apply(&ev(EventKind::BotStatusChange, Some("transcribing"), None));
        assert_eq!(s.status, Status::Joining);
        assert_eq!(s.status_code.as_deref(), Some("transcribing"));
    }
}
