//! The upstream-to-client half of a session: the only writer to the client. It relays the
//! upstream's messages as they arrive, matching them against what the client half forwarded
//! ([`Expect`], in order) to know which statement each result belongs to, swaps the upstream's
//! error for the proxy's own where a refused statement was replaced by one that fails (so the
//! server's transaction state is exactly PostgreSQL's), and reports each statement's result.

use bytes::Bytes;
use countersign_core::Outcome;
use countersign_enforce::{Gate, Report};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::mask::ResultMask;
use crate::wire::{self, Diag, Msg, WireError};

/// What the client half tells the relay.
#[derive(Debug)]
pub enum Down {
    /// The next responses answer this.
    Expect(Sent),
    /// Write this notice now (notices may come at any time).
    Notice(Msg),
    /// Write this fatal error now and end the session.
    Abort(Msg),
}

/// One statement's place among the responses.
#[derive(Debug)]
pub enum Slot {
    /// A statement the client sent (or a reviewer's version of it), reported to its action.
    Run(Option<String>),
    /// A refused statement, replaced by one that fails: its error becomes this one.
    Refused(Msg),
}

/// What a forwarded message will be answered with.
#[derive(Debug)]
pub enum Expect {
    /// A simple `Query` of these statements, answered up to `ReadyForQuery`.
    Query(Vec<Slot>),
    /// `Parse`, `Bind`, `Close`: one message (or an error).
    One,
    /// `Describe` of a statement (two messages; its parameter types are remembered under its
    /// name) or of a portal (`None`, one message); `key` names its row description for
    /// masking (`S:name`, `P:name`).
    Describe {
        statement: Option<String>,
        key: String,
    },
    /// `Execute` of one statement, with what masking needs: the row descriptions to look up
    /// (`P:portal`, then `S:statement`) and the result formats its `Bind` asked for.
    Execute(Slot, Rows),
    /// Messages of the proxy's own (a reviewer's modified statement prepared and bound) that
    /// the client must not see: this many responses.
    Hidden(usize),
    /// `Sync`: `ReadyForQuery`.
    Sync,
}

/// Parameter types of prepared statements as the server described them (asyncpg, for one,
/// declares none in `Parse` and binds in binary after `Describe`).
pub type Described = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u32>>>>;

/// The types of a `ParameterDescription`.
fn parameter_types(body: &Bytes) -> Option<Vec<u32>> {
    let mut f = wire::Fields::new(body);
    let n = f.count().ok()?;
    (0..n).map(|_| f.i32().ok().map(|t| t as u32)).collect()
}

/// How an `Execute`'s rows are described, for masking.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    /// Description keys to try, in order.
    pub keys: Vec<String>,
    /// The result formats of its `Bind`.
    pub formats: Vec<i16>,
}

/// Result masking state of a session.
pub struct Masking {
    /// The rules, if masking is configured.
    pub mask: Option<Arc<ResultMask>>,
    /// Row descriptions by key, with the tables of their statement.
    pub descriptions: std::collections::HashMap<String, (Bytes, Vec<String>)>,
    /// The columns of the rows being relayed.
    pub columns: Vec<(bool, bool)>,
}

/// Where results go: each statement's to its action, off the relay's path.
pub type Reports = mpsc::UnboundedSender<(String, Report)>;

/// Reports results in order until the session ends (and every queued report is sent).
pub async fn reporter(gate: Arc<dyn Gate>, mut rx: mpsc::UnboundedReceiver<(String, Report)>) {
    while let Some((id, report)) = rx.recv().await {
        if let Err(e) = gate.report(&id, report).await {
            tracing::warn!(action = %id, error = %e, "could not report a statement's result");
        }
    }
}

struct Current {
    expect: Expect,
    tables: Vec<String>,
    started: Instant,
    /// Statements of a query answered so far.
    index: usize,
    rows: u64,
    /// Responses seen (for `Describe` and hidden messages).
    seen: usize,
    /// A query's reports, sent at its end (a later failure may have rolled them back).
    held: Vec<(String, Report)>,
    /// Whether a statement of the query failed.
    failed: bool,
}

/// A forwarded message and the tables its statements name (for masking rules).
#[derive(Debug)]
pub struct Sent {
    pub expect: Expect,
    pub tables: Vec<String>,
}

/// Runs the relay until the upstream or the client half ends. Sets `ended` when it stops.
pub async fn relay<U, C>(
    upstream: BufReader<U>,
    client: C,
    mut commands: mpsc::UnboundedReceiver<Down>,
    reports: Reports,
    described: Described,
    mut masking: Masking,
    ended: watch::Sender<bool>,
) where
    U: AsyncRead + Unpin + Send + 'static,
    C: AsyncWrite + Unpin,
{
    // Reading a message is not cancel-safe (a partly read message would be lost if the select
    // below chose a command meanwhile), so messages are read whole by their own task.
    let (tx, mut incoming) = mpsc::channel(256);
    let reader = tokio::spawn(read_upstream(upstream, tx));
    let mut client = BufWriter::with_capacity(64 * 1024, client);
    let mut queue: VecDeque<Current> = VecDeque::new();
    // Actions of portals suspended at their row limit and not run to their end yet.
    let mut suspended: Vec<String> = Vec::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv(), if open => match cmd {
                Some(Down::Expect(e)) => queue.push_back(Current { expect: e.expect, tables: e.tables, started: Instant::now(), index: 0, rows: 0, seen: 0, held: Vec::new(), failed: false }),
                Some(Down::Notice(m)) => {
                    if write(&mut client, &m.frame()).await.is_err() || client.flush().await.is_err() {
                        break;
                    }
                }
                Some(Down::Abort(m)) => {
                    let _ = write(&mut client, &m.frame()).await;
                    let _ = client.flush().await;
                    break;
                }
                // The client half is done: relay what is still owed, then stop.
                None => {
                    open = false;
                    if queue.is_empty() {
                        break;
                    }
                }
            },
            m = incoming.recv() => {
                let m = match m.unwrap_or(Err(WireError::Closed)) {
                    Ok(m) => m,
                    Err(e) => {
                        if open || !queue.is_empty() {
                            let d = Diag::fatal("08006", format!("countersign: the upstream server connection was lost ({e})"));
                            let _ = write(&mut client, &d.to_msg().frame()).await;
                        }
                        break;
                    }
                };
                let fatal = m.tag == b'E' && is_fatal(&m.body);
                let out = handle(&mut queue, m, &reports, &described, &mut masking, &mut suspended);
                if let Some(out) = out {
                    if write(&mut client, &out).await.is_err() {
                        break;
                    }
                }
                if incoming.is_empty() && client.flush().await.is_err() {
                    break;
                }
                if fatal {
                    break;
                }
                if !open && queue.is_empty() {
                    break;
                }
            }
        }
    }
    reader.abort();
    abandoned(&mut suspended, &reports);
    let _ = client.flush().await;
    let _ = client.shutdown().await;
    // What never got an answer did not run (or its result is unknown): say so.
    for c in queue.drain(..) {
        unanswered(
            c,
            &reports,
            "the session ended before the server's answer was relayed; it may have run",
        );
    }
    let _ = ended.send(true);
}

/// Largest message accepted from the upstream server (PostgreSQL's own limit).
const MAX_UPSTREAM_MESSAGE: usize = 1 << 30;

/// Reads the upstream's messages whole, until it ends or the relay does.
async fn read_upstream<U: AsyncRead + Unpin>(
    mut upstream: BufReader<U>,
    tx: mpsc::Sender<Result<Msg, WireError>>,
) {
    loop {
        let m = wire::read_msg(&mut upstream, MAX_UPSTREAM_MESSAGE).await;
        let end = m.is_err();
        if tx.send(m).await.is_err() || end {
            return;
        }
    }
}

async fn write<C: AsyncWrite + Unpin>(
    client: &mut BufWriter<C>,
    bytes: &Bytes,
) -> std::io::Result<()> {
    client.write_all(bytes).await
}

fn is_fatal(body: &Bytes) -> bool {
    wire::error_fields(body)
        .iter()
        .any(|(t, v)| *t == b'V' && (v == "FATAL" || v == "PANIC"))
}

fn sqlstate(body: &Bytes) -> String {
    wire::error_fields(body)
        .into_iter()
        .find(|(t, _)| *t == b'C')
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn detail(tag: Option<&str>, rows: u64, started: Instant, state: Option<&str>) -> String {
    serde_json::json!({
        "command_tag": tag,
        "rows": rows,
        "duration_ms": (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "sqlstate": state,
    })
    .to_string()
}

fn report(reports: &Reports, slot: &Slot, outcome: Outcome, detail: String) {
    if let Slot::Run(Some(id)) = slot {
        let mut r = Report::new(outcome);
        r.detail = Some(detail);
        let _ = reports.send((id.clone(), r));
    }
}

/// Rows a command tag says were affected (`DELETE 3`, `INSERT 0 5`, `SELECT 2`), if any.
fn tag_rows(tag: &str) -> Option<u64> {
    tag.rsplit(' ').next().and_then(|n| n.parse().ok())
}

fn not_run(reports: &Reports, slot: &Slot, started: Instant, why: &str) {
    if let Slot::Run(Some(id)) = slot {
        let mut r = Report::new(Outcome::Failed);
        r.detail = Some(
            serde_json::json!({"not_run": why, "waited_ms": started.elapsed().as_millis() as u64})
                .to_string(),
        );
        let _ = reports.send((id.clone(), r));
    }
}

fn unanswered(c: Current, reports: &Reports, why: &str) {
    for (id, r) in c.held {
        let _ = reports.send((id, r));
    }
    match c.expect {
        Expect::Query(slots) => {
            for s in slots.iter().skip(c.index) {
                not_run(reports, s, c.started, why);
            }
        }
        Expect::Execute(s, _) => not_run(reports, &s, c.started, why),
        _ => {}
    }
}

/// Handles one upstream message: returns the bytes for the client, if any (a `DataRow` masked
/// where masking is configured).
fn handle(
    queue: &mut VecDeque<Current>,
    m: Msg,
    reports: &Reports,
    described: &Described,
    masking: &mut Masking,
    suspended: &mut Vec<String>,
) -> Option<Bytes> {
    let masked = mask(queue, &m, masking);
    let out = route(queue, m, reports, described, suspended);
    match (out, masked) {
        (Some(_), Some(masked)) => Some(masked),
        (out, _) => out,
    }
}

/// Keeps the row descriptions masking needs and masks a `DataRow`, if configured.
fn mask(queue: &VecDeque<Current>, m: &Msg, masking: &mut Masking) -> Option<Bytes> {
    let cur = queue.front()?;
    if let Some(mask) = masking.mask.clone() {
        match (&cur.expect, m.tag) {
            (Expect::Query(_), b'T') => masking.columns = mask.columns(&m.body, &cur.tables),
            (Expect::Describe { key, .. }, b'T') => {
                masking
                    .descriptions
                    .insert(key.clone(), (m.body.clone(), cur.tables.clone()));
            }
            (Expect::Execute(_, rows), _) if cur.rows == 0 && m.tag == b'D' => {
                masking.columns = rows
                    .keys
                    .iter()
                    .find_map(|k| masking.descriptions.get(k))
                    .map(|(d, t)| {
                        let mut cols = mask.columns(d, t);
                        for (i, c) in cols.iter_mut().enumerate() {
                            let f = match rows.formats.len() {
                                0 => 0,
                                1 => rows.formats.first().copied().unwrap_or(0),
                                _ => rows.formats.get(i).copied().unwrap_or(0),
                            };
                            c.1 = f == 0;
                        }
                        cols
                    })
                    .unwrap_or_default();
            }
            _ => {}
        }
        if m.tag == b'D' {
            return mask.row(&m.body, &masking.columns).map(|r| r.frame());
        }
    }
    None
}

/// Matches one upstream message to what was forwarded: returns the bytes for the client.
fn route(
    queue: &mut VecDeque<Current>,
    m: Msg,
    reports: &Reports,
    described: &Described,
    suspended: &mut Vec<String>,
) -> Option<Bytes> {
    // Messages that may come at any time.
    if matches!(m.tag, b'N' | b'A' | b'S') {
        return Some(m.frame());
    }
    let Some(cur) = queue.front_mut() else {
        // Nothing was asked: only a server's own error (it is shutting down) is expected.
        return Some(m.frame());
    };
    match &mut cur.expect {
        Expect::Query(slots) => match m.tag {
            b'D' => {
                cur.rows += 1;
                Some(m.frame())
            }
            b'C' => {
                let tag = wire::command_tag(&m.body);
                if let Some(Slot::Run(Some(id))) = slots.get(cur.index) {
                    let rows = tag_rows(&tag).unwrap_or(cur.rows);
                    let mut r = Report::new(Outcome::Succeeded);
                    r.detail = Some(detail(Some(&tag), rows, cur.started, None));
                    cur.held.push((id.clone(), r));
                }
                cur.index += 1;
                cur.rows = 0;
                Some(m.frame())
            }
            b'E' => {
                let state = sqlstate(&m.body);
                let out = match slots.get(cur.index) {
                    Some(Slot::Refused(ours)) => ours.frame(),
                    Some(s) => {
                        report(
                            reports,
                            s,
                            Outcome::Failed,
                            detail(None, cur.rows, cur.started, Some(&state)),
                        );
                        m.frame()
                    }
                    None => m.frame(),
                };
                for s in slots.iter().skip(cur.index + 1) {
                    not_run(
                        reports,
                        s,
                        cur.started,
                        "an earlier statement of the query failed",
                    );
                }
                cur.index = slots.len();
                cur.failed = true;
                Some(out)
            }
            b'Z' => {
                let done = queue.pop_front();
                if let Some(mut c) = done {
                    let idle = m.body.first() == Some(&b'I');
                    for (id, mut r) in std::mem::take(&mut c.held) {
                        if c.failed && idle {
                            // Outside an explicit transaction a failed query rolls back whole.
                            r.detail = r
                                .detail
                                .map(|d| d.replacen('{', "{\"query_failed_later\":true,", 1));
                        }
                        let _ = reports.send((id, r));
                    }
                    unanswered(c, reports, "the server did not run it");
                }
                Some(m.frame())
            }
            _ => Some(m.frame()),
        },
        Expect::One => {
            let err = m.tag == b'E';
            queue.pop_front();
            if err {
                skip_to_sync(queue, reports);
            }
            Some(m.frame())
        }
        Expect::Describe { statement, .. } => {
            let err = m.tag == b'E';
            cur.seen += 1;
            if let (b't', Some(name)) = (m.tag, statement.as_ref()) {
                if let Some(t) = parameter_types(&m.body) {
                    described
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), t);
                }
            }
            // A statement's description is ParameterDescription then RowDescription/NoData.
            if err || statement.is_none() || cur.seen >= 2 {
                queue.pop_front();
            }
            if err {
                skip_to_sync(queue, reports);
            }
            Some(m.frame())
        }
        Expect::Hidden(n) => {
            let err = m.tag == b'E';
            cur.seen += 1;
            let n = *n;
            if err || cur.seen >= n {
                queue.pop_front();
            }
            if err {
                // The client sees the failure as its statement's.
                skip_to_sync(queue, reports);
                return Some(m.frame());
            }
            None
        }
        Expect::Execute(slot, _) => match m.tag {
            b'D' => {
                cur.rows += 1;
                Some(m.frame())
            }
            // Suspended at its row limit: the portal's later Executes belong to the same action,
            // which is reported when the portal completes.
            b's' => {
                if let Slot::Run(Some(id)) = slot {
                    if !suspended.contains(id) {
                        suspended.push(id.clone());
                    }
                }
                queue.pop_front();
                Some(m.frame())
            }
            b'C' | b'I' => {
                if let Slot::Run(Some(id)) = slot {
                    suspended.retain(|s| s != id);
                }
                let tag = (m.tag == b'C').then(|| wire::command_tag(&m.body));
                let rows = tag.as_deref().and_then(tag_rows).unwrap_or(cur.rows);
                report(
                    reports,
                    slot,
                    Outcome::Succeeded,
                    detail(tag.as_deref(), rows, cur.started, None),
                );
                queue.pop_front();
                Some(m.frame())
            }
            b'E' => {
                if let Slot::Run(Some(id)) = slot {
                    suspended.retain(|s| s != id);
                }
                let out = match slot {
                    Slot::Refused(ours) => ours.frame(),
                    s => {
                        let state = sqlstate(&m.body);
                        report(
                            reports,
                            s,
                            Outcome::Failed,
                            detail(None, cur.rows, cur.started, Some(&state)),
                        );
                        m.frame()
                    }
                };
                queue.pop_front();
                skip_to_sync(queue, reports);
                Some(out)
            }
            _ => Some(m.frame()),
        },
        Expect::Sync => {
            if m.tag == b'Z' {
                queue.pop_front();
                // Out of any transaction, every portal is gone: those not run to their end
                // are reported as they stand.
                if m.body.first() == Some(&b'I') {
                    abandoned(suspended, reports);
                }
            }
            Some(m.frame())
        }
    }
}

/// Reports the actions of portals closed before their last row.
fn abandoned(suspended: &mut Vec<String>, reports: &Reports) {
    for id in suspended.drain(..) {
        let mut r = Report::new(Outcome::Succeeded);
        r.detail = Some(serde_json::json!({"portal_closed_before_its_end": true}).to_string());
        let _ = reports.send((id, r));
    }
}

/// After an error in the extended protocol the server ignores everything up to `Sync`.
fn skip_to_sync(queue: &mut VecDeque<Current>, reports: &Reports) {
    while let Some(c) = queue.front() {
        if matches!(c.expect, Expect::Sync | Expect::Query(_)) {
            break;
        }
        if let Some(c) = queue.pop_front() {
            unanswered(c, reports, "an earlier message of the pipeline failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags_say_how_many_rows() {
        assert_eq!(tag_rows("DELETE 3"), Some(3));
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("CREATE TABLE"), None);
    }
}
