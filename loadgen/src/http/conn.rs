//! One keep-alive HTTP/1.1 client connection on a tokio TCP stream.
//!
//! Owns: writing a prepared request and reading exactly one response into a
//! reusable buffer. It never pipelines and never retries: a failed exchange
//! poisons the connection and the caller drops it, so a half-read response
//! can never be mistaken for the next one.

use super::parse::{self, Chunked, Framing, ParseError};
use std::io;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why an exchange failed. `kind()` gives the stable label used in counts.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("server closed the connection before a full response")]
    Closed,
    #[error("bad response: {0}")]
    Parse(#[from] ParseError),
    #[error("no response within the request timeout")]
    Timeout,
}

impl HttpError {
    /// Short label for outcome tables ("connect", "io", "closed", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Connect(_) => "connect",
            HttpError::Io(_) => "io",
            HttpError::Closed => "closed",
            HttpError::Parse(_) => "bad-response",
            HttpError::Timeout => "timeout",
        }
    }
}

/// A response whose body borrows the connection's buffers.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

const INITIAL_BUF: usize = 16 * 1024;

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of `buf` that belong to the previous response.
    consumed: usize,
    chunked_body: Vec<u8>,
    open: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, HttpError> {
        let stream = TcpStream::connect(addr).await.map_err(HttpError::Connect)?;
        // Requests are small single writes; Nagle would only add latency.
        stream.set_nodelay(true).map_err(HttpError::Connect)?;
        Ok(Conn {
            stream,
            buf: vec![0; INITIAL_BUF],
            filled: 0,
            consumed: 0,
            chunked_body: Vec::new(),
            open: true,
        })
    }

    /// False once the server asked to close or an exchange failed.
    pub fn is_open(&self) -> bool {
        self.open
    }

    async fn fill(&mut self) -> Result<usize, HttpError> {
        if self.filled == self.buf.len() {
            let grow = self.buf.len();
            self.buf.resize(self.buf.len() + grow, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        self.filled += n;
        Ok(n)
    }

    /// Sends `request` (complete bytes) and reads one response.
    /// `head_request` must be true for HEAD, whose response has no body.
    pub async fn send(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<Response<'_>, HttpError> {
        if !self.open {
            return Err(HttpError::Closed);
        }
        // Poison first: any early return below leaves the connection unusable.
        self.open = false;
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        self.stream.write_all(request).await?;
        let head = loop {
            match parse::parse_head(&self.buf[..self.filled], head_request)? {
                // Interim responses (100 Continue) carry no body; skip them.
                Some(h) if h.status < 200 => {
                    self.buf.copy_within(h.len..self.filled, 0);
                    self.filled -= h.len;
                }
                Some(h) => break h,
                None => {
                    if self.fill().await? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
            }
        };
        let (start, end, chunked) = match head.framing {
            Framing::Length(n) => {
                let need = head.len + n;
                if self.buf.len() < need {
                    self.buf.resize(need, 0);
                }
                while self.filled < need {
                    if self.fill().await? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
                (head.len, need, false)
            }
            Framing::Chunked => loop {
                self.chunked_body.clear();
                match parse::decode_chunked(
                    &self.buf[head.len..self.filled],
                    &mut self.chunked_body,
                )? {
                    Chunked::Done(n) => break (head.len, head.len + n, true),
                    Chunked::Incomplete => {
                        if self.fill().await? == 0 {
                            return Err(HttpError::Closed);
                        }
                    }
                }
            },
            Framing::UntilClose => {
                while self.fill().await? > 0 {}
                (head.len, self.filled, false)
            }
        };
        self.consumed = end;
        self.open = !head.close;
        let body = if chunked {
            &self.chunked_body[..]
        } else {
            &self.buf[start..end]
        };
        Ok(Response {
            status: head.status,
            body,
        })
    }
}
