//! The vocabulary a session is described in, shared by events and sessions: the status, the
//! code map of MeetingBaaS's status codes, outcomes and reported errors.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

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

    /// Position in the lifecycle (what an untimed delivery may only move forward along);
    /// `paused` shares `recording`'s rank.
    pub fn rank(self) -> u8 {
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

    /// `completed` or `failed`: only an outcome gets the session there.
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

    /// The status a MeetingBaaS status code (v1 or v2) moves the session to; `None`: recorded,
    /// but the status stays. A signal never makes the session final: the failure codes end
    /// the call (`ended`), and `retrying` starts again.
    pub fn from_code(code: &str) -> Option<Self> {
        Code::of(code).status()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a status code means to the session: MeetingBaaS's v1 and v2 codes mapped to statuses. Codes match exactly
/// (MeetingBaaS sends them lower-case; upper-case ones such as `MEET_LOGIN_REQUIRED` are
/// another vocabulary, listed by the contract among the "other" codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Moves the session to this status (`starting` … `paused`).
    To(Status),
    /// Out of the call, the outcome pending (`ended`). `failure`: a failure signal, whose code
    /// and message become the provisional `session.error`.
    Ended { failure: bool },
    /// The attempt failed and the bot is queued again: `starting`, attempt/max kept, the
    /// provisional error cleared.
    Retrying,
    /// Not in the map: recorded as `status_code`, the status unchanged.
    Other,
}

impl Code {
    pub fn of(code: &str) -> Self {
        match code {
            "queued" | "pickup_delayed" => Code::To(Status::Starting),
            "joining_call" => Code::To(Status::Joining),
            "in_waiting_room" | "in_waiting_for_host" => Code::To(Status::Waiting),
            "in_call_not_recording" => Code::To(Status::InCall),
            "in_call_recording" | "recording_resumed" => Code::To(Status::Recording),
            "recording_paused" => Code::To(Status::Paused),
            "call_ended"
            | "recording_succeeded"
            | "recording_failed"
            | "transcribing"
            | "api_request_stop"
            | "completed"
            | "failed" => Code::Ended { failure: false },
            "bot_rejected"
            | "bot_removed"
            | "bot_removed_too_early"
            | "waiting_room_timeout"
            | "invalid_meeting_url"
            | "meeting_error" => Code::Ended { failure: true },
            "retrying" => Code::Retrying,
            _ => Code::Other,
        }
    }

    pub fn status(self) -> Option<Status> {
        match self {
            Code::To(status) => Some(status),
            Code::Ended { .. } => Some(Status::Ended),
            Code::Retrying => Some(Status::Starting),
            Code::Other => None,
        }
    }

    /// Orders two different signals sent at the same instant: the later stage wins, and a
    /// `retrying` comes after the failure that caused it.
    pub(crate) fn tie_rank(self) -> u8 {
        match self {
            Code::Retrying => 7,
            Code::Other => 0,
            other => other.status().map_or(0, Status::rank),
        }
    }
}

/// How a bot's run ended, as MeetingBaaS reports it (v1 `complete`/`failed`, v2
/// `bot.completed`/`bot.failed`, the seed's `meeting.completed`/`meeting.failed`, or a
/// `bot.reconciled` that reports one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Failed,
}

impl Outcome {
    pub fn status(self) -> Status {
        match self {
            Outcome::Completed => Status::Completed,
            Outcome::Failed => Status::Failed,
        }
    }
}

/// What went wrong, as MeetingBaaS reports it: `{"code": ..., "message": ...}`, either of which
/// may be null. Decodes also from a plain string (what sessions stored before), as the message.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BotError {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl BotError {
    /// `None` when neither part is there.
    pub fn new(code: Option<String>, message: Option<String>) -> Option<Self> {
        (code.is_some() || message.is_some()).then_some(Self { code, message })
    }
}

impl fmt::Display for BotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, "{c}: {m}"),
            (Some(one), None) | (None, Some(one)) => f.write_str(one),
            (None, None) => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for BotError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Parts {
                #[serde(default)]
                code: Option<String>,
                #[serde(default)]
                message: Option<String>,
            },
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Text(message) => BotError {
                code: None,
                message: Some(message),
            },
            Wire::Parts { code, message } => BotError { code, message },
        })
    }
}
