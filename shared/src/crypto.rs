//! Envelope encryption at rest: every stored object is sealed with AES-256-GCM under a fresh
//! per-object data key, and that data key is itself sealed (AES-256-GCM) under a master key.
//!
//! Why an envelope: a master key never touches user bytes directly, and rotating it means adding
//! a new current key while the old ones stay in the [`KeyRing`] for reading; nothing stored is
//! re-encrypted, because each object names the master key that wrapped its data key.
//!
//! # Object format (version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RQE\0"
//! 4       1     version (1)
//! 5       1     key-id length n (1..=32)
//! 6       n     master key id, ASCII [A-Za-z0-9._-]
//! 6+n     12    wrap nonce
//! 18+n    48    wrapped data key (32-byte key + 16-byte GCM tag)
//! 66+n    12    data nonce
//! 78+n    ...   ciphertext + 16-byte GCM tag
//! ```
//!
//! Associated data binds each object to its context: the data key is wrapped with
//! `"rythmiq/dek/v1" ‖ header-so-far ‖ binding id`, and the payload is sealed with
//! `"rythmiq/obj/v1" ‖ whole header ‖ binding id`. The binding id is the job id (the document id for
//! `master/` objects), so an object copied under another job's key fails to open, and any change to
//! any byte, header included, fails authentication.
//!
//! # Master keys
//!
//! `RYTHMIQ_MASTER_KEY` holds the current key as `id:base64` (32 random bytes, standard base64;
//! `openssl rand -base64 32`), or bare `base64`, in which case the id is a fingerprint of the key.
//! `RYTHMIQ_MASTER_KEYS_OLD` holds retired keys, the same entries separated by commas, kept only
//! for reading. To rotate: move the current entry into `RYTHMIQ_MASTER_KEYS_OLD`, set a new
//! current one, restart; drop an old key only once no stored object still names it.
//! The embedded default (`rythmiq dev`) keeps the same entries, one per line, current first, in
//! `{data dir}/master-keys` (mode 0600), generated on first start.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Environment variable of the current master key.
pub const MASTER_KEY_VAR: &str = "RYTHMIQ_MASTER_KEY";
/// Environment variable of the retired master keys, still used for reading.
pub const OLD_MASTER_KEYS_VAR: &str = "RYTHMIQ_MASTER_KEYS_OLD";
/// File name of the generated key ring in the embedded default's data dir.
pub const KEY_FILE: &str = "master-keys";

const MAGIC: &[u8; 4] = b"RQE\0";
const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = KEY_LEN + TAG_LEN;
const MAX_KEY_ID: usize = 32;
const WRAP_AAD_LABEL: &[u8] = b"rythmiq/dek/v1";
const DATA_AAD_LABEL: &[u8] = b"rythmiq/obj/v1";

/// Why an object could not be sealed or opened, or a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("not an encrypted Rythmiq object (bad magic)")]
    NotEncrypted,
    #[error("unsupported encrypted object version {0}")]
    UnsupportedVersion(u8),
    #[error("encrypted object is truncated or its header is malformed")]
    Malformed,
    #[error("object was sealed with master key {0:?}, which is not in the key ring")]
    UnknownKeyId(String),
    #[error(
        "encrypted object failed authentication: it was altered, or belongs to another job, \
         or the master key with its id is not the one that sealed it"
    )]
    Tampered,
    #[error("encryption failed")]
    Seal,
    #[error("master key: {0}")]
    Key(String),
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One 256-bit master key and its id. `Debug` never prints the key.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A key with an explicit id (1–32 characters of `[A-Za-z0-9._-]`).
    pub fn new(id: &str, key: [u8; KEY_LEN]) -> Result<Self, CryptoError> {
        validate_key_id(id)?;
        Ok(Self {
            id: id.to_owned(),
            key: Zeroizing::new(key),
        })
    }

    /// A fresh random key whose id is its fingerprint.
    pub fn generate() -> Self {
        let key: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(Aes256Gcm::generate_key(OsRng).into());
        Self {
            id: fingerprint(&key),
            key,
        }
    }

    /// Parses `id:base64` or bare `base64` (id = fingerprint of the key).
    pub fn parse(entry: &str) -> Result<Self, CryptoError> {
        let entry = entry.trim();
        let (id, b64) = match entry.split_once(':') {
            Some((id, b64)) => (Some(id.trim()), b64.trim()),
            None => (None, entry),
        };
        let bytes = Zeroizing::new(B64.decode(b64).map_err(|_| {
            CryptoError::Key("not valid base64 (expected 32 random bytes, standard base64)".into())
        })?);
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::Key(format!(
                "decodes to {} bytes; a master key is exactly {KEY_LEN}",
                bytes.len()
            ))
        })?;
        match id {
            Some(id) => Self::new(id, key),
            None => {
                let key = Zeroizing::new(key);
                Ok(Self {
                    id: fingerprint(&key),
                    key,
                })
            }
        }
    }

    /// This key's id, as stored in every object it wraps.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `id:base64` entry that [`MasterKey::parse`] reads back.
    fn to_entry(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}:{}", self.id, B64.encode(self.key.as_slice())))
    }

    fn cipher(&self) -> Aes256Gcm {
        cipher(&self.key)
    }

    /// Raw key bytes, for deriving sub-keys (download-link signing) inside the crate.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

/// A short, non-secret id derived from a key: the first 8 bytes of SHA-256 over a label and it.
fn fingerprint(key: &[u8; KEY_LEN]) -> String {
    let digest = Sha256::new()
        .chain_update(b"rythmiq/master-key-id/v1")
        .chain_update(key)
        .finalize();
    format!("k{}", hex::encode(&digest[..8]))
}

fn validate_key_id(id: &str) -> Result<(), CryptoError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CryptoError::Key(format!(
            "key id {id:?} must be 1-{MAX_KEY_ID} characters of [A-Za-z0-9._-]"
        )))
    }
}

/// The current master key, used to seal, and older ones by id, used only to open.
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: MasterKey,
    by_id: HashMap<String, MasterKey>,
}

impl KeyRing {
    /// A ring holding only `current`.
    pub fn new(current: MasterKey) -> Self {
        let by_id = HashMap::from([(current.id.clone(), current.clone())]);
        Self { current, by_id }
    }

    /// Adds a retired key for reading. Two different keys under one id are refused, because an
    /// object would then be ambiguous.
    pub fn with_old(mut self, old: MasterKey) -> Result<Self, CryptoError> {
        if let Some(existing) = self.by_id.get(&old.id) {
            if existing.key.as_slice() == old.key.as_slice() {
                return Ok(self);
            }
            return Err(CryptoError::Key(format!(
                "two different keys share the id {:?}",
                old.id
            )));
        }
        self.by_id.insert(old.id.clone(), old);
        Ok(self)
    }

    /// Builds a ring from `current` and comma- or newline-separated older entries.
    pub fn parse(current: &str, old: &str) -> Result<Self, CryptoError> {
        let mut ring = Self::new(MasterKey::parse(current)?);
        for entry in old.split([',', '\n']).filter(|e| !e.trim().is_empty()) {
            ring = ring.with_old(MasterKey::parse(entry)?)?;
        }
        Ok(ring)
    }

    /// The ring configured by `RYTHMIQ_MASTER_KEY` (`current`, required) and
    /// `RYTHMIQ_MASTER_KEYS_OLD` (`old`), as [`crate::config::MasterKeyArgs`] read them.
    pub fn configured(current: Option<&str>, old: Option<&str>) -> Result<Self, CryptoError> {
        let current = current.ok_or_else(|| {
            CryptoError::Key(format!(
                "{MASTER_KEY_VAR} must be set (`openssl rand -base64 32`), \
                 or run `rythmiq dev`, which generates one into its data dir"
            ))
        })?;
        Self::parse(current, old.unwrap_or_default())
            .map_err(|e| CryptoError::Key(format!("{MASTER_KEY_VAR}: {e}")))
    }

    /// Reads a key file (one entry per line, current first; `#` comments allowed), creating it
    /// with one fresh key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let io = |source| CryptoError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_file(&Zeroizing::new(text))
                .map_err(|e| CryptoError::Key(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                match create_private(path, &key.to_entry()) {
                    Ok(()) => Ok(Self::new(key)),
                    // Another process created it first: use its key, never overwrite a key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    fn parse_file(text: &str) -> Result<Self, CryptoError> {
        let mut entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let current = entries
            .next()
            .ok_or_else(|| CryptoError::Key("key file holds no key".into()))?;
        let mut ring = Self::new(MasterKey::parse(current)?);
        for entry in entries {
            ring = ring.with_old(MasterKey::parse(entry)?)?;
        }
        Ok(ring)
    }

    /// Id of the key new objects are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    pub(crate) fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Seals `plaintext` for the object bound to `binding` (its job id, or document id).
    pub fn seal(&self, binding: Uuid, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let master = &self.current;
        let data_key: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(Aes256Gcm::generate_key(OsRng).into());
        let wrap_nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let data_nonce = Aes256Gcm::generate_nonce(&mut OsRng);

        let id = master.id.as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(
            6 + id.len() + NONCE_LEN + WRAPPED_LEN + NONCE_LEN + plaintext.len() + TAG_LEN,
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(id_len);
        out.extend_from_slice(id);
        out.extend_from_slice(&wrap_nonce);

        let wrap_aad = aad(WRAP_AAD_LABEL, &out, binding);
        let wrapped = master
            .cipher()
            .encrypt(
                &wrap_nonce,
                Payload {
                    msg: data_key.as_slice(),
                    aad: &wrap_aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&data_nonce);

        let data_aad = aad(DATA_AAD_LABEL, &out, binding);
        let sealed = cipher(&data_key)
            .encrypt(
                &data_nonce,
                Payload {
                    msg: plaintext,
                    aad: &data_aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens an object sealed by [`KeyRing::seal`] for the same `binding`, with whichever master
    /// key of the ring its header names.
    pub fn open(&self, binding: Uuid, object: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let header = Header::parse(object)?;
        let master = self
            .by_id
            .get(header.key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(header.key_id.to_owned()))?;

        let wrap_aad = aad(WRAP_AAD_LABEL, &object[..header.wrapped_at], binding);
        let data_key = Zeroizing::new(
            master
                .cipher()
                .decrypt(
                    &Nonce::from(header.wrap_nonce),
                    Payload {
                        msg: header.wrapped,
                        aad: &wrap_aad,
                    },
                )
                .map_err(|_| CryptoError::Tampered)?,
        );
        let data_key: &[u8; KEY_LEN] = data_key
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Tampered)?;

        let data_aad = aad(DATA_AAD_LABEL, &object[..header.body_at], binding);
        cipher(data_key)
            .decrypt(
                &Nonce::from(header.data_nonce),
                Payload {
                    msg: &object[header.body_at..],
                    aad: &data_aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// The id of the master key that sealed `object`, read from its header (no key needed).
    pub fn key_id_of(object: &[u8]) -> Result<&str, CryptoError> {
        Ok(Header::parse(object)?.key_id)
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
}

/// `label ‖ header bytes ‖ binding` as associated data.
fn aad(label: &[u8], header: &[u8], binding: Uuid) -> Vec<u8> {
    let mut a = Vec::with_capacity(label.len() + header.len() + 16);
    a.extend_from_slice(label);
    a.extend_from_slice(header);
    a.extend_from_slice(binding.as_bytes());
    a
}

/// A parsed header: slices into the object, bounds-checked once here.
struct Header<'a> {
    key_id: &'a str,
    wrap_nonce: [u8; NONCE_LEN],
    wrapped_at: usize,
    wrapped: &'a [u8],
    data_nonce: [u8; NONCE_LEN],
    body_at: usize,
}

impl<'a> Header<'a> {
    fn parse(object: &'a [u8]) -> Result<Self, CryptoError> {
        let take = |at: usize, len: usize| -> Result<&'a [u8], CryptoError> {
            object
                .get(at..at.checked_add(len).ok_or(CryptoError::Malformed)?)
                .ok_or(CryptoError::Malformed)
        };
        if take(0, MAGIC.len()).map_err(|_| CryptoError::NotEncrypted)? != MAGIC {
            return Err(CryptoError::NotEncrypted);
        }
        let version = *object.get(4).ok_or(CryptoError::Malformed)?;
        if version != VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let id_len = usize::from(*object.get(5).ok_or(CryptoError::Malformed)?);
        if id_len == 0 || id_len > MAX_KEY_ID {
            return Err(CryptoError::Malformed);
        }
        let key_id = std::str::from_utf8(take(6, id_len)?).map_err(|_| CryptoError::Malformed)?;
        validate_key_id(key_id).map_err(|_| CryptoError::Malformed)?;
        let wrap_nonce_at = 6 + id_len;
        let wrapped_at = wrap_nonce_at + NONCE_LEN;
        let data_nonce_at = wrapped_at + WRAPPED_LEN;
        let body_at = data_nonce_at + NONCE_LEN;
        // The body holds at least the GCM tag.
        take(body_at, TAG_LEN)?;
        Ok(Self {
            key_id,
            wrap_nonce: nonce(take(wrap_nonce_at, NONCE_LEN)?)?,
            wrapped_at,
            wrapped: take(wrapped_at, WRAPPED_LEN)?,
            data_nonce: nonce(take(data_nonce_at, NONCE_LEN)?)?,
            body_at,
        })
    }
}

fn nonce(bytes: &[u8]) -> Result<[u8; NONCE_LEN], CryptoError> {
    bytes.try_into().map_err(|_| CryptoError::Malformed)
}

/// Creates `path` with mode 0600, failing if it exists, so a key is never overwritten.
fn create_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(
        f,
        "# Rythmiq master keys: `id:base64`, current first, older ones after it for reading."
    )?;
    writeln!(f, "{contents}")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: &str, byte: u8) -> Result<KeyRing, CryptoError> {
        Ok(KeyRing::new(MasterKey::new(id, [byte; KEY_LEN])?))
    }

    #[test]
    fn round_trip_including_empty_and_large() -> Result<(), CryptoError> {
        let keys = ring("k1", 7)?;
        let job = Uuid::new_v4();
        for plain in [vec![], b"hello".to_vec(), vec![0xAB; 3 * 1024 * 1024]] {
            let sealed = keys.seal(job, &plain)?;
            assert_eq!(
                sealed.len(),
                6 + 2 + NONCE_LEN + WRAPPED_LEN + NONCE_LEN + plain.len() + TAG_LEN
            );
            assert_eq!(keys.open(job, &sealed)?, plain);
        }
        Ok(())
    }

    #[test]
    fn no_plaintext_in_the_sealed_object_and_fresh_keys_each_time() -> Result<(), CryptoError> {
        let keys = ring("k1", 7)?;
        let job = Uuid::new_v4();
        let plain = b"JFIF passport photo of a student, very sensitive".repeat(4);
        let a = keys.seal(job, &plain)?;
        let b = keys.seal(job, &plain)?;
        assert_ne!(a, b, "nonces and data keys must be fresh per object");
        assert!(!a.windows(16).any(|w| plain.windows(16).any(|p| p == w)));
        Ok(())
    }

    #[test]
    fn flipping_any_single_byte_is_detected() -> Result<(), CryptoError> {
        let keys = ring("k1", 7)?;
        let job = Uuid::new_v4();
        let sealed = keys.seal(job, b"a small photo")?;
        for i in 0..sealed.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = sealed.clone();
                bad[i] ^= flip;
                assert!(
                    keys.open(job, &bad).is_err(),
                    "byte {i} ^ {flip:#x} went unnoticed"
                );
            }
        }
        // Truncation and extension too.
        for len in 0..sealed.len() {
            assert!(
                keys.open(job, &sealed[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(
            keys.open(job, &longer),
            Err(CryptoError::Tampered)
        ));
        Ok(())
    }

    #[test]
    fn tampered_body_reports_tampering() -> Result<(), CryptoError> {
        let keys = ring("k1", 7)?;
        let job = Uuid::new_v4();
        let mut sealed = keys.seal(job, b"payload")?;
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let err = keys.open(job, &sealed).err();
        assert!(matches!(err, Some(CryptoError::Tampered)), "{err:?}");
        assert!(err.is_some_and(|e| e.to_string().contains("altered")));
        Ok(())
    }

    #[test]
    fn another_jobs_id_cannot_open_it() -> Result<(), CryptoError> {
        let keys = ring("k1", 7)?;
        let sealed = keys.seal(Uuid::new_v4(), b"payload")?;
        assert!(matches!(
            keys.open(Uuid::new_v4(), &sealed),
            Err(CryptoError::Tampered)
        ));
        Ok(())
    }

    #[test]
    fn rotation_keeps_old_objects_readable() -> Result<(), CryptoError> {
        let job = Uuid::new_v4();
        let before = ring("2025-01", 1)?;
        let old_object = before.seal(job, b"sealed before rotation")?;
        assert_eq!(KeyRing::key_id_of(&old_object)?, "2025-01");

        let after = KeyRing::new(MasterKey::new("2026-01", [2; KEY_LEN])?)
            .with_old(MasterKey::new("2025-01", [1; KEY_LEN])?)?;
        assert_eq!(after.current_id(), "2026-01");
        assert_eq!(after.open(job, &old_object)?, b"sealed before rotation");
        let new_object = after.seal(job, b"sealed after")?;
        assert_eq!(KeyRing::key_id_of(&new_object)?, "2026-01");
        assert_eq!(after.open(job, &new_object)?, b"sealed after");

        // The old ring alone cannot read what the new key sealed, and says which key is missing.
        match before.open(job, &new_object) {
            Err(CryptoError::UnknownKeyId(id)) => assert_eq!(id, "2026-01"),
            other => panic!("expected UnknownKeyId, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_different_key_under_the_same_id_fails_authentication() -> Result<(), CryptoError> {
        let job = Uuid::new_v4();
        let sealed = ring("k1", 1)?.seal(job, b"x")?;
        assert!(matches!(
            ring("k1", 2)?.open(job, &sealed),
            Err(CryptoError::Tampered)
        ));
        Ok(())
    }

    #[test]
    fn plaintext_and_foreign_data_are_rejected_clearly() -> Result<(), CryptoError> {
        let keys = ring("k1", 1)?;
        let job = Uuid::new_v4();
        assert!(matches!(
            keys.open(job, b"\xFF\xD8\xFF\xE0 a jpeg"),
            Err(CryptoError::NotEncrypted)
        ));
        assert!(matches!(
            keys.open(job, b""),
            Err(CryptoError::NotEncrypted)
        ));
        let mut v2 = keys.seal(job, b"x")?;
        v2[4] = 2;
        assert!(matches!(
            keys.open(job, &v2),
            Err(CryptoError::UnsupportedVersion(2))
        ));
        Ok(())
    }

    #[test]
    fn key_entries_parse_with_and_without_ids() -> Result<(), CryptoError> {
        let b64 = B64.encode([9u8; KEY_LEN]);
        let named = MasterKey::parse(&format!(" prod-2026:{b64} "))?;
        assert_eq!(named.id(), "prod-2026");
        let bare = MasterKey::parse(&b64)?;
        assert!(bare.id().starts_with('k') && bare.id().len() == 17);
        assert_eq!(
            MasterKey::parse(&b64)?.id(),
            bare.id(),
            "fingerprint is stable"
        );
        assert!(
            !format!("{named:?}").contains(&b64),
            "Debug must not leak the key"
        );

        for bad in [
            "",
            "k:",
            "k:not base64!",
            &format!("k:{}", B64.encode([1u8; 16])),
            &format!("bad id:{b64}"),
            &format!("{}:{b64}", "x".repeat(33)),
        ] {
            assert!(MasterKey::parse(bad).is_err(), "{bad:?} accepted");
        }

        let ring = KeyRing::parse(
            &format!("new:{b64}"),
            &format!(
                "old1:{}, old2:{}\n",
                B64.encode([1u8; 32]),
                B64.encode([2u8; 32])
            ),
        )?;
        assert_eq!(ring.current_id(), "new");
        assert_eq!(ring.by_id.len(), 3);
        assert!(
            KeyRing::parse(&format!("a:{b64}"), &format!("a:{}", B64.encode([1u8; 32]))).is_err()
        );
        Ok(())
    }

    #[test]
    fn the_key_file_is_generated_private_and_reused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested").join(KEY_FILE);
        let first = KeyRing::load_or_create(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        let again = KeyRing::load_or_create(&path)?;
        assert_eq!(first.current_id(), again.current_id());
        let job = Uuid::new_v4();
        assert_eq!(again.open(job, &first.seal(job, b"x")?)?, b"x");

        // Rotation in the file: a new key on top, the old one below it.
        let text = std::fs::read_to_string(&path)?;
        let newer = MasterKey::new("newer", [5; KEY_LEN])?;
        std::fs::write(&path, format!("{}\n{text}", newer.to_entry().as_str()))?;
        let rotated = KeyRing::load_or_create(&path)?;
        assert_eq!(rotated.current_id(), "newer");
        assert_eq!(rotated.open(job, &first.seal(job, b"y")?)?, b"y");

        std::fs::write(&path, "# nothing\n")?;
        assert!(KeyRing::load_or_create(&path).is_err());
        Ok(())
    }
}
