//! Short-lived signed download links, so a browser or a phone can fetch an output without a
//! bearer token: `/v1/download/{job_id}?exp={unix seconds}&sig={base64url HMAC-SHA256}`.
//!
//! The MAC covers the exact request path and the expiry, so changing either (another job's id,
//! a later expiry) invalidates the link. Verification compares in constant time (`hmac`'s
//! `verify_slice`) and checks the signature before the expiry, so a forged link learns nothing
//! about timing. Links last [`DEFAULT_TTL`] (24 h, a day to download a result) unless told
//! otherwise.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::KeyRing;

type HmacSha256 = Hmac<Sha256>;

/// How long a download link stays valid by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest secret accepted by [`LinkSigner::new`].
pub const MIN_SECRET_LEN: usize = 32;
const LABEL: &[u8] = b"rythmiq/download-link/v1";

/// Why a link was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("download link signature is invalid")]
    BadSignature,
    #[error("download link expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("download link secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
}

/// The query string of a signed link, for `axum::extract::Query`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct LinkQuery {
    pub exp: i64,
    pub sig: String,
}

/// Signs and verifies links with one HMAC-SHA256 key. `Debug` never prints the key.
#[derive(Clone)]
pub struct LinkSigner {
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSigner").finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// A signer keyed by `secret` (at least 32 bytes).
    pub fn new(secret: &[u8]) -> Result<Self, LinkError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(LinkError::WeakSecret);
        }
        Ok(Self {
            key: Zeroizing::new(secret.to_vec()),
        })
    }

    /// A signer keyed by a sub-key of the current master key, so no extra secret needs
    /// managing. Rotating the master key invalidates outstanding links (at most a day's worth).
    pub fn from_keyring(keys: &KeyRing) -> Self {
        let mut mac = HmacSha256::new_from_slice(keys.current().bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(LABEL);
        Self {
            key: Zeroizing::new(mac.finalize().into_bytes().to_vec()),
        }
    }

    fn mac(&self, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // Length-prefixed fields: no two (path, expiry) pairs share an encoding.
        mac.update(LABEL);
        mac.update(&(path.len() as u64).to_be_bytes());
        mac.update(path.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// The signature of `path` valid until `expires` (unix seconds).
    pub fn sign(&self, path: &str, expires: i64) -> String {
        B64URL.encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// `path?exp=…&sig=…`, valid for `ttl` from `now`.
    pub fn signed_path(&self, path: &str, now: DateTime<Utc>, ttl: Duration) -> String {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let expires = now.timestamp().saturating_add(ttl);
        format!("{path}?exp={expires}&sig={}", self.sign(path, expires))
    }

    /// The path of a job's download link: `/v1/download/{job_id}`.
    pub fn download_path(job_id: Uuid) -> String {
        format!("/v1/download/{job_id}")
    }

    /// A signed link to a job's output, valid for `ttl` from `now`.
    pub fn download_link(&self, job_id: Uuid, now: DateTime<Utc>, ttl: Duration) -> String {
        self.signed_path(&Self::download_path(job_id), now, ttl)
    }

    /// The path of a batch package's download link: `/v1/download/batches/{batch_id}`. It is
    /// not a job's path, so a job's link never opens a batch's package or the other way round.
    pub fn batch_download_path(batch_id: Uuid) -> String {
        format!("/v1/download/batches/{batch_id}")
    }

    /// A signed link to a batch's package, valid for `ttl` from `now`.
    pub fn batch_download_link(&self, batch_id: Uuid, now: DateTime<Utc>, ttl: Duration) -> String {
        self.signed_path(&Self::batch_download_path(batch_id), now, ttl)
    }

    /// Checks the signature (in constant time), then the expiry.
    pub fn verify(
        &self,
        path: &str,
        query: &LinkQuery,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let sig = B64URL
            .decode(query.sig.as_bytes())
            .map_err(|_| LinkError::BadSignature)?;
        self.mac(path, query.exp)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if now.timestamp() >= query.exp {
            let at = DateTime::from_timestamp(query.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
            return Err(LinkError::Expired(at));
        }
        Ok(())
    }

    /// [`LinkSigner::verify`] for a job's download link.
    pub fn verify_download(
        &self,
        job_id: Uuid,
        query: &LinkQuery,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        self.verify(&Self::download_path(job_id), query, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn signer() -> Result<LinkSigner, LinkError> {
        LinkSigner::new(&[42u8; 32])
    }

    /// Splits `path?exp=…&sig=…` the way the router would.
    fn split(link: &str) -> Option<(String, LinkQuery)> {
        let (path, query) = link.split_once('?')?;
        let mut exp = None;
        let mut sig = None;
        for pair in query.split('&') {
            match pair.split_once('=')? {
                ("exp", v) => exp = v.parse().ok(),
                ("sig", v) => sig = Some(v.to_owned()),
                _ => return None,
            }
        }
        Some((
            path.to_owned(),
            LinkQuery {
                exp: exp?,
                sig: sig?,
            },
        ))
    }

    #[test]
    fn a_fresh_link_verifies_until_it_expires() -> Result<(), Box<dyn std::error::Error>> {
        let s = signer()?;
        let job = Uuid::new_v4();
        let now = Utc::now();
        let link = s.download_link(job, now, DEFAULT_TTL);
        assert!(link.starts_with(&format!("/v1/download/{job}?exp=")));
        let (path, q) = split(&link).ok_or("unparsable link")?;
        assert_eq!(q.exp, now.timestamp() + 86_400);
        s.verify(&path, &q, now)?;
        s.verify_download(job, &q, now + chrono::Duration::hours(23))?;
        assert!(matches!(
            s.verify_download(job, &q, now + chrono::Duration::hours(24)),
            Err(LinkError::Expired(_))
        ));
        Ok(())
    }

    #[test]
    fn altered_links_are_rejected() -> Result<(), Box<dyn std::error::Error>> {
        let s = signer()?;
        let job = Uuid::new_v4();
        let now = Utc::now();
        let (_, q) = split(&s.download_link(job, now, DEFAULT_TTL)).ok_or("unparsable")?;

        // Another job, a later expiry, a changed or truncated signature, another key.
        let bad = |r: Result<(), LinkError>| r == Err(LinkError::BadSignature);
        assert!(bad(s.verify_download(Uuid::new_v4(), &q, now)));
        let later = LinkQuery {
            exp: q.exp + 3600,
            ..q.clone()
        };
        assert!(bad(s.verify_download(job, &later, now)));
        let mut sig = q.sig.clone().into_bytes();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let flipped = LinkQuery {
            sig: String::from_utf8(sig)?,
            ..q.clone()
        };
        assert!(bad(s.verify_download(job, &flipped, now)));
        let short = LinkQuery {
            sig: q.sig[..20].to_owned(),
            ..q.clone()
        };
        assert!(bad(s.verify_download(job, &short, now)));
        let junk = LinkQuery {
            sig: "!!not base64!!".into(),
            ..q.clone()
        };
        assert!(bad(s.verify_download(job, &junk, now)));
        assert!(bad(s.verify(&format!("/v1/download/{job}/x"), &q, now)));
        let other = LinkSigner::new(&[43u8; 32])?;
        assert!(bad(other.verify_download(job, &q, now)));
        Ok(())
    }

    #[test]
    fn job_and_batch_links_do_not_open_each_other() -> Result<(), Box<dyn std::error::Error>> {
        let s = signer()?;
        let id = Uuid::new_v4();
        let now = Utc::now();
        let (path, q) = split(&s.batch_download_link(id, now, DEFAULT_TTL)).ok_or("unparsable")?;
        assert_eq!(path, format!("/v1/download/batches/{id}"));
        s.verify(&LinkSigner::batch_download_path(id), &q, now)?;
        // The same id's job link and batch link are not interchangeable.
        assert_eq!(s.verify_download(id, &q, now), Err(LinkError::BadSignature));
        let (_, jq) = split(&s.download_link(id, now, DEFAULT_TTL)).ok_or("unparsable")?;
        assert_eq!(
            s.verify(&LinkSigner::batch_download_path(id), &jq, now),
            Err(LinkError::BadSignature)
        );
        Ok(())
    }

    #[test]
    fn an_expired_link_with_a_valid_signature_says_expired() -> Result<(), LinkError> {
        let s = signer()?;
        let job = Uuid::new_v4();
        let past = Utc::now() - chrono::Duration::days(2);
        let exp = past.timestamp() + 60;
        let q = LinkQuery {
            exp,
            sig: s.sign(&LinkSigner::download_path(job), exp),
        };
        assert!(matches!(
            s.verify_download(job, &q, Utc::now()),
            Err(LinkError::Expired(_))
        ));
        Ok(())
    }

    #[test]
    fn weak_secrets_are_refused_and_keyring_signers_differ()
    -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(LinkSigner::new(b"short").err(), Some(LinkError::WeakSecret));
        let a = LinkSigner::from_keyring(&KeyRing::new(MasterKey::new("a", [1; 32])?));
        let b = LinkSigner::from_keyring(&KeyRing::new(MasterKey::new("b", [2; 32])?));
        let job = Uuid::new_v4();
        let now = Utc::now();
        let (_, q) = split(&a.download_link(job, now, DEFAULT_TTL)).ok_or("unparsable")?;
        a.verify_download(job, &q, now)?;
        assert_eq!(
            b.verify_download(job, &q, now),
            Err(LinkError::BadSignature)
        );
        assert!(!format!("{a:?}").contains('1'));
        Ok(())
    }
}
