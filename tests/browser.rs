//! The student page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/setup.sh --test`) driven over WebDriver opens the
//! link `rythmiq dev` prints, on a phone-sized window, chooses a rule, uploads two real photos,
//! waits for both, downloads one and checks it against the rule, then sends a file that is not a
//! photo and reads its message. Screenshots go to `target/test-artifacts/`. The page's headers and
//! the guest sessions are checked over plain HTTP against the test app.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Reaped, TestApp, shared_tempdir};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A common Android phone's CSS viewport (Pixel 7, Galaxy S-series).
const PHONE: (u32, u32) = (412, 915);
// A photo rule that does not frame by the face: one of the two photos is a cup of coffee.
const RULE: &str = "ibps-2026-photo";

fn artifacts() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The real photos the pipeline's tests use (scikit-image's public-domain `astronaut` and
/// `coffee`).
fn photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipeline/tests/fixtures/photos")
        .join(name)
}

/// A free loopback port (bound, read, released) for chromedriver, which cannot report its own.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `rythmiq dev` on a random port; returns the process and the signed-in page link it printed.
fn start_dev(data: &Path) -> Result<(Reaped, String)> {
    let mut dev = common::dev_command(data).stderr(Stdio::null()).spawn()?;
    let stdout = dev.stdout.take().context("stdout")?;
    let dev = Reaped(dev);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(link) = line.split_whitespace().find(|w| w.contains("/#token=")) {
                let _ = tx.send(link.to_owned());
            }
        }
    });
    let link = rx
        .recv_timeout(Duration::from_secs(120))
        .context("rythmiq dev printed no page link")?;
    Ok((dev, link))
}

/// chromedriver on `port`, ready to take a session.
async fn start_chromedriver(port: u16) -> Result<Reaped> {
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("chromedriver not found ({e}); run scripts/setup.sh --test")
        })?;
    let driver = Reaped(driver);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(driver);
        }
        if Instant::now() > deadline {
            bail!("chromedriver did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Headless Chromium at phone size, downloading into `downloads` without asking.
async fn browser(port: u16, downloads: &Path) -> Result<Client> {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new",
                // Chromium's sandbox cannot start as root (tests and CI run as root).
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                format!("--window-size={},{}", PHONE.0, PHONE.1),
                "--lang=en-US",
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "intl.accept_languages": "en-US,en",
            },
        },
    });
    let Value::Object(caps) = caps else {
        bail!("capabilities are an object");
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    Ok(client)
}

async fn shot(client: &Client, name: &str) -> Result<()> {
    let png = client.screenshot().await?;
    std::fs::write(artifacts()?.join(name), png)?;
    Ok(())
}

/// Waits until `css` matches `count` elements, up to `secs`.
async fn wait_count(client: &Client, css: &str, count: usize, secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = client.find_all(Locator::Css(css)).await?.len();
        if n == count {
            return Ok(());
        }
        if Instant::now() > deadline {
            let page = client
                .find(Locator::Css("main"))
                .await?
                .text()
                .await
                .unwrap_or_default();
            bail!("{n} elements match {css}, not {count}, after {secs} s; the page says:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the page fits the window's width (no sideways scrolling).
async fn fits_width(client: &Client) -> Result<bool> {
    let v = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await?;
    Ok(v.as_bool().unwrap_or(false))
}

/// The JFIF density of a JPEG (dots per inch), when it has a JFIF header in inches.
fn jfif_dpi(jpeg: &[u8]) -> Option<u16> {
    let at = jpeg.windows(5).position(|w| w == b"JFIF\0")?;
    let units = *jpeg.get(at + 7)?;
    let x = u16::from_be_bytes([*jpeg.get(at + 8)?, *jpeg.get(at + 9)?]);
    (units == 1).then_some(x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_fits_two_photos_on_a_phone_and_downloads_one_that_fits() -> Result<()> {
    let dir = shared_tempdir()?;
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let (_dev, link) = start_dev(&dir.path().join("data"))?;
    let server = link.split("/#").next().unwrap_or_default().to_owned();
    let rules: Vec<Value> = reqwest::get(format!("{server}/v1/portal-schemas"))
        .await?
        .json()
        .await?;
    let rule = rules
        .iter()
        .find(|r| r["slug"] == RULE)
        .context("the rule")?
        .clone();

    let port = free_port()?;
    let _driver = start_chromedriver(port).await?;
    let client = browser(port, &downloads).await?;
    let outcome = drive(&client, &link, &rule, &downloads, dir.path()).await;
    let _ = shot(&client, "browser-last.png").await;
    client.close().await?;
    outcome
}

async fn drive(
    client: &Client,
    link: &str,
    rule: &Value,
    downloads: &Path,
    tmp: &Path,
) -> Result<()> {
    client.set_window_size(PHONE.0, PHONE.1).await?;
    client.goto(link).await?;
    wait_count(client, &format!("#portal option[value={RULE}]"), 1, 20).await?;
    // The token left the address bar for sessionStorage.
    let url = client.current_url().await?;
    assert!(url.fragment().is_none(), "{url}");
    let html_lang = client
        .find(Locator::Css("html"))
        .await?
        .attr("lang")
        .await?;
    assert_eq!(html_lang.as_deref(), Some("en"));

    // Choose the rule: its pixels, KB window and source are shown.
    client
        .find(Locator::Css("#portal"))
        .await?
        .select_by_value(RULE)
        .await?;
    let shown = client.find(Locator::Css("#rule")).await?.text().await?;
    for want in [
        format!("{} × {} pixels", rule["width"], rule["height"]),
        format!("{} KB to {} KB", rule["min_kb"], rule["max_kb"]),
    ] {
        assert!(shown.contains(&want), "{want:?} not in {shown:?}");
    }
    assert!(
        client
            .find(Locator::Css("#rule a[href^='https://']"))
            .await
            .is_ok(),
        "the rule's source is linked: {shown}"
    );
    assert!(fits_width(client).await?, "no sideways scrolling at 412 px");

    // Two real photos at once: one batch.
    let files = [photo("astronaut.jpg"), photo("coffee.jpg")];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    client
        .find(Locator::Css("#files"))
        .await?
        .send_keys(&paths.join("\n"))
        .await?;
    wait_count(client, "#chosen li", 2, 10).await?;
    shot(client, "browser-1-chosen.png").await?;
    client.find(Locator::Css("#send")).await?.click().await?;
    wait_count(client, "#results li.file", 2, 20).await?;
    wait_count(client, "#results li.file[data-state=completed]", 2, 60).await?;
    wait_count(client, "#zip:not([hidden])", 1, 30).await?;
    let results = client.find(Locator::Css("#results")).await?.text().await?;
    assert_eq!(
        results.matches("Ready: it fits the rule").count(),
        2,
        "{results}"
    );
    // Four checks per file (pixels, DPI, format, size), each passed.
    wait_count(client, "#results .checks li.yes", 8, 5).await?;
    wait_count(client, "#results .checks li.no", 0, 1).await?;
    // Scrolled to the results, as a student sees them.
    client
        .execute("document.getElementById('step3').scrollIntoView()", vec![])
        .await?;
    shot(client, "browser-2-ready.png").await?;

    // Download the first file the way a student does, and hold it to the rule.
    client
        .find(Locator::Css("#results li.file a.download"))
        .await?
        .click()
        .await?;
    let file = downloaded(downloads, 20).await?;
    let bytes = std::fs::read(&file)?;
    let min = rule["min_kb"].as_u64().unwrap_or(0) as usize * 1024;
    let max = rule["max_kb"].as_u64().unwrap_or(0) as usize * 1000;
    assert!(
        (min..=max).contains(&bytes.len()),
        "{} bytes outside [{min}, {max}]",
        bytes.len()
    );
    assert_eq!(image::guess_format(&bytes)?, image::ImageFormat::Jpeg);
    let img = image::load_from_memory(&bytes)?;
    assert_eq!(
        (u64::from(img.width()), u64::from(img.height())),
        (
            rule["width"].as_u64().unwrap_or(0),
            rule["height"].as_u64().unwrap_or(0)
        )
    );
    assert_eq!(
        jfif_dpi(&bytes).map(u64::from),
        rule["dpi"].as_u64(),
        "the DPI in the file"
    );

    // A file that is not a photo: the API's refusal in plain words, on that file.
    client.find(Locator::Css("#again")).await?.click().await?;
    let notes = tmp.join("notes.txt");
    std::fs::write(&notes, "my marks: 640/720\n")?;
    client
        .find(Locator::Css("#files"))
        .await?
        .send_keys(&notes.display().to_string())
        .await?;
    wait_count(client, "#chosen li", 1, 10).await?;
    client.find(Locator::Css("#send")).await?.click().await?;
    wait_count(
        client,
        "#results li.file[data-state=failed][data-error=PAYLOAD_INVALID]",
        1,
        20,
    )
    .await?;
    let said = client.find(Locator::Css("#results")).await?.text().await?;
    assert!(
        said.contains("This file is not a photo we can read"),
        "{said}"
    );
    client
        .execute(
            "document.getElementById('results').scrollIntoView()",
            vec![],
        )
        .await?;
    shot(client, "browser-3-not-a-photo.png").await?;

    // Hindi, switched on the page; and the narrowest common phone width.
    client.find(Locator::Css("#lang")).await?.click().await?;
    wait_count(client, "html[lang=hi]", 1, 10).await?;
    let said = client.find(Locator::Css("#results")).await?.text().await?;
    assert!(said.contains("यह फ़ाइल ऐसी फ़ोटो नहीं है"), "{said}");
    client.set_window_size(360, 800).await?;
    assert!(fits_width(client).await?, "no sideways scrolling at 360 px");
    client.execute("window.scrollTo(0, 0)", vec![]).await?;
    shot(client, "browser-4-hindi-360.png").await?;
    Ok(())
}

/// The first finished download in `dir` (Chromium writes `*.crdownload` until it is done).
async fn downloaded(dir: &Path, secs: u64) -> Result<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let done = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e != "crdownload"));
        if let Some(p) = done {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("nothing downloaded into {} in {secs} s", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_page_is_served_with_its_security_headers_and_revalidates() -> Result<()> {
    let app = TestApp::spawn().await?;
    let resp = app.client.get(app.url("/")).send().await?;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let header = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    for part in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let etag = header("etag");
    assert!(!etag.is_empty());
    let html = resp.text().await?;
    assert!(html.contains("capture=\"environment\"") && html.contains("accept=\"image/*\""));

    // Every asset the page names is served with its type; a revalidation costs no body.
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/i18n/hi.json", "application/json"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = app.client.get(app.url(path)).send().await?;
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str()?.to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
    }
    let again = app
        .client
        .get(app.url("/"))
        .header("If-None-Match", &etag)
        .send()
        .await?;
    assert_eq!(again.status(), 304);
    assert!(again.headers().contains_key("content-security-policy"));

    // The API's own routes are unchanged beside it, and the new one is described.
    let doc: Value = app.get_json("/openapi.json").await?;
    assert!(doc["paths"]["/v1/sessions"]["post"].is_object());
    Ok(())
}

#[tokio::test]
async fn guest_sessions_are_off_unless_enabled() -> Result<()> {
    let app = TestApp::spawn().await?;
    let resp = app.client.post(app.url("/v1/sessions")).send().await?;
    let (status, code, _) = common::error_of(resp).await?;
    assert_eq!((status.as_u16(), code.as_str()), (404, "NOT_FOUND"));
    Ok(())
}

#[tokio::test]
async fn a_guest_session_is_a_new_user_with_credits_limited_per_address() -> Result<()> {
    let app = TestApp::spawn_with(|s| {
        s.guest_sessions = rythmiq_shared::config::GuestSessions {
            enabled: true,
            per_address_per_hour: 2,
        };
        s.starting_credits = 3;
    })
    .await?;
    let open = || app.client.post(app.url("/v1/sessions")).send();
    let first: Value = open().await?.error_for_status()?.json().await?;
    let second = open().await?;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await?;
    assert_eq!(first["credits"], 3);
    assert!(first["expires_in"].as_u64().is_some_and(|s| s <= 2 * 3600));
    let (a, b) = (
        first["token"].as_str().unwrap_or_default(),
        second["token"].as_str().unwrap_or_default(),
    );
    assert_ne!(a, b);

    // The third from the same address waits.
    let third = open().await?;
    assert_eq!(third.status(), 429);
    let retry: u64 = third.headers()["retry-after"].to_str()?.parse()?;
    assert!(retry > 3000 && retry <= 3600, "{retry}");
    let (_, code, _) = common::error_of(third).await?;
    assert_eq!(code, "RATE_LIMITED");

    // The token works, for a user of its own: a job, and the starting credits on it.
    let job = app
        .submit_as(a, common::photo_jpeg(600, 800, 1), RULE, None)
        .await?;
    assert_eq!(job.status(), 202);
    let id = job.json::<Value>().await?["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let seen_by_other = app
        .client
        .get(app.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(b)
        .send()
        .await?;
    assert_eq!(seen_by_other.status(), 404, "another guest sees nothing");
    let balance: i32 = sqlx::query_scalar("SELECT balance FROM user_credits")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(balance, 2);
    // A forged token is still refused.
    let forged = app
        .client
        .get(app.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(format!("{a}x"))
        .send()
        .await?;
    assert_eq!(forged.status(), 401);
    Ok(())
}
