//! The API's listener: TCP connections whose errors keep Aiven's shape even where hyper
//! answers by itself.
//!
//! hyper refuses some requests before any router sees them: a URI over 65534 bytes (414,
//! a limit of the `http` crate's `Uri`, not configurable), a request line or headers over
//! its read buffer (431), bytes that are not HTTP/1 (400). It answers those with an empty
//! body and closes the connection, and offers no hook to change the answer. So each
//! connection's writes are watched: such an automatic answer is always the last thing
//! hyper writes on a connection, ends its buffer, and is the only response of ours with
//! an error status, `content-length: 0` and no `content-type` (every error Keyhaven
//! makes carries a JSON body). That head is replaced by the same status with the body
//! in Aiven's shape. Everything else passes through untouched.

use keyhaven_api::ApiError;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// hyper's automatic answers are ~110 bytes; only the end of a write is searched.
const AUTOMATIC_HEAD_MAX: usize = 256;

/// A TCP listener for `axum::serve` whose connections answer in Aiven's error shape.
pub struct ApiListener(pub TcpListener);

impl axum::serve::Listener for ApiListener {
    type Io = ShapedErrors<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (ShapedErrors::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose automatic error answers from hyper get a body in Aiven's shape.
pub struct ShapedErrors<T> {
    inner: T,
    /// The replacement answer still to be written, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<T> ShapedErrors<T> {
    pub fn new(inner: T) -> Self {
        ShapedErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> ShapedErrors<T> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ShapedErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ShapedErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        match automatic_error(buf) {
            // Earlier bytes (a pipelined response) go out first, as they are.
            Some((start, _)) if start > 0 => {
                Pin::new(&mut this.inner).poll_write(cx, &buf[..start])
            }
            Some((_, replacement)) => {
                this.pending = replacement;
                this.written = 0;
                // hyper's head counts as written; the replacement goes out on flush.
                let _ = this.poll_pending(cx)?;
                Poll::Ready(Ok(buf.len()))
            }
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then flattens each response into one buffer, so an automatic
    // answer is always found at the end of one write.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// When `buf` ends with one of hyper's automatic error answers: where that head starts,
/// and its replacement (same status line and headers, a JSON body in Aiven's shape).
fn automatic_error(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let tail_from = buf.len().saturating_sub(AUTOMATIC_HEAD_MAX);
    let start = tail_from + buf[tail_from..].windows(7).rposition(|w| w == b"HTTP/1.")?;
    let head = std::str::from_utf8(&buf[start..buf.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let (code, message) = match status {
        400 => (
            "invalid_request",
            "The request is not valid HTTP/1.1".to_string(),
        ),
        414 => (
            "uri_too_long",
            "The request URI is longer than the limit of 65534 bytes".to_string(),
        ),
        431 => (
            "request_headers_too_large",
            "The request line and headers are larger than the server reads".to_string(),
        ),
        _ => return None,
    };
    let headers: Vec<&str> = lines.collect();
    let header_is = |line: &&str, name: &str| {
        line.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    let empty = headers.iter().any(|l| {
        header_is(l, "content-length") && l.split_once(':').is_some_and(|(_, v)| v.trim() == "0")
    });
    if !empty || headers.iter().any(|l| header_is(l, "content-type")) {
        return None;
    }
    let body = serde_json::to_vec(
        &ApiError {
            status,
            code: code.into(),
            message,
        }
        .body(),
    )
    .ok()?;
    let mut out = format!("{status_line}\r\n");
    for line in headers.iter().filter(|l| !header_is(l, "content-length")) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some((start, out))
}

#[cfg(test)]
mod tests {
    use super::automatic_error;
    use serde_json::Value;

    const HYPER_414: &[u8] = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 21:59:04 GMT\r\n\r\n";

    fn body_of(answer: &[u8]) -> Value {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(!head.contains("content-length: 0"), "{head}");
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hypers_automatic_answers_get_a_body_in_aivens_shape() {
        let (start, answer) = automatic_error(HYPER_414).unwrap();
        assert_eq!(start, 0);
        assert!(answer.starts_with(b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\n"));
        let body = body_of(&answer);
        assert_eq!(body["errors"][0]["status"], 414);
        assert_eq!(body["errors"][0]["error_code"], "uri_too_long");
        assert_eq!(body["errors"][0]["message"], body["message"]);
        for (head, code) in [
            (&b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n"[..], "request_headers_too_large"),
            (b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n", "invalid_request"),
        ] {
            let (_, answer) = automatic_error(head).unwrap();
            assert_eq!(body_of(&answer)["errors"][0]["error_code"], code);
        }
    }

    #[test]
    fn a_pipelined_response_before_it_is_left_alone() {
        let mut buf =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                .to_vec();
        let first = buf.len();
        buf.extend_from_slice(HYPER_414);
        assert_eq!(automatic_error(&buf).unwrap().0, first);
    }

    #[test]
    fn keyhavens_own_answers_pass_through() {
        for buf in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 5\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            b"{\"message\":\"x\"}",
        ] {
            assert!(automatic_error(buf).is_none(), "{}", String::from_utf8_lossy(buf));
        }
    }
}
