//! Added latency of an allowed `tools/call` through `countersign mcp stdio`, measured side by
//! side with the same server called directly, in one run (calls alternate between the two).
//!
//! Usage: stdio_latency CALLS -- DIRECT_CMD... -- PROXIED_CMD...
//! (bench/mcp-latency.sh builds everything and runs it.)
//!
//! With `COMMIT_PROBE=PATH` it also times, between the direct and the proxied call of each pair
//! (so that all three see the same machine state), one durable SQLite commit alone on a database
//! at PATH (WAL, `synchronous=FULL`, the proxy's SQLite library: `BEGIN IMMEDIATE`, an
//! action-sized row and an audit-entry-sized row, `COMMIT`): the floor under an allowed call,
//! which the proxy must record durably before forwarding it (bench/ratios.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Peer {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Peer {
    async fn start(cmd: &[String]) -> Peer {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut p = Peer {
            _child: child,
            stdin,
            lines,
            next_id: 0,
        };
        p.request(
            json!({"method": "initialize", "params": {"protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}),
        )
        .await;
        p.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        p
    }

    async fn send(&mut self, v: Value) {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        self.stdin.write_all(&line).await.expect("write");
        self.stdin.flush().await.expect("flush");
    }

    async fn request(&mut self, mut v: Value) -> Value {
        self.next_id += 1;
        v["jsonrpc"] = json!("2.0");
        v["id"] = json!(self.next_id);
        self.send(v).await;
        loop {
            let line = self.lines.next_line().await.expect("read").expect("eof");
            let r: Value = serde_json::from_str(&line).expect("json");
            if r["id"] == json!(self.next_id) {
                return r;
            }
        }
    }

    async fn call(&mut self, i: usize) -> Duration {
        let msg = json!({"method": "tools/call", "params": {"name": "echo",
            "arguments": {"message": format!("bench {i}")}}});
        let t = Instant::now();
        let r = self.request(msg).await;
        let d = t.elapsed();
        assert!(
            r["result"]["isError"] != json!(true) && r.get("error").is_none(),
            "{r}"
        );
        d
    }
}

impl Peer {
    /// A `ping`: relayed by the proxy without a decision, so its added latency is the relay's.
    async fn ping(&mut self) -> Duration {
        let t = Instant::now();
        let r = self.request(json!({"method": "ping"})).await;
        let d = t.elapsed();
        assert!(r.get("error").is_none(), "{r}");
        d
    }
}

/// One durable commit alone, the shape of an allowed call's record (see the module note).
struct Probe {
    conn: rusqlite::Connection,
    next: i64,
    body: String,
    entry: Vec<u8>,
}

impl Probe {
    fn open(path: &str) -> Probe {
        let conn = rusqlite::Connection::open(path).expect("probe database");
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .expect("WAL");
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("FULL");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS a (id TEXT PRIMARY KEY, requester TEXT, status TEXT, \
             created_at INTEGER, body TEXT);
             CREATE TABLE IF NOT EXISTS e (idx INTEGER PRIMARY KEY, action_id TEXT, at INTEGER, \
             body BLOB, hashes BLOB);",
        )
        .expect("probe tables");
        Probe {
            conn,
            next: 0,
            body: "x".repeat(900),
            entry: vec![b'y'; 700],
        }
    }

    fn commit(&mut self) -> Duration {
        let i = self.next;
        self.next += 1;
        let id = format!("act_{i:024}");
        let t = Instant::now();
        self.conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        self.conn
            .prepare_cached("INSERT INTO a VALUES (?1, 'bench-agent', 'allowed', ?2, ?3)")
            .and_then(|mut s| s.execute(rusqlite::params![id, i, self.body]))
            .expect("insert");
        self.conn
            .prepare_cached("INSERT INTO e VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(rusqlite::params![i, id, i, self.entry, [7u8; 64]]))
            .expect("insert");
        self.conn.execute_batch("COMMIT").expect("commit");
        t.elapsed()
    }
}

fn table(what: &str, calls: usize, d: &mut [Duration], p: &mut [Duration]) {
    d.sort();
    p.sort();
    println!("{calls} {what}, alternating, after 50 warm-up calls each");
    println!("| path | p50 ms | p90 ms | p99 ms |");
    println!("| --- | --- | --- | --- |");
    for (name, v) in [("direct", &*d), ("through countersign", &*p)] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99)
        );
    }
    println!(
        "| added | {:.3} | {:.3} | {:.3} |",
        pct(p, 0.5) - pct(d, 0.5),
        pct(p, 0.9) - pct(d, 0.9),
        pct(p, 0.99) - pct(d, 0.99)
    );
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args[0].parse().expect("CALLS");
    let rest = &args[2..];
    let split = rest.iter().position(|a| a == "--").expect("two commands");
    let mut direct = Peer::start(&rest[..split]).await;
    let mut proxied = Peer::start(&rest[split + 1..]).await;
    let mut probe = std::env::var("COMMIT_PROBE").ok().map(|p| Probe::open(&p));
    for i in 0..50 {
        direct.call(i).await;
        if let Some(probe) = &mut probe {
            probe.commit();
        }
        proxied.call(i).await;
    }
    let (mut d, mut p, mut c) = (Vec::new(), Vec::new(), Vec::new());
    // The probe goes between the direct and the proxied call: right after a proxied call, the
    // proxy is still committing that call's result report, and the two fsyncs would overlap.
    for i in 0..calls {
        d.push(direct.call(i).await);
        if let Some(probe) = &mut probe {
            c.push(probe.commit());
        }
        p.push(proxied.call(i).await);
    }
    table("allowed tools/call (echo)", calls, &mut d, &mut p);
    if !c.is_empty() {
        c.sort();
        println!(
            "| durable commit alone | {:.3} | {:.3} | {:.3} |",
            pct(&c, 0.5),
            pct(&c, 0.9),
            pct(&c, 0.99)
        );
    }
    // The same processes, `ping` instead: what the relay alone adds (no decision, no record).
    for _ in 0..50 {
        direct.ping().await;
        proxied.ping().await;
    }
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        d.push(direct.ping().await);
        p.push(proxied.ping().await);
    }
    println!();
    table("ping (relayed, no decision)", calls, &mut d, &mut p);
}
