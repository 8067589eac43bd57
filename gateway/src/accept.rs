//! Hands a downstream connection to the proxy only once its client has
//! sent something: a user-space `TCP_DEFER_ACCEPT`.
//!
//! Why: at the end of a binary upgrade's hand-over window pingora stops
//! the old process's listeners and, in the same instant, wakes every
//! session still waiting for a request header, which it then drops
//! (pingora-proxy `handle_new_request`: "service shutting down, dropping
//! the connection"). A connection the old process accepted a moment
//! before — its client has not written the request yet — would be closed
//! under that client, and its request fail.
//!
//! [`DeferUntilRequest`] waits for the first byte itself, before pingora's
//! proxy sees the connection. Once bytes are there, pingora reads the
//! request before it looks at the shutdown (its `select!` is biased), so
//! the request is served (with `Connection: close`, see
//! `Shared::leaving`). A connection that stays silent is closed at the
//! latest [`LINGER`] after shutdown began, or after [`IDLE`] in normal
//! service, as pingora itself would.
//!
//! Streams that cannot be peeked at (TLS: the handshake has already read
//! from the socket) go to the proxy at once, as before.

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

/// How long a silent connection may stay once the process is stopping: a
/// client that has just connected writes its request within
/// microseconds; one silent this long after shutdown began is idle.
pub const LINGER: Duration = Duration::from_secs(1);

/// How long a connection may stay silent in normal service (pingora's own
/// limit for reading a request header).
pub const IDLE: Duration = Duration::from_secs(60);

/// A [`ServerApp`] that waits for the client's first byte before giving
/// the connection to `A` (the pingora proxy).
pub struct DeferUntilRequest<A> {
    inner: Arc<A>,
}

impl<A> DeferUntilRequest<A> {
    pub fn new(inner: A) -> Self {
        DeferUntilRequest {
            inner: Arc::new(inner),
        }
    }
}

/// True once the client has sent a byte (or the stream cannot be peeked
/// at); false if it closed, stayed silent for `idle`, or stayed silent
/// until `linger` after the shutdown began.
pub async fn request_arrived(
    stream: &mut Stream,
    shutdown: &ShutdownWatch,
    idle: Duration,
    linger: Duration,
) -> bool {
    let mut first = [0u8; 1];
    let mut shutdown = shutdown.clone();
    let stopping = async move {
        // An error means the server is gone: stop as well.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(linger).await;
    };
    tokio::select! {
        biased;
        // `try_peek` puts the byte back for pingora to read.
        peeked = tokio::time::timeout(idle, stream.try_peek(&mut first)) => {
            matches!(peeked, Ok(Ok(_)))
        }
        () = stopping => false,
    }
}

#[async_trait]
impl<A> ServerApp for DeferUntilRequest<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if !request_arrived(&mut stream, shutdown, IDLE, LINGER).await {
            return None;
        }
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let server: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (server, client)
    }

    #[tokio::test]
    async fn a_request_sent_after_shutdown_began_is_still_taken() {
        let (mut server, mut client) = pair().await;
        let (stop, watch) = tokio::sync::watch::channel(false);
        stop.send(true).unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            client
        });
        assert!(
            request_arrived(
                &mut server,
                &watch,
                Duration::from_secs(5),
                Duration::from_secs(2)
            )
            .await
        );
        let _client = writer.await.unwrap();
        // The byte was put back: the proxy reads the whole request.
        let mut all = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut server, &mut all)
            .await
            .unwrap();
        assert_eq!(&all, b"GET");
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_linger_after_shutdown() {
        let (mut server, _client) = pair().await;
        let (stop, watch) = tokio::sync::watch::channel(false);
        let started = std::time::Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.send(true).unwrap();
            stop
        });
        let arrived = request_arrived(
            &mut server,
            &watch,
            Duration::from_secs(30),
            Duration::from_millis(200),
        )
        .await;
        assert!(!arrived);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        drop(stopper.await);
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_idle_and_a_closed_one_at_once() {
        let (mut server, _client) = pair().await;
        let (_stop, watch) = tokio::sync::watch::channel(false);
        assert!(
            !request_arrived(
                &mut server,
                &watch,
                Duration::from_millis(100),
                Duration::from_secs(30)
            )
            .await
        );
        let (mut server, client) = pair().await;
        drop(client);
        assert!(
            !request_arrived(
                &mut server,
                &watch,
                Duration::from_secs(30),
                Duration::from_secs(30)
            )
            .await
        );
    }
}
