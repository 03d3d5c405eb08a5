//! The reconciliation pass: nothing stays open because a delivery never came. Every session
//! that is not final and has had no event for `after` is checked against MeetingBaaS; what it
//! reports, when applying it would change the session, is stored as a `bot.reconciled` event
//! through the same store path as a delivery, so it moves the session by the same rules,
//! reaches browsers through the same fan-out, and a later real delivery of the same outcome is
//! a repeat. The same handler runs in the scheduled Lambda, in `relay serve` and in
//! `relay reconcile --once`.
//!
//! Cost per pass: one page read of the open-session index per 100 open sessions, then per
//! idle open session one MeetingBaaS call (v2: two when the status is final), and one session
//! read plus one event write only when MeetingBaaS reports a change. A long meeting with no
//! events is asked once per pass while it stays idle.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::domain::bot_id::BotId;
use crate::domain::event::{EventId, EventKind, Family, NewEvent};
use crate::domain::report::{BotReport, Finding};
use crate::domain::session::Outcome;
use crate::ports::meetingbaas::{ApiVersion, MeetingBaas, MeetingBaasError};
use crate::ports::store::{Appended, EventStore, OpenSession, StoreError};
use crate::telemetry::metrics as m;

/// `RECONCILE_AFTER_SECONDS` default: MeetingBaaS retries a webhook for about 3 hours, but a
/// session with no news for 30 minutes is worth one question.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(1800);
/// `RECONCILE_INTERVAL_SECONDS` default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// MeetingBaaS calls in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Sessions one pass checks at most; the next pass goes on after the last one checked.
pub const DEFAULT_BUDGET: usize = 500;
/// Index page size.
const PAGE: u32 = 100;

#[derive(Debug, Clone, Copy)]
pub struct ReconcileSettings {
    pub after: Duration,
    pub concurrency: usize,
    pub budget: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            after: DEFAULT_AFTER,
            concurrency: DEFAULT_CONCURRENCY,
            budget: DEFAULT_BUDGET,
        }
    }
}

/// What one pass did (logged, returned by the Lambda, printed by `relay reconcile --once`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Idle open sessions asked about.
    pub checked: usize,
    /// Sessions a `bot.reconciled` event was stored for.
    pub reconciled: usize,
    /// MeetingBaaS's answer changed nothing.
    pub unchanged: usize,
    /// MeetingBaaS does not know the bot (404): left as it is.
    pub unknown: usize,
    /// MeetingBaaS or the store failed for this session: asked again next pass.
    pub errors: usize,
    /// MeetingBaaS calls made.
    pub meetingbaas_calls: usize,
    /// The budget ran out before the index did: the next pass goes on from there.
    pub more: bool,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The open-session index could not be read: nothing was checked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Reconciler {
    store: Arc<dyn EventStore>,
    meetingbaas: Arc<dyn MeetingBaas>,
    settings: ReconcileSettings,
    /// Where the last pass stopped when its budget ran out (kept by a warm Lambda and by
    /// `relay serve`; a cold start begins with the oldest again).
    resume_after: Mutex<Option<OpenSession>>,
}

/// How one session's check ended.
enum Checked {
    Reconciled,
    Unchanged,
    Unknown,
    Failed,
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn EventStore>,
        meetingbaas: Arc<dyn MeetingBaas>,
        settings: ReconcileSettings,
    ) -> Self {
        Self {
            store,
            meetingbaas,
            settings: ReconcileSettings {
                concurrency: settings.concurrency.max(1),
                budget: settings.budget.max(1),
                ..settings
            },
            resume_after: Mutex::new(None),
        }
    }

    /// One pass at `now`. Only a failure to read the index is an error; each session's
    /// failures are counted and retried next pass, never turned into an outcome.
    pub async fn run_pass(&self, now: DateTime<Utc>) -> Result<PassReport, ReconcileError> {
        let started = Instant::now();
        let idle_before = now
            - chrono::Duration::from_std(self.settings.after).unwrap_or(chrono::Duration::zero());
        let mut report = PassReport::default();
        // Resume where the last pass's budget ran out; after the end of the index, go round
        // from the oldest up to that point, so each session is asked at most once a pass.
        let start = self.resume_after.lock().map(|c| c.clone()).unwrap_or(None);
        let mut cursor = start.clone();
        let mut wrapped = start.is_none();
        let mut in_flight = JoinSet::new();
        'pages: loop {
            let left = self.settings.budget - report.checked;
            let want = PAGE.min(u32::try_from(left).unwrap_or(PAGE));
            let page = self
                .store
                .open_sessions(idle_before, cursor.as_ref(), want)
                .await?;
            if page.is_empty() {
                if wrapped {
                    break;
                }
                wrapped = true;
                cursor = None;
                continue;
            }
            for open in page {
                if wrapped
                    && start
                        .as_ref()
                        .is_some_and(|s| open.index_key() >= s.index_key())
                {
                    break 'pages;
                }
                cursor = Some(open.clone());
                while in_flight.len() >= self.settings.concurrency {
                    tally(&mut report, in_flight.join_next().await);
                }
                let (store, meetingbaas) = (self.store.clone(), self.meetingbaas.clone());
                in_flight.spawn(async move { check(store, meetingbaas, open, now).await });
                report.checked += 1;
                if report.checked >= self.settings.budget {
                    report.more = true;
                    break 'pages;
                }
            }
        }
        while let Some(done) = in_flight.join_next().await {
            tally(&mut report, Some(done));
        }
        if let Ok(mut resume) = self.resume_after.lock() {
            *resume = if report.more { cursor } else { None };
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for (label, n) in [
            ("reconciled", report.reconciled),
            ("unchanged", report.unchanged),
            ("unknown", report.unknown),
            ("error", report.errors),
        ] {
            if n > 0 {
                metrics::counter!(m::RECONCILE_SESSIONS, "outcome" => label).increment(n as u64);
            }
        }
        if report.reconciled > 0 {
            metrics::counter!(m::EVENTS_STORED, "source" => "reconcile")
                .increment(report.reconciled as u64);
        }
        tracing::info!(
            checked = report.checked,
            reconciled = report.reconciled,
            unchanged = report.unchanged,
            unknown = report.unknown,
            errors = report.errors,
            meetingbaas_calls = report.meetingbaas_calls,
            more = report.more,
            latency_ms = report.duration_ms,
            "reconcile pass"
        );
        Ok(report)
    }
}

fn tally(report: &mut PassReport, done: Option<Result<(Checked, usize), tokio::task::JoinError>>) {
    let Some(done) = done else { return };
    match done {
        Ok((checked, calls)) => {
            report.meetingbaas_calls += calls;
            match checked {
                Checked::Reconciled => report.reconciled += 1,
                Checked::Unchanged => report.unchanged += 1,
                Checked::Unknown => report.unknown += 1,
                Checked::Failed => report.errors += 1,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "reconcile task failed");
            report.errors += 1;
        }
    }
}

/// Asks about one session; returns how it ended and the MeetingBaaS calls it made.
async fn check(
    store: Arc<dyn EventStore>,
    meetingbaas: Arc<dyn MeetingBaas>,
    open: OpenSession,
    now: DateTime<Utc>,
) -> (Checked, usize) {
    let bot = &open.bot_id;
    let version = meetingbaas.version();
    let (asked, calls) = ask(meetingbaas.as_ref(), bot).await;
    let report = match asked {
        Ok(Asked::Report(report)) => report,
        Ok(Asked::Nothing) => return (Checked::Unchanged, calls),
        Ok(Asked::Unknown) => {
            tracing::warn!(
                bot_id = bot.as_str(),
                "reconcile: MeetingBaaS does not know this bot"
            );
            return (Checked::Unknown, calls);
        }
        Err(e) => {
            tracing::warn!(bot_id = bot.as_str(), error = %e, "reconcile: MeetingBaaS failed");
            return (Checked::Failed, calls);
        }
    };
    match store_if_it_changes(store.as_ref(), bot, version, &report, now).await {
        Ok(Some(appended)) => {
            tracing::info!(
                bot_id = bot.as_str(),
                event = EventKind::BotReconciled.as_str(),
                event_id = appended.event_id().as_str(),
                source_event = report.source_event(),
                seq = appended.seq(),
                duplicate = appended.is_duplicate(),
                "reconciled"
            );
            let checked = if appended.is_duplicate() {
                Checked::Unchanged
            } else {
                Checked::Reconciled
            };
            (checked, calls)
        }
        Ok(None) => (Checked::Unchanged, calls),
        Err(e) => {
            tracing::warn!(bot_id = bot.as_str(), error = %e, "reconcile: store failed");
            (Checked::Failed, calls)
        }
    }
}

enum Asked {
    Report(BotReport),
    /// MeetingBaaS answered but reports nothing to compare (v1 while in the call).
    Nothing,
    Unknown,
}

/// v2: the status, and the details only when it is final; v1: the meeting data, whose outcome
/// is inferred.
async fn ask(mb: &dyn MeetingBaas, bot: &BotId) -> (Result<Asked, MeetingBaasError>, usize) {
    match mb.version() {
        ApiVersion::V2 => {
            let status = match mb.bot_status(bot).await {
                Ok(Some(status)) => status,
                Ok(None) => return (Ok(Asked::Unknown), 1),
                Err(e) => return (Err(e), 1),
            };
            let Some(report) = BotReport::v2_status(&status) else {
                return (Ok(Asked::Nothing), 1);
            };
            if !BotReport::is_v2_final(report.source_event()) {
                return (Ok(Asked::Report(report)), 1);
            }
            match mb.bot_details(bot).await {
                Ok(Some(details)) => (Ok(Asked::Report(BotReport::v2_final(&report, &details))), 2),
                Ok(None) => (Ok(Asked::Unknown), 2),
                Err(e) => (Err(e), 2),
            }
        }
        ApiVersion::V1 => match mb.bot_details(bot).await {
            Ok(Some(data)) => (
                Ok(BotReport::v1_meeting_data(&data).map_or(Asked::Nothing, Asked::Report)),
                1,
            ),
            Ok(None) => (Ok(Asked::Unknown), 1),
            Err(e) => (Err(e), 1),
        },
    }
}

/// Reads the session (the index may be a moment stale) and stores the report only when
/// applying it would change what the session shows.
async fn store_if_it_changes(
    store: &dyn EventStore,
    bot: &BotId,
    version: ApiVersion,
    report: &BotReport,
    now: DateTime<Utc>,
) -> Result<Option<Appended>, StoreError> {
    let event = reconciled_event(bot, version, report, now);
    let Some(session) = store.session(bot).await? else {
        return Ok(None);
    };
    if !session.is_open() {
        return Ok(None);
    }
    let mut after = session.clone();
    after.apply(&event);
    let shows = |s: &crate::domain::session::Session| (s.status, s.error.clone(), s.attempt);
    if shows(&after) == shows(&session) {
        return Ok(None);
    }
    store.append(event).await.map(Some)
}

fn reconciled_event(
    bot: &BotId,
    version: ApiVersion,
    report: &BotReport,
    now: DateTime<Utc>,
) -> NewEvent {
    let key = report.idempotency_key();
    let (status_code, outcome, error) = match &report.finding {
        Finding::Status(code) => (Some(code.clone()), None, None),
        Finding::Outcome(outcome, error) => (
            None,
            Some(*outcome),
            // A failure outcome with no error said still ends `failed`.
            error
                .clone()
                .map(Box::new)
                .filter(|_| *outcome == Outcome::Failed),
        ),
    };
    NewEvent {
        event_id: EventId::derive(bot, &key),
        bot_id: bot.clone(),
        idempotency_key: key,
        kind: EventKind::BotReconciled,
        source_event: report.source_event().to_owned(),
        family: match version {
            ApiVersion::V1 => Family::V1,
            ApiVersion::V2 => Family::V2,
        },
        status_code,
        occurred_at: report.at.clone(),
        error,
        attempt: None,
        max: None,
        outcome,
        received_at: now,
        body: report.body(bot, version, now),
    }
}
