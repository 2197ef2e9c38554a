//! TLS for PostgreSQL, set as libpq sets it: the URL's `sslmode` and `sslrootcert`.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked (checked as by `verify-ca` when `sslrootcert` is given, as libpq does) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA, and issued for the host of the URL |
//!
//! The trusted CAs are the PEM file `sslrootcert=PATH` names (the database's `ca_file` in
//! cdc.toml adds exactly that), else libpq's default `~/.postgresql/root.crt`;
//! `sslrootcert=system` trusts the public web CAs (the Mozilla list built in).
//!
//! One parsed [`Target`] serves both connections a listener opens: the SQL one
//! (tokio-postgres, through the rustls connector of this module) and the replication one
//! (ours, `logical/wire.rs`), with the same rustls config ([`Target::client_config`]). It uses
//! the `ring` crypto provider, named explicitly, so no process-wide default is needed.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::secret::{DatabaseUrl, percent_decode};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|mode| mode.as_str() == text)
    }

    /// tokio-postgres knows three modes; the checks of the other two are this module's.
    fn for_tokio_postgres(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// Which CAs to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// Nothing is verified (`disable`, `prefer`, `require` without `sslrootcert`).
    Unchecked,
    /// The certificates of a PEM file.
    File(PathBuf),
    /// The public web CAs (`sslrootcert=system`).
    System,
}

/// A PostgreSQL URL made ready to connect: tokio-postgres's config (with `sslmode` folded
/// into the three modes it knows and `sslrootcert` taken out), and the TLS to use.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub roots: RootCerts,
}

impl Target {
    /// Parses a URL. The error says what is wrong, without the password.
    pub fn parse(url: &DatabaseUrl) -> Result<Target, String> {
        let text = url.expose();
        let (base, query) = match text.split_once('?') {
            Some((base, query)) => (base, query),
            None => (text, ""),
        };
        let mut mode = None;
        let mut root_cert: Option<String> = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match percent_decode(key).as_str() {
                "sslmode" => {
                    let value = percent_decode(value);
                    let parsed = SslMode::parse(&value).ok_or_else(|| {
                        url.redact(&format!(
                            "sslmode={value} is not a mode: use disable, prefer, require, \
                             verify-ca or verify-full"
                        ))
                    })?;
                    mode = Some(parsed);
                }
                "sslrootcert" => root_cert = Some(percent_decode(value)),
                _ => kept.push(pair),
            }
        }
        let mode = mode.unwrap_or(SslMode::Prefer);
        let mut rewritten = format!("{base}?sslmode={}", mode.for_tokio_postgres());
        for pair in kept {
            rewritten.push('&');
            rewritten.push_str(pair);
        }
        let config: tokio_postgres::Config = rewritten.parse().map_err(|error| {
            let mut message = format!("the database url is not usable: {error}");
            if let Some(cause) = StdError::source(&error) {
                message.push_str(&format!(": {cause}"));
            }
            url.redact(&message)
        })?;
        let roots = resolve_roots(mode, root_cert, default_root_cert)?;
        // libpq: `require` with a CA file checks the chain as `verify-ca` does.
        let mode = match (mode, &roots) {
            (SslMode::Require, RootCerts::File(_) | RootCerts::System) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        Ok(Target {
            config,
            mode,
            roots,
        })
    }

    /// The first host and port, for messages: `db.example:5432`.
    pub fn address(&self) -> String {
        use tokio_postgres::config::Host;
        let host = match (
            self.config.get_hostaddrs().first(),
            self.config.get_hosts().first(),
        ) {
            (Some(address), _) => address.to_string(),
            (None, Some(Host::Tcp(host))) => host.clone(),
            (None, Some(Host::Unix(path))) => path.display().to_string(),
            (None, None) => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// The rustls config of the mode: the certificate checks it asks for, or none.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS: {error}"))?;
        let config = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
                .with_no_client_auth(),
            SslMode::VerifyFull => builder
                .with_root_certificates(self.root_store()?)
                .with_no_client_auth(),
            SslMode::VerifyCa => {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.root_store()?),
                    provider,
                )
                .build()
                .map_err(|error| format!("TLS: {error}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
                    .with_no_client_auth()
            }
        };
        Ok(Arc::new(config))
    }

    /// The connector for the SQL connection.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        Ok(MakeRustlsConnect {
            config: self.client_config()?,
        })
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            RootCerts::System => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            RootCerts::File(path) => {
                let pem = std::fs::read(path).map_err(|error| {
                    format!(
                        "cannot read the CA file {} (sslrootcert): {error}",
                        path.display()
                    )
                })?;
                let certificates = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| {
                        format!(
                            "the CA file {} (sslrootcert) is not PEM: {error}",
                            path.display()
                        )
                    })?;
                let (added, _) = store.add_parsable_certificates(certificates);
                if added == 0 {
                    return Err(format!(
                        "the CA file {} (sslrootcert) holds no usable certificate",
                        path.display()
                    ));
                }
            }
            RootCerts::Unchecked => {}
        }
        Ok(store)
    }
}

/// The CAs to trust for `mode`, given the URL's `sslrootcert` and libpq's default file.
fn resolve_roots(
    mode: SslMode,
    root_cert: Option<String>,
    default_file: impl FnOnce() -> Option<PathBuf>,
) -> Result<RootCerts, String> {
    Ok(match (mode, root_cert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => RootCerts::Unchecked,
        (_, Some(path)) if path == "system" => RootCerts::System,
        (_, Some(path)) if path.is_empty() => {
            return Err("sslrootcert is empty: give the path of a CA file".to_string());
        }
        (_, Some(path)) => RootCerts::File(PathBuf::from(path)),
        (_, None) => match default_file() {
            Some(path) => RootCerts::File(path),
            None => {
                return Err(format!(
                    "sslmode={} checks the server's certificate, and needs the CA that signed \
                     it: add sslrootcert=/path/to/ca.pem to the URL (or ca_file to the \
                     [[database]]), or sslrootcert=system to trust the public CAs",
                    mode.as_str()
                ));
            }
        },
    })
}

/// libpq's default CA file, when it exists.
fn default_root_cert() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

/// A failed TLS handshake, kept whole so [`describe_handshake_error`] can say what to do.
#[derive(Debug)]
pub struct HandshakeError(io::Error);

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake failed: {}", self.0)
    }
}

impl StdError for HandshakeError {}

/// For a tokio-postgres error caused by a rejected server certificate: the message saying
/// why and what to do (`None` for other errors).
pub fn describe_handshake_error(error: &tokio_postgres::Error) -> Option<String> {
    let mut source = StdError::source(error);
    while let Some(cause) = source {
        if let Some(HandshakeError(io)) = cause.downcast_ref::<HandshakeError>() {
            let rustls_error = io.get_ref()?.downcast_ref::<rustls::Error>()?;
            return Some(describe_rustls_error(rustls_error));
        }
        source = cause.source();
    }
    None
}

/// What a rejected handshake means, and what to do.
pub fn describe_rustls_error(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS: the server's certificate is not issued for the host in the URL ({error}): \
             connect with a host name the certificate names, or use sslmode=verify-ca"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("TLS: the server's certificate has expired ({error})"),
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS: the server's certificate is not trusted ({error}): sslrootcert (or ca_file) \
             must name the CA that signed it"
        ),
        _ => format!("TLS handshake failed: {error}"),
    }
}

/// Whether a certificate failure is a lasting one (waiting will not help).
pub fn is_certificate_error(error: &tokio_postgres::Error) -> bool {
    describe_handshake_error(error).is_some_and(|text| text.starts_with("TLS: "))
}

/// tokio-postgres's connector, on rustls.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} is not a host name TLS can check"),
            )
        })?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(|stream| RustlsStream(Box::new(stream)))
                .map_err(HandshakeError)
        })
    }
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (tokio-postgres's default `prefer` accepts that).
        ChannelBinding::none()
    }
}

/// `prefer` and `require`: any certificate, as libpq; the handshake's signatures are still
/// checked, so the session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not
/// compared with the host.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, String> {
        Target::parse(&DatabaseUrl::new(url))
    }

    #[test]
    fn every_libpq_mode_is_understood_and_others_are_refused() {
        let target = parse("postgres://app:pw@db:6543/shop").unwrap();
        assert_eq!(target.mode, SslMode::Prefer, "libpq's default");
        assert_eq!(target.roots, RootCerts::Unchecked);
        assert_eq!(target.address(), "db:6543");
        for (mode, roots) in [
            ("disable", RootCerts::Unchecked),
            ("prefer", RootCerts::Unchecked),
            ("require", RootCerts::Unchecked),
        ] {
            let target = parse(&format!("postgres://app@db/shop?sslmode={mode}")).unwrap();
            assert_eq!((target.mode.as_str(), target.roots), (mode, roots));
        }
        let full = parse("postgres://app@db/shop?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem")
            .unwrap();
        assert_eq!(full.mode, SslMode::VerifyFull);
        assert_eq!(full.roots, RootCerts::File("/etc/ca x.pem".into()));
        assert_eq!(
            full.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let system = parse("postgres://app@db/shop?sslrootcert=system&sslmode=verify-ca").unwrap();
        assert_eq!(
            (system.mode, system.roots),
            (SslMode::VerifyCa, RootCerts::System)
        );
        let require = parse("postgres://app@db/shop?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(require.mode, SslMode::VerifyCa, "libpq: require with a CA");

        let error = parse("postgres://app:pw@db/shop?sslmode=allways").unwrap_err();
        assert!(error.contains("sslmode=allways is not a mode"), "{error}");
        let error = parse("postgres://app:pw@db:notaport/shop").unwrap_err();
        assert!(error.contains("not usable"), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }

    #[test]
    fn verification_without_a_ca_says_how_to_give_one() {
        let error = resolve_roots(SslMode::VerifyFull, None, || None).unwrap_err();
        assert!(
            error.contains("sslrootcert=/path/to/ca.pem") && error.contains("ca_file"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("root.crt");
        std::fs::write(&default, b"").unwrap();
        let roots = resolve_roots(SslMode::VerifyCa, None, || Some(default.clone())).unwrap();
        assert_eq!(roots, RootCerts::File(default.clone()));
        let target = Target {
            roots,
            ..parse("postgres://app@db/shop?sslmode=verify-ca&sslrootcert=/x").unwrap()
        };
        let error = target.connector().err().expect("an empty CA file");
        assert!(error.contains("no usable certificate"), "{error}");
    }

    #[test]
    fn paths_survive_the_round_trip_through_a_query() {
        use crate::source::ca_file::percent_encode_path;
        let path = Path::new("/tmp/my certs/ca&1%.pem");
        let encoded = percent_encode_path(path);
        assert!(!encoded.contains(['&', ' ']), "{encoded}");
        assert_eq!(percent_decode(&encoded), path.to_str().unwrap());
    }
}
