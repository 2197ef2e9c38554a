//! A throwaway `nats-server -js` for the benchmarks: a free loopback port, file storage in a
//! temp dir, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub url: String,
    child: Child,
    _storage: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one and waits until it takes connections.
    pub fn start() -> std::io::Result<NatsServer> {
        let storage = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(storage.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            child,
            _storage: storage,
        };
        // A benchmark, not a test: polling the port is the simplest honest readiness check.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("nats-server did not start in 20 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
