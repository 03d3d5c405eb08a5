//! The SDK client the DynamoDB adapters share: bounded timeouts, and for local endpoints a
//! region and dummy credentials that need no AWS account.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, ProvideCredentials, Region};

/// A DynamoDB client whose failures come back promptly: connect 1 s, attempt 2 s, operation
/// 5 s (SDK retries included), so an unreachable store is a 503 well before MeetingBaaS v1
/// gives up after 10 s. With an explicit `endpoint` (moto, `relay serve --dynamodb-endpoint`)
/// a missing region becomes `us-east-1` and missing credentials become static dummy ones,
/// since local endpoints need a signature but never check it. Without one, everything comes
/// from the standard AWS chain (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`, role credentials).
pub async fn client_for(endpoint: Option<&str>) -> Client {
    Client::new(&sdk_config(endpoint).await)
}

/// The AWS configuration [`client_for`] uses, for the other clients of the same endpoint
/// (DynamoDB Streams in the local host).
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url).region(local_region());
    }
    let shared = loader.load().await;
    if endpoint.is_none() {
        return shared;
    }
    let needs_credentials = !credentials_resolve(&shared).await;
    let mut builder = shared.clone().into_builder();
    if needs_credentials {
        builder.set_credentials_provider(Some(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "relay-local",
                "relay-local",
                None,
                None,
                "relay-local-endpoint",
            )),
        ));
    }
    builder.build()
}

/// The region for a local endpoint: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`. Never
/// the instance metadata service, which a laptop does not have (the default chain would try it,
/// log warnings and, where it is unreachable, wait for its timeouts at every start).
pub fn local_region() -> aws_config::meta::region::RegionProviderChain {
    aws_config::meta::region::RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(Region::from_static("us-east-1"))
}

/// Whether the default chain yields credentials within a second (env, profile, SSO, IMDS...).
async fn credentials_resolve(shared: &aws_config::SdkConfig) -> bool {
    let Some(provider) = shared.credentials_provider() else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), provider.provide_credentials()).await,
        Ok(Ok(_))
    )
}

/// A DynamoDB client from an AWS configuration the host already loaded (with [`sdk_config`]),
/// shared with its other clients.
pub fn client_from(shared: &aws_config::SdkConfig) -> Client {
    Client::new(shared)
}
