//! A TCP proxy in front of a real server (PostgreSQL, say) whose link a test
//! can cut and restore: the server keeps running for everyone else, while the
//! process under test sees it become unreachable and come back.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards connections from a loopback port to `target`.
#[derive(Debug)]
pub struct TcpProxy {
    address: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Connections are closed at once: a server that is down.
    Cut,
    /// Connections stay open and nothing passes: a network that drops packets.
    Blackhole,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<TcpProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Forward);
        let mode = Arc::new(mode);
        let accept = tokio::spawn(accept_loop(listener, target, mode.clone()));
        Ok(TcpProxy {
            address,
            mode,
            accept,
        })
    }

    /// Where clients connect instead of the target.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops every open connection and refuses new ones (closed at once, as
    /// a server that is down would) until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Stops passing bytes without closing anything: open connections and new
    /// ones hang, as behind a network that drops packets, until
    /// [`restore`](Self::restore) (which closes them).
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: Arc<watch::Sender<Mode>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mut changes = mode.subscribe();
        tokio::spawn(async move {
            let current = *changes.borrow_and_update();
            match current {
                Mode::Cut => return,
                // Held open, silent, until the mode changes.
                Mode::Blackhole => {
                    let _ = changes.changed().await;
                    drop(client);
                    return;
                }
                Mode::Forward => {}
            }
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (mut client, mut server) = (client, server);
            let stalled = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                changed = changes.wait_for(|mode| *mode != Mode::Forward) => {
                    changed.is_ok_and(|mode| *mode == Mode::Blackhole)
                }
            };
            if stalled {
                // Keep both ends open without passing a byte.
                let _ = changes.wait_for(|mode| *mode != Mode::Blackhole).await;
            }
        });
    }
}
