//! Prints how many actions an SQLite database holds (used by bench/run-http.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: count_actions DB")?;
    let conn = rusqlite::Connection::open(path)?;
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM actions", [], |r| r.get(0))?;
    println!("{n}");
    Ok(())
}
