//! A minimal PostgreSQL wire-protocol client for tests that must see the messages themselves:
//! the transaction status byte of ReadyForQuery, PortalSuspended, ParameterStatus, command tags.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: its type byte and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// A CommandComplete's tag, an ErrorResponse's SQLSTATE, a ParameterStatus's "name=value".
    pub fn text(&self) -> String {
        match self.tag {
            b'C' => cstr(&self.body, 0).0,
            b'E' | b'N' => fields(&self.body).into_iter().find(|(k, _)| *k == b'C').map(|(_, v)| v).unwrap_or_default(),
            b'S' => {
                let (k, at) = cstr(&self.body, 0);
                format!("{k}={}", cstr(&self.body, at).0)
            }
            b'Z' => (self.body[0] as char).to_string(),
            _ => String::new(),
        }
    }

    /// The fields of an ErrorResponse, by code letter.
    pub fn error_field(&self, code: u8) -> Option<String> {
        fields(&self.body).into_iter().find(|(k, _)| *k == code).map(|(_, v)| v)
    }

    /// A DataRow's values as text (NULL as None).
    pub fn row(&self) -> Vec<Option<String>> {
        let n = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let mut at = 2;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let len = i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(String::from_utf8_lossy(&self.body[at..at + len as usize]).into_owned()));
                at += len as usize;
            }
        }
        out
    }
}

fn cstr(b: &[u8], at: usize) -> (String, usize) {
    let end = b[at..].iter().position(|c| *c == 0).map(|p| at + p).unwrap_or(b.len());
    (String::from_utf8_lossy(&b[at..end]).into_owned(), end + 1)
}

fn fields(b: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() && b[at] != 0 {
        let code = b[at];
        let (v, next) = cstr(b, at + 1);
        out.push((code, v));
        at = next;
    }
    out
}

pub struct Raw {
    stream: TcpStream,
    /// Messages received during startup (ParameterStatus, BackendKeyData, …).
    pub startup: Vec<Msg>,
}

impl Raw {
    pub async fn connect(port: u16, params: &[(&str, &str)]) -> Raw {
        let mut raw = Raw::start_with(port, &[("user", "lakecube"), ("database", "lakecube")], params).await;
        raw.startup = raw.until_ready().await;
        raw
    }

    /// A connection that has sent its startup packet for `user` and read nothing yet (for
    /// tests of the authentication exchange).
    pub async fn start(port: u16, user: &str) -> Raw {
        Raw::start_with(port, &[("user", user), ("database", "lakecube")], &[]).await
    }

    async fn start_with(port: u16, base: &[(&str, &str)], params: &[(&str, &str)]) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in base.iter().chain(params) {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut raw = Raw { stream, startup: Vec::new() };
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend(body);
        raw.stream.write_all(&msg).await.unwrap();
        raw
    }

    /// A connection that has sent nothing yet.
    pub async fn socket(port: u16) -> TcpStream {
        TcpStream::connect(("127.0.0.1", port)).await.unwrap()
    }

    /// Bytes as they are, for malformed messages.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` once the server has closed the connection.
    pub async fn next(&mut self) -> Option<Msg> {
        let tag = self.stream.read_u8().await.ok()?;
        let len = self.stream.read_i32().await.ok()? as usize;
        let mut body = vec![0; len.checked_sub(4)?];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Msg { tag, body })
    }

    pub async fn send(&mut self, tag: u8, body: &[u8]) {
        let mut msg = vec![tag];
        msg.extend(((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(body);
        self.stream.write_all(&msg).await.unwrap();
    }

    pub async fn read(&mut self) -> Msg {
        let tag = self.stream.read_u8().await.unwrap();
        let len = self.stream.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        self.stream.read_exact(&mut body).await.unwrap();
        Msg { tag, body }
    }

    /// Reads up to and including ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.read().await;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// One simple-query message; every message back up to ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Vec<Msg> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body).await;
        self.until_ready().await
    }

    pub async fn parse(&mut self, name: &str, sql: &str) {
        let mut body = Vec::new();
        for s in [name, sql] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        body.extend(0i16.to_be_bytes());
        self.send(b'P', &body).await;
    }

    pub async fn bind(&mut self, portal: &str, statement: &str) {
        let mut body = Vec::new();
        for s in [portal, statement] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        body.extend(0i16.to_be_bytes()); // parameter formats
        body.extend(0i16.to_be_bytes()); // parameters
        body.extend(0i16.to_be_bytes()); // result formats: all text
        self.send(b'B', &body).await;
    }

    pub async fn execute(&mut self, portal: &str, max_rows: i32) {
        let mut body = portal.as_bytes().to_vec();
        body.push(0);
        body.extend(max_rows.to_be_bytes());
        self.send(b'E', &body).await;
    }

    pub async fn flush(&mut self) {
        self.send(b'H', &[]).await;
    }

    pub async fn sync(&mut self) -> Vec<Msg> {
        self.send(b'S', &[]).await;
        self.until_ready().await
    }
}

/// The message type bytes of a response, as a string ("CTDDCZ").
pub fn kinds(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// The transaction status of the last ReadyForQuery: 'I', 'T' or 'E'.
pub fn status(msgs: &[Msg]) -> char {
    msgs.iter().rev().find(|m| m.tag == b'Z').map(|m| m.body[0] as char).expect("ReadyForQuery")
}

/// The texts of messages of one type (command tags, SQLSTATEs, …).
pub fn texts(msgs: &[Msg], tag: u8) -> Vec<String> {
    msgs.iter().filter(|m| m.tag == tag).map(Msg::text).collect()
}

/// The DataRows of a response.
pub fn data_rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter().filter(|m| m.tag == b'D').map(Msg::row).collect()
}
