//! The request handlers both hosts run. Each takes plain domain input (headers and bytes, a
//! WebSocket route event, a batch of stored events) and returns a plain outcome; turning AWS
//! events and HTTP requests into those is the adapters' job.

pub mod api;
pub mod fanout;
pub mod reconcile;
pub mod subscription;
pub mod webhook;
