//! meeting-relay core. Everything both hosts (the Lambda functions and `relay serve`) run lives
//! here: the domain (payloads, events, sessions, tokens), the ports (stores) with their
//! adapters, and the request handlers.

pub mod api;
pub mod auth;
pub mod body;
pub mod bot_id;
pub mod config;
pub mod connection;
pub mod event;
pub mod fanout;
pub mod idempotency;
pub mod meetingbaas;
pub mod message;
pub mod payload;
pub mod push;
pub mod session;
pub mod store;
pub mod stream;
pub mod subscription;
pub mod telemetry;
pub mod testdata;
pub mod token;
pub mod webhook;

pub use bot_id::BotId;
pub use event::{EventId, EventKind, Family, NewEvent, StoredEvent};
pub use session::{Session, Status};
pub use store::{Appended, EventStore, StoreError};
