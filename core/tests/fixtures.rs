//! Every fixture in tests/fixtures parses into the family, canonical event, bot and status code
//! the contract says.

use relay_core::domain::payload::Payload;
use relay_core::domain::session::Status;
use relay_core::{EventKind, Family};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_fixture_maps_as_the_contract_says() {
    let v1 = "8f0f6c1e-2a7d-4d1b-9c55-0f6f7e3b1a21";
    let v2 = "0b5e1e7c-8e0f-4c3a-9f57-2f1d1a9b7c11";
    let table: &[(&str, Family, EventKind, &str)] = &[
        (
            "seed-meeting.started.json",
            Family::Seed,
            EventKind::MeetingStarted,
            "test-123",
        ),
        (
            "v1-complete.json",
            Family::V1,
            EventKind::MeetingCompleted,
            v1,
        ),
        ("v1-failed.json", Family::V1, EventKind::MeetingFailed, v1),
        (
            "v1-failed-legacy-vocabulary.json",
            Family::V1,
            EventKind::MeetingFailed,
            v1,
        ),
        (
            "v1-transcription_complete.json",
            Family::V1,
            EventKind::TranscriptionAvailable,
            v1,
        ),
        (
            "v1-calendar-sync_events.json",
            Family::V1,
            EventKind::Unknown,
            "calendar",
        ),
        (
            "v2-bot.status_change.json",
            Family::V2,
            EventKind::BotStatusChange,
            v2,
        ),
        (
            "v2-bot.completed.json",
            Family::V2,
            EventKind::MeetingCompleted,
            v2,
        ),
        (
            "v2-bot.failed.json",
            Family::V2,
            EventKind::MeetingFailed,
            v2,
        ),
        (
            "v2-bot.chat_message.json",
            Family::V2,
            EventKind::ChatMessage,
            v2,
        ),
        (
            "v2-callback-bot.completed.json",
            Family::V2,
            EventKind::MeetingCompleted,
            v2,
        ),
    ];
    for (name, family, kind, bot) in table {
        let p = Payload::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (p.family, p.kind, p.bot_id.as_str()),
            (*family, *kind, *bot),
            "{name}"
        );
    }
    let failed = Payload::parse(&fixture("v2-bot.failed.json")).expect("parse");
    assert_eq!(
        failed.error.as_deref(),
        Some("BOT_NOT_ACCEPTED: The host did not let the bot in")
    );
}

#[test]
fn every_v1_status_code_fixture_is_a_status_change_with_its_code() {
    // Failure signals end the call; only an outcome is final (the README's session status).
    let codes = [
        ("joining_call", Some(Status::Joining)),
        ("in_waiting_room", Some(Status::Waiting)),
        ("in_call_not_recording", Some(Status::InCall)),
        ("in_call_recording", Some(Status::Recording)),
        ("recording_paused", Some(Status::Paused)),
        ("recording_resumed", Some(Status::Recording)),
        ("call_ended", Some(Status::Ended)),
        ("bot_rejected", Some(Status::Ended)),
        ("bot_removed", Some(Status::Ended)),
        ("waiting_room_timeout", Some(Status::Ended)),
        ("invalid_meeting_url", Some(Status::Ended)),
        ("meeting_error", Some(Status::Ended)),
    ];
    for (code, status) in codes {
        let p = Payload::parse(&fixture(&format!("v1-status-{code}.json"))).expect("parse");
        assert_eq!(
            (p.family, p.kind),
            (Family::V1, EventKind::BotStatusChange),
            "{code}"
        );
        assert_eq!(p.status_code.as_deref(), Some(code));
        assert!(p.occurred_at.is_some(), "{code}: created_at kept");
        assert_eq!(Status::from_code(code), status);
    }
    let err = Payload::parse(&fixture("v1-status-meeting_error.json")).expect("parse");
    assert_eq!(
        err.error.as_deref(),
        Some("CannotJoinMeeting: The meeting could not be joined")
    );
}

#[test]
fn every_v2_status_code_fixture_is_a_v2_status_change_with_its_code() {
    // (code, status by the contract's code map, a failure signal with its provisional error).
    let codes = [
        ("queued", Some(Status::Starting), false),
        ("pickup_delayed", Some(Status::Starting), false),
        ("joining_call", Some(Status::Joining), false),
        ("in_waiting_room", Some(Status::Waiting), false),
        ("in_waiting_for_host", Some(Status::Waiting), false),
        ("in_call_not_recording", Some(Status::InCall), false),
        ("in_call_recording", Some(Status::Recording), false),
        ("recording_paused", Some(Status::Paused), false),
        ("recording_resumed", Some(Status::Recording), false),
        ("call_ended", Some(Status::Ended), false),
        ("recording_succeeded", Some(Status::Ended), false),
        ("recording_failed", Some(Status::Ended), false),
        ("transcribing", Some(Status::Ended), false),
        ("api_request_stop", Some(Status::Ended), false),
        ("completed", Some(Status::Ended), false),
        ("failed", Some(Status::Ended), false),
        ("bot_rejected", Some(Status::Ended), true),
        ("bot_removed", Some(Status::Ended), true),
        ("bot_removed_too_early", Some(Status::Ended), true),
        ("waiting_room_timeout", Some(Status::Ended), true),
        ("invalid_meeting_url", Some(Status::Ended), true),
        ("meeting_error", Some(Status::Ended), true),
        ("retrying", Some(Status::Starting), false),
        // Another vocabulary: recorded as the status code, the status unchanged.
        ("MEET_LOGIN_REQUIRED", None, false),
    ];
    for (code, status, failure) in codes {
        let p = Payload::parse(&fixture(&format!("v2-status-{code}.json"))).expect("parse");
        assert_eq!(
            (p.family, p.kind),
            (Family::V2, EventKind::BotStatusChange),
            "{code}"
        );
        assert_eq!(p.status_code.as_deref(), Some(code));
        assert!(p.occurred_at.is_some(), "{code}: created_at kept");
        assert_eq!(Status::from_code(code), status, "{code}");
        if failure {
            assert!(p.error.is_some(), "{code}: its error_message is the error");
        }
    }
    let retrying = Payload::parse(&fixture("v2-status-retrying.json")).expect("parse");
    assert_eq!((retrying.attempt, retrying.max), (Some(2), Some(3)));
}

#[test]
fn every_v2_failure_and_calendar_fixture_maps_as_the_contract_says() {
    for code in [
        "TIMEOUT_WAITING_TO_START",
        "INSUFFICIENT_TOKENS",
        "DAILY_BOT_CAP_REACHED",
        "INVALID_MEETING_PLATFORM",
        "TRANSCRIPTION_ERROR",
        "MEETING_NOT_FOUND",
        "MEETING_ENDED",
        "BOT_CRASHED",
    ] {
        let p = Payload::parse(&fixture(&format!("v2-bot.failed-{code}.json"))).expect("parse");
        assert_eq!((p.family, p.kind), (Family::V2, EventKind::MeetingFailed));
        let error = p.error.as_deref().unwrap_or_default();
        assert!(error.starts_with(&format!("{code}: ")), "{code}: {error}");
    }
    // Account-level events name no bot: kept under the reserved id.
    for event in [
        "connection_created",
        "connection_updated",
        "connection_deleted",
        "connection_error",
        "events_synced",
        "event_created",
        "event_updated",
        "event_cancelled",
    ] {
        let p = Payload::parse(&fixture(&format!("v2-calendar.{event}.json"))).expect("parse");
        assert_eq!(
            (p.family, p.kind, p.bot_id.as_str()),
            (Family::V2, EventKind::Unknown, "calendar"),
            "{event}"
        );
    }
}
