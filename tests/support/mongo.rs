//! The MongoDB server a test writes to: the wire-protocol TestServer (one per test), or a real
//! replica set when `CDC_TEST_MONGO_URI` is set (each test then uses a database of its own,
//! dropped when the test ends).

use std::sync::atomic::{AtomicUsize, Ordering};

use mongo_test_server::TestServer;
use mongodb::Client;
use mongodb::bson::{Document, doc};

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The server under test and the database a test writes to.
pub struct Mongo {
    /// None under a real server.
    pub server: Option<TestServer>,
    pub uri: String,
    /// `shop` on TestServer; a database of its own per test on a real server.
    pub db: String,
    pub client: Client,
}

impl Mongo {
    /// The server, with the collection `orders` created with pre-images (for `before`).
    pub async fn start(test: &str) -> Mongo {
        let (server, uri, db) = match std::env::var("CDC_TEST_MONGO_URI") {
            Ok(uri) if !uri.trim().is_empty() => {
                let db = format!(
                    "cdc_tui_{test}_{}_{}",
                    std::process::id(),
                    DATABASES.fetch_add(1, Ordering::Relaxed)
                );
                (None, uri, db)
            }
            _ => {
                let server = TestServer::start().await.expect("start the test server");
                let uri = server.uri();
                (Some(server), uri, "shop".to_string())
            }
        };
        let client = Client::with_uri_str(&uri).await.expect("client");
        let mongo = Mongo {
            server,
            uri,
            db,
            client,
        };
        mongo.create_orders().await;
        mongo
    }

    /// Creates `orders` with pre-images (a real server wants them switched on per collection;
    /// TestServer always has them, and a real one may have the collection already).
    pub async fn create_orders(&self) {
        let created = self
            .client
            .database(&self.db)
            .run_command(doc! {
                "create": "orders",
                "changeStreamPreAndPostImages": { "enabled": true },
            })
            .await;
        if self.server.is_some() {
            created.expect("create the collection with pre-images");
        }
    }

    /// TestServer, or None (with a note) under a real server: for fault injection.
    pub fn test_server(&self, test: &str) -> Option<&TestServer> {
        if self.server.is_none() {
            eprintln!(
                "{test}: skipped under CDC_TEST_MONGO_URI: it injects faults into TestServer"
            );
        }
        self.server.as_ref()
    }

    /// `db.orders`, as a listener's `table`.
    pub fn table(&self) -> String {
        format!("{}.orders", self.db)
    }

    pub fn orders(&self) -> mongodb::Collection<Document> {
        self.client.database(&self.db).collection("orders")
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        if self.server.is_some() {
            return;
        }
        // A real server keeps what a test made: remove its databases, on a runtime of its own
        // (this one may be ending).
        let (uri, db) = (self.uri.clone(), self.db.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = Client::with_uri_str(&uri)
                    .await
                    .map_err(std::io::Error::other)?;
                for name in [db.clone(), format!("{db}_other")] {
                    let _ = client.database(&name).drop().await;
                }
                Ok::<(), std::io::Error>(())
            })
        })
        .join();
    }
}
