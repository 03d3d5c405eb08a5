//! No code: the package exists for its test (`asyncapi.rs`), run in a cargo run of its own.
