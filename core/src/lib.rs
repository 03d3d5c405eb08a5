//! meeting-relay core: the domain (payloads, events, sessions, tokens, messages), the ports the
//! handlers need (event store, connection store, pusher, MeetingBaaS), and the handlers both
//! hosts run (the Lambda functions and `relay serve`). No AWS SDK, no SQLite and no HTTP
//! framework: the adapters and hosts live in their own crates, so the compiler keeps it so.

pub mod config;
pub mod domain;
pub mod handlers;
pub mod ports;
pub mod secrets;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;

pub use domain::bot_id::BotId;
pub use domain::event::{EventId, EventKind, Family, NewEvent, StoredEvent};
pub use domain::session::{Session, Status};
pub use ports::store::{Appended, EventStore, StoreError};
