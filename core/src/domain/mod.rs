//! What the relay is about, with no I/O: deliveries and their payloads, canonical events,
//! the per-bot session and its status machine, client tokens and the messages browsers get.

pub mod auth;
pub mod bot_id;
pub mod envelope;
pub mod event;
pub mod idempotency;
pub mod message;
pub mod payload;
pub mod session;
pub mod status;
pub mod token;
