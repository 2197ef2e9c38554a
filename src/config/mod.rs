//! `cdc.toml` (see `../shared/SPEC.md` for the contract): the schema with its defaults
//! (`schema`), where in the file a mistake is (`locate`), and validation (`validate`), whose
//! errors name the file, the line and the key.

mod locate;
pub mod schema;
mod validate;

use std::path::{Path, PathBuf};

pub use locate::ConfigError;
pub use schema::*;
pub use validate::check_listener;

/// Reads and validates a config file. `demo_flag` is `--demo`, which enables the demo database.
pub fn load(path: &Path, demo_flag: bool) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        key: String::new(),
        message: format!("cannot read the config file: {error}"),
    })?;
    Ok(LoadedConfig {
        config: check_text(path, &text, demo_flag)?,
        path: path.to_path_buf(),
    })
}

/// Parses and validates config text as [`load`] does, without reading a file: `path` only
/// names the file in errors, and `demo` is `--demo`.
pub fn check_text(path: &Path, text: &str, demo: bool) -> Result<Config, ConfigError> {
    let mut file = locate::parse(path, text)?;
    file.demo.enabled |= demo;
    let config_dir = path.parent().unwrap_or(Path::new(""));
    validate::validate(file, config_dir).map_err(|rejected| rejected.locate(path, text))
}

/// The config path: `--config`, else ./cdc.toml, else $XDG_CONFIG_HOME/cdc-tui/cdc.toml.
pub fn default_path() -> PathBuf {
    let local = PathBuf::from("cdc.toml");
    if local.exists() {
        return local;
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
    match xdg {
        Some(dir) if dir.join("cdc-tui/cdc.toml").exists() => dir.join("cdc-tui/cdc.toml"),
        _ => local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
[[database]]
name = "shop"
kind = "postgres"
url = "postgres://app:pw@127.0.0.1:5432/shop"
"#;

    fn check(text: &str) -> Result<Config, ConfigError> {
        check_text(Path::new("cdc.toml"), text, false)
    }

    #[test]
    fn good_configs_parse_with_defaults() {
        let empty = check("").unwrap();
        assert_eq!(empty.pipeline.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(empty.pipeline.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(empty.pipeline.log_capacity, DEFAULT_LOG_CAPACITY);
        assert_eq!(empty.state.dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(empty.demo.rate, DEFAULT_DEMO_RATE);

        let full = check(&format!(
            r#"
[pipeline]
chunk_size = 7
timeout_ms = 0
log_capacity = 50
[state]
dir = "/tmp/x"
[demo]
enabled = true
rate = 10
{SHOP}
[[database]]
name = "docs"
kind = "mongodb"
url = "mongodb://127.0.0.1:27017/?replicaSet=rs0"
[[listener]]
identifier = "orders"
database = "shop"
table = "public.orders"
strategy = "logical"
slot = "cdc_tui_orders"
publication = "cdc_tui_orders"
[[listener]]
identifier = "items"
database = "shop"
table = '"Shop"."Order Items"'
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
paused = true
[[listener]]
identifier = "demo_orders"
database = "demo"
table = "orders"
strategy = "logical"
[[listener]]
identifier = "events"
database = "docs"
table = "shop.events"
strategy = "change_stream"
full_document = "updateLookup"
[sinks]
jsonl = "events.jsonl"
"#
        ))
        .unwrap();
        assert_eq!(full.pipeline.chunk_size, 7);
        assert_eq!(full.listeners.len(), 4);
        assert_eq!(
            full.listeners[1].identity(),
            "items/\"Shop\".\"Order Items\""
        );
        assert!(full.listeners[1].paused);
        assert!(full.listeners[0].options.contains_key("slot"));
        assert_eq!(
            full.listeners[1].options.get("interval_ms"),
            Some(&toml::Value::Integer(100))
        );
        assert_eq!(full.sinks.jsonl, Some(PathBuf::from("events.jsonl")));
    }

    #[test]
    fn mistakes_name_the_line_and_the_key() {
        let listener = |extra: &str| {
            format!(
                "{SHOP}\n[[listener]]\nidentifier = \"orders\"\ndatabase = \"shop\"\ntable = \"public.orders\"\n{extra}\n"
            )
        };
        // (config, line, key, part of the message)
        let cases: Vec<(String, usize, &str, &str)> = vec![
            ("[pipeline]\nchunk_size = 0\n".into(), 2, "pipeline.chunk_size", "between 1"),
            ("[pipeline]\nchunk_size = \"many\"\n".into(), 2, "pipeline.chunk_size", "invalid type"),
            ("[pipeline]\nchunk_sise = 5\n".into(), 2, "chunk_sise", "unknown field"),
            ("[pipeline]\nlog_capacity = 0\n".into(), 2, "pipeline.log_capacity", "at least 1"),
            ("[demo]\nrate = -1\n".into(), 2, "demo.rate", "invalid value"),
            ("[[database]]\nname = \"x\"\nkind = \"oracle\"\nurl = \"o://\"\n".into(), 3, "database[0].kind", "unknown variant"),
            (format!("{SHOP}[[database]]\nname = \"shop\"\nkind = \"postgres\"\nurl = \"postgres://h/d\"\n"), 7, "database[1].name", "already defined"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\n".into(), 1, "database[0].url", "needs url or url_env"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl_env = \"CDC_TUI_TEST_UNSET_VARIABLE\"\n".into(), 4, "database[0].url_env", "CDC_TUI_TEST_UNSET_VARIABLE is not set"),
            ("[[database]]\nname = \"x\"\nkind = \"mongodb\"\nurl = \"postgres://h/d\"\n".into(), 4, "database[0].url", "mongodb://"),
            ("[[database]]\nname = \"x\"\nkind = \"mongodb\"\nurl = \"mongodb+srv://c.example.com/\"\n".into(), 4, "database[0].url", "list the hosts"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"mongodb+srv://c.example.com/\"\n".into(), 4, "database[0].url", "a postgres URL starts with postgres:// or postgresql://"),
            (listener("strategy = \"logical\"").replace("\"shop\"\ntable", "\"nope\"\ntable"), 9, "listener[0].database", "no database named \"nope\""),
            (listener("strategy = \"change_stream\""), 11, "listener[0].strategy", "does not fit a postgres database"),
            (listener("strategy = \"polling\""), 7, "listener[0].cursor_column", "needs a cursor_column"),
            (listener("strategy = \"polling\"\ncursor_column = \"u\"\nslot = \"s\""), 13, "listener[0].slot", "only applies to strategy = \"logical\""),
            (listener("strategy = \"logical\"\nslot = \"Bad-Name\""), 12, "listener[0].slot", "lower-case"),
            (listener("strategy = \"logical\"\ncolour = \"red\""), 12, "colour", "unknown field"),
            ("listener = [{ identifier = \"o\", colour = \"red\" }]\n".into(), 1, "colour", "unknown field"),
            ("listener = [{ identifier = \"o\", paused = 3 }]\n".into(), 1, "listener[0].paused", "invalid type"),
            ("[[database]]\nname = \"x\"\nurl = \"postgres://h/d\"\n".into(), 1, "[[database]]", "missing field `kind`"),
            (listener("strategy = \"sideways\""), 11, "listener[0].strategy", "unknown variant"),
            (listener("strategy = \"polling\"\ncursor_column = \"u\"\ninterval_ms = \"fast\""), 13, "listener[0].interval_ms", "invalid type"),
            (listener("strategy = \"logical\"\npaused = [true]"), 12, "listener[0].paused", "invalid type"),
            ("[demo]\nenabled = true\n[sinks]\njsonl = 5\n".into(), 4, "sinks.jsonl", "invalid type"),
            (listener("strategy = \"logical\"").replace("public.orders", "Order Items"), 10, "listener[0].table", "quote a name"),
            (format!("{}[[listener]]\nidentifier = \"orders\"\ndatabase = \"shop\"\ntable = \"public.orders\"\nstrategy = \"polling\"\ncursor_column = \"u\"\n", listener("strategy = \"logical\"")), 13, "listener[1].identifier", "defined twice"),
            ("[state]\ndir = \"\"\n".into(), 2, "state.dir", "must not be empty"),
            ("[sinks.nats]\nstream = \"CDC\"\nsubject = \"{table}\"\n".into(), 3, "sinks.nats.subject", "starts with fixed tokens"),
            ("[sinks.nats]\nurl = \"http://h\"\n".into(), 2, "sinks.nats.url", "nats://"),
            ("[sinks.nats]\nreplicas = 7\n".into(), 2, "sinks.nats.replicas", "between 1 and 5"),
            ("[sinks.nats]\ncolour = 1\n".into(), 2, "colour", "unknown field"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h/d?sslmode=always\"\n".into(), 4, "database[0].url", "sslmode=always is not a mode"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h:port/d\"\n".into(), 4, "database[0].url", "not usable"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h/d?sslmode=verify-full\"\nca_file = \"/nonexistent/ca.pem\"\n".into(), 5, "database[0].ca_file", "cannot read /nonexistent/ca.pem"),
            ("[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl = \"postgres://h/d?sslrootcert=/a.pem\"\nca_file = \"/b.pem\"\n".into(), 5, "database[0].ca_file", "give one of them"),
            ("[[database]]\nname = \"x\"\nkind = \"mongodb\"\nurl = \"mongodb://h/\"\nca_file = \"/b.pem\"\n".into(), 5, "database[0].ca_file", "tlsCAFile"),
            ("[pipeline\n".into(), 1, "", "unclosed table"),
        ];
        for (text, line, key, message) in cases {
            let error = check(&text).expect_err(&text);
            assert_eq!(
                (error.line, error.key.as_str()),
                (line, key),
                "{text}\n=> {error}"
            );
            assert!(
                error.message.contains(message),
                "{text}\n=> {error} (expected {message:?})"
            );
            assert!(error.to_string().starts_with(&format!("cdc.toml:{line}: ")));
        }
    }

    #[test]
    fn the_demo_database_exists_only_while_the_demo_runs() {
        let text = "[[listener]]\nidentifier = \"o\"\ndatabase = \"demo\"\ntable = \"orders\"\nstrategy = \"logical\"\n";
        let error = check(text).unwrap_err();
        assert_eq!(error.key, "listener[0].database");
        let mut file = locate::parse(Path::new("cdc.toml"), text).unwrap();
        file.demo.enabled = true;
        assert!(validate::validate(file, Path::new("")).is_ok());
    }

    #[test]
    fn the_demos_mariadb_brings_its_database_and_a_listener_unless_one_is_there() {
        let on = "[demo]\nenabled = true\nmysql = true\n";
        let config = check(on).unwrap();
        let identities: Vec<String> = config.listeners.iter().map(|l| l.identity()).collect();
        assert_eq!(identities, ["shop_mysql/demo_mysql.*"]);
        assert_eq!(config.listeners[0].strategy, "binlog");

        let own = format!(
            "{on}[[listener]]\nidentifier = \"o\"\ndatabase = \"demo_mysql\"\n\
             table = \"demo_mysql.orders\"\nstrategy = \"polling\"\ncursor_column = \"id\"\n"
        );
        let config = check(&own).unwrap();
        let identities: Vec<String> = config.listeners.iter().map(|l| l.identity()).collect();
        assert_eq!(
            identities,
            ["o/demo_mysql.orders"],
            "the config's own, alone"
        );

        let off = own.replace("mysql = true", "mysql = false");
        let error = check(&off).unwrap_err();
        assert_eq!(error.key, "listener[0].database");
        assert!(error.message.contains("(defined: demo)"), "{error}");

        let taken = format!(
            "{on}[[database]]\nname = \"demo_mysql\"\nkind = \"mysql\"\nurl = \"mysql://u@h/d\"\n"
        );
        let error = check(&taken).unwrap_err();
        assert_eq!(error.key, "database[0].name");
        assert!(
            error.message.contains("the embedded demo's database"),
            "{error}"
        );
    }

    #[test]
    fn ca_file_becomes_sslrootcert_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("my certs")).unwrap();
        std::fs::write(dir.path().join("my certs/ca.pem"), b"pem").unwrap();
        let path = dir.path().join("cdc.toml");
        let text = "[[database]]\nname = \"x\"\nkind = \"postgres\"\n\
                    url = \"postgres://app:pw@h/d?sslmode=verify-full\"\n\
                    ca_file = \"my certs/ca.pem\"\n";
        let config = check_text(&path, text, false).unwrap();
        let postgres = crate::source::kind("postgres").unwrap();
        let url = postgres
            .connection_url(&config.databases[0], dir.path())
            .unwrap();
        let target = crate::source::postgres::tls::Target::parse(&url).unwrap();
        assert_eq!(
            target.roots,
            crate::source::postgres::tls::RootCerts::File(dir.path().join("my certs/ca.pem"))
        );
    }

    #[test]
    fn url_env_reads_the_url_and_keeps_it_masked() {
        // SAFETY: this test alone uses this variable.
        unsafe { std::env::set_var("CDC_TUI_TEST_URL_ENV", "postgres://app:hunter2@h/d") };
        let config = check(
            "[[database]]\nname = \"x\"\nkind = \"postgres\"\nurl_env = \"CDC_TUI_TEST_URL_ENV\"\n",
        )
        .unwrap();
        let url = config.databases[0].resolve_url().unwrap();
        assert_eq!(url.expose(), "postgres://app:hunter2@h/d");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
