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
