//! DynamoDB adapter (placeholder; being written).
