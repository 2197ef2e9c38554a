//! Throwaway `nats-server -js` processes: a free loopback port, storage in a temp dir, stopped
//! on drop. A server can be killed and started again on the same port and storage (fault
//! tests), and three of them form a JetStream cluster on loopback ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server has to accept connections after it was started.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub struct NatsServer {
    pub port: u16,
    storage: PathBuf,
    /// `-cluster` and `-routes` for a member of a cluster.
    cluster: Option<ClusterMember>,
    child: Option<Child>,
    /// Fires when the running server logs that it is ready.
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Holds the storage and the log; removed after the server.
    _dir: Option<tempfile::TempDir>,
}

#[derive(Clone)]
struct ClusterMember {
    name: String,
    cluster_port: u16,
    routes: Vec<u16>,
}

impl NatsServer {
    /// A single JetStream server, up and accepting connections.
    pub async fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = NatsServer {
            port: free_port(),
            storage: dir.path().join("jetstream"),
            cluster: None,
            child: None,
            ready: None,
            _dir: Some(dir),
        };
        server.restart().await;
        server
    }

    /// A server that is not running yet, with its port chosen: [`NatsServer::restart`]
    /// starts it (a capture configured with a server that is down at first).
    pub fn down() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        NatsServer {
            port: free_port(),
            storage: dir.path().join("jetstream"),
            cluster: None,
            child: None,
            ready: None,
            _dir: Some(dir),
        }
    }

    /// Three JetStream servers routed to each other on loopback ports, all up and accepting
    /// connections (the cluster may still be electing its meta leader).
    pub async fn cluster() -> Vec<NatsServer> {
        let cluster_ports = [free_port(), free_port(), free_port()];
        let mut servers = Vec::new();
        for (index, cluster_port) in cluster_ports.iter().enumerate() {
            let dir = tempfile::tempdir().expect("temp dir");
            servers.push(NatsServer {
                port: free_port(),
                storage: dir.path().join("jetstream"),
                cluster: Some(ClusterMember {
                    name: format!("n{}", index + 1),
                    cluster_port: *cluster_port,
                    routes: cluster_ports
                        .iter()
                        .copied()
                        .filter(|port| port != cluster_port)
                        .collect(),
                }),
                child: None,
                ready: None,
                _dir: Some(dir),
            });
        }
        for server in &mut servers {
            server.spawn();
        }
        for server in &mut servers {
            server.wait_until_accepting().await;
        }
        servers
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// Kills the server at once (SIGKILL: no flush, no goodbye), keeping its port and storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port and storage and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_until_accepting().await;
    }

    fn spawn(&mut self) {
        let log = self
            .storage
            .with_file_name(format!("nats-{}.log", self.port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let mut command = Command::new("nats-server");
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.storage);
        if let Some(member) = &self.cluster {
            let routes: Vec<String> = member
                .routes
                .iter()
                .map(|port| format!("nats-route://127.0.0.1:{port}"))
                .collect();
            command.args([
                "-n",
                &member.name,
                "--cluster_name",
                "cdc",
                "--cluster",
                &format!("nats://127.0.0.1:{}", member.cluster_port),
                "--routes",
                &routes.join(","),
            ]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server (the Debian package nats-server) runs");
        // The server's log goes to the file, and its "Server is ready" line is the signal
        // that it accepts connections.
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut log = log;
            let mut ready = Some(ready);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("Server is ready")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        self.ready = Some(ready_rx);
    }

    /// Waits until the server says it is ready (it then accepts connections).
    async fn wait_until_accepting(&mut self) {
        let ready = self.ready.take().expect("a server started");
        let said = tokio::time::timeout(START_DEADLINE, ready).await;
        assert!(
            matches!(said, Ok(Ok(()))),
            "nats-server on port {} was not ready within {START_DEADLINE:?} (see its log beside \
             its storage)",
            self.port
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Python with the `nats-py` package (a NATS client we did not write), in a venv kept under
/// the temp dir across runs; `None` when pip cannot install it (no package registry).
pub async fn nats_py() -> Option<PathBuf> {
    let venv = std::env::temp_dir().join("cdc-tui-nats-py");
    let python = venv.join("bin/python");
    let has_nats = async || {
        tokio::process::Command::new(&python)
            .args(["-c", "import nats"])
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|status| status.success())
    };
    if has_nats().await {
        return Some(python);
    }
    let made = tokio::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !made {
        return None;
    }
    let install = tokio::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "nats-py"])
        .status();
    let installed = tokio::time::timeout(Duration::from_secs(300), install)
        .await
        .is_ok_and(|status| status.is_ok_and(|status| status.success()));
    (installed && has_nats().await).then_some(python)
}
