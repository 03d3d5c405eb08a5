//! The secrets a Lambda host reads from its [`SecretsSource`]: fetched when first needed, kept
//! for at most [`REFRESH_EVERY`], so a rotated key takes effect without a redeploy; and what is
//! built from them ([`Rebuilt`]: the authenticator, the token keys...) rebuilt only when a
//! refresh brought other values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ports::secrets::{Secrets, SecretsError, SecretsSource};

/// How long values read from the secret are used before it is read again, so a rotated key takes effect within 5 minutes without a redeploy.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// The time [`Refreshing`] ages its values by (a test's clock moves by hand).
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

struct Cached {
    read_at: Instant,
    secrets: Arc<Secrets>,
}

/// A [`SecretsSource`] read at most once per `ttl`. A failed refresh keeps the values read
/// before (logged, retried after another `ttl`); with nothing read yet it is the caller's error.
pub struct Refreshing<S> {
    source: S,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<Option<Cached>>,
}

impl<S: SecretsSource> Refreshing<S> {
    pub fn new(source: S) -> Self {
        Self::with_clock(source, REFRESH_EVERY, Arc::new(SystemClock))
    }

    pub fn with_clock(source: S, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            source,
            ttl,
            clock,
            state: tokio::sync::Mutex::new(None),
        }
    }

    /// The current values: the same `Arc` until a refresh reads different ones.
    pub async fn current(&self) -> Result<Arc<Secrets>, SecretsError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let Some(cached) = state.as_ref()
            && now.saturating_duration_since(cached.read_at) < self.ttl
        {
            return Ok(cached.secrets.clone());
        }
        match self.source.fetch().await {
            Ok(fresh) => {
                let secrets = match state.as_ref() {
                    Some(cached) if cached.secrets.same_as(&fresh) => cached.secrets.clone(),
                    _ => Arc::new(fresh),
                };
                *state = Some(Cached {
                    read_at: now,
                    secrets: secrets.clone(),
                });
                Ok(secrets)
            }
            Err(error) => match state.as_mut() {
                Some(cached) => {
                    tracing::warn!(%error, "secrets refresh failed; the values read before stay in use");
                    cached.read_at = now;
                    Ok(cached.secrets.clone())
                }
                None => Err(error),
            },
        }
    }
}

/// A value built from the secrets (or from the environment when there is no secret), kept
/// until other secrets come.
pub struct Rebuilt<T> {
    slot: tokio::sync::Mutex<Option<Built<T>>>,
}

/// The secrets a value was built from (`None`: the environment's) and the value.
type Built<T> = (Option<Arc<Secrets>>, Arc<T>);

impl<T> Default for Rebuilt<T> {
    fn default() -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T> Rebuilt<T> {
    /// The value built for `secrets`, building it with `build` when none was or when
    /// `secrets` is not the `Arc` it was built from. A failed build is returned and retried
    /// at the next call.
    pub async fn get<E>(
        &self,
        secrets: Option<Arc<Secrets>>,
        build: impl FnOnce(Option<&Secrets>) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut slot = self.slot.lock().await;
        if let Some((built_from, value)) = slot.as_ref() {
            let same = match (built_from, &secrets) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if same {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(build(secrets.as_deref())?);
        *slot = Some((secrets, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// The secret's current JSON (None: the store is down) and how often it was read.
    #[derive(Default)]
    struct Store {
        json: Mutex<Option<String>>,
        reads: AtomicUsize,
    }
    #[async_trait::async_trait]
    impl SecretsSource for Arc<Store> {
        async fn fetch(&self) -> Result<Secrets, SecretsError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            match self.json.lock().unwrap().clone() {
                Some(json) => Secrets::from_json(&json),
                None => Err(SecretsError::Unavailable("down".into())),
            }
        }
    }

    fn key(s: &Secrets) -> String {
        s.meetingbaas_api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn reads_once_per_ttl_and_keeps_values_through_an_outage() {
        let store = Arc::new(Store::default());
        let clock = Arc::new(Hand(Mutex::new(Instant::now())));
        let secrets = Refreshing::with_clock(store.clone(), REFRESH_EVERY, clock.clone());
        assert!(matches!(
            secrets.current().await,
            Err(SecretsError::Unavailable(_))
        ));
        *store.json.lock().unwrap() = Some(r#"{"MEETINGBAAS_API_KEY":"k1"}"#.into());
        let first = secrets.current().await.unwrap();
        assert_eq!(key(&first), "k1");
        *store.json.lock().unwrap() = Some(r#"{"MEETINGBAAS_API_KEY":"k1,k2"}"#.into());
        clock.advance(REFRESH_EVERY - Duration::from_secs(1));
        assert!(Arc::ptr_eq(&secrets.current().await.unwrap(), &first));
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
        clock.advance(Duration::from_secs(1));
        let second = secrets.current().await.unwrap();
        assert_eq!(key(&second), "k1,k2");
        assert_eq!(store.reads.load(Ordering::SeqCst), 3);
        // Down: the values read before stay, and the store is not asked again before the TTL.
        *store.json.lock().unwrap() = None;
        clock.advance(REFRESH_EVERY);
        assert!(Arc::ptr_eq(&secrets.current().await.unwrap(), &second));
        assert!(Arc::ptr_eq(&secrets.current().await.unwrap(), &second));
        assert_eq!(store.reads.load(Ordering::SeqCst), 4);
        // An unchanged value keeps the same Arc (nothing is rebuilt).
        *store.json.lock().unwrap() = Some(r#"{"MEETINGBAAS_API_KEY":"k1,k2"}"#.into());
        clock.advance(REFRESH_EVERY);
        assert!(Arc::ptr_eq(&secrets.current().await.unwrap(), &second));
    }

    #[tokio::test]
    async fn rebuilds_only_for_other_secrets() {
        let built = Rebuilt::<String>::default();
        let builds = AtomicUsize::new(0);
        let build = |s: Option<&Secrets>| {
            builds.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(s.map(key).unwrap_or_else(|| "env".into()))
        };
        assert_eq!(*built.get(None, build).await.unwrap(), "env");
        assert_eq!(*built.get(None, build).await.unwrap(), "env");
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        let a = Arc::new(Secrets::from_json(r#"{"MEETINGBAAS_API_KEY":"a"}"#).unwrap());
        assert_eq!(*built.get(Some(a.clone()), build).await.unwrap(), "a");
        assert_eq!(*built.get(Some(a.clone()), build).await.unwrap(), "a");
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        assert_eq!(
            built
                .get(Some(a.clone()), |_| Err::<String, _>(()))
                .await
                .ok()
                .map(|v| v.to_string()),
            Some("a".into())
        );
        let b = Arc::new(Secrets::from_json(r#"{"MEETINGBAAS_API_KEY":"b"}"#).unwrap());
        assert!(
            built
                .get(Some(b.clone()), |_| Err::<String, _>(()))
                .await
                .is_err()
        );
        assert_eq!(*built.get(Some(b), build).await.unwrap(), "b");
    }
}
