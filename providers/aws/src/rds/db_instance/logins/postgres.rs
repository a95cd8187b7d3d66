//! The application logins tether rotates inside a PostgreSQL DB instance: two users,
//! `<master>_a` and `<master>_b`, members of a role `<master>_app` that they act as
//! from the moment they log in, so that it owns what either creates. tether sets them
//! up and changes them connecting as the master user.
//!
//! Passwords reach the server only as SCRAM-SHA-256 verifiers, as `psql`'s
//! `\password` sends them: the server's log never sees one.

use std::sync::Arc;

use postgres_protocol::{escape, password::scram_sha_256};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tether_api::{
    external::{ConnectionDetails, ProviderError},
    rotation::Login,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{CONNECT_TIMEOUT, Master, new_password};

impl Master {
    /// A session as the master user.
    async fn connect_postgres(&self) -> Result<tokio_postgres::Client, ProviderError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.username)
            .password(self.password.expose())
            .application_name("tether")
            .connect_timeout(CONNECT_TIMEOUT)
            .ssl_mode(SslMode::Prefer);
        let (client, connection) = config
            .connect(tls_connector())
            .await
            .map_err(|error| self.postgres_failed(&error))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "the session with the database ended");
            }
        });
        Ok(client)
    }

    /// `error` from the session with the database, as a provider error.
    fn postgres_failed(&self, error: &tokio_postgres::Error) -> ProviderError {
        let refusal = error
            .as_db_error()
            .map(|refusal| format!("{} ({})", refusal.message(), refusal.code().code()));
        self.session_failed(refusal, error)
    }
}

/// The role both logins act as: `<master>_app`.
fn shared_role(master: &str) -> String {
    format!("{master}_app")
}

/// [`super::activate`] on PostgreSQL: the login and `<master>_app` are created when
/// missing, the login made a member acting as it, and given `LOGIN` and a new password.
pub(super) async fn activate(
    master: &Master,
    login: Login,
) -> Result<ConnectionDetails, ProviderError> {
    let name = login.name(&master.username);
    let new_password = new_password()?;
    let session = master.connect_postgres().await?;
    let (role, login_id) = (
        escape::escape_identifier(&shared_role(&master.username)),
        escape::escape_identifier(&name),
    );
    let script = format!(
        "BEGIN;\n\
         DO $tether$ BEGIN\n\
           IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_text}) THEN\n\
             CREATE ROLE {role} NOLOGIN;\n\
           END IF;\n\
           IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {login_text}) THEN\n\
             CREATE ROLE {login_id} NOLOGIN;\n\
           END IF;\n\
         END $tether$;\n\
         GRANT {role} TO {login_id};\n\
         ALTER ROLE {login_id} SET role = {role_text};\n\
         GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {database} TO {role};\n\
         GRANT USAGE, CREATE ON SCHEMA public TO {role};\n\
         ALTER ROLE {login_id} WITH LOGIN PASSWORD {verifier};\n\
         COMMIT;",
        role_text = escape::escape_literal(&shared_role(&master.username)),
        login_text = escape::escape_literal(&name),
        database = escape::escape_identifier(&master.database),
        verifier = escape::escape_literal(&scram_sha_256(new_password.expose().as_bytes())),
    );
    session
        .batch_execute(&script)
        .await
        .map_err(|error| refused(master, &name, &error))?;
    Ok(master.login_details(&name, &new_password))
}

/// [`super::retire`] on PostgreSQL: `NOLOGIN` and a password nobody knows.
pub(super) async fn retire(master: &Master, login: Login) -> Result<(), ProviderError> {
    let name = login.name(&master.username);
    let unknown = new_password()?;
    let session = master.connect_postgres().await?;
    let exists = session
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(|error| refused(master, &name, &error))?
        .is_some();
    if exists {
        let script = format!(
            "ALTER ROLE {} WITH NOLOGIN PASSWORD {};",
            escape::escape_identifier(&name),
            escape::escape_literal(&scram_sha_256(unknown.expose().as_bytes())),
        );
        session
            .batch_execute(&script)
            .await
            .map_err(|error| refused(master, &name, &error))?;
    }
    Ok(())
}

/// A statement about `login` that the database refused.
fn refused(master: &Master, login: &str, error: &tokio_postgres::Error) -> ProviderError {
    match error.as_db_error() {
        Some(refusal) => master.login_change_refused(login, refusal.message()),
        None => master.postgres_failed(error),
    }
}

/// TLS when the server offers it, as libpq's default `sslmode=prefer` does: the link
/// is encrypted, the server's certificate is not checked (RDS signs with its own
/// certificate authorities, which no system trust store holds), and a server without
/// TLS is spoken to in the clear.
fn tls_connector() -> MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth()
        });
    match config {
        Ok(config) => MakeRustlsConnect::new(config),
        // aws-lc-rs supports the default protocol versions; this is unreachable.
        Err(error) => unreachable!("rustls refused its default protocol versions: {error}"),
    }
}

/// A certificate verifier that accepts any certificate but checks the handshake's
/// signatures: encryption without authentication, libpq's `sslmode=require`. rustls
/// offers no such verifier of its own.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
