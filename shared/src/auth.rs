//! Bearer tokens: HS256 JWTs whose `sub` is the user's UUID.

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

/// Verifies a token (signature, algorithm, expiry) and returns its user.
pub fn verify(secret: &str, token: &str) -> Result<Uuid> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )?;
    Uuid::parse_str(&data.claims.sub)
        .map_err(|_| Error::Config("token subject is not a UUID".into()))
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

    #[test]
    fn round_trip_and_rejections() -> Result<()> {
        let user = Uuid::new_v4();
        let token = mint("s3cret", user, 60)?;
        assert_eq!(verify("s3cret", &token)?, user);
        assert!(verify("other", &token).is_err());
        assert!(verify("s3cret", "not.a.token").is_err());
        Ok(())
    }
}
