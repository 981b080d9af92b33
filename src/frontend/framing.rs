//! The frontend's bytes, checked frame by frame before pgwire decodes them.
//!
//! pgwire 0.42.1 buffers a frame of up to 1 GiB whatever the connection's state, and its
//! decoders read counts and lengths (Parse's parameter types, Bind's values, SASL's initial
//! response) without checking them against the frame: a truncated message panics or makes the
//! decoder read into the next frame. [`Guarded`] sits between the socket and pgwire's codec
//! and hands pgwire only whole frames that [`check_frame`] found well-formed, each under the
//! size limit of the connection's phase: a few KiB before authentication, `max_message_size`
//! after. Anything else ends the connection with an 08P01 error (see [`FrameError`]), as
//! PostgreSQL does for a malformed message. (Reported upstream as pgwire's decoders trusting
//! declared counts; until fixed there, this is the guard.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::STARTUP_MESSAGE_LIMIT;


/// Why a frame was refused: the error message sent to the client (SQLSTATE 08P01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

/// The limits a connection's frames are held to; the connection marks when it authenticated,
/// and when the server's replies wait for the end of the client's sequence of messages.
#[derive(Debug)]
pub struct FrameLimits {
    /// Whether the client has authenticated (then `limit` applies, else the startup limit).
    pub authenticated: AtomicBool,
    /// The largest message after authentication.
    pub limit: usize,
    /// While set, a flush keeps the bytes written (up to [`HOLD_LIMIT`]): the connection sets
    /// it while it handles a Query, Parse, Bind, Describe, Execute or Close, so that their
    /// replies go out together at the next Sync, Flush or end of a Query, in one write, as
    /// PostgreSQL sends them. (pgwire flushes after each reply: pgjdbc's `SELECT 1` took four
    /// writes, each waking the client, where PostgreSQL takes one.)
    pub corked: AtomicBool,
}

/// The most a corked connection holds before writing anyway (a large result streams in
/// writes of this size, with the memory of one).
pub const HOLD_LIMIT: usize = 64 * 1024;

impl FrameLimits {
    pub fn new(limit: usize) -> Arc<FrameLimits> {
        Arc::new(FrameLimits { authenticated: AtomicBool::new(false), limit, corked: AtomicBool::new(false) })
    }

    fn current(&self) -> usize {
        if self.authenticated.load(Ordering::Relaxed) {
            self.limit
        } else {
            STARTUP_MESSAGE_LIMIT
        }
    }
}

/// A stream that lets through only whole, well-formed frontend frames; its writes are held
/// until a flush while the connection is corked ([`FrameLimits::corked`]).
pub struct Guarded<S> {
    inner: S,
    limits: Arc<FrameLimits>,
    /// Bytes read from `inner` not yet checked.
    pending: BytesMut,
    /// Checked bytes not yet read by pgwire.
    ready: BytesMut,
    /// Before the startup packet, frames have no type byte.
    typed: bool,
    /// 'p' frames seen: with SCRAM, the first is a SASLInitialResponse.
    password_frames: usize,
    /// Whether 'p' frames are SASL messages (SCRAM authentication).
    sasl: bool,
    failed: Option<FrameError>,
    eof: bool,
    /// Bytes written and not yet passed to `inner`.
    held: BytesMut,
}

impl<S> Guarded<S> {
    /// Guards `inner`; `buffered` are bytes already read from it (by TLS negotiation).
    /// `typed` is false while the startup packet is still to come.
    pub fn new(inner: S, buffered: BytesMut, typed: bool, sasl: bool, limits: Arc<FrameLimits>) -> Guarded<S> {
        Guarded {
            inner,
            limits,
            pending: buffered,
            ready: BytesMut::new(),
            typed,
            password_frames: 0,
            sasl,
            failed: None,
            eof: false,
            held: BytesMut::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The first refused frame's error, if one was refused.
    pub fn failure(&self) -> Option<&FrameError> {
        self.failed.as_ref()
    }

    /// Moves every complete frame of `pending` into `ready`, checked. `Ok(false)` when the
    /// next frame is not complete yet.
    fn take_frames(&mut self) -> Result<bool, FrameError> {
        let mut moved = false;
        loop {
            let offset = usize::from(self.typed);
            if self.pending.len() < offset + 4 {
                return Ok(moved);
            }
            let kind = self.typed.then(|| self.pending[0]);
            let len = u32::from_be_bytes(self.pending[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            if len < 4 {
                return Err(FrameError(format!("invalid message length {len}")));
            }
            let limit = self.limits.current();
            if len > limit {
                let phase = if self.limits.authenticated.load(Ordering::Relaxed) { "" } else { " before authentication" };
                return Err(FrameError(format!("message too long: {len} bytes{phase}, the limit is {limit}")));
            }
            if self.pending.len() < offset + len {
                // Room for the rest of the frame, once (it is under the limit).
                self.pending.reserve(offset + len - self.pending.len());
                return Ok(moved);
            }
            let body = &self.pending[offset + 4..offset + len];
            let first_password = kind == Some(b'p') && self.password_frames == 0;
            check_frame(kind, body, self.sasl && first_password)?;
            match kind {
                Some(b'p') => self.password_frames += 1,
                None => {
                    // A startup packet (protocol 3.x) ends the untyped phase; SSL, GSS and
                    // cancel requests do not.
                    let code = u32::from_be_bytes(body[..4].try_into().expect("checked"));
                    if code >> 16 == 3 {
                        self.typed = true;
                    }
                }
                _ => {}
            }
            let frame = self.pending.split_to(offset + len);
            self.ready.extend_from_slice(&frame);
            moved = true;
        }
    }
}

/// Checks one frame's body against the layout of its message type (`kind` None: a packet of
/// the startup phase). `sasl_initial`: a 'p' frame is a SASLInitialResponse.
pub fn check_frame(kind: Option<u8>, body: &[u8], sasl_initial: bool) -> Result<(), FrameError> {
    let mut r = Reader { buf: body, what: kind.map_or("startup packet".to_string(), |k| format!("\"{}\" message", k as char)) };
    match kind {
        None => {
            let code = r.u32()?;
            match code {
                // CancelRequest: pid and a secret key of 4 (protocol 3.0) to 256 bytes (3.2).
                80877102 => {
                    r.u32()?;
                    if r.buf.len() < 4 || r.buf.len() > 256 {
                        return Err(r.invalid());
                    }
                    r.buf = &[];
                }
                // SSLRequest, GSSENCRequest.
                80877103 | 80877104 => {}
                c if c >> 16 == 3 => {
                    // name=value pairs, then a terminating NUL.
                    loop {
                        let name = r.cstr()?;
                        if name.is_empty() {
                            break;
                        }
                        r.cstr()?;
                    }
                }
                c => return Err(FrameError(format!("unsupported frontend protocol {}.{}", c >> 16, c & 0xffff))),
            }
        }
        Some(b'Q') | Some(b'f') => {
            r.cstr()?;
        }
        Some(b'P') => {
            r.cstr()?;
            r.cstr()?;
            let n = r.u16()?;
            r.skip(n as usize * 4)?;
        }
        Some(b'B') => {
            let portal = String::from_utf8_lossy(r.cstr()?).into_owned();
            r.cstr()?;
            let formats = r.u16()? as usize;
            r.skip(formats * 2)?;
            let params = r.u16()? as usize;
            for _ in 0..params {
                let len = r.i32()?;
                if len < -1 {
                    return Err(r.invalid());
                }
                r.skip(len.max(0) as usize)?;
            }
            let results = r.u16()? as usize;
            r.skip(results * 2)?;
            if formats > 1 && formats != params {
                return Err(FrameError(format!(
                    "bind message has {formats} parameter formats but {params} parameters{}",
                    if portal.is_empty() { String::new() } else { format!(" (portal \"{portal}\")") }
                )));
            }
        }
        Some(b'D') | Some(b'C') => {
            match r.u8()? {
                b'S' | b'P' => {}
                other => return Err(FrameError(format!("invalid {} target type \"{}\"", r.what, other as char))),
            }
            r.cstr()?;
        }
        Some(b'E') => {
            r.cstr()?;
            r.i32()?;
        }
        Some(b'S') | Some(b'H') | Some(b'X') | Some(b'c') => {}
        // CopyData: bytes. (lakecube takes no COPY FROM, but the frame is well-formed.)
        Some(b'd') => r.buf = &[],
        Some(b'p') if sasl_initial => {
            r.cstr()?;
            let len = r.i32()?;
            if len < -1 {
                return Err(r.invalid());
            }
            r.skip(len.max(0) as usize)?;
        }
        // A password or a SASLResponse: bytes.
        Some(b'p') => r.buf = &[],
        Some(k) => return Err(FrameError(format!("invalid frontend message type {}", k))),
    }
    if !r.buf.is_empty() {
        return Err(r.invalid());
    }
    Ok(())
}

/// Reads a message body field by field, failing at its end instead of past it.
struct Reader<'a> {
    buf: &'a [u8],
    what: String,
}

impl<'a> Reader<'a> {
    fn invalid(&self) -> FrameError {
        FrameError(format!("invalid {} format", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(self.invalid());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn skip(&mut self, n: usize) -> Result<(), FrameError> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(self.u32()? as i32)
    }

    fn cstr(&mut self) -> Result<&'a [u8], FrameError> {
        let end = self.buf.iter().position(|b| *b == 0).ok_or_else(|| self.invalid())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())));
            }
            if this.eof {
                // Whatever is left is a partial frame the client never finished.
                return Poll::Ready(Ok(()));
            }
            match this.take_frames() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    this.failed = Some(e);
                    continue;
                }
            }
            // Read more: at least a chunk, and room for the frame in hand.
            if this.pending.capacity() - this.pending.len() < 8192 {
                this.pending.reserve(8192);
            }
            let spare = this.pending.spare_capacity_mut();
            let mut rb = ReadBuf::uninit(spare);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.eof = true;
                    }
                    // SAFETY: `n` bytes of the spare capacity were initialised by the read.
                    unsafe { this.pending.set_len(this.pending.len() + n) };
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Writes every held byte to `inner`.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.held) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.held.advance(n),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held.len() >= HOLD_LIMIT {
            match this.poll_write_held(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.limits.corked.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        match this.poll_write_held(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_write_held(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MESSAGE_LIMIT;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn startup() -> Vec<u8> {
        let mut body = 196608u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0a\0\0");
        let mut f = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    }

    async fn read_all(bytes: Vec<u8>, limit: usize, authenticated: bool) -> (Vec<u8>, Option<String>) {
        let limits = FrameLimits::new(limit);
        limits.authenticated.store(authenticated, Ordering::Relaxed);
        let mut g = Guarded::new(&bytes[..], BytesMut::new(), false, false, limits);
        let mut out = Vec::new();
        let r = g.read_to_end(&mut out).await;
        (out, r.err().map(|e| e.to_string()))
    }

    #[tokio::test]
    async fn whole_frames_pass_unchanged() {
        let mut bytes = startup();
        bytes.extend(frame(b'Q', b"SELECT 1\0"));
        bytes.extend(frame(b'P', b"\0SELECT $1\0\0\x01\0\0\0\x17"));
        bytes.extend(frame(b'B', b"\0\0\0\x01\0\0\0\x01\0\0\0\x011\0\0"));
        bytes.extend(frame(b'E', b"\0\0\0\0\0"));
        bytes.extend(frame(b'S', b""));
        let (out, err) = read_all(bytes.clone(), 1 << 20, true).await;
        assert_eq!(err, None);
        assert_eq!(out, bytes);
    }

    #[tokio::test]
    async fn malformed_and_oversized_frames_are_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Parse announcing 100 parameter types and carrying none.
            (frame(b'P', b"\0\0\0\x64"), "invalid \"P\" message format"),
            // Bind whose value length runs past the frame.
            (frame(b'B', b"\0\0\0\0\0\x01\0\x0f\x42\x40x\0\0"), "invalid \"B\" message format"),
            // Two parameter formats for three parameters (pgwire indexes past them).
            (frame(b'B', b"\0\0\0\x02\0\0\0\0\0\x03\0\0\0\x011\0\0\0\x011\0\0\0\x011\0\0"), "2 parameter formats but 3 parameters"),
            // A Sync with trailing bytes would desynchronise the stream.
            (frame(b'S', b"junk"), "invalid \"S\" message format"),
            (frame(b'Q', b"SELECT 1"), "invalid \"Q\" message format"),
            (frame(b'Z', b""), "invalid frontend message type"),
            (frame(b'Q', &[b'x'; 2000]), "message too long"),
        ];
        for (bad, expected) in cases {
            let mut bytes = startup();
            bytes.extend(bad);
            let (_, err) = read_all(bytes, 1000, true).await;
            let err = err.unwrap_or_default();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[tokio::test]
    async fn before_authentication_frames_are_small() {
        let mut bytes = startup();
        let mut q = frame(b'Q', b"");
        // Announce a 1 GiB query: refused at its header, nothing buffered.
        q[1..5].copy_from_slice(&0x3ffffff0u32.to_be_bytes());
        bytes.extend(q);
        let (_, err) = read_all(bytes, DEFAULT_MESSAGE_LIMIT, false).await;
        assert!(err.unwrap_or_default().contains("before authentication, the limit is 10000"));
    }

    #[tokio::test]
    async fn corked_writes_wait_for_a_flush_after_the_cork() {
        use tokio::io::AsyncWriteExt;
        let limits = FrameLimits::new(DEFAULT_MESSAGE_LIMIT);
        let mut g = Guarded::new(Vec::<u8>::new(), BytesMut::new(), true, false, limits.clone());
        limits.corked.store(true, Ordering::Relaxed);
        g.write_all(b"1\0\0\0\x04").await.unwrap();
        g.flush().await.unwrap();
        assert!(g.get_ref().is_empty(), "a corked flush keeps the replies");
        limits.corked.store(false, Ordering::Relaxed);
        g.write_all(b"Z\0\0\0\x05I").await.unwrap();
        g.flush().await.unwrap();
        assert_eq!(g.get_ref().as_slice(), b"1\0\0\0\x04Z\0\0\0\x05I", "one write, in order");
        // A corked connection holds at most HOLD_LIMIT bytes: a large result still streams.
        limits.corked.store(true, Ordering::Relaxed);
        let big = vec![b'D'; HOLD_LIMIT];
        g.write_all(&big).await.unwrap();
        g.write_all(&big).await.unwrap();
        g.flush().await.unwrap();
        assert_eq!(g.get_ref().len(), 11 + HOLD_LIMIT, "the first HOLD_LIMIT bytes went out, the rest wait");
        g.shutdown().await.unwrap();
        assert_eq!(g.get_ref().len(), 11 + 2 * HOLD_LIMIT, "shutdown writes what is held");
    }
}
