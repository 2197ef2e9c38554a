//! MongoDB `change_stream` under the contract: the collection `orders` on TestServer (or on the
//! real replica set `CDC_TEST_MONGO_URI` names), documents as relaxed Extended JSON, a resume
//! token per change, pre-images as `before`, updates with their update description.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use mongo_test_server::TestServer;
use mongodb::Client;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use super::{Before, Harness, Server, Traits};
use crate::support::mongo::Mongo;

pub struct ChangeStream {
    /// None while the server is down.
    mongo: Option<Mongo>,
    /// The URL cdc-tui is given.
    uri: String,
    /// `host:port` of a server of the test's own, kept to bring it up on the same port.
    address: String,
}

impl ChangeStream {
    fn mongo(&self) -> &Mongo {
        self.mongo.as_ref().expect("the server is up")
    }

    fn document(id: i64) -> Document {
        doc! {
            "_id": id,
            "product": format!("item {id}"),
            "qty": id,
            "price": id as f64 + 0.25,
            "paid": id % 2 == 0,
            "note": null,
            "tags": ["a", "b"],
        }
    }
}

impl Harness for ChangeStream {
    async fn start(test: &str, server: Server) -> Self {
        match server {
            Server::Up => {
                let mongo = Mongo::start(test).await;
                let address = match &mongo.server {
                    Some(server) => server.host(),
                    None => "the real server".to_string(),
                };
                ChangeStream {
                    uri: mongo.uri.clone(),
                    mongo: Some(mongo),
                    address,
                }
            }
            // Needs a server to take down: always a TestServer, whatever CDC_TEST_MONGO_URI
            // says. Its server selection is cut short so that retries come quickly.
            Server::Down => {
                let server = TestServer::start().await.expect("start the test server");
                let (uri, address) = (server.uri(), server.host());
                server.shutdown().await;
                ChangeStream {
                    mongo: None,
                    uri: format!("{uri}&serverSelectionTimeoutMS=300"),
                    address,
                }
            }
        }
    }

    async fn up(&mut self) {
        let port = self.address.rsplit_once(':').expect("host:port").1;
        let server = TestServer::start_on(port.parse().expect("a port"))
            .await
            .expect("the port again");
        let client = Client::with_uri_str(server.uri()).await.expect("client");
        let mongo = Mongo {
            uri: server.uri(),
            server: Some(server),
            db: "shop".to_string(),
            client,
        };
        mongo.create_orders().await;
        self.mongo = Some(mongo);
    }

    fn unreachable(&self) -> (String, &'static str) {
        (self.address.clone(), "refused")
    }

    fn config(&self, listeners: &[(&str, &str)]) -> String {
        let mut config = format!(
            "[[database]]\nname = \"docs\"\nkind = \"mongodb\"\nurl = \"{}\"\n\n",
            self.uri
        );
        for (identifier, table) in listeners {
            config += &format!(
                "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"docs\"\n\
                 table = '{table}'\nstrategy = \"change_stream\"\n\n"
            );
        }
        config
    }

    fn table(&self) -> String {
        match &self.mongo {
            Some(mongo) => mongo.table(),
            None => "shop.orders".to_string(),
        }
    }

    fn bad_table(&self) -> Option<(String, &'static str)> {
        // A collection that does not exist is no error in MongoDB (a change stream on it
        // waits for it to be made); a name it cannot have is.
        Some((format!("{}.$bad", self.mongo().db), "InvalidNamespace"))
    }

    async fn insert(&self, ids: RangeInclusive<i64>) {
        self.mongo()
            .orders()
            .insert_many(ids.map(ChangeStream::document))
            .await
            .expect("insert");
    }

    async fn update(&self, id: i64) {
        let updated = self
            .mongo()
            .orders()
            .update_one(
                doc! { "_id": id },
                doc! {
                    "$inc": { "qty": 100 },
                    "$set": { "note": "updated" },
                    "$unset": { "tags": "" },
                },
            )
            .await
            .expect("update");
        assert_eq!(updated.modified_count, 1, "update {id}");
    }

    async fn delete(&self, id: i64) {
        let deleted = self
            .mongo()
            .orders()
            .delete_one(doc! { "_id": id })
            .await
            .expect("delete");
        assert_eq!(deleted.deleted_count, 1, "delete {id}");
    }

    fn key(&self, id: i64) -> Value {
        json!({"_id": id})
    }

    fn row(&self, id: i64, updated: bool) -> Value {
        let mut row = json!({
            "_id": id,
            "product": format!("item {id}"),
            "qty": if updated { id + 100 } else { id },
            "price": id as f64 + 0.25,
            "paid": id % 2 == 0,
            "note": if updated { json!("updated") } else { Value::Null },
        });
        if !updated {
            row["tags"] = json!(["a", "b"]);
        }
        row
    }

    fn traits(&self) -> Traits {
        Traits {
            // TestServer always has pre-images; a real server, on 6.0+ with them enabled.
            before: match self.mongo.as_ref().and_then(|mongo| mongo.server.as_ref()) {
                Some(_) => Before::Image,
                None => Before::ImageOrNull,
            },
            ..Traits::default()
        }
    }

    fn check_changes(&self, changes: &[&Value]) {
        let tokens: HashSet<&str> = changes
            .iter()
            .map(|change| change["position"].as_str().expect("a resume token string"))
            .collect();
        assert_eq!(
            tokens.len(),
            changes.len(),
            "every change has its own resume token"
        );
        for change in changes {
            assert!(
                change["commit_time"]
                    .as_str()
                    .is_some_and(|at| at.ends_with('Z')),
                "{change}"
            );
            if change["op"] == "update" {
                let id = change["key"]["_id"].as_i64().expect("an integer _id");
                assert_eq!(
                    change["update"],
                    json!({"updated": {"qty": id + 100, "note": "updated"}, "removed": ["tags"]}),
                    "the update description: {change}"
                );
                assert!(
                    change["after"].get("tags").is_none(),
                    "updateLookup: the document after the update: {change}"
                );
            } else {
                assert!(change.get("update").is_none(), "only updates carry update");
            }
        }
    }

    async fn finish(self) {}
}
