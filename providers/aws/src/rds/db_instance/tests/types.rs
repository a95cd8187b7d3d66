//! The custom resource: references, secrets, field names.

use super::*;

#[test]
fn the_object_declares_its_references_and_secrets() {
    let mut object = object();
    assert_eq!(
        object.default_external_name().as_deref(),
        Some("shop-orders-0c9f3a1e5b")
    );
    assert!(object.references().is_empty());
    assert!(object.secret_references().is_empty());
    assert_eq!(object.deletion_policy(), DeletionPolicy::Snapshot);

    object.spec.identifier = Some("orders-db".into());
    object.spec.db_subnet_group_ref = Some(LocalReference {
        name: "orders-subnets".into(),
    });
    object.spec.master_password = Some(user_password());
    assert_eq!(object.default_external_name().as_deref(), Some("orders-db"));
    let references = object.references();
    assert_eq!(references.len(), 1);
    assert_eq!(references[0].field, "dbSubnetGroupRef");
    assert_eq!(references[0].name, "orders-subnets");
    assert_eq!(references[0].resource.kind, "DBSubnetGroup");
    assert_eq!(object.secret_references(), ["orders-admin"]);
}

#[test]
fn the_spec_uses_the_api_field_names() {
    let mut object = object();
    object.spec.multi_az = Some(true);
    let json = serde_json::to_value(&object.spec).unwrap();
    for key in [
        "allocatedStorageGiB",
        "multiAZ",
        "backupRetentionDays",
        "masterUsername",
        "instanceClass",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
}
