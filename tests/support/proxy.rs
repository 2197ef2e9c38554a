//! A TCP proxy of our own on 127.0.0.1, between cdc-tui and a database, that cuts every
//! connection going through it at a point of the stream the test chooses: after so many more
//! bytes from the server, so a cut lands mid-message wherever the data is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    connections: Mutex<Vec<AbortHandle>>,
    /// Bytes forwarded from the server to the client so far, over every connection.
    from_server: AtomicU64,
    /// An armed cut: when `from_server` reaches the count, every connection is cut and the
    /// number cut is sent.
    tripwire: Mutex<Option<(u64, oneshot::Sender<usize>)>>,
}

impl Shared {
    /// Counts `bytes` more from the server; true when that sprang the tripwire (every
    /// connection is cut then, and the bytes must not be forwarded).
    fn forwarded(&self, bytes: usize) -> bool {
        let total = self.from_server.fetch_add(bytes as u64, Ordering::SeqCst) + bytes as u64;
        let mut tripwire = self.tripwire.lock().expect("proxy lock");
        let Some((_, cut)) = tripwire.take_if(|(at, _)| total >= *at) else {
            return false;
        };
        let _ = cut.send(self.cut_all());
        true
    }

    fn cut_all(&self) -> usize {
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

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target_port`.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared::default());
        let registry = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let forward = tokio::spawn(forward(client, target_port, registry.clone()));
                let mut open = registry.connections.lock().expect("proxy lock");
                open.retain(|handle| !handle.is_finished());
                open.push(forward.abort_handle());
            }
        });
        Proxy {
            port,
            shared,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Arms a cut of every open connection (both sockets closed at once) once `bytes` more
    /// have come from the server; the receiver gets how many connections were cut.
    pub fn cut_after(&self, bytes: u64) -> oneshot::Receiver<usize> {
        let (sender, receiver) = oneshot::channel();
        let at = self.shared.from_server.load(Ordering::SeqCst) + bytes;
        *self.shared.tripwire.lock().expect("proxy lock") = Some((at, sender));
        receiver
    }
}

/// Forwards one connection until either side closes it or the tripwire cuts it.
async fn forward(mut client: TcpStream, target_port: u16, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target_port)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
    let downstream = async {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 || shared.forwarded(read) {
                return Ok::<_, std::io::Error>(());
            }
            client_write.write_all(&buffer[..read]).await?;
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut_all();
    }
}
