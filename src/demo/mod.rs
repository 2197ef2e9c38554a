//! The embedded demo: a throwaway PostgreSQL cluster with a small shop schema
//! (`assets/demo_schema.sql`) and a workload of inserts, updates and deletes at `[demo] rate`
//! changes per second, so a newcomer sees live changes with nothing to set up. The cluster
//! streams transactions over 64kB (`logical_decoding_work_mem`), so the workload's batch
//! job shows in progress while it runs. With `[demo] mysql = true`, a throwaway MariaDB beside it
//! holds the same shop (`mysql.rs`).

mod mysql;
mod workload;

use std::path::PathBuf;

use tokio::task::JoinHandle;

use crate::config::{DEMO_DATABASE, DEMO_MYSQL_DATABASE};
use crate::runtime::Database;
use crate::secret::DatabaseUrl;
use mariadb_cluster::{MariaDb, ServerError};
use pgcluster::{ClusterError, ClusterOptions, PgCluster};

const SCHEMA: &str = include_str!("../../assets/demo_schema.sql");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// No PostgreSQL server binaries: the user must install them (exit 2, like a config error).
    #[error(
        "{0}\nThe demo needs PostgreSQL's server binaries: apt-get install postgresql \
         (or set [demo] enabled = false and point cdc.toml at an existing database)"
    )]
    NoServer(ClusterError),
    #[error("the demo database did not start: {0}")]
    Cluster(#[from] ClusterError),
    #[error("the demo schema could not be created: {0}")]
    Schema(tokio_postgres::Error),
    /// `[demo] mysql = true` without MariaDB's server binaries.
    #[error(
        "{0}\nThe demo's MariaDB ([demo] mysql = true) needs MariaDB's server binaries: \
         apt-get install mariadb-server (or set [demo] mysql = false)"
    )]
    NoMariaDb(ServerError),
    #[error("the demo's MariaDB did not start: {0}")]
    MariaDb(ServerError),
}

/// A running demo: stop it with `stop`; dropping it also stops the servers.
pub struct Demo {
    cluster: PgCluster,
    mariadb: Option<MariaDb>,
    workloads: Vec<JoinHandle<()>>,
}

impl Demo {
    /// Starts the cluster (and with `mysql` the MariaDB server, at the same time), creates the
    /// schemas, and starts the workloads at `rate` changes/s each.
    pub async fn start(rate: u32, mysql: bool) -> Result<Demo, DemoError> {
        pgcluster::find_server_bindir().map_err(DemoError::NoServer)?;
        if mysql && !mariadb_cluster::installed() {
            return Err(DemoError::NoMariaDb(ServerError::NotInstalled("mariadbd")));
        }
        let mariadb = async {
            match mysql {
                true => mysql::start().await.map(Some).map_err(DemoError::MariaDb),
                false => Ok(None),
            }
        };
        let (demo, mariadb) = tokio::join!(Demo::start_postgres(rate), mariadb);
        let (mut demo, mariadb) = (demo?, mariadb?);
        if let Some((server, shop)) = mariadb {
            demo.workloads
                .push(tokio::spawn(workload::at_rate(shop, rate)));
            demo.mariadb = Some(server);
        }
        Ok(demo)
    }

    async fn start_postgres(rate: u32) -> Result<Demo, DemoError> {
        let cluster = PgCluster::start(
            ClusterOptions::default().setting("logical_decoding_work_mem", "64kB"),
        )
        .await?;
        cluster.create_database(DEMO_DATABASE).await?;
        let client = cluster.connect(DEMO_DATABASE).await?;
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(DemoError::Schema)?;
        // A connection of its own: the batch job's transaction stays open for seconds while
        // the shop goes on.
        let batch_client = cluster.connect(DEMO_DATABASE).await?;
        let workload = tokio::spawn(workload::at_rate(workload::PostgresShop(client), rate));
        let batch_jobs = tokio::spawn(workload::batch_jobs(batch_client, rate));
        Ok(Demo {
            cluster,
            mariadb: None,
            workloads: vec![workload, batch_jobs],
        })
    }

    /// The `demo` database (and `demo_mysql`) for listeners; positions are kept inside the
    /// throwaway servers' directories, since they mean nothing to the next run's new servers.
    pub fn databases(&self) -> Vec<Database> {
        let postgres = Database {
            name: DEMO_DATABASE.to_string(),
            kind: &crate::source::postgres::Postgres,
            url: DatabaseUrl::new(self.cluster.url(DEMO_DATABASE)),
            state_dir: Some(self.state_dir()),
        };
        let mariadb = self.mariadb.as_ref().map(|server| Database {
            name: DEMO_MYSQL_DATABASE.to_string(),
            kind: &crate::source::mysql::Mysql,
            url: DatabaseUrl::new(server.url(DEMO_MYSQL_DATABASE)),
            state_dir: Some(mysql::state_dir(server)),
        });
        [postgres].into_iter().chain(mariadb).collect()
    }

    fn state_dir(&self) -> PathBuf {
        self.cluster
            .data_dir()
            .parent()
            .unwrap_or(self.cluster.data_dir())
            .join("cdc-tui-state")
    }

    /// Stops the workloads and the servers, removing their directories.
    pub async fn stop(self) -> Result<(), ClusterError> {
        for task in self.workloads {
            task.abort();
            let _ = task.await;
        }
        if let Some(server) = self.mariadb {
            server.stop().await;
        }
        self.cluster.stop().await
    }
}
