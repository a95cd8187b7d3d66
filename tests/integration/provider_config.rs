//! The ProviderConfig CRD on the real API server: valid objects are accepted, invalid
//! ones are refused at apply time with a message naming the field.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, ResourceExt};
use tether_aws::ProviderConfig;
use tether_aws::provider_config::CredentialsSource;
use tether_testkit::{TestNamespace, cluster};

#[tokio::test]
async fn crds_install_and_become_established() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    for crd in tether::crds::all() {
        let installed = crds
            .get(&crd.name_any())
            .await
            .expect("the CRD is installed");
        let established = installed
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{} is not Established", crd.name_any());
    }
    ns.delete().await;
}

#[tokio::test]
async fn valid_provider_configs_are_accepted() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let name = |suffix: &str| format!("{}-{suffix}", ns.name);
    let applied = ns
        .apply(&format!(
            r#"
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {minimal}}}
spec:
  region: eu-west-1
---
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {secret}}}
spec:
  region: us-gov-west-1
  endpoint: http://127.0.0.1:4566
  credentials:
    source: Secret
    secretRef: {{namespace: {ns}, name: aws-keys}}
---
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {assume}}}
spec:
  region: ap-southeast-2
  endpoint: https://rds.ap-southeast-2.amazonaws.com
  credentials:
    source: AssumeRole
    assumeRole:
      roleArn: arn:aws:iam::123456789012:role/tether
      externalId: platform-team
"#,
            minimal = name("minimal"),
            secret = name("secret"),
            assume = name("assume"),
            ns = ns.name,
        ))
        .await
        .expect("valid ProviderConfigs are accepted");
    assert_eq!(applied.len(), 3);

    let configs: Api<ProviderConfig> = Api::all(ns.client.clone());
    let minimal = configs.get(&name("minimal")).await.unwrap();
    assert_eq!(
        minimal.spec.credentials.source,
        CredentialsSource::Default,
        "the credential source defaults to the SDK chain"
    );
    let assume = configs.get(&name("assume")).await.unwrap();
    let role = assume
        .spec
        .credentials
        .assume_role
        .expect("assumeRole kept");
    assert_eq!(role.role_arn, "arn:aws:iam::123456789012:role/tether");
    assert_eq!(role.external_id.as_deref(), Some("platform-team"));
    for suffix in ["minimal", "secret", "assume"] {
        configs
            .delete(&name(suffix), &Default::default())
            .await
            .unwrap();
    }
    ns.delete().await;
}

#[tokio::test]
async fn invalid_provider_configs_are_refused_naming_the_field() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let cases = [
        (
            "an endpoint that is not a URL",
            "region: eu-west-1\n  endpoint: not a url",
            &["spec.endpoint", "must be an http or https URL"][..],
        ),
        (
            "an endpoint with another scheme",
            "region: eu-west-1\n  endpoint: ftp://127.0.0.1:21",
            &["spec.endpoint", "must be an http or https URL"],
        ),
        (
            "a region that is not region-shaped",
            "region: Mars",
            &["spec.region", "should match"],
        ),
        (
            "an unknown credential source",
            "region: eu-west-1\n  credentials: {source: Vault}",
            &["spec.credentials.source", "Unsupported value", "\"Vault\""],
        ),
        (
            "AssumeRole without assumeRole",
            "region: eu-west-1\n  credentials: {source: AssumeRole}",
            &[
                "spec.credentials.assumeRole",
                "roleArn is required when source is AssumeRole",
            ],
        ),
        (
            "AssumeRole without roleArn",
            "region: eu-west-1\n  credentials: {source: AssumeRole, assumeRole: {externalId: abc}}",
            &["spec.credentials.assumeRole.roleArn", "Required value"],
        ),
        (
            "a malformed roleArn",
            "region: eu-west-1\n  credentials: {source: AssumeRole, assumeRole: {roleArn: tether}}",
            &["spec.credentials.assumeRole.roleArn", "should match"],
        ),
        (
            "Secret without secretRef",
            "region: eu-west-1\n  credentials: {source: Secret}",
            &[
                "spec.credentials.secretRef",
                "secretRef is required when source is Secret",
            ],
        ),
        (
            "assumeRole with another source",
            "region: eu-west-1\n  credentials: {source: Default, assumeRole: {roleArn: 'arn:aws:iam::123456789012:role/x'}}",
            &[
                "spec.credentials.assumeRole",
                "only used when source is AssumeRole",
            ],
        ),
    ];
    for (index, (what, spec, expected)) in cases.iter().enumerate() {
        let yaml = format!(
            "apiVersion: tether.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {}-bad-{index}}}\nspec:\n  {spec}\n",
            ns.name
        );
        let refusal = match ns.apply(&yaml).await {
            Ok(_) => panic!("a ProviderConfig with {what} was accepted"),
            Err(kube::Error::Api(status)) => status,
            Err(other) => panic!("a ProviderConfig with {what} failed unexpectedly: {other}"),
        };
        assert_eq!(refusal.code, 422, "{what}: {}", refusal.message);
        for fragment in *expected {
            assert!(
                refusal.message.contains(fragment),
                "{what}: the refusal does not mention {fragment:?}: {}",
                refusal.message
            );
        }
    }
    ns.delete().await;
}

#[tokio::test]
async fn examples_apply_as_they_are() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let dir = tether_testkit::repo_root().join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("provider-config"))
        {
            let yaml = std::fs::read_to_string(&path).unwrap();
            let objects = ns
                .apply(&yaml)
                .await
                .unwrap_or_else(|error| panic!("{} is refused: {error}", path.display()));
            applied += objects.len();
        }
    }
    assert!(
        applied >= 3,
        "the ProviderConfig examples hold at least three objects"
    );
    ns.delete().await;
}
