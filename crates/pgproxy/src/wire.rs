//! The PostgreSQL protocol (version 3.0) at the level the proxy needs: framing with size limits,
//! the few frontend messages it reads into fields, and the backend messages it writes itself.
//! Everything else is relayed as the bytes it arrived as. Written by hand: `postgres-protocol`
//! parses backend messages and writes frontend ones (the client side), while a proxy must also
//! read frontend messages and write backend ones; the framing is eight lines of the protocol.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Protocol 3.0's startup code.
pub const PROTOCOL_3: i32 = 196_608;
/// `SSLRequest`'s code.
pub const SSL_REQUEST: i32 = 80_877_103;
/// `GSSENCRequest`'s code.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// `CancelRequest`'s code.
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// The longest startup packet accepted (PostgreSQL's own limit).
pub const MAX_STARTUP: usize = 10_000;

/// What went wrong reading a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection.
    #[error("the connection was closed")]
    Closed,
    /// Reading failed.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The message is longer than allowed.
    #[error("a message of {0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
    /// The message is not what the protocol allows.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// One message: its type byte and its body (without the length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The type byte.
    pub tag: u8,
    /// The body.
    pub body: Bytes,
}

impl Msg {
    /// The message as sent on the wire.
    pub fn frame(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.body.len() + 5);
        b.put_u8(self.tag);
        b.put_i32(i32::try_from(self.body.len() + 4).unwrap_or(i32::MAX));
        b.put_slice(&self.body);
        b.freeze()
    }
}

/// Reads one typed message of at most `max` bytes.
pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Msg, WireError> {
    let tag = match r.read_u8().await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    };
    let len = r.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l >= 4)
        .ok_or(WireError::Malformed("negative or too small length"))?;
    if len - 4 > max {
        return Err(WireError::TooLarge(len - 4, max));
    }
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body).await?;
    Ok(Msg {
        tag,
        body: body.into(),
    })
}

/// Reads an untyped startup-phase packet (startup, SSL, GSSENC or cancel request): its code and
/// the rest of its body.
pub async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<(i32, Bytes), WireError> {
    let len = match r.read_i32().await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l >= 8)
        .ok_or(WireError::Malformed("startup packet length"))?;
    if len > MAX_STARTUP {
        return Err(WireError::TooLarge(len, MAX_STARTUP));
    }
    let code = r.read_i32().await?;
    let mut body = vec![0u8; len - 8];
    r.read_exact(&mut body).await?;
    Ok((code, body.into()))
}

/// A cursor over a message body.
pub struct Fields(Bytes);

impl Fields {
    /// Reads the fields of `body`.
    pub fn new(body: &Bytes) -> Self {
        Fields(body.clone())
    }

    /// A NUL-terminated string (UTF-8).
    pub fn cstr(&mut self) -> Result<String, WireError> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or(WireError::Malformed("unterminated string"))?;
        let s = self.0.split_to(end);
        self.0.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| WireError::Malformed("a string is not UTF-8"))
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        if self.0.remaining() < 2 {
            return Err(WireError::Malformed("truncated"));
        }
        Ok(self.0.get_i16())
    }

    /// A big-endian i32.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        if self.0.remaining() < 4 {
            return Err(WireError::Malformed("truncated"));
        }
        Ok(self.0.get_i32())
    }

    /// A count (an i16 ≥ 0).
    pub fn count(&mut self) -> Result<usize, WireError> {
        usize::try_from(self.i16()?).map_err(|_| WireError::Malformed("negative count"))
    }

    /// `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        if self.0.remaining() < n {
            return Err(WireError::Malformed("truncated"));
        }
        Ok(self.0.split_to(n))
    }

    /// Whether every byte was read.
    pub fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The startup packet's parameters (`user`, `database`, ...), in order.
pub fn startup_params(body: &Bytes) -> Result<Vec<(String, String)>, WireError> {
    let mut f = Fields::new(body);
    let mut out = Vec::new();
    loop {
        let key = f.cstr()?;
        if key.is_empty() {
            break;
        }
        let value = f.cstr()?;
        out.push((key, value));
    }
    if !f.done() {
        return Err(WireError::Malformed("bytes after the startup parameters"));
    }
    Ok(out)
}

/// `Bind`, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    /// The portal.
    pub portal: String,
    /// The prepared statement.
    pub statement: String,
    /// Parameter format codes (0 text, 1 binary): none (all text), one (for all), or one each.
    pub formats: Vec<i16>,
    /// Parameter values (`None`: NULL).
    pub values: Vec<Option<Bytes>>,
    /// Result column format codes: none (all text), one (for all), or one each.
    pub results: Vec<i16>,
}

impl Bind {
    /// Reads a `Bind` body.
    pub fn read(body: &Bytes) -> Result<Bind, WireError> {
        let mut f = Fields::new(body);
        let portal = f.cstr()?;
        let statement = f.cstr()?;
        let n = f.count()?;
        let formats = (0..n).map(|_| f.i16()).collect::<Result<Vec<_>, _>>()?;
        let n = f.count()?;
        let mut values = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = f.i32()?;
            values.push(match usize::try_from(len) {
                Ok(len) => Some(f.bytes(len)?),
                Err(_) if len == -1 => None,
                Err(_) => return Err(WireError::Malformed("negative parameter length")),
            });
        }
        let n = f.count()?;
        let results = (0..n).map(|_| f.i16()).collect::<Result<Vec<_>, _>>()?;
        if !f.done() {
            return Err(WireError::Malformed("bytes after Bind's fields"));
        }
        Ok(Bind {
            portal,
            statement,
            formats,
            values,
            results,
        })
    }

    /// The format code of parameter `i`.
    pub fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats.first().copied().unwrap_or(0),
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }
}

/// `Parse`, read: the statement's name, its text and declared parameter types.
pub fn read_parse(body: &Bytes) -> Result<(String, String, Vec<u32>), WireError> {
    let mut f = Fields::new(body);
    let name = f.cstr()?;
    let query = f.cstr()?;
    let n = f.count()?;
    let types = (0..n)
        .map(|_| f.i32().map(|t| t as u32))
        .collect::<Result<Vec<_>, _>>()?;
    if !f.done() {
        return Err(WireError::Malformed("bytes after Parse's fields"));
    }
    Ok((name, query, types))
}

/// `Execute`, read: the portal and the row limit.
pub fn read_execute(body: &Bytes) -> Result<(String, i32), WireError> {
    let mut f = Fields::new(body);
    let portal = f.cstr()?;
    let max = f.i32()?;
    if !f.done() {
        return Err(WireError::Malformed("bytes after Execute's fields"));
    }
    Ok((portal, max))
}

/// `Describe` or `Close`, read: `S` (statement) or `P` (portal) and the name.
pub fn read_target(body: &Bytes) -> Result<(u8, String), WireError> {
    let mut f = Fields::new(body);
    let kind = f.bytes(1)?.first().copied().unwrap_or(0);
    if kind != b'S' && kind != b'P' {
        return Err(WireError::Malformed("Describe/Close of neither S nor P"));
    }
    let name = f.cstr()?;
    if !f.done() {
        return Err(WireError::Malformed("bytes after the name"));
    }
    Ok((kind, name))
}

/// The query text of a `Query` body.
pub fn read_query(body: &Bytes) -> Result<String, WireError> {
    let mut f = Fields::new(body);
    let q = f.cstr()?;
    if !f.done() {
        return Err(WireError::Malformed("bytes after the query"));
    }
    Ok(q)
}

/// Severity of a message the proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
    /// Information.
    Notice,
}

/// An `ErrorResponse` or `NoticeResponse` the proxy writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// Its severity.
    pub severity: Severity,
    /// SQLSTATE.
    pub code: &'static str,
    /// Primary message.
    pub message: String,
    /// Detail, if any.
    pub detail: Option<String>,
    /// Hint, if any.
    pub hint: Option<String>,
}

impl Diag {
    /// An error (the session goes on).
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A fatal error (the session ends).
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Fatal,
            ..Diag::error(code, message)
        }
    }

    /// A notice.
    pub fn notice(message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Notice,
            ..Diag::error("00000", message)
        }
    }

    /// With a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// With a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The message on the wire (`E` or `N`).
    pub fn to_msg(&self) -> Msg {
        let (tag, sev) = match self.severity {
            Severity::Error => (b'E', "ERROR"),
            Severity::Fatal => (b'E', "FATAL"),
            Severity::Notice => (b'N', "NOTICE"),
        };
        let mut b = BytesMut::new();
        let mut field = |t: u8, v: &str| {
            b.put_u8(t);
            // A NUL would end the field early: never in our texts, removed to be sure.
            b.put_slice(v.replace('\0', "").as_bytes());
            b.put_u8(0);
        };
        field(b'S', sev);
        field(b'V', sev);
        field(b'C', self.code);
        field(b'M', &self.message);
        if let Some(d) = &self.detail {
            field(b'D', d);
        }
        if let Some(h) = &self.hint {
            field(b'H', h);
        }
        b.put_u8(0);
        Msg {
            tag,
            body: b.freeze(),
        }
    }
}

/// The fields of an `ErrorResponse`/`NoticeResponse` body (type byte, value).
pub fn error_fields(body: &Bytes) -> Vec<(u8, String)> {
    let mut f = Fields::new(body);
    let mut out = Vec::new();
    while let Ok(t) = f.bytes(1) {
        let t = t.first().copied().unwrap_or(0);
        if t == 0 {
            break;
        }
        match f.cstr() {
            Ok(v) => out.push((t, v)),
            Err(_) => break,
        }
    }
    out
}

/// A message with body `body`.
pub fn msg(tag: u8, body: impl Into<Bytes>) -> Msg {
    Msg {
        tag,
        body: body.into(),
    }
}

/// `AuthenticationRequest` of `code` (0 ok, 3 cleartext password).
pub fn auth(code: i32) -> Msg {
    msg(b'R', code.to_be_bytes().to_vec())
}

/// `ParameterStatus`.
pub fn parameter_status(name: &str, value: &str) -> Msg {
    let mut b = BytesMut::new();
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    b.put_slice(value.as_bytes());
    b.put_u8(0);
    msg(b'S', b.freeze())
}

/// `BackendKeyData`.
pub fn backend_key(pid: i32, secret: i32) -> Msg {
    let mut b = BytesMut::new();
    b.put_i32(pid);
    b.put_i32(secret);
    msg(b'K', b.freeze())
}

/// `ReadyForQuery` with transaction status `status` (`I`, `T` or `E`).
pub fn ready(status: u8) -> Msg {
    msg(b'Z', vec![status])
}

/// `NegotiateProtocolVersion`: the newest minor version supported and the options not.
pub fn negotiate(minor: i32, unsupported: &[String]) -> Msg {
    let mut b = BytesMut::new();
    b.put_i32(minor);
    b.put_i32(i32::try_from(unsupported.len()).unwrap_or(0));
    for o in unsupported {
        b.put_slice(o.as_bytes());
        b.put_u8(0);
    }
    msg(b'v', b.freeze())
}

/// The text of a `CommandComplete` body.
pub fn command_tag(body: &Bytes) -> String {
    Fields::new(body).cstr().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn messages_are_framed_and_limited() {
        let m = msg(b'Q', b"SELECT 1\0".to_vec());
        let wire = m.frame();
        let mut r = &wire[..];
        assert_eq!(read_msg(&mut r, 100).await.unwrap(), m);
        let mut r = &wire[..];
        assert!(matches!(
            read_msg(&mut r, 4).await,
            Err(WireError::TooLarge(9, 4))
        ));
        let bad = [b'Q', 0, 0, 0, 2];
        assert!(matches!(
            read_msg(&mut &bad[..], 100).await,
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            read_msg(&mut &[][..], 100).await,
            Err(WireError::Closed)
        ));
    }

    #[test]
    fn bind_reads_nulls_formats_and_rejects_garbage() {
        let mut b = BytesMut::new();
        b.put_slice(b"p\0s\0");
        b.put_i16(1);
        b.put_i16(1);
        b.put_i16(2);
        b.put_i32(4);
        b.put_i32(7);
        b.put_i32(-1);
        b.put_i16(0);
        let bind = Bind::read(&b.clone().freeze()).unwrap();
        assert_eq!(bind.portal, "p");
        assert_eq!(bind.format(1), 1);
        assert_eq!(bind.values[1], None);
        b.put_u8(9);
        assert!(Bind::read(&b.freeze()).is_err());
        assert!(Bind::read(&Bytes::from_static(b"p\0s\0\xff\xff")).is_err());
    }

    #[test]
    fn an_error_report_carries_its_fields() {
        let m = Diag::error("42501", "no").hint("ask").to_msg();
        let fields = error_fields(&m.body);
        assert!(fields.contains(&(b'C', "42501".into())));
        assert!(fields.contains(&(b'H', "ask".into())));
    }
}
