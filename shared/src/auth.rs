//! Bearer tokens: JWTs whose `sub` is the user's UUID. Our own are HS256 with the shared
//! secret; with a JWKS endpoint configured, RS256/ES256 tokens of an identity provider (Supabase,
//! any OIDC issuer) are accepted too, checked against its published keys.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints a token for `user`, valid for `ttl_secs`.
pub fn mint(secret: &str, user: Uuid, ttl_secs: u64) -> Result<String> {
    let iat = now();
    let claims = Claims {
        sub: user.to_string(),
        iat,
        exp: iat + ttl_secs,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// What an identity provider's tokens must satisfy.
#[derive(Debug, Clone, Default)]
pub struct ProviderSettings {
    /// Where its signing keys are published (`…/.well-known/jwks.json`).
    pub jwks_url: Option<String>,
    /// Required `aud` of its tokens (Supabase: `authenticated`).
    pub audience: Option<String>,
    /// Required `iss` of its tokens.
    pub issuer: Option<String>,
}

/// Verifies bearer tokens: HS256 with our secret, RS256/ES256 against the provider's JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    secret: String,
    provider: ProviderSettings,
    jwks: Option<Arc<JwksCache>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Subject {
    sub: String,
}

impl TokenVerifier {
    pub fn new(secret: &str, provider: ProviderSettings) -> Self {
        let jwks = provider
            .jwks_url
            .clone()
            .map(|url| Arc::new(JwksCache::new(url)));
        Self {
            secret: secret.to_owned(),
            provider,
            jwks,
        }
    }

    /// The token's user, or why it is refused. Only HS256, RS256 and ES256 are accepted: the
    /// algorithm is taken from the header only to choose among those (`none` and anything
    /// else fail to parse or are refused), and each is verified with its own kind of key.
    pub async fn verify(&self, token: &str) -> Result<Uuid> {
        let header = jsonwebtoken::decode_header(token)?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let key = match header.alg {
            Algorithm::HS256 => DecodingKey::from_secret(self.secret.as_bytes()),
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or_else(|| {
                    Error::Auth("RS256/ES256 tokens need RYTHMIQ_JWKS_URL".into())
                })?;
                if let Some(aud) = &self.provider.audience {
                    validation.set_audience(&[aud]);
                }
                if let Some(iss) = &self.provider.issuer {
                    validation.set_issuer(&[iss]);
                }
                let kid = header
                    .kid
                    .ok_or_else(|| Error::Auth("token has no key id (kid)".into()))?;
                jwks.key(&kid, header.alg).await?
            }
            other => return Err(Error::Auth(format!("algorithm {other:?} is not accepted"))),
        };
        if header.alg == Algorithm::HS256 {
            // Our own tokens carry no audience.
            validation.validate_aud = false;
        }
        let data = jsonwebtoken::decode::<Subject>(token, &key, &validation)?;
        Uuid::parse_str(&data.claims.sub)
            .map_err(|_| Error::Auth("token subject is not a UUID".into()))
    }
}

/// The provider's keys, fetched on first use, refreshed every 10 minutes and when a token names
/// an unknown key (key rotation), but at most every 30 s so bad tokens cannot hammer it.
///
/// A check never holds a lock across the fetch: it takes a snapshot of the cached set, and one
/// refresh at a time runs outside that lock. A check whose key is cached therefore never waits
/// for the provider, even while a refresh is in progress (a slow provider would otherwise hold up
/// every RS256/ES256 request); only a check that needs the refresh (no keys yet, or its key is
/// unknown) waits for it.
struct JwksCache {
    url: String,
    client: reqwest::Client,
    max_age: Duration,
    min_refresh: Duration,
    /// The last key set fetched; locked only to copy or replace the `Arc`.
    cached: std::sync::Mutex<Option<Arc<FetchedKeys>>>,
    /// Held by the one refresh in progress.
    refreshing: tokio::sync::Mutex<()>,
}

struct FetchedKeys {
    at: Instant,
    set: jsonwebtoken::jwk::JwkSet,
}

impl JwksCache {
    const MAX_AGE: Duration = Duration::from_secs(600);
    const MIN_REFRESH: Duration = Duration::from_secs(30);

    fn new(url: String) -> Self {
        Self::with_timing(url, Self::MAX_AGE, Self::MIN_REFRESH)
    }

    fn with_timing(url: String, max_age: Duration, min_refresh: Duration) -> Self {
        Self {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            max_age,
            min_refresh,
            cached: std::sync::Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> Option<Arc<FetchedKeys>> {
        // Nothing panics while the lock is held, so a poisoned lock still holds a whole value.
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn fetch(&self) -> Result<jsonwebtoken::jwk::JwkSet> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Error::Auth(format!("fetching the JWKS failed: {e}")))?;
        resp.json()
            .await
            .map_err(|e| Error::Auth(format!("the JWKS is not a key set: {e}")))
    }

    /// Whether the keys at hand must be fetched again before `kid` is looked up.
    fn stale(&self, keys: Option<&FetchedKeys>, kid: &str) -> bool {
        keys.is_none_or(|k| {
            k.at.elapsed() > self.max_age
                || (k.set.find(kid).is_none() && k.at.elapsed() > self.min_refresh)
        })
    }

    /// Fetches the keys if they are (still) stale. Called with `refreshing` held, so it sees
    /// the result of the refresh it may have waited for and does not repeat it.
    async fn refresh(&self, kid: &str) -> Result<Option<Arc<FetchedKeys>>> {
        let current = self.snapshot();
        if !self.stale(current.as_deref(), kid) {
            return Ok(current);
        }
        match self.fetch().await {
            Ok(set) => {
                let fresh = Arc::new(FetchedKeys {
                    at: Instant::now(),
                    set,
                });
                *self
                    .cached
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh.clone());
                Ok(Some(fresh))
            }
            // Keep serving the keys we have when the provider is briefly unreachable.
            Err(e) if current.is_none() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; using cached keys");
                Ok(current)
            }
        }
    }

    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey> {
        let cached = self.snapshot();
        let has_key = cached.as_ref().is_some_and(|k| k.set.find(kid).is_some());
        let keys = if !self.stale(cached.as_deref(), kid) {
            cached
        } else if has_key {
            // Old keys but ours among them: refresh unless a refresh is already under way, in
            // which case the cached key serves until it ends.
            match self.refreshing.try_lock() {
                Ok(_refreshing) => self.refresh(kid).await?,
                Err(_) => cached,
            }
        } else {
            // No keys yet, or ours is unknown: only a refresh can tell.
            let _refreshing = self.refreshing.lock().await;
            self.refresh(kid).await?
        };
        let jwk = keys
            .as_ref()
            .and_then(|k| k.set.find(kid))
            .ok_or_else(|| Error::Auth(format!("no key {kid:?} in the JWKS")))?;
        // A key published for one algorithm is not used with another.
        if let Some(published) = jwk.common.key_algorithm
            && format!("{published:?}") != format!("{alg:?}")
        {
            return Err(Error::Auth(format!(
                "key {kid:?} is for {published:?}, not {alg:?}"
            )));
        }
        Ok(DecodingKey::from_jwk(jwk)?)
    }
}

/// A fresh random secret (for `rythmiq dev`'s generated secret).
pub fn generate_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_rejections() -> Result<()> {
        let user = Uuid::new_v4();
        let token = mint("s3cret", user, 60)?;
        let ours = TokenVerifier::new("s3cret", ProviderSettings::default());
        assert_eq!(ours.verify(&token).await?, user);
        let other = TokenVerifier::new("other", ProviderSettings::default());
        assert!(other.verify(&token).await.is_err());
        assert!(ours.verify("not.a.token").await.is_err());
        // `alg: none` with no signature.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            token.split('.').nth(1).unwrap_or_default()
        );
        assert!(ours.verify(&none).await.is_err());
        // RS256 without a configured JWKS.
        let rs = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.c2ln";
        assert!(ours.verify(rs).await.is_err());
        Ok(())
    }

    /// The test keys of `tests/fixtures/jwks` (see its README).
    fn fixture(name: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/jwks")
                .join(name),
        )
    }

    fn rs256_token(kid: &str, user: Uuid) -> Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let claims = serde_json::json!({"sub": user.to_string(), "aud": "authenticated",
                                        "exp": now() + 600});
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(&fixture("rsa.pem")?)?,
        )?)
    }

    /// A JWKS endpoint on loopback that answers its first request at once and holds every later
    /// one until `release` is set, announcing each on `held`. Counts the most requests it ever
    /// held unanswered at once.
    struct SlowProvider {
        url: String,
        held: tokio::sync::mpsc::UnboundedReceiver<()>,
        release: tokio::sync::watch::Sender<bool>,
        max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    }

    async fn slow_provider() -> Result<SlowProvider> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let jwks = fixture("jwks.json")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
        let (held_tx, held) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(false);
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let max = max_in_flight.clone();
        let in_flight = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            let mut served = 0usize;
            while let Ok((mut conn, _)) = listener.accept().await {
                served += 1;
                let first = served == 1;
                let (jwks, held_tx, mut released) =
                    (jwks.clone(), held_tx.clone(), released.clone());
                let (in_flight, max) = (in_flight.clone(), max.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    // Counted until the answer starts: the client cannot send its next
                    // request before that.
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    if !first {
                        let _ = held_tx.send(());
                        let _ = released.wait_for(|&r| r).await;
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        jwks.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&jwks).await;
                });
            }
        });
        Ok(SlowProvider {
            url,
            held,
            release,
            max_in_flight,
        })
    }

    #[tokio::test]
    async fn a_cached_key_is_not_held_up_by_a_slow_refresh() -> Result<()> {
        let mut provider = slow_provider().await?;
        // Unknown keys trigger a refresh at once, so the test needs no 30 s wait.
        let cache =
            JwksCache::with_timing(provider.url.clone(), JwksCache::MAX_AGE, Duration::ZERO);
        let verifier = TokenVerifier {
            secret: "unused".into(),
            provider: ProviderSettings {
                audience: Some("authenticated".into()),
                ..ProviderSettings::default()
            },
            jwks: Some(Arc::new(cache)),
        };
        let user = Uuid::new_v4();
        let cached = rs256_token("test-rsa", user)?;
        // The first check fetches the keys (the provider answers it at once).
        assert_eq!(verifier.verify(&cached).await?, user);

        // Two tokens naming a key the set lacks: each needs a refresh, which the provider holds.
        let unknown = rs256_token("rotated-key", user)?;
        let stuck: Vec<_> = (0..2)
            .map(|_| {
                let (verifier, token) = (verifier.clone(), unknown.clone());
                tokio::spawn(async move { verifier.verify(&token).await })
            })
            .collect();
        let reached = tokio::time::timeout(Duration::from_secs(5), provider.held.recv()).await;
        assert!(
            matches!(reached, Ok(Some(()))),
            "no refresh reached the provider"
        );

        // Meanwhile a token whose key is cached is verified promptly.
        let quick = tokio::time::timeout(Duration::from_secs(1), verifier.verify(&cached)).await;
        assert!(
            matches!(quick, Ok(Ok(u)) if u == user),
            "the cached key waited for the refresh: {quick:?}"
        );

        // Once the provider answers, the unknown key is still refused, and it never had two
        // refreshes at once.
        let _ = provider.release.send(true);
        for task in stuck {
            let result = tokio::time::timeout(Duration::from_secs(10), task).await;
            assert!(
                matches!(result, Ok(Ok(Err(Error::Auth(ref m)))) if m.contains("rotated-key")),
                "{result:?}"
            );
        }
        assert_eq!(
            provider
                .max_in_flight
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        Ok(())
    }
}
