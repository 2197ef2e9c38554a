//! The MongoDB listener over TLS (`tls=true&tlsCAFile=…` in the URL, handled by the driver),
//! end to end: the wire-protocol TestServer serving TLS only with a certificate from a CA made
//! here, the real binary running headless, writes through the driver over TLS too.
//!
//! Always against TestServer, also when `CDC_TEST_MONGO_URI` names a real replica set: TLS
//! cannot be provisioned on a foreign server, so these tests skip then (saying so).

mod support;

use mongo_test_server::TestServer;
use mongodb::Client;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use support::ca::Ca;
use support::{Headless, assert_failed_at_once, reason_of};

/// A TestServer serving TLS only, with this certificate and key.
async fn tls_server((cert, key): (String, String)) -> TestServer {
    TestServer::builder()
        .tls_pem(cert.as_bytes(), key.as_bytes())
        .expect("certificate and key")
        .start()
        .await
        .expect("start the TLS test server")
}

/// True (with a note) when the tests run against a real server, where TLS is not ours to set.
fn real_server_configured(test: &str) -> bool {
    let real = std::env::var("CDC_TEST_MONGO_URI").is_ok_and(|uri| !uri.trim().is_empty());
    if real {
        eprintln!("{test}: skipped under CDC_TEST_MONGO_URI: it needs a TestServer serving TLS");
    }
    real
}

/// A MongoDB database and a change stream listener on `shop.orders`, named `name`.
fn listener(name: &str, url: &str) -> String {
    format!(
        "[[database]]\nname = \"{name}\"\nkind = \"mongodb\"\nurl = \"{url}\"\n\n\
         [[listener]]\nidentifier = \"{name}\"\ndatabase = \"{name}\"\n\
         table = \"shop.orders\"\nstrategy = \"change_stream\"\n\n"
    )
}

fn changes_of<'a>(seen: &'a [Value], listener: &str, op: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|l| l["type"] == "change" && l["listener"] == listener && l["op"] == op)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_over_tls_captures_exactly_the_changes_and_refuses_what_does_not_check_out() {
    if real_server_configured(
        "mongodb_over_tls_captures_exactly_the_changes_and_refuses_what_does_not_check_out",
    ) {
        return;
    }
    let ca = Ca::new("cdc-tui test CA");
    let wrong_ca = Ca::new("some other CA");
    let server = tls_server(ca.server(&["localhost", "127.0.0.1"])).await;
    // Signed by the right CA, but for another host.
    let elsewhere = tls_server(ca.server(&["db.other.example"])).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.write_pem(dir.path(), "ca.pem");
    let wrong_ca_path = wrong_ca.write_pem(dir.path(), "wrong-ca.pem");
    // `server.uri()` already says `tls=true` (and directConnection=true).
    assert!(server.uri().contains("tls=true"), "{}", server.uri());
    let tls_uri = format!("{}&tlsCAFile={ca_path}", server.uri());
    let port = server.port();
    let config = [
        "[pipeline]\nchunk_size = 40\ntimeout_ms = 50\n\n".to_string(),
        listener("good", &tls_uri),
        // By name: the certificate's DNS name is checked as well as its IP address.
        listener(
            "byname",
            &format!(
                "mongodb://localhost:{port}/?directConnection=true&tls=true&tlsCAFile={ca_path}"
            ),
        ),
        listener(
            "wrongca",
            &format!("{}&tlsCAFile={wrong_ca_path}", server.uri()),
        ),
        listener(
            "elsewhere",
            &format!("{}&tlsCAFile={ca_path}", elsewhere.uri()),
        ),
        listener(
            "plain",
            &format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        ),
    ]
    .concat();
    std::fs::write(dir.path().join("cdc.toml"), config).expect("config");
    let mut cdc = Headless::start_in(dir).await;
    let working = ["good/shop.orders", "byname/shop.orders"];
    for working in working {
        cdc.wait_for_state(working, "running").await;
    }

    let client = Client::with_uri_str(&tls_uri).await.expect("client");
    let orders = client.database("shop").collection::<Document>("orders");
    for id in 1..=3 {
        orders
            .insert_one(doc! { "_id": id, "qty": id })
            .await
            .expect("insert over TLS");
    }
    orders
        .update_one(doc! { "_id": 2 }, doc! { "$set": { "qty": 20 } })
        .await
        .expect("update over TLS");
    orders
        .delete_one(doc! { "_id": 3 })
        .await
        .expect("delete over TLS");
    cdc.wait_for("the 5 changes in each working listener", |seen| {
        working.iter().all(|listener| {
            seen.iter()
                .filter(|l| l["type"] == "change" && l["listener"] == *listener)
                .count()
                >= 5
        })
    })
    .await;
    cdc.wait_for_state("wrongca/shop.orders", "failed").await;
    cdc.wait_for_state("elsewhere/shop.orders", "failed").await;
    cdc.wait_for_state("plain/shop.orders", "retrying").await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    let seen = &cdc.seen;
    for listener in working {
        let ops: Vec<(&str, &Value)> = seen
            .iter()
            .filter(|l| l["type"] == "change" && l["listener"] == listener)
            .map(|l| (l["op"].as_str().expect("op"), &l["key"]["_id"]))
            .collect();
        assert_eq!(
            ops,
            [
                ("insert", &json!(1)),
                ("insert", &json!(2)),
                ("insert", &json!(3)),
                ("update", &json!(2)),
                ("delete", &json!(3)),
            ],
            "exactly the changes made, in order, through {listener}"
        );
        let update = changes_of(seen, listener, "update")[0];
        assert_eq!(update["after"], json!({"_id": 2, "qty": 20}), "{update}");
        assert_eq!(update["before"], json!({"_id": 2, "qty": 2}), "{update}");
    }
    for broken in [
        "wrongca/shop.orders",
        "elsewhere/shop.orders",
        "plain/shop.orders",
    ] {
        assert!(
            seen.iter()
                .all(|l| !(l["type"] == "change" && l["listener"] == broken)),
            "no changes through {broken}"
        );
    }

    let wrong = reason_of(seen, "wrongca/shop.orders", "failed");
    eprintln!("wrong CA: {wrong}");
    assert!(
        wrong.starts_with(
            "TLS: the server's certificate is not trusted (UnknownIssuer): \
             tlsCAFile=/path/ca.pem in the URL must name the CA (PEM) that signed it; the \
             driver said: Server selection timeout"
        ) && wrong.contains(&format!("127.0.0.1:{port}")),
        "{wrong}"
    );
    let mismatch = reason_of(seen, "elsewhere/shop.orders", "failed");
    eprintln!("another host's certificate: {mismatch}");
    assert!(
        mismatch.starts_with(
            "TLS: the server's certificate is not issued for the host in the URL \
             (certificate not valid for name \"127.0.0.1\"; certificate is only valid for \
             DnsName(\"db.other.example\")): connect with a host name the certificate names;"
        ),
        "{mismatch}"
    );
    // A certificate that does not check out fails at once: waiting would not help.
    for refused in ["wrongca/shop.orders", "elsewhere/shop.orders"] {
        assert_failed_at_once(seen, refused);
    }
    // Plaintext to a server that requires TLS: the server hangs up during the handshake, which
    // the driver reports as a bare end of file; the listener keeps trying and says why it may be.
    let plain = reason_of(seen, "plain/shop.orders", "retrying");
    eprintln!("plaintext: {plain}");
    assert!(
        plain.contains(&format!("127.0.0.1:{port}"))
            && plain.contains("unexpected end of file")
            && plain.contains(
                "the server closed the connection during the handshake: if it requires TLS, \
                 add tls=true to the URL (with tlsCAFile=/path/ca.pem for a private CA)"
            ),
        "{plain}"
    );
    server.shutdown().await;
    elsewhere.shutdown().await;
}
