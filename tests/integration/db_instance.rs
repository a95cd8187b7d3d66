//! The DBInstance kind: its CRD on the real API server, and its external client
//! against moto through the fault proxy (the reconciler that drives it comes next).
//!
//! moto 5.2.5 makes an instance `available` at once, applies every ModifyDBInstance
//! at once (so it never reports PendingModifiedValues), deletes at once (no
//! `deleting`), and keeps an RDS-managed master password in its Secrets Manager with
//! a fixed value. The states in between are covered by the mocked unit tests in
//! providers/aws/src/rds/db_instance/tests.rs.

use std::collections::BTreeMap;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::core::ObjectMeta;
use tether::reconciler::secret_keys;
use tether_api::{
    ErrorClass,
    external::{
        ConnectionDetails, Context, Delta, ExternalClient, Observation, ObservedOf, Readiness,
    },
    managed::{DeletionPolicy, LocalSecretReference, Managed, ManagedFields},
};
use tether_aws::rds::{
    DBInstance, DBInstanceClient,
    db_instance::{DBInstanceSpec, MasterPassword, SecretKeyReference, final_snapshot_identifier},
};
use tether_testkit::{Emulator, FaultProxy, TestNamespace, cluster};

use crate::db_subnet_group::sdk_config;

fn db_instance(ns: &TestNamespace) -> DBInstance {
    DBInstance {
        metadata: ObjectMeta {
            name: Some("orders".into()),
            namespace: Some(ns.name.clone()),
            uid: Some(format!("7e57ab1e-{}", ns.name)),
            ..ObjectMeta::default()
        },
        spec: DBInstanceSpec {
            managed: ManagedFields {
                write_connection_secret_to_ref: Some(LocalSecretReference {
                    name: "orders-db".into(),
                }),
                ..ManagedFields::default()
            },
            engine: "postgres".into(),
            engine_version: Some("16.3".into()),
            instance_class: "db.t3.micro".into(),
            allocated_storage_gib: Some(20),
            database_name: Some("orders".into()),
            master_username: "app_admin".into(),
            backup_retention_days: Some(1),
            tags: [("team".to_owned(), "orders".to_owned())].into(),
            ..DBInstanceSpec::default()
        },
        status: None,
    }
}

/// The master password under `key` of the user's Secret `orders-admin`.
fn orders_admin(key: &str) -> MasterPassword {
    MasterPassword {
        secret_key_ref: SecretKeyReference {
            name: "orders-admin".into(),
            key: key.into(),
        },
    }
}

fn with<'a>(name: &'a str, published: &'a ConnectionDetails, pending: bool) -> Context<'a> {
    Context {
        published,
        credentials_pending: pending,
        ..Context::named(Some(name))
    }
}

async fn observed(
    client: &DBInstanceClient,
    object: &DBInstance,
    at: Context<'_>,
) -> ObservedOf<DBInstance> {
    match client.observe(object, at).await.expect("observe") {
        Observation::Exists(observed) => observed,
        Observation::Missing => panic!("the instance is observed"),
    }
}

/// Deletes `object`'s DB instance (deletion policy Delete), then the test namespace.
async fn delete_and_clean_up(
    client: &DBInstanceClient,
    object: &DBInstance,
    context: Context<'_>,
    ns: TestNamespace,
) {
    client
        .delete(object, context, DeletionPolicy::Delete)
        .await
        .expect("DeleteDBInstance");
    ns.delete().await;
}

fn text(details: &ConnectionDetails, key: &str) -> String {
    String::from_utf8(
        details
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_client_creates_updates_and_deletes_a_postgres_instance_on_moto() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let config = sdk_config(&proxy.endpoint());
    let client = DBInstanceClient::from_config(&config.clone().into());
    let mut object = db_instance(&ns);
    let name = object.default_external_name().unwrap();
    assert!(
        name.starts_with(&format!("{}-orders-", ns.name)),
        "{name} is derived from the namespace, name and UID"
    );
    let nothing = ConnectionDetails::default();

    assert_eq!(
        client.observe(&object, with(&name, &nothing, false)).await,
        Ok(Observation::Missing)
    );
    // The runtime's order: prepare, publish (pending), create, clear the mark.
    let published = client
        .prepare(&object, with(&name, &nothing, false))
        .await
        .unwrap()
        .expect("a generated password");
    client
        .create(&object, with(&name, &published, true))
        .await
        .expect("CreateDBInstance");

    let observed_now = observed(&client, &object, with(&name, &published, false)).await;
    assert!(
        observed_now.is_up_to_date(),
        "{:?}",
        observed_now.delta.describe()
    );
    assert_eq!(observed_now.readiness, Readiness::Ready);
    let at_provider = &observed_now.at_provider;
    assert!(
        at_provider
            .arn
            .as_deref()
            .is_some_and(|arn| arn.ends_with(&name)),
        "{at_provider:?}"
    );
    assert_eq!(at_provider.status.as_deref(), Some("available"));
    assert_eq!(at_provider.endpoint_port, Some(5432));
    assert_eq!(at_provider.engine_version.as_deref(), Some("16.3"));
    assert_eq!(at_provider.instance_class.as_deref(), Some("db.t3.micro"));
    assert_eq!(at_provider.final_snapshot_identifier, None);
    let host = at_provider.endpoint_address.clone().expect("an endpoint");
    let connection = &observed_now.connection;
    assert_eq!(text(connection, "host"), host);
    assert_eq!(text(connection, "port"), "5432");
    assert_eq!(text(connection, "username"), "app_admin");
    assert_eq!(text(connection, "dbname"), "orders");
    assert_eq!(text(connection, "engine"), "postgres");
    assert_eq!(text(connection, "password"), text(&published, "password"));
    assert!(
        text(connection, "uri").starts_with("postgresql://app_admin:"),
        "the uri is for postgres clients"
    );
    assert!(text(connection, "uri").ends_with(&format!("@{host}:5432/orders")));

    // A pending mark (a crash between publish and create) asks for the password again.
    let pending = observed(&client, &object, with(&name, &published, true)).await;
    assert_eq!(pending.delta.describe(), ["masterPassword"]);

    // A bigger class and longer backups: one ModifyDBInstance, then up to date.
    object.spec.instance_class = "db.t3.small".into();
    object.spec.backup_retention_days = Some(7);
    let changed = observed(&client, &object, with(&name, &published, false)).await;
    assert_eq!(
        changed.delta.describe(),
        ["instanceClass", "backupRetentionDays"]
    );
    proxy.reset_counts();
    client
        .update(&object, with(&name, &published, false), &changed)
        .await
        .expect("ModifyDBInstance");
    assert_eq!(proxy.count("ModifyDBInstance"), 1);
    assert_eq!(
        proxy.count("AddTagsToResource"),
        0,
        "the tags did not differ"
    );
    let updated = observed(&client, &object, with(&name, &published, false)).await;
    assert!(updated.is_up_to_date(), "{:?}", updated.delta.describe());
    assert_eq!(
        updated.at_provider.instance_class.as_deref(),
        Some("db.t3.small")
    );

    // Deleting with the default policy takes the final snapshot that status names.
    assert_eq!(object.deletion_policy(), DeletionPolicy::Snapshot);
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let snapshot = final_snapshot_identifier(&name, object.metadata.uid.as_deref());
    let deleting = observed(&client, &object, with(&name, &published, false)).await;
    assert_eq!(
        deleting.at_provider.final_snapshot_identifier.as_deref(),
        Some(snapshot.as_str())
    );
    let note = client
        .delete(
            &object,
            with(&name, &published, false),
            DeletionPolicy::Snapshot,
        )
        .await
        .expect("DeleteDBInstance");
    assert_eq!(note, Some(format!("final snapshot {snapshot}")));
    let snapshots = aws_sdk_rds::Client::new(&config)
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .expect("DescribeDBSnapshots");
    assert_eq!(
        snapshots
            .db_snapshots()
            .iter()
            .filter_map(|s| s.db_snapshot_identifier())
            .collect::<Vec<_>>(),
        [snapshot.as_str()]
    );
    assert_eq!(
        client
            .observe(&object, with(&name, &published, false))
            .await,
        Ok(Observation::Missing)
    );
    assert_eq!(
        client
            .delete(
                &object,
                with(&name, &published, false),
                DeletionPolicy::Snapshot
            )
            .await,
        Ok(None),
        "deleting a deleted instance is done"
    );
    ns.delete().await;
}

#[tokio::test]
async fn aws_refusals_are_terminal_with_aws_message() {
    let ns = TestNamespace::new().await;
    let config = sdk_config(Emulator::moto().endpoint());
    let client = DBInstanceClient::from_config(&config.clone().into());
    let nothing = ConnectionDetails::default();

    let mut invalid = db_instance(&ns);
    invalid.spec.engine = "nosuchdb".into();
    let name = invalid.default_external_name().unwrap();
    let published = client
        .prepare(&invalid, with(&name, &nothing, false))
        .await
        .unwrap()
        .unwrap();
    let refused = client
        .create(&invalid, with(&name, &published, true))
        .await
        .expect_err("no such engine");
    assert_eq!(refused.class, ErrorClass::Terminal, "{refused:?}");
    assert_eq!(refused.code.as_deref(), Some("InvalidParameterValue"));
    assert!(refused.message.contains("nosuchdb"), "{refused}");
    assert!(!refused.message.contains(&text(&published, "password")));

    // Deletion protection: AWS refuses the delete until the spec turns it off.
    let mut protected = db_instance(&ns);
    protected.spec.deletion_protection = Some(true);
    client
        .create(&protected, with(&name, &published, true))
        .await
        .expect("CreateDBInstance");
    let refused = client
        .delete(
            &protected,
            with(&name, &published, false),
            DeletionPolicy::Delete,
        )
        .await
        .expect_err("protected");
    assert_eq!(refused.class, ErrorClass::Terminal, "{refused:?}");
    assert!(refused.message.contains("deletion protection"), "{refused}");
    protected.spec.deletion_protection = Some(false);
    let changed = observed(&client, &protected, with(&name, &published, false)).await;
    assert_eq!(changed.delta.describe(), ["deletionProtection"]);
    client
        .update(&protected, with(&name, &published, false), &changed)
        .await
        .expect("ModifyDBInstance");
    assert_eq!(
        client
            .delete(
                &protected,
                with(&name, &published, false),
                DeletionPolicy::Delete
            )
            .await,
        Ok(None)
    );
    ns.delete().await;
}

#[tokio::test]
async fn a_user_supplied_password_is_read_from_the_users_secret() {
    let ns = TestNamespace::new().await;
    let config = sdk_config(Emulator::moto().endpoint());
    let client = DBInstanceClient::from_config(&config.clone().into());
    let secret = |password: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: orders-admin}}\nstringData: {{password: '{password}'}}\n"
        )
    };
    let mut object = db_instance(&ns);
    object.spec.master_password = Some(orders_admin("password"));
    assert_eq!(object.secret_references(), ["orders-admin"]);
    let name = object.default_external_name().unwrap();
    let nothing = ConnectionDetails::default();

    // The runtime reads the Secret the spec names, and hands the client its value.
    let missing = secret_keys::read(&ns.client, &object)
        .await
        .expect_err("no Secret yet");
    assert_eq!(missing.class(), ErrorClass::Terminal);
    assert!(
        missing
            .to_string()
            .contains(&format!("{}/orders-admin", ns.name)),
        "{missing}"
    );

    ns.apply(&secret("first-Secret-1")).await.unwrap();
    let values = secret_keys::read(&ns.client, &object).await.unwrap();
    assert!(!format!("{values:?}").contains("Secret-1"), "{values:?}");
    let read = |published| Context {
        secrets: &values,
        ..with(&name, published, false)
    };
    assert_eq!(
        client.prepare(&object, read(&nothing)).await,
        Ok(None),
        "tether generates nothing for a user's password"
    );
    client
        .create(&object, read(&nothing))
        .await
        .expect("CreateDBInstance");
    let first = observed(&client, &object, read(&nothing)).await;
    assert_eq!(text(&first.connection, "password"), "first-Secret-1");
    assert_eq!(
        first.delta.describe(),
        ["masterPassword"],
        "not published yet, so not known to be applied"
    );
    let published = first.connection.clone();
    let settled = observed(&client, &object, read(&published)).await;
    assert!(settled.is_up_to_date(), "{:?}", settled.delta.describe());

    // The user changes the Secret: the new password is a difference update applies.
    ns.apply(&secret("second-Secret-2")).await.unwrap();
    let values = secret_keys::read(&ns.client, &object).await.unwrap();
    let read = |published| Context {
        secrets: &values,
        ..with(&name, published, false)
    };
    let rotated = observed(&client, &object, read(&published)).await;
    assert_eq!(rotated.delta.describe(), ["masterPassword"]);
    assert_eq!(text(&rotated.connection, "password"), "second-Secret-2");
    client
        .update(&object, read(&published), &rotated)
        .await
        .expect("ModifyDBInstance");

    // A key the Secret lacks is named, and no value is.
    object.spec.master_password = Some(orders_admin("pass"));
    let no_key = secret_keys::read(&ns.client, &object)
        .await
        .expect_err("no such key");
    assert_eq!(no_key.class(), ErrorClass::Terminal);
    assert!(
        no_key.to_string().contains("orders-admin") && no_key.to_string().contains("pass"),
        "{no_key}"
    );
    assert!(!format!("{no_key:?}").contains("Secret-2"), "{no_key:?}");

    delete_and_clean_up(&client, &object, with(&name, &published, false), ns).await;
}

#[tokio::test]
async fn an_rds_managed_password_is_mirrored_from_secrets_manager() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let client = DBInstanceClient::from_config(&sdk_config(&proxy.endpoint()).into());
    let mut object = db_instance(&ns);
    object.spec.manage_master_user_password = Some(true);
    object.spec.managed.write_connection_secret_to_ref = None;
    let name = object.default_external_name().unwrap();
    let nothing = ConnectionDetails::default();

    assert_eq!(
        client.prepare(&object, with(&name, &nothing, false)).await,
        Ok(None)
    );
    client
        .create(&object, with(&name, &nothing, false))
        .await
        .expect("CreateDBInstance with ManageMasterUserPassword");
    let observed = observed(&client, &object, with(&name, &nothing, false)).await;
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
    assert!(
        observed
            .at_provider
            .master_user_secret_arn
            .as_deref()
            .is_some_and(|arn| arn.starts_with("arn:aws:secretsmanager:")),
        "{:?}",
        observed.at_provider
    );
    assert_eq!(proxy.count("GetSecretValue"), 1);
    // moto's managed secret always holds this password.
    assert_eq!(text(&observed.connection, "password"), "P@55w0rd!");
    assert!(text(&observed.connection, "uri").starts_with("postgresql://app_admin:P%4055w0rd%21@"));

    delete_and_clean_up(&client, &object, with(&name, &nothing, false), ns).await;
}

#[tokio::test]
async fn the_api_server_refuses_immutable_changes_and_contradictory_specs() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let manifest = |name: &str, spec: &BTreeMap<&str, &str>| {
        let fields: String = spec
            .iter()
            .map(|(key, value)| format!("  {key}: {value}\n"))
            .collect();
        format!(
            "apiVersion: rds.tether.dev/v1alpha1\nkind: DBInstance\nmetadata: {{name: {name}}}\nspec:\n{fields}"
        )
    };
    let valid = BTreeMap::from([
        ("identifier", "orders-db"),
        ("engine", "postgres"),
        ("instanceClass", "db.t3.micro"),
        ("masterUsername", "app_admin"),
        ("allocatedStorageGiB", "50"),
        ("writeConnectionSecretToRef", "{name: orders-db}"),
    ]);
    let changed = |key: &'static str, value: Option<&'static str>| {
        let mut spec = valid.clone();
        match value {
            Some(value) => spec.insert(key, value),
            None => spec.remove(key),
        };
        spec
    };
    let applied = ns
        .apply(&manifest("orders", &valid))
        .await
        .expect("a valid DBInstance");
    assert_eq!(applied.len(), 1);
    let rds_managed = changed("writeConnectionSecretToRef", None);
    let mut rds_managed = rds_managed.clone();
    rds_managed.insert("manageMasterUserPassword", "true");
    rds_managed.insert("identifier", "rds-managed");
    ns.apply(&manifest("rds-managed", &rds_managed))
        .await
        .expect("an RDS-managed password needs no connection Secret");

    for (what, name, spec, fragments) in [
        (
            "a changed engine",
            "orders",
            changed("engine", Some("mysql")),
            &["spec.engine", "engine is immutable"][..],
        ),
        (
            "a changed master user",
            "orders",
            changed("masterUsername", Some("root_admin")),
            &["spec.masterUsername", "masterUsername is immutable"],
        ),
        (
            "a changed identifier",
            "orders",
            changed("identifier", Some("orders-db-2")),
            &["spec.identifier", "identifier is immutable"],
        ),
        (
            "a smaller storage",
            "orders",
            changed("allocatedStorageGiB", Some("40")),
            &["spec.allocatedStorageGiB", "can grow but never shrink"],
        ),
        (
            "a removed identifier",
            "orders",
            changed("identifier", None),
            &["spec.identifier", "cannot be added or removed"],
        ),
        (
            "both subnet-group fields",
            "both-subnets",
            {
                let mut spec = changed("dbSubnetGroupName", Some("default"));
                spec.insert("dbSubnetGroupRef", "{name: orders}");
                spec.insert("identifier", "both-subnets");
                spec
            },
            &[
                "spec.dbSubnetGroupName",
                "at most one of dbSubnetGroupRef and dbSubnetGroupName",
            ],
        ),
        (
            "a generated password with nowhere to go",
            "no-secret",
            changed("writeConnectionSecretToRef", None),
            &[
                "spec.writeConnectionSecretToRef",
                "writeConnectionSecretToRef is required",
            ],
        ),
        (
            "a password both supplied and managed by RDS",
            "both-passwords",
            {
                let mut spec = changed(
                    "masterPassword",
                    Some("{secretKeyRef: {name: admin, key: password}}"),
                );
                spec.insert("manageMasterUserPassword", "true");
                spec.insert("identifier", "both-passwords");
                spec
            },
            &["spec.masterPassword", "exclude each other"],
        ),
        (
            "an identifier with a double hyphen",
            "double-hyphen",
            changed("identifier", Some("orders--db")),
            &["spec.identifier", "two consecutive hyphens"],
        ),
        (
            "a changed ProviderConfig",
            "orders",
            changed("providerConfigRef", Some("{name: another-account}")),
            &["spec.providerConfigRef", "providerConfigRef is immutable"],
        ),
        (
            "a tag key AWS reserves",
            "orders",
            changed("tags", Some("{\"aws:cost-center\": \"42\"}")),
            &["spec.tags", "reserved by AWS"],
        ),
    ] {
        let message = ns.refusal(&manifest(name, &spec), what).await;
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{what}: {fragment:?} not in {message}"
            );
        }
    }
    ns.apply(&manifest(
        "orders",
        &changed("allocatedStorageGiB", Some("60")),
    ))
    .await
    .expect("storage may grow");
    ns.delete().await;
}
