//! The connection details of a database, as its connection Secret holds them: `host`,
//! `port`, `username`, `password`, `dbname`, `engine` and a `uri` for the engine's
//! clients, with user, password and database name percent-encoded; and the Service
//! Binding specification's (servicebinding.io) `type`, `provider` and `database`, so
//! that Spring Cloud Bindings and Quarkus read a mounted Secret as it is.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tether_api::external::ConnectionDetails;

use super::password::Password;

/// Everything but RFC 3986's unreserved characters is encoded in user info and path.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where and as whom an application connects to a database.
#[derive(Clone, Debug)]
pub struct DatabaseEndpoint<'a> {
    /// RDS engine name, e.g. `postgres`, `mysql`, `mariadb`.
    pub engine: &'a str,
    /// Endpoint address.
    pub host: &'a str,
    /// Endpoint port.
    pub port: u16,
    /// Master user name.
    pub username: &'a str,
    /// Name of the initial database, if any.
    pub database_name: Option<&'a str>,
}

/// The URI scheme clients of `engine` expect.
pub fn uri_scheme(engine: &str) -> &'static str {
    match engine {
        "postgres" | "aurora-postgresql" => "postgresql",
        "mariadb" => "mariadb",
        _ => "mysql",
    }
}

/// The database a client of `engine` connects to when the instance was created
/// without a database name: PostgreSQL's `postgres`, which RDS creates then and every
/// PostgreSQL server has (without it, libpq asks for a database named after the
/// user, which does not exist). MySQL and MariaDB connect to no database.
pub fn default_database(engine: &str) -> Option<&'static str> {
    match uri_scheme(engine) {
        "postgresql" => Some("postgres"),
        _ => None,
    }
}

/// The Service Binding `provider` of every database Secret.
pub const BINDING_PROVIDER: &str = "aws-rds";

/// The Service Binding `type` of a database of `engine`: the name Spring Cloud
/// Bindings and Quarkus look for.
pub fn binding_type(engine: &str) -> &'static str {
    match engine {
        "postgres" | "aurora-postgresql" => "postgresql",
        "mariadb" => "mariadb",
        engine if engine.starts_with("sqlserver") => "sqlserver",
        engine if engine.starts_with("oracle") => "oracle",
        engine if engine.starts_with("db2") => "db2",
        _ => "mysql",
    }
}

/// The connection details of `endpoint` with `password`.
pub fn connection_details(
    endpoint: &DatabaseEndpoint<'_>,
    password: &Password,
) -> ConnectionDetails {
    let encode = |text: &str| utf8_percent_encode(text, URI_COMPONENT).to_string();
    let database_name = endpoint
        .database_name
        .or_else(|| default_database(endpoint.engine))
        .unwrap_or_default();
    let uri = format!(
        "{scheme}://{user}:{password}@{host}:{port}/{database}",
        scheme = uri_scheme(endpoint.engine),
        user = encode(endpoint.username),
        password = encode(password.expose()),
        host = endpoint.host,
        port = endpoint.port,
        database = encode(database_name),
    );
    let entries = [
        ("host", endpoint.host.to_owned()),
        ("port", endpoint.port.to_string()),
        ("username", endpoint.username.to_owned()),
        ("password", password.expose().to_owned()),
        ("dbname", database_name.to_owned()),
        ("database", database_name.to_owned()),
        ("engine", endpoint.engine.to_owned()),
        ("uri", uri),
        ("type", binding_type(endpoint.engine).to_owned()),
        ("provider", BINDING_PROVIDER.to_owned()),
    ];
    ConnectionDetails(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.into_bytes()))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use percent_encoding::percent_decode_str;

    use super::*;

    fn text(details: &ConnectionDetails, key: &str) -> String {
        String::from_utf8(details.0[key].clone()).unwrap()
    }

    fn endpoint(engine: &str) -> DatabaseEndpoint<'_> {
        DatabaseEndpoint {
            engine,
            host: "orders.abc123.eu-west-1.rds.amazonaws.com",
            port: 5432,
            username: "app_admin",
            database_name: Some("orders"),
        }
    }

    #[test]
    fn every_key_is_present() {
        let details = connection_details(&endpoint("postgres"), &Password::from("pw".to_owned()));
        let keys: Vec<&str> = details.0.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "database", "dbname", "engine", "host", "password", "port", "provider", "type",
                "uri", "username"
            ]
        );
        assert_eq!(text(&details, "type"), "postgresql");
        assert_eq!(text(&details, "provider"), "aws-rds");
        assert_eq!(text(&details, "database"), "orders");
        assert_eq!(text(&details, "port"), "5432");
        assert_eq!(text(&details, "dbname"), "orders");
    }

    #[test]
    fn the_binding_type_is_the_name_spring_and_quarkus_know() {
        for (engine, binding) in [
            ("postgres", "postgresql"),
            ("aurora-postgresql", "postgresql"),
            ("mysql", "mysql"),
            ("aurora-mysql", "mysql"),
            ("mariadb", "mariadb"),
            ("sqlserver-ex", "sqlserver"),
            ("oracle-ee", "oracle"),
        ] {
            assert_eq!(binding_type(engine), binding, "{engine}");
        }
    }

    #[test]
    fn the_uri_scheme_follows_the_engine() {
        let password = Password::from("pw".to_owned());
        for (engine, scheme) in [
            ("postgres", "postgresql"),
            ("mysql", "mysql"),
            ("mariadb", "mariadb"),
        ] {
            let uri = text(&connection_details(&endpoint(engine), &password), "uri");
            assert_eq!(
                uri,
                format!(
                    "{scheme}://app_admin:pw@orders.abc123.eu-west-1.rds.amazonaws.com:5432/orders"
                )
            );
        }
    }

    #[test]
    fn user_and_password_are_percent_encoded_and_decode_back() {
        let password = Password::from("p:a#s%s?w[o]r&d=+!~".to_owned());
        let mut endpoint = endpoint("postgres");
        endpoint.username = "app:admin";
        let uri = text(&connection_details(&endpoint, &password), "uri");
        let userinfo = uri
            .strip_prefix("postgresql://")
            .and_then(|rest| rest.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo)
            .unwrap();
        let (user, encoded_password) = userinfo.split_once(':').expect("one unencoded colon");
        assert_eq!(percent_decode_str(user).decode_utf8().unwrap(), "app:admin");
        assert_eq!(
            percent_decode_str(encoded_password).decode_utf8().unwrap(),
            password.expose()
        );
        assert!(!encoded_password.contains(['#', '?', '/', '@', '[', ']']));
    }

    #[test]
    fn without_a_database_name_postgres_connects_to_the_postgres_database() {
        for engine in ["postgres", "aurora-postgresql"] {
            let mut endpoint = endpoint(engine);
            endpoint.database_name = None;
            let details = connection_details(&endpoint, &Password::from("pw".to_owned()));
            assert_eq!(text(&details, "dbname"), "postgres", "{engine}");
            assert_eq!(text(&details, "database"), "postgres", "{engine}");
            assert!(
                text(&details, "uri").ends_with(":5432/postgres"),
                "{engine}: {}",
                text(&details, "uri")
            );
        }
    }

    #[test]
    fn without_a_database_name_the_path_is_empty() {
        let mut endpoint = endpoint("mysql");
        endpoint.database_name = None;
        endpoint.port = 3306;
        let details = connection_details(&endpoint, &Password::from("pw".to_owned()));
        assert_eq!(text(&details, "dbname"), "");
        assert!(text(&details, "uri").ends_with(":3306/"));
    }
}
