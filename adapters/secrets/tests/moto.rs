//! The adapter against moto's Secrets Manager over HTTP (`RELAY_TEST_DYNAMODB_ENDPOINT`: the
//! moto server of scripts/test serves every service). Without it the tests fail, not skip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use http::{HeaderMap, HeaderValue};
use relay_core::config::Config;
use relay_core::domain::auth::{AuthError, Authenticator};
use relay_core::ports::secrets::{SecretsError, SecretsSource};
use relay_core::secrets::{Clock, REFRESH_EVERY, Rebuilt, Refreshing};
use relay_secrets::{LambdaSecrets, SecretsManagerSource};
use secrecy::ExposeSecret;

fn endpoint() -> String {
    match std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "RELAY_TEST_DYNAMODB_ENDPOINT is not set: set it to a moto server (it serves \
             Secrets Manager too, e.g. http://127.0.0.1:5000) or run scripts/test"
        ),
    }
}

fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(
            aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "test",
            )),
        )
        .build()
}

async fn create(client: &Client, json: &str) -> String {
    let name = format!(
        "relay-test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    client
        .create_secret()
        .name(name)
        .secret_string(json)
        .send()
        .await
        .expect("create_secret on moto")
        .arn()
        .expect("an ARN")
        .to_owned()
}

async fn put(client: &Client, arn: &str, json: &str) {
    client
        .put_secret_value()
        .secret_id(arn)
        .secret_string(json)
        .send()
        .await
        .expect("put_secret_value on moto");
}

struct Hand(Mutex<Instant>);
impl Clock for Hand {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}
impl Hand {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

#[tokio::test]
async fn reads_the_four_keys_of_the_current_version() {
    let sdk = sdk();
    let client = Client::new(&sdk);
    let arn = create(
        &client,
        r#"{"MEETINGBAAS_API_KEY":"k1","MEETINGBAAS_WEBHOOK_SECRET":"","MEETINGBAAS_CALLBACK_SECRET":"cb","RELAY_CLIENT_SECRET":"client-secret"}"#,
    )
    .await;
    let secrets = SecretsManagerSource::new(&sdk, &arn).fetch().await.unwrap();
    let get = |s: &Option<secrecy::SecretString>| s.as_ref().map(|v| v.expose_secret().to_owned());
    assert_eq!(get(&secrets.meetingbaas_api_key).as_deref(), Some("k1"));
    assert_eq!(get(&secrets.meetingbaas_webhook_secret), None);
    assert_eq!(
        get(&secrets.meetingbaas_callback_secret).as_deref(),
        Some("cb")
    );
    assert_eq!(
        get(&secrets.relay_client_secret).as_deref(),
        Some("client-secret")
    );
    put(&client, &arn, r#"{"MEETINGBAAS_API_KEY":"k2"}"#).await;
    let secrets = SecretsManagerSource::new(&sdk, &arn).fetch().await.unwrap();
    assert_eq!(get(&secrets.meetingbaas_api_key).as_deref(), Some("k2"));
    assert_eq!(get(&secrets.relay_client_secret), None);

    // Through the host's holder, as a Lambda reads it; no ARN: the environment stands.
    let host = LambdaSecrets::new(Some(arn));
    let current = host.current(&sdk).await.unwrap().unwrap();
    assert_eq!(get(&current.meetingbaas_api_key).as_deref(), Some("k2"));
    assert!(
        LambdaSecrets::new(None)
            .current(&sdk)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_missing_or_malformed_secret_is_an_error_without_its_value() {
    let sdk = sdk();
    let missing = SecretsManagerSource::new(
        &sdk,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf",
    )
    .fetch()
    .await
    .unwrap_err();
    assert!(
        matches!(missing, SecretsError::Unavailable(_)),
        "{missing:?}"
    );
    let client = Client::new(&sdk);
    let arn = create(&client, r#"{"RELAY_CLIENT_SECRET": ["s3cr3t-value"]}"#).await;
    let malformed = SecretsManagerSource::new(&sdk, &arn)
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(malformed, SecretsError::Malformed("RELAY_CLIENT_SECRET"));
    assert!(!malformed.to_string().contains("s3cr3t"));
}

fn delivery(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-meeting-baas-api-key",
        HeaderValue::from_str(key).unwrap(),
    );
    headers
}

/// A key rotation while the webhook's authenticator serves: the old key, then both (the
/// comma-separated `MEETINGBAAS_API_KEY` list), then only the new one, each taking effect at the
/// first refresh after the TTL and never before; nothing is redeployed.
#[tokio::test]
async fn rotation_while_serving_old_key_both_new_key() {
    let sdk = sdk();
    let client = Client::new(&sdk);
    let arn = create(&client, r#"{"MEETINGBAAS_API_KEY":"old-key"}"#).await;
    let clock = Arc::new(Hand(Mutex::new(Instant::now())));
    let secrets = Refreshing::with_clock(
        SecretsManagerSource::new(&sdk, &arn),
        REFRESH_EVERY,
        clock.clone(),
    );
    let base = Config::from_lookup(|_| None).unwrap();
    let auth = Rebuilt::<Authenticator>::default();
    let serve = |key: &'static str| {
        let (secrets, auth, base) = (&secrets, &auth, &base);
        async move {
            let current = secrets.current().await.unwrap();
            let authenticator = auth
                .get(Some(current), |s| {
                    Authenticator::new(&s.map(|s| s.apply(base)).unwrap_or(base.clone()).auth)
                })
                .await
                .unwrap();
            authenticator.verify(&delivery(key), b"{}", 0).is_ok()
        }
    };
    assert!(serve("old-key").await);
    assert!(!serve("new-key").await);

    put(
        &client,
        &arn,
        r#"{"MEETINGBAAS_API_KEY":"old-key,new-key"}"#,
    )
    .await;
    // Within the TTL the values read before are used: the store is not asked on every call.
    assert!(!serve("new-key").await);
    clock.advance(REFRESH_EVERY);
    assert!(serve("old-key").await);
    assert!(serve("new-key").await);

    put(&client, &arn, r#"{"MEETINGBAAS_API_KEY":"new-key"}"#).await;
    assert!(serve("old-key").await, "still both until the next refresh");
    clock.advance(REFRESH_EVERY);
    assert!(serve("new-key").await);
    assert!(!serve("old-key").await);
    let current = secrets.current().await.unwrap();
    let only_new = Authenticator::new(&current.apply(&base).auth).unwrap();
    assert_eq!(
        only_new.verify(&delivery("old-key"), b"{}", 0),
        Err(AuthError::Mismatch)
    );
}
