//! A TCP proxy of our own on 127.0.0.1, between cdc-tui and a database, that can cut every
//! connection going through it at a moment the test chooses.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct Proxy {
    port: u16,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target_port`.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let registered = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut open = registered.lock().expect("proxy lock");
                open.retain(|handle| !handle.is_finished());
                open.push(forward.abort_handle());
            }
        });
        Proxy {
            port,
            connections,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts every open connection (both sockets closed at once, wherever the bytes were);
    /// returns how many there were.
    pub fn cut_all(&self) -> usize {
        let mut open = self.connections.lock().expect("proxy lock");
        let mut cut = 0;
        for handle in open.drain(..) {
            if !handle.is_finished() {
                handle.abort();
                cut += 1;
            }
        }
        cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}
