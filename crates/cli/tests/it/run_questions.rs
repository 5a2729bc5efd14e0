//! `countersign run` answering a reviewer's question: on a terminal (a real pseudo-terminal
//! from `openpty`) the question is shown and the typed line is sent as the answer; without one,
//! the question is a plain line that says how to answer, and `countersign answer` does.

use crate::run::{action, gateway_with, pending_review};
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// Waits until `text()` contains `want`.
async fn until(what: &str, want: &str, text: impl Fn() -> String) -> String {
    let started = Instant::now();
    loop {
        let t = text();
        if t.contains(want) {
            return t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {want:?} in {what}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the action's first question has an answer; returns it.
async fn answered(gw: &crate::support::Gw, id: &str) -> String {
    let started = Instant::now();
    loop {
        let a = action(gw, id).await;
        if let Some(ans) = a["review"]["clarifications"][0]["answer"].as_str() {
            return ans.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer: {a}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ask(gw: &crate::support::Gw, id: &str, question: &str) {
    let (s, v) = gw
        .vote(
            "alice",
            id,
            json!({"verdict": "clarify", "question": question}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn exit_code(mut child: Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("countersign run did not finish")
        .unwrap()
        .code()
}

fn run_cmd(url: &str, cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_countersign"));
    c.arg("run")
        .args([
            "--gateway",
            url,
            "--token",
            "tok-bot",
            "--action",
            "deploy.run",
        ])
        .args(["--", "touch", "marker"])
        .current_dir(cwd)
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_a_terminal_shows_the_question_and_sends_the_typed_answer() {
    let (gw, cwd) = gateway_with("").await;
    let term = crate::support::Terminal::open();
    let child = term
        .attach(&mut run_cmd(&gw.url, cwd.path()))
        .spawn()
        .unwrap();
    let text = || term.text();

    let id = pending_review(&gw).await;
    until("the terminal", "approvals 0/1", &text).await;
    ask(&gw, &id, "Which region does this touch?").await;
    until("the terminal", "Type your answer", &text).await;
    let shown = text();
    assert!(
        shown.contains("alice asks") && shown.contains("Which region does this touch?"),
        "{shown}"
    );
    term.type_in(b"eu-west-1 only\n");
    assert_eq!(answered(&gw, &id).await, "eu-west-1 only");
    until("the terminal", "answer sent", &text).await;
    assert!(!cwd.path().join("marker").exists(), "ran before approval");
    let (s, v) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(exit_code(child).await, Some(0), "{}", text());
    assert!(cwd.path().join("marker").exists());
    assert_eq!(action(&gw, &id).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_terminal_prints_the_question_and_how_to_answer_it() {
    let (gw, cwd) = gateway_with("").await;
    let mut child = run_cmd(&gw.url, cwd.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let e = err.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let mut e = e.lock().unwrap();
            e.push_str(&l);
            e.push('\n');
        }
    });
    let text = move || err.lock().unwrap().clone();

    let id = pending_review(&gw).await;
    ask(&gw, &id, "Why now?\nIt is Friday.").await;
    let shown = until(
        "stderr",
        &format!("countersign answer {id} 'YOUR ANSWER'"),
        &text,
    )
    .await;
    assert!(
        shown.contains(&format!(
            "countersign run: alice asks (action {id}): Why now? It is Friday.\n"
        )),
        "one plain line per question: {shown}"
    );
    assert!(!shown.contains('\x1b'), "no terminal codes: {shown:?}");
    // The way it says to answer works.
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["answer", &id, "the release train leaves today"])
        .args(["--url", &gw.url, "--token", "tok-bot"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(answered(&gw, &id).await, "the release train leaves today");
    gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert_eq!(exit_code(child).await, Some(0), "{}", text());
    assert!(cwd.path().join("marker").exists());
    let shown = text();
    assert_eq!(
        shown.matches("alice asks").count(),
        1,
        "the question is printed once: {shown}"
    );
}
