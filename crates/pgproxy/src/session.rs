//! One client connection: the startup (TLS where asked, required off loopback), the agent's
//! authentication through `Gates` (user = identity id, password = its credential), the
//! upstream session, then the client half of the relay: every message is read, `Query` and
//! `Execute` are decided statement by statement, and what may run is forwarded.

use bytes::{BufMut, BytesMut};
use countersign_analyze::{pg_statements, SqlKind};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

mod extended;
mod startup;

use startup::{fatal, startup, Started};

use crate::decide::{Decider, Statement, Verdict};
use crate::down::{self, Down, Expect, Slot};
use crate::wire::{self, Bind, Diag, Msg, WireError};
use crate::{Cancel, Shared};

/// Most prepared statements, and most portals, a session may hold (hostile clients could
/// otherwise grow the proxy's memory without limit).
const MAX_NAMED: usize = 10_000;

/// A client connection, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long a session that ended waits for the server's outstanding answers before it cancels
/// what still runs.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one connection to its end.
pub async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let timeout = shared.opts.startup_timeout;
    let started = tokio::time::timeout(timeout, startup(stream, peer, &shared)).await;
    let Ok(Some(s)) = started else {
        return;
    };
    s.serve(shared).await;
}

/// Refuses a connection over the limit (before reading anything: a cancel request over the
/// limit is refused too).
pub async fn too_many(stream: TcpStream) {
    let mut io: Box<dyn Io> = Box::new(stream);
    let d = Diag::fatal("53300", "sorry, too many clients already");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fatal(&mut io, d)).await;
}

/// A prepared statement the client made.
struct Prepared {
    query: String,
    types: Vec<u32>,
}

/// A portal the client bound.
struct Portal {
    statement: String,
    bind: Bind,
    types: Vec<u32>,
    /// Once an `Execute` with a row limit was allowed: its action, and the portal the rows come
    /// from (the client's, or the proxy's for a reviewer's version). Later `Execute`s of the
    /// portal fetch more rows of the same decision.
    decided: Option<(String, String)>,
}

impl Started {
    async fn serve(self, shared: Arc<Shared>) {
        let Started {
            mut io,
            user,
            database,
            gate,
            upstream,
        } = self;
        let mut hello = BytesMut::new();
        hello.put_slice(&wire::auth(0).frame());
        for m in &upstream.status {
            hello.put_slice(&m.frame());
        }
        let held = Arc::new(Mutex::new(None));
        let key = loop {
            let k = (rand::random::<i32>() & i32::MAX, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(e) = shared.sessions().entry(k) {
                e.insert(Cancel {
                    held: held.clone(),
                    upstream_key: upstream.key,
                });
                break k;
            }
        };
        hello.put_slice(&wire::backend_key(key.0, key.1).frame());
        hello.put_slice(&wire::ready(b'I').frame());
        if io.write_all(&hello).await.is_err() || io.flush().await.is_err() {
            shared.sessions().remove(&key);
            return;
        }
        tracing::debug!(%user, %database, "session started");
        let upstream_key = upstream.key;
        let (client_r, client_w) = tokio::io::split(io);
        let (up_r, up_w) = tokio::io::split(upstream.stream.into_inner());
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(false);
        let described = down::Described::default();
        let relay = tokio::spawn(down::relay(
            BufReader::with_capacity(64 * 1024, up_r),
            client_w,
            down_rx,
            report_tx,
            described.clone(),
            down::Masking {
                mask: shared.opts.mask.clone(),
                descriptions: HashMap::new(),
                columns: Vec::new(),
            },
            ended_tx,
        ));
        let reporter = tokio::spawn(down::reporter(gate.clone(), report_rx));
        let mut client = Client {
            reader: BufReader::with_capacity(64 * 1024, client_r),
            upstream: BufWriter::with_capacity(64 * 1024, up_w),
            down: down_tx.clone(),
            decider: Decider {
                gate,
                resource: format!("postgres://{}/{}", shared.opts.server_name, database),
                progress_every: shared.opts.progress_every,
                clock: shared.opts.clock.clone(),
                down: down_tx,
                held,
                ended: ended.clone(),
            },
            max: shared.opts.max_message,
            statements: HashMap::new(),
            portals: HashMap::new(),
            refusal: format!("countersign_refused_{:016x}", rand::random::<u64>()),
            ended,
            described,
            masking: shared.opts.mask.is_some(),
        };
        client.run().await;
        let _ = client.upstream.shutdown().await;
        drop(client);
        // The relay ends once what was forwarded is answered. A statement still running for a
        // client that left is cancelled upstream rather than waited for.
        let mut relay = relay;
        if tokio::time::timeout(LINGER, &mut relay).await.is_err() {
            shared.opts.upstream.cancel(upstream_key).await;
            if tokio::time::timeout(LINGER * 10, &mut relay).await.is_err() {
                relay.abort();
            }
        }
        // Every result reported before the session is forgotten: nothing lost from the trail.
        let _ = reporter.await;
        shared.sessions().remove(&key);
    }
}

/// The client half of a running session.
struct Client {
    reader: BufReader<ReadHalf<Box<dyn Io>>>,
    upstream: BufWriter<tokio::io::WriteHalf<Box<dyn Io>>>,
    down: mpsc::UnboundedSender<Down>,
    decider: Decider,
    max: usize,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// A prepared statement name that cannot exist: `EXECUTE` of it fails, which is how a
    /// refused statement fails on the server too (its transaction aborts as PostgreSQL's would).
    refusal: String,
    ended: watch::Receiver<bool>,
    described: down::Described,
    /// Whether results are masked (statements' tables are then worked out for the rules).
    masking: bool,
}

/// Why the client half stops.
enum Stop {
    /// The client left or the upstream is gone.
    Quiet,
    /// The client broke the protocol: this fatal error ends the session.
    Fatal(Diag),
}

impl Client {
    async fn run(&mut self) {
        loop {
            let m = tokio::select! {
                m = wire::read_msg(&mut self.reader, self.max) => m,
                _ = self.ended.wait_for(|e| *e) => return,
            };
            let m = match m {
                Ok(m) => m,
                Err(WireError::Closed) => return,
                Err(WireError::TooLarge(n, max)) => {
                    return self.abort(Diag::fatal(
                        "54000",
                        format!("countersign: a message of {n} bytes is over the {max}-byte limit"),
                    ));
                }
                Err(WireError::Malformed(why)) => {
                    return self.abort(Diag::fatal("08P01", format!("invalid message: {why}")));
                }
                Err(WireError::Io(_)) => return,
            };
            match self.message(m).await {
                Ok(true) => {}
                Ok(false) | Err(Stop::Quiet) => return,
                Err(Stop::Fatal(d)) => return self.abort(d),
            }
            // Several pipelined messages go upstream in one write.
            if self.reader.buffer().is_empty() && self.upstream.flush().await.is_err() {
                return;
            }
        }
    }

    fn abort(&self, d: Diag) {
        let _ = self.down.send(Down::Abort(d.to_msg()));
    }

    fn expect(&self, e: Expect) -> Result<(), Stop> {
        self.expect_on(e, Vec::new())
    }

    /// `e`, with the tables its statements name (used by masking rules).
    fn expect_on(&self, e: Expect, tables: Vec<String>) -> Result<(), Stop> {
        self.down
            .send(Down::Expect(down::Sent { expect: e, tables }))
            .map_err(|_| Stop::Quiet)
    }

    /// The tables a prepared statement names, when masking needs them.
    fn tables_of(&self, statement: &str) -> Vec<String> {
        if !self.masking {
            return Vec::new();
        }
        self.statements
            .get(statement)
            .and_then(|p| pg_statements(&p.query).ok())
            .map(|s| s.into_iter().flat_map(|s| s.tables).collect())
            .unwrap_or_default()
    }

    async fn forward(&mut self, m: &Msg) -> Result<(), Stop> {
        self.upstream
            .write_all(&m.frame())
            .await
            .map_err(|_| Stop::Quiet)
    }

    /// Handles one client message; `false` ends the session.
    async fn message(&mut self, m: Msg) -> Result<bool, Stop> {
        let malformed =
            |e: WireError| Stop::Fatal(Diag::fatal("08P01", format!("invalid message: {e}")));
        match m.tag {
            b'Q' => {
                let query = wire::read_query(&m.body).map_err(malformed)?;
                self.query(&m, &query).await?;
            }
            b'P' => {
                let (name, query, types) = wire::read_parse(&m.body).map_err(malformed)?;
                if self.statements.len() >= MAX_NAMED && !self.statements.contains_key(&name) {
                    return Err(over_limit("prepared statements"));
                }
                self.expect(Expect::One)?;
                self.forward(&m).await?;
                self.described
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                self.statements.insert(name, Prepared { query, types });
            }
            b'B' => {
                let bind = Bind::read(&m.body).map_err(malformed)?;
                if self.portals.len() >= MAX_NAMED && !self.portals.contains_key(&bind.portal) {
                    return Err(over_limit("portals"));
                }
                let mut types = self
                    .statements
                    .get(&bind.statement)
                    .map(|p| p.types.clone())
                    .unwrap_or_default();
                // Types the client left to the server, as the server described them.
                let described = self
                    .described
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&bind.statement)
                    .cloned();
                if let Some(d) = described {
                    types.resize(types.len().max(d.len()), 0);
                    for (t, d) in types.iter_mut().zip(d) {
                        if *t == 0 {
                            *t = d;
                        }
                    }
                }
                self.expect(Expect::One)?;
                self.forward(&m).await?;
                self.portals.insert(
                    bind.portal.clone(),
                    Portal {
                        statement: bind.statement.clone(),
                        bind,
                        types,
                        decided: None,
                    },
                );
            }
            b'D' => {
                let (kind, name) = wire::read_target(&m.body).map_err(malformed)?;
                let statement = match kind {
                    b'S' => name.clone(),
                    _ => self
                        .portals
                        .get(&name)
                        .map(|p| p.statement.clone())
                        .unwrap_or_default(),
                };
                let tables = self.tables_of(&statement);
                self.expect_on(
                    Expect::Describe {
                        key: format!("{}:{name}", kind as char),
                        statement: (kind == b'S').then_some(name),
                    },
                    tables,
                )?;
                self.forward(&m).await?;
            }
            b'C' => {
                let (kind, name) = wire::read_target(&m.body).map_err(malformed)?;
                if kind == b'S' {
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                self.expect(Expect::One)?;
                self.forward(&m).await?;
            }
            b'E' => {
                let (portal, max_rows) = wire::read_execute(&m.body).map_err(malformed)?;
                self.execute(&m, &portal, max_rows).await?;
            }
            b'S' => {
                self.expect(Expect::Sync)?;
                self.forward(&m).await?;
            }
            b'H' | b'd' | b'c' | b'f' => self.forward(&m).await?,
            b'X' => {
                let _ = self.forward(&m).await;
                let _ = self.upstream.flush().await;
                return Ok(false);
            }
            b'F' => {
                // A function call by OID would bypass every decision: refused like a statement.
                let d = Diag::error(
                    "0A000",
                    "countersign: the function call protocol is not relayed",
                )
                .hint("Call the function in a SQL statement.");
                self.refuse_simple(d).await?;
            }
            _ => {
                return Err(Stop::Fatal(Diag::fatal(
                    "08P01",
                    format!("invalid frontend message type {}", m.tag),
                )))
            }
        }
        Ok(true)
    }

    /// Fails a simple-protocol message on the server with the proxy's error.
    async fn refuse_simple(&mut self, d: Diag) -> Result<(), Stop> {
        let q = format!("EXECUTE {}", self.refusal);
        self.expect(Expect::Query(vec![Slot::Refused(d.to_msg())]))?;
        self.forward(&query_msg(&q)).await
    }

    async fn query(&mut self, m: &Msg, query: &str) -> Result<(), Stop> {
        let statements = match pg_statements(query) {
            Ok(s) => s
                .into_iter()
                .map(|s| (s.kind, s.text, s.tables, Some((s.start, s.end))))
                .collect::<Vec<_>>(),
            // Not PostgreSQL as its parser reads it: decided as one statement of kind other
            // (the analyzer tags it `sql:unparsed`); policy holds or denies it.
            Err(_) => vec![(SqlKind::Other, query.to_string(), Vec::new(), None)],
        };
        if statements.is_empty() {
            self.expect(Expect::Query(Vec::new()))?;
            return self.forward(m).await;
        }
        let mut slots = Vec::with_capacity(statements.len());
        let mut texts: Vec<String> = Vec::with_capacity(statements.len());
        let mut rewritten = false;
        for (kind, text, tables, span) in &statements {
            let st = Statement {
                kind: kind.as_str(),
                text,
                parameters: Vec::new(),
                tables,
            };
            match self.decider.decide(&st, &mut self.reader).await {
                Verdict::Run {
                    action_id,
                    statement,
                    ..
                } => {
                    slots.push(Slot::Run(Some(action_id)));
                    match (statement, span) {
                        (Some(s), _) => {
                            rewritten = true;
                            texts.push(s);
                        }
                        (None, Some((a, b))) => {
                            texts.push(query.get(*a..*b).unwrap_or(text).to_string())
                        }
                        (None, None) => texts.push(text.clone()),
                    }
                }
                Verdict::Refuse(d) => {
                    slots.push(Slot::Refused(d.to_msg()));
                    texts.push(format!("EXECUTE {}", self.refusal));
                    rewritten = true;
                    break;
                }
            }
        }
        let tables = if self.masking {
            statements
                .iter()
                .flat_map(|s| s.2.iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
        self.expect_on(Expect::Query(slots), tables)?;
        if rewritten {
            // Each statement on its own lines: a trailing `--` comment cannot swallow the next.
            let q = texts.join("\n;\n");
            self.forward(&query_msg(&q)).await
        } else {
            self.forward(m).await
        }
    }
}

fn over_limit(what: &str) -> Stop {
    Stop::Fatal(Diag::fatal(
        "54000",
        format!("countersign: a session may hold at most {MAX_NAMED} {what}"),
    ))
}

fn query_msg(q: &str) -> Msg {
    let mut b = BytesMut::with_capacity(q.len() + 1);
    b.put_slice(q.as_bytes());
    b.put_u8(0);
    wire::msg(b'Q', b.freeze())
}
