//! The two binaries (ARCHITECTURE.md, "crates/cli"): `countersign`, the small front, runs
//! `countersign run` against a running gateway itself and becomes `countersign-full` for
//! everything else, looked for beside it only.

use crate::run::{finish, gateway_with, submitted};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tokio::process::Command;

const FRONT: &str = env!("CARGO_BIN_EXE_countersign");
const FULL: &str = env!("CARGO_BIN_EXE_countersign-full");

/// A copy of the front binary alone in a fresh directory: no `countersign-full` beside it.
fn lone_front() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign");
    std::fs::copy(FRONT, &path).unwrap();
    (dir, path)
}

fn command(bin: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(cwd)
        .env_remove("COUNTERSIGN_URL")
        .env_remove("COUNTERSIGN_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_runs_run_against_a_gateway_by_itself() {
    let (gw, cwd) = gateway_with("").await;
    let (_dir, lone) = lone_front();
    let child = command(&lone, cwd.path())
        .args(["run", "--gateway", &gw.url, "--token", "tok-bot", "--"])
        .args(["sh", "-c", "echo from-the-front"])
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "from-the-front\n");
    submitted(&gw, "sh.run").await;

    // `--output` is the full binary's global flag; the front takes it too (and checks it).
    let child = command(&lone, cwd.path())
        .args([
            "--output",
            "json",
            "run",
            "--gateway",
            &gw.url,
            "--token",
            "tok-bot",
        ])
        .args(["--action", "sh.run", "--", "true"])
        .spawn()
        .unwrap();
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_else_needs_the_full_binary_beside_the_front() {
    let (_dir, lone) = lone_front();
    let cwd = tempfile::tempdir().unwrap();
    // An attacker's `countersign-full` on PATH and in the working directory: never started
    // (the front looks beside itself only).
    let planted = tempfile::tempdir().unwrap();
    let marker = planted.path().join("started");
    let fake = format!("#!/bin/sh\ntouch {}\n", marker.display());
    for dir in [planted.path(), cwd.path()] {
        let path = dir.join("countersign-full");
        std::fs::write(&path, &fake).unwrap();
        std::fs::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!(
        "{}:.:{}",
        planted.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for args in [
        vec!["--version"],
        vec!["serve", "--config", "nowhere.toml"],
        vec!["reviews", "--gateway", "http://127.0.0.1:9"],
        // Embedded: the gateway is in the full binary.
        vec![
            "run",
            "--config",
            "nowhere.toml",
            "--token",
            "t",
            "--",
            "true",
        ],
        // Help and mistakes are the full binary's to print.
        vec!["run", "--help"],
        vec![
            "--output",
            "yaml",
            "run",
            "--gateway",
            "http://x",
            "--token",
            "t",
            "--",
            "true",
        ],
        vec!["run", "--gateway", "http://x", "--token", "t"],
    ] {
        let out = command(&lone, cwd.path())
            .env("PATH", &path)
            .args(&args)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot start") && err.contains("countersign-full"),
            "{args:?}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // An argument that is not UTF-8 is not parsed here either: the full binary answers it.
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    let out = command(&lone, cwd.path())
        .env("PATH", &path)
        .args(["run", "--gateway", "http://x", "--token", "t", "--"])
        .arg(bad)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot start"), "{err}");
    assert!(!marker.exists(), "a planted countersign-full was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_the_full_binary_the_front_answers_as_it() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        vec!["--version"],
        vec!["run", "--help"],
        vec!["--output", "yaml", "reviews"],
        vec!["run", "--gateway", "http://x", "--token", "t"],
    ] {
        let front = command(Path::new(FRONT), cwd.path())
            .args(&args)
            .output()
            .await
            .unwrap();
        let full = command(Path::new(FULL), cwd.path())
            .args(&args)
            .output()
            .await
            .unwrap();
        assert_eq!(front.status.code(), full.status.code(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&front.stdout),
            String::from_utf8_lossy(&full.stdout),
            "{args:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&front.stderr),
            String::from_utf8_lossy(&full.stderr),
            "{args:?}"
        );
    }
}

/// The names of `needles` that occur in `bin`, in one pass.
fn found(bin: &[u8], needles: &[&str]) -> std::collections::BTreeSet<String> {
    let ac = aho_corasick::AhoCorasick::new(needles).unwrap();
    ac.find_iter(bin)
        .map(|m| needles[m.pattern().as_usize()].to_string())
        .collect()
}

/// The front links what `run` needs and none of the gateway: no Cedar, no SQLite, no
/// PostgreSQL parser or client, no server (symbol names in the unstripped test build).
#[test]
fn the_front_binary_holds_none_of_the_gateway() {
    let front = std::fs::read(FRONT).unwrap();
    let full = std::fs::read(FULL).unwrap();
    let heavy = [
        "cedar_policy",
        "rusqlite",
        "pg_query",
        "tokio_postgres",
        "countersign_gateway",
        "countersign_server",
        "countersign_store",
        "countersign_pgproxy",
    ];
    // The check is not blind: the full binary holds every one.
    assert_eq!(
        found(&full, &heavy).len(),
        heavy.len(),
        "{:?}",
        found(&full, &heavy)
    );
    assert!(
        found(&front, &heavy).is_empty(),
        "the front binary links {:?}",
        found(&front, &heavy)
    );
    assert!(
        front.len() * 3 < full.len(),
        "front {} bytes, full {} bytes",
        front.len(),
        full.len()
    );
}

/// On Linux the front is a position-dependent executable (ELF type `ET_EXEC`, not a PIE's
/// `ET_DYN`): its start writes none of its relocated data (DECISIONS.md, "The front binary is
/// linked without PIE"); the full binary stays a PIE.
#[test]
#[cfg(target_os = "linux")]
fn the_front_is_linked_without_pie_and_the_full_binary_with_it() {
    let elf_type = |path: &str| {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.get(..4), Some(&b"\x7fELF"[..]), "{path} is not ELF");
        u16::from_le_bytes([bytes[16], bytes[17]])
    };
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    if std::env::var_os("COUNTERSIGN_FRONT_PIE").is_none() {
        assert_eq!(elf_type(FRONT), ET_EXEC, "the front binary is a PIE");
    }
    assert_eq!(elf_type(FULL), ET_DYN, "the full binary is not a PIE");
}
