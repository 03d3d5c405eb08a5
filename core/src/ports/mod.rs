//! The traits the handlers use and the adapters implement. Each documents the errors its
//! callers must handle; each has one contract suite (`testing`) that every adapter passes.

pub mod connections;
pub mod meetingbaas;
pub mod push;
pub mod secrets;
pub mod store;
