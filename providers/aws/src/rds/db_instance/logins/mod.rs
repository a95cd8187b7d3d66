//! The application logins tether rotates inside a DB instance: two users,
//! `<master>_a` and `<master>_b`, that take turns in the connection Secret. tether
//! creates and changes them connecting as the master user, in the engine's own SQL:
//! PostgreSQL's in `postgres.rs`, MySQL's and MariaDB's in `mysql.rs`.

mod mysql;
mod postgres;

use std::time::Duration;

use tether_api::{
    ErrorClass,
    external::{ConnectionDetails, ProviderError},
    rotation::Login,
};

use super::master_password::{PASSWORD_KEY, USERNAME_KEY, password_in};
use crate::rds::{
    connection::{DatabaseEndpoint, connection_details},
    password::{self, Password},
};

/// How long tether waits to reach the database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The master user's connection, as the master Secret holds it.
struct Master {
    engine: String,
    host: String,
    port: u16,
    database: String,
    username: String,
    password: Password,
}

impl Master {
    fn from_details(master: &ConnectionDetails) -> Result<Self, ProviderError> {
        let text = |key: &str| {
            master
                .0
                .get(key)
                .and_then(|value| String::from_utf8(value.clone()).ok())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| {
                    terminal(
                        "MasterCredentialsIncomplete",
                        format!("the master Secret has no {key} yet"),
                    )
                })
        };
        Ok(Self {
            engine: text("engine")?,
            host: text("host")?,
            port: text("port")?.parse().map_err(|_| {
                terminal(
                    "MasterCredentialsIncomplete",
                    "the master Secret's port is not a number".to_owned(),
                )
            })?,
            database: text("dbname")?,
            username: text(USERNAME_KEY)?,
            password: password_in(master).ok_or_else(|| {
                terminal(
                    "MasterCredentialsIncomplete",
                    format!("the master Secret has no {PASSWORD_KEY} yet"),
                )
            })?,
        })
    }

    /// `host:port`, for messages.
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A failed session with the database as a provider error, without the master
    /// password: refused when the server answered with `refusal` (its message and
    /// code), else unreachable (no answer, or no server) because of `error`.
    fn session_failed(
        &self,
        refusal: Option<String>,
        error: &dyn std::fmt::Display,
    ) -> ProviderError {
        let (code, message) = match refusal {
            Some(refusal) => (
                "DatabaseRefused",
                format!(
                    "the database at {} refused the master user {}: {refusal}",
                    self.address(),
                    self.username,
                ),
            ),
            None => (
                "DatabaseUnreachable",
                format!(
                    "cannot reach the database at {} from tether: {error}",
                    self.address()
                ),
            ),
        };
        let error = ProviderError {
            class: ErrorClass::Transient,
            code: Some(code.to_owned()),
            message,
        };
        super::master_password::redacted(error, Some(&self.password))
    }

    /// A statement about `login` that the database refused (`refusal`: its message),
    /// without the master password.
    fn login_change_refused(&self, login: &str, refusal: &str) -> ProviderError {
        let error = ProviderError {
            class: ErrorClass::Transient,
            code: Some("LoginChangeRefused".to_owned()),
            message: format!(
                "the database at {} refused a change to the login {login}: {refusal}",
                self.address()
            ),
        };
        super::master_password::redacted(error, Some(&self.password))
    }

    /// The connection details an application uses with `login` and `password`.
    fn login_details(&self, login: &str, password: &Password) -> ConnectionDetails {
        let endpoint = DatabaseEndpoint {
            engine: &self.engine,
            host: &self.host,
            port: self.port,
            username: login,
            database_name: Some(&self.database),
        };
        connection_details(&endpoint, password)
    }

    /// Whether the instance speaks MySQL's protocol (MySQL, MariaDB, Aurora MySQL);
    /// otherwise PostgreSQL's.
    fn speaks_mysql(&self) -> bool {
        matches!(
            self.engine.as_str(),
            "mysql" | "mariadb" | "aurora-mysql" | "aurora"
        )
    }
}

fn terminal(code: &str, message: String) -> ProviderError {
    ProviderError {
        class: ErrorClass::Terminal,
        code: Some(code.to_owned()),
        message,
    }
}

/// A new random password for a login.
fn new_password() -> Result<Password, ProviderError> {
    password::generate().map_err(|error| ProviderError {
        class: ErrorClass::Transient,
        code: None,
        message: error.to_string(),
    })
}

/// Gives `login` a new password, creating it (and on PostgreSQL the role it acts as)
/// when it does not exist, and returns the connection details an application uses
/// with it.
pub(super) async fn activate(
    master: &ConnectionDetails,
    login: Login,
) -> Result<ConnectionDetails, ProviderError> {
    let master = Master::from_details(master)?;
    if master.speaks_mysql() {
        mysql::activate(&master, login).await
    } else {
        postgres::activate(&master, login).await
    }
}

/// Changes the password of `login` to one nobody knows and forbids it to log in, when
/// it exists; sessions already open stay.
pub(super) async fn retire(master: &ConnectionDetails, login: Login) -> Result<(), ProviderError> {
    let master = Master::from_details(master)?;
    if master.speaks_mysql() {
        mysql::retire(&master, login).await
    } else {
        postgres::retire(&master, login).await
    }
}
