//! SQLite adapter (placeholder; being written).
