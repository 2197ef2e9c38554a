//! The embedded demo: a throwaway PostgreSQL cluster with a small shop schema
//! (`assets/demo_schema.sql`) and a workload of inserts, updates and deletes at `[demo] rate`
//! changes per second, so a newcomer sees live changes with nothing to set up. The cluster
//! streams transactions over 64kB (`logical_decoding_work_mem`), so the workload's batch
//! job shows in progress while it runs.

mod workload;

use std::path::PathBuf;

use tokio::task::JoinHandle;

use crate::config::DEMO_DATABASE;
use crate::runtime::Database;
use crate::secret::DatabaseUrl;
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
}

/// A running demo: stop it with `stop`; dropping it also stops the cluster.
pub struct Demo {
    cluster: PgCluster,
    workload: JoinHandle<()>,
    batch_jobs: JoinHandle<()>,
}

impl Demo {
    /// Starts the cluster, creates the schema, and starts the workload at `rate` changes/s.
    pub async fn start(rate: u32) -> Result<Demo, DemoError> {
        pgcluster::find_server_bindir().map_err(DemoError::NoServer)?;
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
        let workload = tokio::spawn(workload::run(client, rate));
        let batch_jobs = tokio::spawn(workload::batch_jobs(batch_client, rate));
        Ok(Demo {
            cluster,
            workload,
            batch_jobs,
        })
    }

    /// The `demo` database for listeners; positions are kept inside the throwaway cluster's
    /// directory, since they mean nothing to the next run's new cluster.
    pub fn database(&self) -> Database {
        Database {
            name: DEMO_DATABASE.to_string(),
            kind: &crate::source::postgres::Postgres,
            url: DatabaseUrl::new(self.cluster.url(DEMO_DATABASE)),
            state_dir: Some(self.state_dir()),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.cluster
            .data_dir()
            .parent()
            .unwrap_or(self.cluster.data_dir())
            .join("cdc-tui-state")
    }

    /// Stops the workload and the cluster, removing its directory.
    pub async fn stop(self) -> Result<(), ClusterError> {
        for task in [self.workload, self.batch_jobs] {
            task.abort();
            let _ = task.await;
        }
        self.cluster.stop().await
    }
}
