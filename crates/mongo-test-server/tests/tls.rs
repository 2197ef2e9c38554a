//! The server over TLS, against the official driver with a CA made here.

mod common;

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use mongo_test_server::TestServer;
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use mongodb::change_stream::event::OperationType;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{op_query_is_master, within};

/// A CA made for the test: its certificate as PEM and what signs with it.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().expect("CA key");
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (pem, Issuer::new(params, key))
}

/// A certificate for 127.0.0.1 and localhost signed by `issuer`, and its key, as PEM.
fn server_cert(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("server params");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// A TLS server whose certificate the CA at the returned path signed.
async fn tls_server(dir: &Path) -> (TestServer, PathBuf) {
    let (ca_pem, issuer) = ca("mongo-test-server test CA");
    let (cert, key) = server_cert(&issuer);
    let server = TestServer::builder()
        .tls_pem(cert.as_bytes(), key.as_bytes())
        .expect("certificate and key")
        .start()
        .await
        .expect("start");
    (server, write(dir, "ca.pem", &ca_pem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_writes_and_watches_over_tls_across_dropped_connections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ca_path) = tls_server(dir.path()).await;
    assert!(server.tls());
    assert!(server.uri().ends_with("&tls=true"), "{}", server.uri());
    let uri = format!("{}&tlsCAFile={}", server.uri(), ca_path.display());
    let client = within("client", Client::with_uri_str(&uri))
        .await
        .expect("client");
    let orders = client.database("shop").collection::<Document>("orders");
    let mut events = within("watch", orders.watch()).await.expect("watch");
    within("insert", orders.insert_one(doc! { "_id": 1, "qty": 1 }))
        .await
        .expect("insert");
    let event = within("event", events.next())
        .await
        .expect("stream open")
        .expect("event");
    assert_eq!(event.operation_type, OperationType::Insert);
    assert_eq!(event.full_document, Some(doc! { "_id": 1, "qty": 1 }));

    // Faults work the same under TLS: the driver reconnects (a new handshake) and resumes.
    let accepted = server.connections_accepted();
    server.drop_all_connections();
    within(
        "update",
        orders.update_one(doc! { "_id": 1 }, doc! { "$set": { "qty": 2 } }),
    )
    .await
    .expect("update after the drop");
    let event = within("event after the drop", events.next())
        .await
        .expect("stream open")
        .expect("event");
    assert_eq!(event.operation_type, OperationType::Update);
    assert_eq!(
        event.document_key.and_then(|key| key.get("_id").cloned()),
        Some(Bson::Int32(1))
    );
    assert!(server.connections_accepted() > accepted, "reconnected");
    let found = within("find", orders.find_one(doc! { "_id": 1 }))
        .await
        .expect("find");
    assert_eq!(found, Some(doc! { "_id": 1, "qty": 2 }));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_gets_no_reply_and_a_closed_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _) = tls_server(dir.path()).await;
    let mut plain = TcpStream::connect(server.host()).await.expect("connect");
    // A legacy isMaster, which a plain server answers (see driver.rs).
    plain.write_all(&op_query_is_master(1)).await.expect("send");
    let mut received = Vec::new();
    // The connection ends (closed or reset) with no reply; at most a TLS alert record comes
    // back (type 21, version 3.x, two bytes: fatal, decode_error).
    let _ = within("the server to close", plain.read_to_end(&mut received)).await;
    assert!(
        received.is_empty() || received == [21, 3, 3, 0, 2, 2, 50],
        "not a MongoDB reply: {received:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _) = tls_server(dir.path()).await;
    let (other_ca, _) = ca("some other CA");
    let other = write(dir.path(), "other.pem", &other_ca);
    let uri = format!(
        "{}&tlsCAFile={}&serverSelectionTimeoutMS=2000",
        server.uri(),
        other.display()
    );
    let client = Client::with_uri_str(&uri).await.expect("client");
    let error = within(
        "ping",
        client.database("admin").run_command(doc! { "ping": 1 }),
    )
    .await
    .expect_err("an unknown CA");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    server.shutdown().await;
}

#[test]
fn bad_tls_material_is_refused_up_front() {
    let error = TestServer::builder()
        .tls_pem(b"not PEM", b"")
        .err()
        .expect("no certificate");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let (_, issuer) = ca("test CA");
    let (cert, _) = server_cert(&issuer);
    let error = TestServer::builder()
        .tls_pem(cert.as_bytes(), b"not a key")
        .err()
        .expect("no key");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let error = mongo_test_server::run_cli(["--tls-cert", "cert.pem"]).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("go together"), "{error}");
}
