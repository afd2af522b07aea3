//! A deadline on every request of a connection, not only its first.
//!
//! actix-http times the head of a connection's *first* request
//! (`server.client_request_timeout_ms`: 408), and the keep-alive timer
//! closes a connection left idle after an answer. Neither covers a kept-alive
//! connection whose *next* head arrives a byte at a time: actix clears the
//! keep-alive timer at the first byte and never starts a head timer again, so
//! such a client held the connection for as long as it liked, and held back
//! a graceful stop until `shutdown_timeout_secs` (an outside audit kept 200
//! connections so for 90 s).
//!
//! [`AnswerDeadline`] wraps the connection's stream under actix. From the
//! first byte read after the last answer began (or after the connection
//! opened) until the next answer begins, at most `limit` may pass; past it
//! the stream reads as ended, and actix closes the connection. The server
//! sets `limit` to the sum of its own limits on one request (head, body,
//! store) plus a margin, so a request that those limits let through is
//! never cut short: this is the backstop for what they do not cover.
//! Counting bytes and writes, not parsing HTTP, it cannot mistake where a
//! request starts (pipelined requests included). Its timer is moved out of
//! the way once the answer begins: a wake-up of the connection's task
//! after that would restart actix's keep-alive period (actix sets it anew
//! at every poll of an idle connection), keeping idle connections open
//! longer (an outside audit saw 8.6 s for 5 s with short limits).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

/// A stream whose read side ends once a request has waited `limit` for its
/// answer to begin (see the [module documentation](self)).
#[derive(Debug)]
pub struct AnswerDeadline<S> {
    inner: S,
    limit: Duration,
    /// When the request now arriving sent its first byte; `None` from the
    /// moment an answer begins until the next byte arrives.
    since: Option<Instant>,
    /// The wake-up at the deadline: made at the first wait, then reused.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` is set for the request now arriving (and will wake
    /// the task at its deadline).
    timer_set: bool,
    expired: bool,
}

impl<S> AnswerDeadline<S> {
    /// Wraps `inner`: a request gets `limit` from its first byte to the
    /// beginning of its answer.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            since: None,
            timer: None,
            timer_set: false,
            expired: false,
        }
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether `due` has passed, arranging to be woken at `due` if not.
    fn passed(&mut self, cx: &mut Context<'_>, due: Instant) -> bool {
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        self.timer_set = true;
        timer.as_mut().poll(cx).is_ready()
    }

    /// Bytes written are an answer begun: see [`Self::answered`].
    fn after_write(&mut self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.answered();
        }
    }

    /// An answer has begun: the request is no longer timed, and the timer
    /// must not wake the task (see the module documentation).
    fn answered(&mut self) {
        self.since = None;
        if self.timer_set {
            self.timer_set = false;
            if let Some(timer) = self.timer.as_mut() {
                // Far enough never to fire; moved back at the next wait.
                let never = Instant::now() + Duration::from_secs(86_400 * 365);
                timer.as_mut().reset(never);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnswerDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.since.is_none() {
                    this.since = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.since.map(|since| since + this.limit) {
                Some(due) if this.passed(cx, due) => {
                    this.expired = true;
                    tracing::debug!(
                        limit_ms = this.limit.as_millis(),
                        "closing a connection whose request was not complete within the limit"
                    );
                    // The end of the stream: actix closes the connection.
                    Poll::Ready(Ok(()))
                }
                _ => Poll::Pending,
            },
            failed @ Poll::Ready(Err(_)) => failed,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnswerDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, duplex};

    const LIMIT: Duration = Duration::from_millis(300);

    /// Reads what is there, or `None` for the end of the stream.
    async fn read_some<S: AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.expect("read");
        (n > 0).then(|| buf[..n].to_vec())
    }

    #[tokio::test]
    async fn an_idle_connection_is_left_to_keep_alive() {
        let (client, server) = duplex(1024);
        let mut server = AnswerDeadline::new(server, LIMIT);
        // No byte yet: nothing to time, however long.
        let waited = tokio::time::timeout(LIMIT * 3, read_some(&mut server)).await;
        assert!(waited.is_err(), "no deadline before a request begins");
        drop(client);
    }

    #[tokio::test]
    async fn a_request_answered_in_time_is_not_cut_and_each_gets_its_own_limit() {
        let (mut client, server) = duplex(1024);
        let mut server = AnswerDeadline::new(server, LIMIT);
        for round in 0..4 {
            client.write_all(b"GET / HT").await.unwrap();
            assert!(read_some(&mut server).await.is_some());
            // Well within the limit, then the rest and the answer; four
            // rounds add up past the limit, which is per request.
            tokio::time::sleep(LIMIT / 3).await;
            client.write_all(b"TP/1.1\r\n\r\n").await.unwrap();
            assert!(read_some(&mut server).await.is_some(), "round {round}");
            server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            let mut answer = [0u8; 19];
            client.read_exact(&mut answer).await.unwrap();
            tokio::time::sleep(LIMIT / 3).await;
        }
    }

    #[tokio::test]
    async fn a_trickled_request_after_an_answer_reads_as_ended() {
        let (mut client, server) = duplex(1024);
        let mut server = AnswerDeadline::new(server, LIMIT);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_some(&mut server).await.is_some());
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // The next head, a byte at a time, never complete.
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
                if client.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(LIMIT / 10).await;
            }
            client
        });
        let mut got = 0;
        while read_some(&mut server).await.is_some() {
            got += 1;
        }
        let took = started.elapsed();
        assert!(got > 0, "the first bytes were read");
        assert!(took >= LIMIT, "not before the limit: {took:?}");
        assert!(took < LIMIT * 5, "soon after it: {took:?}");
        // Once ended, it stays ended.
        assert!(read_some(&mut server).await.is_none());
        drop(trickle.await.unwrap());
    }
}
