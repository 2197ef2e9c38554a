//! TLS to PostgreSQL, for the SQL and the replication connection alike, against a throwaway
//! cluster with `ssl = on` and a CA made here. The role cdc-tui connects as may only connect
//! over TLS (`hostnossl … reject`), and `pg_stat_ssl` is checked for every connection it holds.

mod support;

use pgcluster::{ClusterOptions, PgCluster};
use support::ca::Ca;
use support::{Headless, assert_failed_at_once, eventually, reason_of};

const ROLE: &str = "cdc_tls";

/// Every connection of the role: (backend type, over TLS).
async fn connections(client: &tokio_postgres::Client) -> Vec<(String, bool)> {
    client
        .query(
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = $1 ORDER BY 1",
            &[&ROLE],
        )
        .await
        .expect("pg_stat_ssl")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn logical(identifier: &str, database: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"{database}\"\n\
         table = \"public.t\"\nstrategy = \"logical\"\n\n"
    )
}

fn polling(identifier: &str, database: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"{database}\"\n\
         table = \"public.t\"\nstrategy = \"polling\"\ncursor_column = \"updated_at\"\n\
         interval_ms = 100\n\n"
    )
}

fn database(name: &str, url: &str, extra: &str) -> String {
    format!("[[database]]\nname = \"{name}\"\nkind = \"postgres\"\nurl = \"{url}\"\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_behaves_as_libpq_documents_on_both_connections() {
    let ca = Ca::new("cdc-tui test CA");
    let wrong_ca = Ca::new("some other CA");
    let (cert, key) = ca.server(&["localhost", "127.0.0.1"]);
    let (other_cert, other_key) = ca.server(&["db.other.example"]);
    let mut options = ClusterOptions::default()
        .setting("ssl", "on")
        .setting("ssl_cert_file", "server.crt")
        .setting("ssl_key_file", "server.key")
        .setting("wal_sender_timeout", "2s");
    options.extra_files = vec![
        ("server.crt".into(), cert.into_bytes()),
        ("server.key".into(), key.into_bytes()),
        ("other.crt".into(), other_cert.into_bytes()),
        ("other.key".into(), other_key.into_bytes()),
    ];
    // The role may only connect over TLS: a connection without it is refused.
    options.extra_hba = vec![
        format!("hostnossl all {ROLE} 127.0.0.1/32 reject"),
        format!("hostnossl replication {ROLE} 127.0.0.1/32 reject"),
    ];
    let cluster = PgCluster::start(options)
        .await
        .expect("a cluster with ssl = on");
    cluster.create_database("tls").await.expect("database");
    let client = cluster.connect("tls").await.expect("connect");
    client
        .batch_execute(&format!(
            "CREATE ROLE {ROLE} LOGIN SUPERUSER;
             CREATE TABLE t (id int PRIMARY KEY,
                             updated_at timestamptz NOT NULL DEFAULT clock_timestamp());"
        ))
        .await
        .expect("role and table");

    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.write_pem(dir.path(), "ca.pem");
    let wrong_ca_path = wrong_ca.write_pem(dir.path(), "wrong-ca.pem");
    let port = cluster.port();
    let url = |host: &str, query: &str| format!("postgres://{ROLE}@{host}:{port}/tls{query}");
    // A URL that checks the server's certificate (in `mode`) against the test's CA.
    let verified =
        |host: &str, mode: &str| url(host, &format!("?sslmode={mode}&sslrootcert={ca_path}"));
    let config = [
        database("full", &verified("127.0.0.1", "verify-full"), ""),
        // The CA from the config's ca_file, a host name checked against the certificate.
        database(
            "cafile",
            &url("localhost", "?sslmode=verify-full"),
            "ca_file = \"ca.pem\"",
        ),
        database("verifyca", &verified("127.0.0.1", "verify-ca"), ""),
        database("require", &url("127.0.0.1", "?sslmode=require"), ""),
        // No sslmode: libpq's default, prefer, takes TLS when the server offers it.
        database("prefer", &url("127.0.0.1", ""), ""),
        database(
            "wrongca",
            &url(
                "127.0.0.1",
                &format!("?sslmode=verify-full&sslrootcert={wrong_ca_path}"),
            ),
            "",
        ),
        database("disable", &url("127.0.0.1", "?sslmode=disable"), ""),
        logical("full", "full"),
        logical("cafile", "cafile"),
        logical("verifyca", "verifyca"),
        logical("require", "require"),
        polling("prefer", "prefer"),
        logical("wrongca", "wrongca"),
        polling("disable", "disable"),
    ]
    .concat();
    std::fs::write(dir.path().join("cdc.toml"), config).expect("config");
    let mut cdc = Headless::start_in(dir).await;
    let working = [
        "full/public.t",
        "cafile/public.t",
        "verifyca/public.t",
        "require/public.t",
        "prefer/public.t",
    ];
    for listener in working {
        cdc.wait_for_state(listener, "running").await;
    }
    cdc.wait_for_state("wrongca/public.t", "failed").await;
    cdc.wait_for_state("disable/public.t", "failed").await;

    let wrong = reason_of(&cdc.seen, "wrongca/public.t", "failed");
    assert!(
        wrong.contains("certificate is not trusted")
            && wrong.contains("UnknownIssuer")
            && wrong.contains("sslrootcert (or ca_file)"),
        "{wrong}"
    );
    let disabled = reason_of(&cdc.seen, "disable/public.t", "failed");
    assert!(
        disabled.contains("pg_hba.conf rejects") && disabled.contains("no encryption"),
        "sslmode=disable connects without TLS, which this role may not: {disabled}"
    );

    // Everything the working listeners hold is encrypted: four walsenders (the logical
    // listeners) and a SQL connection each.
    let held = connections(&client).await;
    assert!(held.iter().all(|(_, ssl)| *ssl), "{held:?}");
    let walsenders = held.iter().filter(|(kind, _)| kind == "walsender").count();
    let sessions = held
        .iter()
        .filter(|(kind, _)| kind == "client backend")
        .count();
    assert!(walsenders >= 4 && sessions >= 5, "{held:?}");

    client
        .batch_execute("INSERT INTO t (id) SELECT generate_series(1, 3)")
        .await
        .expect("insert");
    cdc.wait_for("3 inserts in each working listener", |seen| {
        working.iter().all(|listener| {
            seen.iter()
                .filter(|line| line["type"] == "change" && line["listener"] == *listener)
                .count()
                == 3
        })
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    // A certificate for another name: verify-full refuses it, verify-ca does not look at
    // the name.
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'other.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'other.key'",
        "SELECT pg_reload_conf()",
    ] {
        client
            .batch_execute(sql)
            .await
            .expect("switch certificates");
    }
    // A new session reads the reloaded settings.
    eventually("the other certificate loaded", async || {
        let fresh = cluster.connect("tls").await.expect("connect");
        let file: String = fresh
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .expect("show")
            .get(0);
        if file == "other.crt" {
            Ok(())
        } else {
            Err(format!("ssl_cert_file = {file}"))
        }
    })
    .await;
    let config = [
        database("full", &verified("127.0.0.1", "verify-full"), ""),
        database("verifyca", &verified("localhost", "verify-ca"), ""),
        logical("full", "full"),
        logical("verifyca", "verifyca"),
    ]
    .concat();
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state("verifyca/public.t", "running").await;
    cdc.wait_for_state("full/public.t", "failed").await;
    let mismatch = reason_of(&cdc.seen, "full/public.t", "failed");
    assert!(
        mismatch.contains("not issued for the host") && mismatch.contains("sslmode=verify-ca"),
        "{mismatch}"
    );
    client
        .batch_execute("INSERT INTO t (id) VALUES (4)")
        .await
        .expect("insert");
    cdc.wait_for("the insert through verify-ca", |seen| {
        seen.iter()
            .any(|line| line["type"] == "change" && line["key"]["id"] == 4)
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    // A certificate that does not fit fails at once.
    assert_failed_at_once(&cdc.seen, "full/public.t");
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_against_a_server_without_tls_fails_saying_so() {
    let db = support::TestDb::new("tls_none").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("table");
    let url = format!("{}?sslmode=require", db.url);
    let mut cdc = Headless::start(&[database("db", &url, ""), logical("req", "db")].concat()).await;
    cdc.wait_for_state("req/public.t", "failed").await;
    let reason = reason_of(&cdc.seen, "req/public.t", "failed");
    assert!(
        reason.contains("server does not support TLS") && reason.contains("sslmode=prefer"),
        "{reason}"
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}
