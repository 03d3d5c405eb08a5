//! Embedded adapters (rusqlite), the default stores of `relay serve`: the event store
//! ([`events`], one writer thread committing in groups, a change feed for the local stream) and
//! the connection store ([`connections`]). Both pass the core's contract suites.

pub mod connections;
pub mod events;

pub use connections::SqliteConnections;
pub use events::SqliteStore;
