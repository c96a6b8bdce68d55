//! A TCP relay between an agent and its aggregator that the test can cut and mend: the network
//! partition of the "agent cut off" drill, without touching the machine's network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct Cable {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Cable {
    /// Relays connections to `127.0.0.1:<target_port>`, looked up at each connection so the
    /// server behind may restart.
    pub async fn lay(target_port: u16) -> Cable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cable =
            Cable { addr: listener.local_addr().unwrap(), up: Arc::new(AtomicBool::new(true)), cut: Arc::default() };
        let (up, cut) = (cable.up.clone(), cable.cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset at once
                }
                let cut = cut.clone();
                tokio::spawn(async move {
                    let cut = cut.notified();
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target_port)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut => {}
                    }
                });
            }
        });
        cable
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn mend(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
