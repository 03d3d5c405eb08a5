//! What MeetingBaaS says about a bot when the relay asks: the status or outcome a
//! reconciliation pass compares with the session, and the fresh artifact URLs of the
//! `artifacts` route. Parsed from MeetingBaaS's answers leniently (a missing field is "not
//! said", never an error), and curated: its answers also carry things a browser must never
//! see (a v1 bot's speech-to-text key, a v2 bot's Zoom credentials), so only named fields are
//! kept.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::bot_id::BotId;
use crate::domain::status::{BotError, Outcome};
use crate::ports::meetingbaas::ApiVersion;

/// What MeetingBaaS reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A status code that is not final (a signal).
    Status(String),
    /// The bot's outcome.
    Outcome(Outcome, Option<BotError>),
}

/// One answer about one bot, as the reconcile handler stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct BotReport {
    pub finding: Finding,
    /// MeetingBaaS's time of it, as it wrote it (v2 `updated_at`; v1 the bot's end time).
    pub at: Option<String>,
    /// The curated answer stored as the event's `data`.
    pub data: Value,
}

impl BotReport {
    /// The v2 status answer (`data` of `GET /v2/bots/{id}/status`); `None` when it names no
    /// status. `completed` and `failed` are final: the caller fetches the details and calls
    /// [`BotReport::v2_final`].
    pub fn v2_status(status: &Value) -> Option<Self> {
        let code = status.get("status").and_then(Value::as_str)?.to_owned();
        Some(Self {
            at: text(status, "updated_at"),
            data: pick(status, &["status", "transcription_status", "updated_at"]),
            finding: Finding::Status(code),
        })
    }

    /// Whether a v2 status code is the bot's outcome (its details say more).
    pub fn is_v2_final(code: &str) -> bool {
        matches!(code, "completed" | "failed")
    }

    /// A final v2 status with the bot's details (`data` of `GET /v2/bots/{id}`).
    pub fn v2_final(status: &Self, details: &Value) -> Self {
        let code = match &status.finding {
            Finding::Status(code) => code.as_str(),
            Finding::Outcome(Outcome::Completed, _) => "completed",
            Finding::Outcome(Outcome::Failed, _) => "failed",
        };
        let finding = if code == "completed" {
            Finding::Outcome(Outcome::Completed, None)
        } else {
            Finding::Outcome(
                Outcome::Failed,
                BotError::new(text(details, "error_code"), text(details, "error_message")),
            )
        };
        let mut data = status.data.clone();
        if let Value::Object(map) = &mut data {
            map.insert(
                "details".into(),
                Artifacts::from_details(ApiVersion::V2, details).fields(),
            );
        }
        Self {
            finding,
            at: status.at.clone(),
            data,
        }
    }

    /// The v1 meeting data (`GET /bots/meeting_data`), whose outcome is inferred: an end time
    /// and a recording mean completed, reported errors mean failed, anything else reports
    /// nothing (`None`).
    pub fn v1_meeting_data(answer: &Value) -> Option<Self> {
        let bot = answer.pointer("/bot_data/bot").unwrap_or(&Value::Null);
        let ended = text(bot, "ended_at").or_else(|| text(bot, "bot_exited_at"));
        let errors = text(bot, "errors");
        let recording = text(answer, "mp4").is_some();
        let finding = match (&ended, recording, errors) {
            (Some(_), true, _) => Finding::Outcome(Outcome::Completed, None),
            (_, _, Some(errors)) => {
                Finding::Outcome(Outcome::Failed, BotError::new(Some(errors), None))
            }
            _ => return None,
        };
        Some(Self {
            finding,
            at: ended,
            data: json!({
                "ended_at": bot.get("ended_at").cloned().unwrap_or(Value::Null),
                "errors": bot.get("errors").cloned().unwrap_or(Value::Null),
                "details": Artifacts::from_details(ApiVersion::V1, answer).fields(),
            }),
        })
    }

    /// What the event's `source_event` says: the reported status code, or the outcome.
    pub fn source_event(&self) -> &str {
        match &self.finding {
            Finding::Status(code) => code,
            Finding::Outcome(Outcome::Completed, _) => "completed",
            Finding::Outcome(Outcome::Failed, _) => "failed",
        }
    }

    /// Keyed by the bot (the store scopes keys by bot) and the report: a second pass that
    /// hears the same thing adds nothing.
    pub fn idempotency_key(&self) -> String {
        format!(
            "reconcile:{}:{}",
            self.source_event(),
            self.at.as_deref().unwrap_or("-")
        )
    }

    /// The body stored for it: the relay's own event, in the shape of a delivery.
    pub fn body(&self, bot: &BotId, version: ApiVersion, asked_at: DateTime<Utc>) -> String {
        let mut data = Map::new();
        data.insert("bot_id".into(), json!(bot));
        data.insert("reported".into(), json!(self.source_event()));
        data.insert("updated_at".into(), json!(self.at));
        data.insert("api_version".into(), json!(version.as_str()));
        data.insert(
            "asked_at".into(),
            json!(asked_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        if let Finding::Outcome(_, Some(error)) = &self.finding {
            data.insert("error".into(), json!(error));
        }
        if let Value::Object(reported) = &self.data {
            for (k, v) in reported {
                data.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        json!({"event": "bot.reconciled", "data": data}).to_string()
    }
}

/// Fresh artifact URLs of one bot, as the `artifacts` route answers them. A URL MeetingBaaS
/// does not have (v2 `null`, v1 an empty string) is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Artifacts {
    pub video: Option<String>,
    pub audio: Option<String>,
    pub transcription: Option<String>,
    pub raw_transcription: Option<String>,
    pub diarization: Option<String>,
    pub meeting_participants: Option<String>,
    pub duration_seconds: Option<f64>,
    /// v2: MeetingBaaS has deleted the files (the URLs are gone for good).
    pub artifacts_deleted: Option<bool>,
}

impl Artifacts {
    /// From v1 meeting data or v2 details.
    pub fn from_details(version: ApiVersion, details: &Value) -> Self {
        match version {
            ApiVersion::V1 => Self {
                video: text(details, "mp4"),
                audio: text(details, "audio"),
                transcription: None,
                raw_transcription: None,
                diarization: text(details, "speaker_diarization_file"),
                meeting_participants: text(details, "meeting_participants_file"),
                duration_seconds: details.get("duration").and_then(Value::as_f64),
                artifacts_deleted: None,
            },
            ApiVersion::V2 => Self {
                video: text(details, "video").or_else(|| text(details, "mp4")),
                audio: text(details, "audio"),
                transcription: text(details, "transcription"),
                raw_transcription: text(details, "raw_transcription"),
                diarization: text(details, "diarization"),
                meeting_participants: None,
                duration_seconds: details.get("duration_seconds").and_then(Value::as_f64),
                artifacts_deleted: details.get("artifacts_deleted").and_then(Value::as_bool),
            },
        }
    }

    fn fields(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The route's answer: these fields with the bot and when they were fetched.
    pub fn answer(&self, bot: &BotId, fetched_at: DateTime<Utc>) -> Value {
        let mut out = json!({
            "bot_id": bot,
            "fetched_at": fetched_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if let (Value::Object(out), Value::Object(fields)) = (&mut out, self.fields()) {
            out.extend(fields);
        }
        out
    }
}

/// A non-empty string field.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn pick(v: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_signal_is_its_code_at_its_time() {
        let r = BotReport::v2_status(&json!({
            "bot_id": "b", "status": "in_call_recording", "transcription_status": "not-started",
            "updated_at": "2026-12-01T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(r.finding, Finding::Status("in_call_recording".into()));
        assert_eq!(r.source_event(), "in_call_recording");
        assert_eq!(
            r.idempotency_key(),
            "reconcile:in_call_recording:2026-12-01T10:00:00Z"
        );
        assert!(!BotReport::is_v2_final("in_call_recording"));
        assert!(BotReport::v2_status(&json!({"bot_id": "b"})).is_none());
    }

    #[test]
    fn a_v2_failure_takes_its_error_from_the_details_and_keeps_no_credentials() {
        let status = BotReport::v2_status(
            &json!({"status": "failed", "updated_at": "2026-12-01T10:00:00Z"}),
        )
        .unwrap();
        assert!(BotReport::is_v2_final(status.source_event()));
        let r = BotReport::v2_final(
            &status,
            &json!({"error_code": "BOT_NOT_ACCEPTED", "error_message": "denied",
                    "zoom_config": {"credential_id": "secret-ish"}, "video": null}),
        );
        assert_eq!(
            r.finding,
            Finding::Outcome(
                Outcome::Failed,
                BotError::new(Some("BOT_NOT_ACCEPTED".into()), Some("denied".into()))
            )
        );
        let body = r.body(&BotId::parse("b").unwrap(), ApiVersion::V2, Utc::now());
        assert!(!body.contains("credential"), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["event"], "bot.reconciled");
        assert_eq!(v["data"]["reported"], "failed");
        assert_eq!(v["data"]["error"]["code"], "BOT_NOT_ACCEPTED");
    }

    #[test]
    fn v1_meeting_data_is_inferred_and_secrets_stay_out() {
        let done = json!({
            "mp4": "https://s3/x.mp4", "audio": "", "duration": 61,
            "bot_data": {"bot": {"ended_at": "2026-12-01T10:00:00Z", "errors": null,
                                 "speech_to_text_api_key": "sk-live", "zoom_sdk_pwd": "pw"},
                         "transcripts": [{"speaker": "A", "words": []}]}
        });
        let r = BotReport::v1_meeting_data(&done).unwrap();
        assert_eq!(r.finding, Finding::Outcome(Outcome::Completed, None));
        let body = r.body(&BotId::parse("b").unwrap(), ApiVersion::V1, Utc::now());
        assert!(
            !body.contains("sk-live") && !body.contains("\"pw\""),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["details"]["video"], "https://s3/x.mp4");
        assert_eq!(v["data"]["details"]["audio"], Value::Null, "empty is null");

        let failed =
            json!({"mp4": "", "bot_data": {"bot": {"ended_at": null, "errors": "BotNotAccepted"}}});
        assert_eq!(
            BotReport::v1_meeting_data(&failed).unwrap().finding,
            Finding::Outcome(
                Outcome::Failed,
                BotError::new(Some("BotNotAccepted".into()), None)
            )
        );
        // In the call, or ended without a recording yet: nothing to report.
        let live = json!({"mp4": "", "bot_data": {"bot": {"ended_at": null, "errors": null}}});
        assert!(BotReport::v1_meeting_data(&live).is_none());
        let no_file = json!({"mp4": "", "bot_data": {"bot": {"ended_at": "2026-12-01T10:00:00Z"}}});
        assert!(BotReport::v1_meeting_data(&no_file).is_none());
    }

    #[test]
    fn artifacts_answer_names_the_bot_and_the_fetch_time() {
        let a = Artifacts::from_details(
            ApiVersion::V2,
            &json!({"video": "https://v", "audio": null, "transcription": "https://t",
                    "duration_seconds": 12, "artifacts_deleted": false}),
        );
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let out = a.answer(&BotId::parse("b").unwrap(), at);
        assert_eq!(out["bot_id"], "b");
        assert_eq!(out["video"], "https://v");
        assert_eq!(out["audio"], Value::Null);
        assert_eq!(out["transcription"], "https://t");
        assert_eq!(out["fetched_at"], "2026-12-01T10:00:00.000Z");
    }
}
