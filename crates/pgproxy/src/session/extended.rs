//! The extended protocol's `Execute`: the portal's statement and bound parameters decided, then
//! forwarded, replaced by a reviewer's version, or failed on the server.

use bytes::{BufMut, Bytes, BytesMut};
use countersign_analyze::{pg_statements, SqlKind};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{Client, Stop};
use crate::decide::{Statement, Verdict};
use crate::down::{self, Expect, Slot};
use crate::wire::{Diag, Msg};

impl Client {
    pub(super) async fn execute(
        &mut self,
        m: &Msg,
        portal: &str,
        max_rows: i32,
    ) -> Result<(), Stop> {
        let Some(p) = self.portals.get(portal) else {
            // The server answers "portal does not exist"; nothing runs.
            self.expect(Expect::Execute(Slot::Run(None), down::Rows::default()))?;
            return self.forward(m).await;
        };
        if let Some((action_id, from)) = p.decided.clone() {
            // More rows of a portal already decided (it was suspended at its row limit).
            let rows = down::Rows {
                keys: vec![format!("P:{portal}"), format!("S:{}", p.statement)],
                formats: p.bind.results.clone(),
            };
            self.expect(Expect::Execute(Slot::Run(Some(action_id)), rows))?;
            let mut e = BytesMut::new();
            postgres_protocol::message::frontend::execute(&from, max_rows, &mut e)
                .map_err(|_| Stop::Quiet)?;
            return self.upstream.write_all(&e).await.map_err(|_| Stop::Quiet);
        }
        let query = self
            .statements
            .get(&p.statement)
            .map(|s| s.query.clone())
            .unwrap_or_default();
        let parameters: Vec<Value> = p
            .bind
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| parameter(v.as_ref(), p.bind.format(i), p.types.get(i).copied()))
            .collect();
        let (kind, text, tables) = match pg_statements(&query) {
            Ok(s) if s.len() == 1 => {
                let s = s.into_iter().next().map(|s| (s.kind, s.text, s.tables));
                s.unwrap_or((SqlKind::Other, query.clone(), Vec::new()))
            }
            _ => (SqlKind::Other, query.clone(), Vec::new()),
        };
        let st = Statement {
            kind: kind.as_str(),
            text: &text,
            parameters,
            tables: &tables,
        };
        let rows = down::Rows {
            keys: vec![format!("P:{portal}"), format!("S:{}", p.statement)],
            formats: p.bind.results.clone(),
        };
        match self.decider.decide(&st, &mut self.reader).await {
            Verdict::Run {
                action_id,
                statement: None,
                parameters: None,
            } => {
                if max_rows > 0 {
                    if let Some(p) = self.portals.get_mut(portal) {
                        p.decided = Some((action_id.clone(), portal.to_string()));
                    }
                }
                self.expect_on(Expect::Execute(Slot::Run(Some(action_id)), rows), tables)?;
                self.forward(m).await
            }
            Verdict::Run {
                action_id,
                statement,
                parameters,
            } => {
                // A reviewer's version: prepared and bound under the proxy's own names (text
                // parameters), run in place of the client's portal.
                let p = self.portals.get(portal);
                let statement = statement.unwrap_or(text);
                let values: Vec<Value> = match parameters {
                    Some(v) => v,
                    None => p
                        .map(|p| {
                            p.bind
                                .values
                                .iter()
                                .enumerate()
                                .map(|(i, v)| {
                                    parameter(v.as_ref(), p.bind.format(i), p.types.get(i).copied())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                let name = format!("{}_modified", self.refusal);
                let mut buf = BytesMut::new();
                let hidden = build_modified(&name, &statement, &values, &mut buf)
                    .map_err(|e| Stop::Fatal(Diag::fatal("08P01", e)))?;
                self.expect(Expect::Hidden(hidden))?;
                self.upstream
                    .write_all(&buf)
                    .await
                    .map_err(|_| Stop::Quiet)?;
                if max_rows > 0 {
                    if let Some(p) = self.portals.get_mut(portal) {
                        p.decided = Some((action_id.clone(), name.clone()));
                    }
                }
                self.expect_on(Expect::Execute(Slot::Run(Some(action_id)), rows), tables)?;
                let mut e = BytesMut::new();
                postgres_protocol::message::frontend::execute(&name, max_rows, &mut e)
                    .map_err(|_| Stop::Quiet)?;
                self.upstream.write_all(&e).await.map_err(|_| Stop::Quiet)
            }
            Verdict::Refuse(d) => {
                // Execute of a portal that cannot exist: the server fails as for the client's
                // statement and ignores the rest up to Sync; the client gets our error.
                self.expect(Expect::Execute(Slot::Refused(d.to_msg()), rows))?;
                let mut e = BytesMut::new();
                postgres_protocol::message::frontend::execute(&self.refusal, 0, &mut e)
                    .map_err(|_| Stop::Quiet)?;
                self.upstream.write_all(&e).await.map_err(|_| Stop::Quiet)
            }
        }
    }
}

/// Close, Parse and Bind of a reviewer's statement under `name` (text parameters); returns how
/// many responses they get.
fn build_modified(
    name: &str,
    statement: &str,
    values: &[Value],
    buf: &mut BytesMut,
) -> Result<usize, String> {
    use postgres_protocol::message::frontend;
    let io = |e: std::io::Error| e.to_string();
    frontend::close(b'S', name, buf).map_err(io)?;
    frontend::parse(name, statement, std::iter::empty(), buf).map_err(io)?;
    let texts: Vec<Option<String>> = values
        .iter()
        .map(|v| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect();
    frontend::bind(
        name,
        name,
        std::iter::empty::<i16>(),
        texts.iter(),
        |v, out| match v {
            Some(s) => {
                out.put_slice(s.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        },
        std::iter::empty::<i16>(),
        buf,
    )
    .map_err(|e| match e {
        frontend::BindError::Conversion(e) => e.to_string(),
        frontend::BindError::Serialization(e) => e.to_string(),
    })?;
    Ok(3)
}

/// A bound parameter as JSON: text as a string, binary of a known type as its value, other
/// binary as `\x` hex (as PostgreSQL writes bytea), NULL as null.
pub(super) fn parameter(v: Option<&Bytes>, format: i16, oid: Option<u32>) -> Value {
    let Some(v) = v else {
        return Value::Null;
    };
    if format == 0 {
        return match std::str::from_utf8(v) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => Value::String(format!("\\x{}", hex::encode(v))),
        };
    }
    let be = |n: usize| -> Option<[u8; 8]> {
        (v.len() == n).then(|| {
            let mut a = [0u8; 8];
            a[8 - n..].copy_from_slice(v);
            a
        })
    };
    let known = match oid {
        Some(16) if v.len() == 1 => Some(Value::Bool(v[..] != [0])),
        // Beyond 2^53 a JSON number is not exact (I-JSON): the decimal text instead.
        Some(20) => be(8).map(i64::from_be_bytes).map(|n| {
            if n.unsigned_abs() <= countersign_core::MAX_SAFE_INTEGER {
                Value::from(n)
            } else {
                Value::String(n.to_string())
            }
        }),
        Some(23) => {
            be(4).map(|a| Value::from(i64::from(i32::from_be_bytes([a[4], a[5], a[6], a[7]]))))
        }
        Some(21) => be(2).map(|a| Value::from(i64::from(i16::from_be_bytes([a[6], a[7]])))),
        Some(25 | 1043 | 19) => std::str::from_utf8(v)
            .ok()
            .map(|s| Value::String(s.to_string())),
        _ => None,
    };
    known.unwrap_or_else(|| Value::String(format!("\\x{}", hex::encode(v))))
}
