//! The custom resource: references, key pair, tags, CEL rules, field names.

use super::*;

#[test]
fn the_object_declares_its_references_key_pair_and_tags() {
    let mut object = object();
    assert_eq!(object.default_external_name(), None);
    assert_eq!(object.deletion_policy(), DeletionPolicy::Delete);
    assert_eq!(object.key_pair_name(), None);
    assert!(object.references().is_empty());
    assert_eq!(generating().key_pair_name().as_deref(), Some(KEY_PAIR));

    object.spec.security_group_refs = vec![
        LocalReference { name: "web".into() },
        LocalReference { name: "ssh".into() },
    ];
    let references = object.references();
    assert_eq!(references.len(), 2);
    assert_eq!(references[1].field, "securityGroupRefs[1]");
    assert_eq!(references[1].name, "ssh");
    assert_eq!(references[1].resource.kind, "SecurityGroup");
    assert_eq!(Instance::referenced_kinds()[0].kind, "SecurityGroup");

    assert_eq!(object.desired_tags()["Name"], "shop/web");
    object.spec.tags = BTreeMap::from([("Name".into(), "frontend".into())]);
    assert_eq!(object.desired_tags()["Name"], "frontend");
    assert_eq!(object.desired_tags()[UID_TAG], UID);
}

#[test]
fn the_crd_carries_the_cel_rules() {
    let crd = serde_json::to_string(&Instance::crd()).unwrap();
    for message in [
        "an instance has no snapshot: use Delete or Retain",
        "imageId is immutable",
        "subnetId is immutable",
        "sshKey is immutable",
        "userData is immutable",
        "sshKey: set exactly one of generate: true and keyName",
        "writeConnectionSecretToRef is required when sshKey.generate is true",
        "subnetId cannot be added or removed after creation",
    ] {
        assert!(crd.contains(message), "{message} is missing");
    }
    for column in ["Instance", "State", "Public IP"] {
        assert!(crd.contains(&format!("\"name\":\"{column}\"")), "{column}");
    }
    assert!(crd.contains("ec2instance"));
    assert!(crd.contains(r"^ami-[0-9a-f]+$"));
}

#[test]
fn the_spec_uses_the_api_field_names() {
    let mut object = generating();
    object.spec.allow_stop = true;
    object.spec.user_data = Some("echo hi".into());
    let json = serde_json::to_value(&object.spec).unwrap();
    for key in [
        "imageId",
        "instanceType",
        "subnetId",
        "sshKey",
        "userData",
        "allowStop",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert_eq!(json["sshKey"]["generate"], true);
    let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
        "imageId": "ami-0abc",
        "instanceType": "t3.micro",
    }))
    .unwrap();
    assert!(!spec.allow_stop && spec.security_group_ids.is_empty());
}
