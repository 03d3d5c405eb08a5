//! Bench only (`scripts/bench-init`), never deployed: a hello-world `lambda_runtime` bootstrap
//! built with the functions' release profile, the floor their init time is compared with.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
