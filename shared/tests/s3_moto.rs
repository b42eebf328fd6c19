//! The S3 backend against a real S3-compatible server: `moto` in server mode, started by this
//! harness on loopback (installed by `scripts/setup.sh --test`). Without moto these tests fail,
//! on purpose: a skipped S3 test would hide a broken backend.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore, PutPayload};
use rythmiq_shared::config::StorageSettings;
use rythmiq_shared::crypto::{CryptoError, KeyRing, MasterKey};
use rythmiq_shared::storage::{Backend, ObjectKey, ObjectKind, S3Config, Storage, StorageError};
use uuid::Uuid;
use zeroize::Zeroizing;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A moto server on a free loopback port, killed when dropped (also when a test panics).
struct Moto {
    child: Child,
    endpoint: String,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    fn start() -> Self {
        let python = std::env::var("RYTHMIQ_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import moto.server, flask, flask_cors"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "moto (PyPI `moto[server]`) is not installed for {python}: run \
                 scripts/setup.sh --test\n{}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ),
            Err(e) => panic!("cannot run {python} ({e}): run scripts/setup.sh --test"),
        }
        let log = tempfile::NamedTempFile::new().expect("a temp file for moto's log");
        let port = free_port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("moto log"))
            .stderr(log.reopen().expect("moto log"))
            .spawn()
            .expect("spawning moto");
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _log: log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                let log = std::fs::read_to_string(moto._log.path()).unwrap_or_default();
                panic!("moto exited with {status} before listening:\n{log}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a bucket. moto accepts unsigned requests, so plain HTTP is enough here.
    async fn bucket(&self, name: &str) -> Result<(), reqwest::Error> {
        reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    fn storage(&self, bucket: &str, keys: KeyRing, timeout: Duration) -> Storage {
        s3_storage(&self.endpoint, bucket, keys, timeout)
    }

    /// The bucket itself, without our key layout or encryption: to read and plant raw bytes.
    fn raw_store(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(true)
            .build()
            .expect("raw S3 client")
    }

    async fn raw_object(
        &self,
        bucket: &str,
        key: &ObjectKey,
    ) -> Result<Bytes, object_store::Error> {
        self.raw_store(bucket)
            .get(key.as_path())
            .await?
            .bytes()
            .await
    }

    async fn overwrite(
        &self,
        bucket: &str,
        key: &ObjectKey,
        body: Vec<u8>,
    ) -> Result<(), object_store::Error> {
        self.raw_store(bucket)
            .put(key.as_path(), PutPayload::from(body))
            .await
            .map(drop)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our S3 backend on `endpoint`, path-style, plain http (loopback only).
fn s3_storage(endpoint: &str, bucket: &str, keys: KeyRing, timeout: Duration) -> Storage {
    let cfg = S3Config {
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        access_key_id: "testing".into(),
        secret_access_key: Zeroizing::new("testing".into()),
        allow_http: true,
        virtual_hosted_style: false,
    };
    let settings = StorageSettings {
        root: std::path::PathBuf::new(),
        fetch_timeout: timeout,
        upload_timeout: timeout,
    };
    Storage::open(settings, &Backend::S3(cfg), Arc::new(keys)).expect("S3 storage")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn ring(id: &str, byte: u8) -> KeyRing {
    KeyRing::new(MasterKey::new(id, [byte; 32]).expect("valid key id"))
}

#[tokio::test]
async fn encrypted_objects_put_get_list_delete_on_s3() -> TestResult {
    let moto = Moto::start();
    moto.bucket("rythmiq-test").await?;
    let storage = moto.storage("rythmiq-test", ring("k1", 1), Duration::from_secs(20));

    let user = Uuid::new_v4();
    let (job_a, job_b, doc) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let raw = ObjectKey::raw(user, job_a, 1_700_000_000, "../../passport photo.jpg")?;
    let out = ObjectKey::output(user, job_b, 1_700_000_100, "output.zip")?;
    let master = ObjectKey::master(user, doc)?;
    let photo = Bytes::from(b"\xFF\xD8\xFF student passport photo ".repeat(20_000));
    storage.put_object(&raw, photo.clone()).await?;
    storage
        .put_object(&out, Bytes::from_static(b"PK zip"))
        .await?;
    storage
        .put_object(&master, Bytes::from_static(b"master"))
        .await?;

    assert_eq!(storage.get_object(&raw).await?, photo);
    assert_eq!(&storage.get_object(&out).await?[..], b"PK zip");
    assert_eq!(&storage.get_object(&master).await?[..], b"master");

    // The bucket holds only ciphertext, under the key layout of `ObjectKey::build`.
    let stored = moto.raw_object("rythmiq-test", &raw).await?;
    assert!(stored.starts_with(b"RQE\0"));
    assert!(!stored.windows(16).any(|w| w == &photo[4..20]));
    assert_eq!(
        raw.as_str(),
        format!("raw/{user}/{job_a}/1700000000_passport_photo.jpg.enc")
    );

    let listed = storage.list(ObjectKind::Raw).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, raw);
    assert_eq!(listed[0].size, stored.len() as u64);
    assert_eq!(storage.list(ObjectKind::Output).await?.len(), 1);
    assert_eq!(storage.list(ObjectKind::Master).await?.len(), 1);

    // The path-based wrappers the API and worker call go through the same sealing.
    storage
        .put(raw.as_path(), Bytes::from_static(b"v2"))
        .await?;
    assert_eq!(&storage.get(raw.as_path()).await?[..], b"v2");

    storage.delete_object(&raw).await?;
    storage.delete_object(&raw).await?; // deleting twice is fine
    let gone = storage.get_object(&raw).await;
    assert!(
        matches!(gone, Err(StorageError::NotFound { .. })),
        "{gone:?}"
    );
    assert!(gone.is_err_and(|e| !e.is_retryable()));
    assert!(storage.list(ObjectKind::Raw).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn tampering_moving_and_rotation_on_s3() -> TestResult {
    let moto = Moto::start();
    moto.bucket("rotation").await?;
    let old = moto.storage("rotation", ring("2025", 1), Duration::from_secs(20));

    let user = Uuid::new_v4();
    let key = ObjectKey::raw(user, Uuid::new_v4(), 1, "a.jpg")?;
    old.put_object(&key, Bytes::from_static(b"sealed with the 2025 key"))
        .await?;

    // Rotation: the new ring seals with 2026 and still opens what 2025 sealed.
    let rotated = KeyRing::new(MasterKey::new("2026", [2; 32])?)
        .with_old(MasterKey::new("2025", [1; 32])?)?;
    let new = moto.storage("rotation", rotated, Duration::from_secs(20));
    assert_eq!(
        &new.get_object(&key).await?[..],
        b"sealed with the 2025 key"
    );
    let fresh = ObjectKey::raw(user, Uuid::new_v4(), 2, "b.jpg")?;
    new.put_object(&fresh, Bytes::from_static(b"sealed with 2026"))
        .await?;
    assert_eq!(
        KeyRing::key_id_of(&moto.raw_object("rotation", &fresh).await?)?,
        "2026"
    );
    // A process still on the old ring names the missing key instead of failing vaguely.
    let missing = old.get_object(&fresh).await;
    assert!(
        matches!(&missing, Err(StorageError::Crypto(CryptoError::UnknownKeyId(id))) if id == "2026"),
        "{missing:?}"
    );

    // One flipped byte in the bucket: the read fails as tampered, not as garbage.
    let mut bytes = moto.raw_object("rotation", &key).await?.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    moto.overwrite("rotation", &key, bytes).await?;
    let tampered = new.get_object(&key).await;
    assert!(
        matches!(tampered, Err(StorageError::Crypto(CryptoError::Tampered))),
        "{tampered:?}"
    );

    // Another job's object copied under this job's key fails too.
    let elsewhere = ObjectKey::raw(user, Uuid::new_v4(), 1, "a.jpg")?;
    moto.overwrite(
        "rotation",
        &elsewhere,
        moto.raw_object("rotation", &fresh).await?.to_vec(),
    )
    .await?;
    assert!(matches!(
        new.get_object(&elsewhere).await,
        Err(StorageError::Crypto(CryptoError::Tampered))
    ));
    Ok(())
}

/// Forwards connections to `target`, but passes on only the first `cut` bytes a client sends
/// before closing both sides: an upload that dies half-way through its body.
async fn cutting_proxy(target: String, cut: usize) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0;
                while sent < cut {
                    let Ok(n) = client.read(&mut buf).await else {
                        break;
                    };
                    if n == 0 {
                        break;
                    }
                    let n = n.min(cut - sent);
                    if server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                }
                // Drop both: the server sees a body shorter than its Content-Length.
                drop(server);
                drop(client);
            });
        }
    });
    Ok(format!("http://{addr}"))
}

#[tokio::test]
async fn an_upload_cut_off_half_way_leaves_nothing_in_the_bucket() -> TestResult {
    let moto = Moto::start();
    moto.bucket("partial").await?;
    let target = moto.endpoint.trim_start_matches("http://").to_owned();
    let proxy = cutting_proxy(target, 1 << 20).await?;
    let cut_off = s3_storage(&proxy, "partial", ring("k", 1), Duration::from_secs(20));
    let key = ObjectKey::output(Uuid::new_v4(), Uuid::new_v4(), 1, "big.jpg")?;
    let err = cut_off
        .put_object(&key, Bytes::from(vec![0x5A; 8 << 20]))
        .await
        .err()
        .ok_or("an upload cut off after 1 MiB of 8 MiB should fail")?;
    assert!(err.is_retryable(), "{err:?}");

    let direct = moto.storage("partial", ring("k", 1), Duration::from_secs(20));
    assert!(direct.list(ObjectKind::Output).await?.is_empty());
    let missing = direct.get_object(&key).await;
    assert!(
        matches!(missing, Err(StorageError::NotFound { .. })),
        "{missing:?}"
    );

    // A put that times out waiting for the answer may or may not have landed; if it did, it is
    // whole (it opens), never a prefix.
    let hasty = moto.storage("partial", ring("k", 1), Duration::from_millis(30));
    let payload = Bytes::from(vec![0x6B; 16 << 20]);
    if let Err(e) = hasty.put_object(&key, payload.clone()).await {
        assert!(e.is_retryable(), "{e:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    match direct.get_object(&key).await {
        Ok(got) => assert_eq!(got, payload),
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => panic!("a timed-out put left something that does not open: {e:?}"),
    }

    // A missing bucket is a final refusal or not-found, never a retry loop.
    let nobucket = moto.storage("no-such-bucket", ring("k", 1), Duration::from_secs(20));
    let err = nobucket
        .put_object(&key, Bytes::from_static(b"x"))
        .await
        .err()
        .ok_or("a put into a missing bucket should fail")?;
    assert!(!err.is_retryable(), "{err:?}");
    Ok(())
}
