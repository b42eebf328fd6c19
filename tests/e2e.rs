//! The real binary end to end: `rythmiq dev` (its own Postgres cluster, storage and secret)
//! and `rythmiq submit` through the HTTP API, then Ctrl-C stops everything, Postgres included.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{photo_jpeg, shared_tempdir, write_file};

const BIN: &str = env!("CARGO_BIN_EXE_rythmiq");

#[test]
fn dev_then_submit_produces_the_portal_file_and_ctrl_c_stops_everything() -> Result<()> {
    let dir = shared_tempdir()?;
    let data = dir.path().join("data");
    let mut dev = common::dev_command(&data)
        .stderr(Stdio::inherit())
        .spawn()?;

    // Read until the ready line, then keep draining output so the process never blocks on it.
    let stdout = dev.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("rythmiq dev is ready: ") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let server = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(url) => url,
        Err(_) => {
            let _ = dev.kill();
            bail!("rythmiq dev did not become ready");
        }
    };

    let photo = write_file(dir.path(), "phone photo.jpg", &photo_jpeg(1500, 2000, 42))?;
    let out = dir.path().join("neet.jpg");
    let submit = Command::new(BIN)
        .args(["submit"])
        .arg(&photo)
        .args([
            "--portal",
            "neet-ug-2026-photo",
            "--server",
            &server,
            "--data-dir",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .env_remove("RYTHMIQ_JWT_SECRET")
        .env_remove("RYTHMIQ_TOKEN")
        .output()?;
    let report = String::from_utf8_lossy(&submit.stdout).into_owned();
    assert!(
        submit.status.success(),
        "submit failed: {report} {}",
        String::from_utf8_lossy(&submit.stderr)
    );
    let job: serde_json::Value = serde_json::from_str(&report)?;
    assert_eq!(job["status"], "completed");

    let bytes = std::fs::read(&out)?;
    assert!(
        bytes.len() >= 10 * 1024 && bytes.len() <= 100 * 1000,
        "{} bytes",
        bytes.len()
    );
    let img = image::load_from_memory(&bytes)?;
    assert_eq!((img.width(), img.height()), (200, 230));

    // A token minted by `rythmiq token` is accepted by the running `dev` (same secret rule).
    let token = Command::new(BIN)
        .args([
            "token",
            "--user",
            "3f2b8c1e-9d4a-4e6f-8a7b-1c2d3e4f5a6b",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("RYTHMIQ_JWT_SECRET")
        .output()?;
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout)?.trim().to_owned();
    let status = reqwest::blocking::Client::new()
        .get(format!("{server}/v1/jobs/{}", uuid::Uuid::new_v4()))
        .bearer_auth(&token)
        .send()?
        .status();
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "authenticated, and the job is unknown"
    );

    // Ctrl-C: everything stops, Postgres too.
    let pid = dev.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = dev.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = dev.kill();
            bail!("rythmiq dev did not stop on Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}");
    assert!(
        !data.join("pg").join("postmaster.pid").exists(),
        "Postgres was stopped"
    );
    Ok(())
}
