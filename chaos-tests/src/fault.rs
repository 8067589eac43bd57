//! A fault-injecting TCP proxy on loopback: what a bad link does to a
//! node, without touching anything but our own sockets.
//!
//! The appliance under test reaches each node (its app and its agent)
//! through one of these. [`Fault::Delay`] adds latency to every chunk in
//! both directions; [`Fault::Blackhole`] stops forwarding without closing
//! anything, so a peer sees no answer and no reset (held bytes arrive once
//! the fault is lifted, as TCP's retransmissions would deliver them). A
//! user-space proxy cannot drop a SYN: during a blackhole, new connections
//! are accepted by the proxy (the kernel completes the handshake) and then
//! hang, which is what a peer sees of a node whose kernel answers and
//! whose network then loses everything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Hold every chunk this long before forwarding it.
    Delay(Duration),
    /// Forward nothing, close nothing.
    Blackhole,
}

/// One listening address forwarding to one target, with a switchable fault.
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a fresh loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, _) = watch::channel(Fault::Pass);
        let fault = Arc::new(tx);
        let task = tokio::spawn(accept_loop(listener, target, fault.clone()));
        Ok(FaultProxy { addr, fault, task })
    }

    /// Changes the fault for every connection, open or new.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, fault: Arc<watch::Sender<Fault>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let rx = fault.subscribe();
        tokio::spawn(async move {
            let mut rx2 = rx.clone();
            // A new connection waits out a blackhole before it is forwarded.
            if !pass_blackhole(&mut rx2).await {
                return;
            }
            let Ok(upstream) = TcpStream::connect(target).await else {
                // The target refuses: the client's connection is closed
                // before any answer.
                drop(client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            let up = tokio::spawn(pump(cr, uw, rx.clone()));
            let down = tokio::spawn(pump(ur, cw, rx));
            let _ = tokio::join!(up, down);
        });
    }
}

/// Waits while the link is a blackhole; false if the proxy is gone.
async fn pass_blackhole(rx: &mut watch::Receiver<Fault>) -> bool {
    loop {
        if *rx.borrow_and_update() != Fault::Blackhole {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Copies one direction, applying the fault to every chunk.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut rx: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !pass_blackhole(&mut rx).await {
            return;
        }
        let fault = *rx.borrow();
        if let Fault::Delay(d) = fault {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server: what it reads, it writes back.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(c: &mut TcpStream) -> std::io::Result<Duration> {
        let t = Instant::now();
        c.write_all(b"ping").await?;
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await?;
        assert_eq!(&got, b"ping");
        Ok(t.elapsed())
    }

    #[tokio::test]
    async fn pass_delay_and_blackhole() {
        let p = FaultProxy::start(echo().await).await.unwrap();
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        assert!(round_trip(&mut c).await.unwrap() < Duration::from_millis(100));

        p.set(Fault::Delay(Duration::from_millis(100)));
        let rtt = round_trip(&mut c).await.unwrap();
        assert!(rtt >= Duration::from_millis(200), "{rtt:?}");

        // A blackhole: no answer, and no reset or close either.
        p.set(Fault::Blackhole);
        let held = tokio::time::timeout(Duration::from_millis(300), round_trip(&mut c)).await;
        assert!(held.is_err(), "nothing crosses a blackhole");
        let mut fresh = TcpStream::connect(p.addr).await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), round_trip(&mut fresh)).await;
        assert!(held.is_err(), "a new connection hangs too");

        // Lifted: held bytes arrive, the connection works again.
        p.set(Fault::Pass);
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        assert!(round_trip(&mut c).await.is_ok());
    }

    #[tokio::test]
    async fn a_refusing_target_closes_the_client() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = target.local_addr().unwrap();
        drop(target);
        let p = FaultProxy::start(addr).await.unwrap();
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("the proxy closes at once");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
}
