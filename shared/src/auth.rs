//! Bearer tokens: JWTs whose `sub` is the user's UUID. Our own are HS256 with the shared
//! secret; with a JWKS endpoint configured, RS256/ES256 tokens of an identity provider (Supabase,
//! any OIDC issuer) are accepted too, checked against its published keys.

use std::time::{SystemTime, UNIX_EPOCH};

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
    jwks: Option<std::sync::Arc<JwksCache>>,
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
            .map(|url| std::sync::Arc::new(JwksCache::new(url)));
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
struct JwksCache {
    url: String,
    client: reqwest::Client,
    state: tokio::sync::Mutex<Option<(std::time::Instant, jsonwebtoken::jwk::JwkSet)>>,
}

impl JwksCache {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);
    const MIN_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

    fn new(url: String) -> Self {
        Self {
            url,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            state: tokio::sync::Mutex::new(None),
        }
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

    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey> {
        let mut state = self.state.lock().await;
        let stale = state.as_ref().is_none_or(|(at, set)| {
            at.elapsed() > Self::MAX_AGE
                || (set.find(kid).is_none() && at.elapsed() > Self::MIN_REFRESH)
        });
        if stale {
            match self.fetch().await {
                Ok(set) => *state = Some((std::time::Instant::now(), set)),
                // Keep serving the keys we have when the provider is briefly unreachable.
                Err(e) if state.is_none() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; using cached keys"),
            }
        }
        let jwk = state
            .as_ref()
            .and_then(|(_, set)| set.find(kid))
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
}
