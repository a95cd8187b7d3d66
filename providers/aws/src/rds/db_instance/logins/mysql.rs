//! The application logins tether rotates inside a MySQL or MariaDB DB instance: two
//! accounts, `'<master>_a'@'%'` and `'<master>_b'@'%'`, each with all privileges on the
//! instance's database. In MySQL tables belong to the database (the schema), not to the
//! account that created them, so what either login creates the other can use.
//!
//! MySQL has no way to send a password that the server's statement logs never see
//! (`IDENTIFIED WITH … AS '<hash>'` needs the hash of the account's plugin, which for
//! MySQL 8's `caching_sha2_password` is salted by the server): the password goes in
//! `IDENTIFIED BY '<password>'`, which MySQL and MariaDB rewrite or leave out of their
//! general, slow and binary logs.

use mysql_async::{Conn, DriverError, OptsBuilder, SslOpts, prelude::Queryable};
use tether_api::{
    external::{ConnectionDetails, ProviderError},
    rotation::Login,
};

use super::{CONNECT_TIMEOUT, Master, new_password};
use crate::rds::password::Password;

impl Master {
    /// A session as the master user: over TLS when the server offers it (the link is
    /// encrypted, the server's certificate is not checked: RDS signs with its own
    /// certificate authorities, which no system trust store holds), as `mysql`'s
    /// default `--ssl-mode=PREFERRED` does, else in the clear.
    async fn connect_mysql(&self) -> Result<Conn, ProviderError> {
        let options = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.username.clone()))
            .pass(Some(self.password.expose().to_owned()))
            .db_name(Some(self.database.clone()))
            // Not a unix socket of the same name on tether's own host.
            .prefer_socket(false);
        let encrypted = options.clone().ssl_opts(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        );
        match self.connect_mysql_with(encrypted).await {
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) => {
                self.connect_mysql_with(options).await
            }
            connected => connected,
        }
        .map_err(|error| self.mysql_failed(&error, &[]))
    }

    async fn connect_mysql_with(&self, options: OptsBuilder) -> Result<Conn, mysql_async::Error> {
        tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(options))
            .await
            .unwrap_or_else(|_| {
                Err(mysql_async::Error::Io(mysql_async::IoError::Io(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {CONNECT_TIMEOUT:?}"),
                    ),
                )))
            })
    }

    /// `error` from the session with the database, as a provider error, without any
    /// of `passwords` either.
    fn mysql_failed(&self, error: &mysql_async::Error, passwords: &[&Password]) -> ProviderError {
        let refusal = match error {
            mysql_async::Error::Server(refusal) => {
                Some(format!("{} ({})", refusal.message, refusal.code))
            }
            _ => None,
        };
        redacted(self.session_failed(refusal, error), passwords)
    }

    /// A statement about `login` that the database refused, without any of `passwords`
    /// (a syntax error quotes the statement).
    fn mysql_refused(
        &self,
        login: &str,
        error: &mysql_async::Error,
        passwords: &[&Password],
    ) -> ProviderError {
        match error {
            mysql_async::Error::Server(refusal) => redacted(
                self.login_change_refused(
                    login,
                    &format!("{} ({})", refusal.message, refusal.code),
                ),
                passwords,
            ),
            _ => self.mysql_failed(error, passwords),
        }
    }
}

/// `error` without any of `passwords`.
fn redacted(error: ProviderError, passwords: &[&Password]) -> ProviderError {
    passwords.iter().fold(error, |error, password| {
        super::super::master_password::redacted(error, Some(password))
    })
}
/// Runs `statements` in order, as the master user, about `login`.
async fn run(
    master: &Master,
    session: &mut Conn,
    login: &str,
    statements: &[String],
    passwords: &[&Password],
) -> Result<(), ProviderError> {
    for statement in statements {
        session
            .query_drop(statement)
            .await
            .map_err(|error| master.mysql_refused(login, &error, passwords))?;
    }
    Ok(())
}

/// [`super::activate`] on MySQL: the account is created (locked) when missing, given a
/// new password, unlocked, and granted all privileges on the instance's database.
pub(super) async fn activate(
    master: &Master,
    login: Login,
) -> Result<ConnectionDetails, ProviderError> {
    let name = login.name(&master.username);
    let new_password = new_password()?;
    let mut session = master.connect_mysql().await?;
    let account = account(&name);
    let statements = [
        // The session's own quoting rules, whatever the server's default sql_mode.
        "SET SESSION sql_mode = ''".to_owned(),
        format!("CREATE USER IF NOT EXISTS {account} ACCOUNT LOCK"),
        format!(
            "ALTER USER {account} IDENTIFIED BY {} ACCOUNT UNLOCK",
            literal(new_password.expose())
        ),
        format!(
            "GRANT ALL PRIVILEGES ON {}.* TO {account}",
            grant_database(&master.database)
        ),
    ];
    let ran = run(master, &mut session, &name, &statements, &[&new_password]).await;
    disconnect(session).await;
    ran?;
    Ok(master.login_details(&name, &new_password))
}

/// [`super::retire`] on MySQL: `ACCOUNT LOCK` and a password nobody knows.
pub(super) async fn retire(master: &Master, login: Login) -> Result<(), ProviderError> {
    let name = login.name(&master.username);
    let unknown = new_password()?;
    let mut session = master.connect_mysql().await?;
    let statements = [
        "SET SESSION sql_mode = ''".to_owned(),
        format!(
            "ALTER USER IF EXISTS {} IDENTIFIED BY {} ACCOUNT LOCK",
            account(&name),
            literal(unknown.expose())
        ),
    ];
    let ran = run(master, &mut session, &name, &statements, &[&unknown]).await;
    disconnect(session).await;
    ran
}

/// Ends `session` politely; a failure to do so changes nothing.
async fn disconnect(session: Conn) {
    if let Err(error) = session.disconnect().await {
        tracing::debug!(%error, "the session with the database did not end cleanly");
    }
}

/// `text` as a string literal, with the quoting of `sql_mode = ''` (a backslash
/// escapes).
fn literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for character in text.chars() {
        match character {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            '\0' => quoted.push_str("\\0"),
            other => quoted.push(other),
        }
    }
    quoted.push('\'');
    quoted
}

/// The account of user `name` from any host.
fn account(name: &str) -> String {
    format!("{}@'%'", literal(name))
}

/// `database` as the database of a `GRANT`: a quoted identifier in which `_` and `%`,
/// wildcards there, are escaped, so that the grant names this database only.
fn grant_database(database: &str) -> String {
    let escaped = database
        .replace('`', "``")
        .replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%");
    format!("`{escaped}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(account("boss_a"), "'boss_a'@'%'");
        assert_eq!(grant_database("shop_db"), "`shop\\_db`");
        assert_eq!(grant_database("we`ird%"), "`we``ird\\%`");
    }
}
