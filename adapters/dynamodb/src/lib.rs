//! DynamoDB adapters: the event store ([`events`]), the connection store ([`connections`]), the
//! decoding of the events table's stream records into domain events ([`stream`]), and the SDK
//! client they share ([`client`]). Both stores pass the core's contract suites against moto.

mod attr;
pub mod client;
pub mod connections;
mod error;
pub mod events;
pub mod stream;
pub mod table;

pub use aws_config::SdkConfig;
pub use client::{client_for, client_from, sdk_config};
pub use connections::{DynamoConnections, ensure_connections_table};
pub use events::{DynamoStore, ensure_events_table};
