//! A test's world for the controller: its namespace on the shared control plane, a
//! fault proxy in front of moto, a ProviderConfig pointing at the proxy, and the real
//! `tether run` binary reconciling that namespace.

use std::time::Duration;

use aws_config::SdkConfig;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use tether_api::{conditions, managed::Managed};
use tether_testkit::{
    ControlPlane, Emulator, Extra, FaultProxy, TestNamespace, Tether, cluster,
    emulator::EmulatorKind,
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// The ProviderConfig credentials of a test world: the SDK's chain, which finds the
/// keys `tether run` gets in its environment.
pub(crate) const DEFAULT_CREDENTIALS: &str = "{source: Default}";

/// Everything one controller test needs.
pub struct World {
    pub ns: TestNamespace,
    pub proxy: FaultProxy,
    pub tether: Tether,
    /// Name of the test's ProviderConfig (the namespace's name).
    pub provider_config: String,
    /// The emulator behind the proxy.
    pub emulator: EmulatorKind,
    /// The test's own control plane, when it has one (stopped last).
    pub control_plane: Option<ControlPlane>,
}

impl World {
    /// A namespace, CRDs, a proxy over moto, a ProviderConfig and `tether run`.
    pub async fn start() -> World {
        Self::start_on(EmulatorKind::Moto).await
    }

    /// A namespace, CRDs, a proxy over the `emulator`, a ProviderConfig and
    /// `tether run`.
    pub async fn start_on(emulator: EmulatorKind) -> World {
        Self::start_in(emulator, None, DEFAULT_CREDENTIALS, |_| Extra::default()).await
    }

    /// A world over moto whose `tether run` gets the extra arguments and environment
    /// `extra` gives for the test's namespace.
    pub async fn start_with(extra: impl FnOnce(&str) -> Extra) -> World {
        Self::start_in(EmulatorKind::Moto, None, DEFAULT_CREDENTIALS, extra).await
    }

    /// A world over moto whose ProviderConfig has `credentials` (the YAML of the
    /// `credentials` field, e.g. `{source: AssumeRole, assumeRole: {roleArn: …}}`).
    pub async fn start_with_credentials(credentials: &str) -> World {
        Self::start_in(EmulatorKind::Moto, None, credentials, |_| Extra::default()).await
    }

    /// A world on a control plane of its own, for a test that changes what every
    /// test shares (such as deleting the CRDs), over moto.
    pub async fn start_alone() -> World {
        let control_plane = tokio::task::spawn_blocking(ControlPlane::start)
            .await
            .expect("starting a control plane");
        Self::start_in(
            EmulatorKind::Moto,
            Some(control_plane),
            DEFAULT_CREDENTIALS,
            |_| Extra::default(),
        )
        .await
    }

    async fn start_in(
        emulator: EmulatorKind,
        control_plane: Option<ControlPlane>,
        credentials: &str,
        extra: impl FnOnce(&str) -> Extra,
    ) -> World {
        let ns = match &control_plane {
            Some(control_plane) => TestNamespace::new_on(control_plane).await,
            None => TestNamespace::new().await,
        };
        cluster::install_crds(&ns.client).await;
        let proxy = FaultProxy::start(Emulator::of(emulator).endpoint()).await;
        let provider_config = ns.name.clone();
        cluster::apply(
            &ns.client,
            None,
            &provider_config_yaml(&provider_config, &proxy, credentials),
        )
        .await
        .expect("applying the test's ProviderConfig");
        let kubeconfig = control_plane
            .as_ref()
            .unwrap_or_else(|| ControlPlane::shared())
            .kubeconfig()
            .to_owned();
        let tether = Tether::start_with(TETHER, &ns.name, &kubeconfig, extra(&ns.name));
        World {
            ns,
            proxy,
            tether,
            provider_config,
            emulator,
            control_plane,
        }
    }

    /// Applies `yaml` in the test's namespace; fails when the API server refuses it.
    pub async fn apply(&self, yaml: &str) {
        if let Err(error) = self.ns.apply(yaml).await {
            panic!("the API server refused {yaml}: {error}");
        }
    }

    /// SDK configuration straight to the emulator (not through the proxy, so the
    /// test's own calls are not counted).
    pub fn direct_sdk_config(&self) -> SdkConfig {
        crate::db_subnet_group::sdk_config(Emulator::of(self.emulator).endpoint())
    }

    /// An EC2 client straight to the emulator.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.direct_sdk_config())
    }

    /// The Events about object `name`, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = self.ns.api();
        let mut listed = events
            .list(&ListParams::default().fields(&format!("regarding.name={name}")))
            .await
            .expect("listing Events")
            .items;
        listed.sort_by_key(|event| event.metadata.creation_timestamp.clone());
        listed
    }

    /// Waits until the Events about `name` include one with `reason`, and returns it.
    pub async fn wait_for_event(&self, name: &str, reason: &str) -> Event {
        self.wait_for(
            Duration::from_secs(60),
            &format!("no {reason} Event about {name}"),
            async || {
                self.events(name)
                    .await
                    .into_iter()
                    .find(|event| event.reason.as_deref() == Some(reason))
            },
        )
        .await
    }

    /// [`World::wait_for_event`] for an Event that must be a Warning.
    pub async fn wait_for_warning(&self, name: &str, reason: &str) -> Event {
        let event = self.wait_for_event(name, reason).await;
        assert_eq!(
            event.type_.as_deref(),
            Some("Warning"),
            "the {reason} Event about {name} is a Warning"
        );
        event
    }

    /// Asks `check` every 250 ms, for up to `within`, until it gives a value, and
    /// returns that; on time-out, fails with `failure` and the controller's log.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        failure: &str,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        for _ in 0..within.as_millis() / 250 {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{failure} after {} s of waiting; controller log:\n{}",
            within.as_secs(),
            self.log_tail()
        );
    }

    /// [`World::wait_for`] a `check` that holds or not.
    pub async fn wait_until(
        &self,
        within: Duration,
        failure: &str,
        mut check: impl AsyncFnMut() -> bool,
    ) {
        self.wait_for(within, failure, async || check().await.then_some(()))
            .await;
    }

    /// After a refusal of `operation` that tether must not retry before the next poll
    /// (a Terminal error): watches two and a half poll intervals (10 s each in tests)
    /// and fails if `operation` was sent more than once per interval, the first call
    /// included. A hot retry, or a backoff shorter than the poll, shows as more.
    pub async fn assert_retried_at_poll_speed_only(&self, operation: &str) {
        tokio::time::sleep(Duration::from_secs(25)).await;
        let sent = self.proxy.count(operation);
        assert!(
            sent <= 3,
            "{operation} sent {sent} times in 25 s (poll every 10 s): a retry storm; {:?}\n{}",
            self.proxy.counts(),
            self.log_tail()
        );
    }

    /// The last lines of the controller's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.tether.log())
    }

    /// Stops the controller (it must exit cleanly within 10 s) and deletes the
    /// namespace.
    pub async fn finish(self) {
        self.finish_within(Duration::from_secs(10)).await;
    }

    /// Stops the controller (it must exit cleanly within `grace`) and deletes the
    /// namespace.
    pub async fn finish_within(self, grace: Duration) {
        let World {
            ns,
            proxy,
            mut tether,
            control_plane,
            ..
        } = self;
        // Waiting for the process blocks a thread; not this one, which also runs the
        // fault proxy that the controller's last calls still go through.
        let (stopped, tether) =
            tokio::task::spawn_blocking(move || (tether.stop_within(grace), tether))
                .await
                .expect("stopping tether run");
        assert!(
            stopped,
            "tether run exits cleanly on SIGTERM; its log ends:\n{}",
            tail(&tether.log())
        );
        drop(proxy);
        ns.delete().await;
        drop(control_plane);
    }
}

impl World {
    /// Deletes object `name` and waits up to 60 s until it is gone.
    pub async fn delete_and_wait_gone<K>(&self, api: &Api<K>, name: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if let Err(error) = api.delete(name, &DeleteParams::default()).await {
            panic!("the API server refused to delete {name}: {error}");
        }
        self.wait_gone(api, name).await;
    }

    /// Waits up to 60 s until object `name` is gone (its finalizer released).
    pub async fn wait_gone<K>(&self, api: &Api<K>, name: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.wait_gone_within(api, name, Duration::from_secs(60))
            .await;
    }

    /// Waits up to `within` until object `name` is gone (its finalizer released).
    pub async fn wait_gone_within<K>(&self, api: &Api<K>, name: &str, within: Duration)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.wait_until(within, &format!("{name} still exists"), async || {
            api.get_opt(name)
                .await
                .expect("reading the object")
                .is_none()
        })
        .await;
    }

    /// Waits up to 60 s until object `name`'s condition `type_` has `status` (and
    /// `reason`, if given); on time-out, fails with its conditions and the controller's
    /// log.
    pub async fn wait_condition<M: Managed>(
        &self,
        api: &Api<M>,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> M {
        self.wait_condition_of(api, name, type_, status, reason, M::conditions)
            .await
    }

    /// Waits up to 60 s until object `name` is `Synced=False` for `reason` (as
    /// [`World::wait_condition`] does), and returns that condition's message.
    pub async fn wait_refusal<M: Managed>(&self, api: &Api<M>, name: &str, reason: &str) -> String {
        let refused = self
            .wait_condition(api, name, conditions::SYNCED, "False", Some(reason))
            .await;
        condition(&refused, conditions::SYNCED).message
    }

    /// [`World::wait_condition`], waiting up to `within`.
    pub async fn wait_condition_within<M: Managed>(
        &self,
        api: &Api<M>,
        name: &str,
        (type_, status, reason): (&str, &str, Option<&str>),
        within: Duration,
    ) -> M {
        self.wait_until_condition(api, name, (type_, status, reason), M::conditions, within)
            .await
    }

    /// [`World::wait_condition`] for any kind, whose conditions `conditions` reads.
    pub async fn wait_condition_of<K>(
        &self,
        api: &Api<K>,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        conditions: impl Fn(&K) -> &[Condition],
    ) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.wait_until_condition(
            api,
            name,
            (type_, status, reason),
            conditions,
            Duration::from_secs(60),
        )
        .await
    }

    async fn wait_until_condition<K>(
        &self,
        api: &Api<K>,
        name: &str,
        (type_, status, reason): (&str, &str, Option<&str>),
        conditions: impl Fn(&K) -> &[Condition],
        within: Duration,
    ) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let mut last = None;
        for _ in 0..within.as_millis() / 250 {
            let object = api.get_opt(name).await.expect("reading the object");
            let holds = object
                .as_ref()
                .and_then(|object| conditions::find(conditions(object), type_))
                .is_some_and(|condition| {
                    condition.status == status && reason.is_none_or(|r| condition.reason == r)
                });
            if holds {
                return object.expect("checked above");
            }
            last = object;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{name} was not {type_}={status} {} within {} s; its conditions: {:#?}\ncontroller log:\n{}",
            reason.unwrap_or_default(),
            within.as_secs(),
            last.as_ref().map(|object| conditions(object).to_vec()),
            self.log_tail()
        );
    }
}

/// A ProviderConfig `name` for us-east-1 at the fault proxy `proxy`, with
/// `credentials` (the YAML of the `credentials` field).
pub fn provider_config_yaml(name: &str, proxy: &FaultProxy, credentials: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {name}}}\nspec:\n  region: us-east-1\n  endpoint: {}\n  credentials: {credentials}\n",
        proxy.endpoint()
    )
}

/// Merge-patches object `name` of `api` with `patch`; fails when the API server refuses
/// it.
pub async fn merge_patch<K>(api: &Api<K>, name: &str, patch: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Err(error) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        panic!("the API server refused the patch {patch} of {name}: {error}");
    }
}

/// The cloud name tether derives for the object `name` with `uid` in `namespace`:
/// `<namespace>-<name>-<first 10 hex digits of the UID>`.
pub fn derived_name(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}-{name}-{}", &uid.replace('-', "")[..10])
}

/// The condition `type_` of `object`; fails if it has none.
pub fn condition<M: Managed>(
    object: &M,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::find(object.conditions(), type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
        .clone()
}

/// The last 40 lines of `log`.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Declares the check `$body` (an `async fn(EmulatorKind)`) as two tests, `$on_moto`
/// over moto and `$on_localstack` over LocalStack, for behaviour both emulators must
/// show alike. An attribute before `$body` replaces `#[tokio::test]` (for a runtime
/// with more threads).
macro_rules! on_moto_and_localstack {
    ($body:ident: $on_moto:ident, $on_localstack:ident) => {
        $crate::world::on_moto_and_localstack!(#[tokio::test] $body: $on_moto, $on_localstack);
    };
    (#[$runtime:meta] $body:ident: $on_moto:ident, $on_localstack:ident) => {
        #[$runtime]
        async fn $on_moto() {
            $body(tether_testkit::emulator::EmulatorKind::Moto).await;
        }

        #[$runtime]
        async fn $on_localstack() {
            $body(tether_testkit::emulator::EmulatorKind::LocalStack).await;
        }
    };
}
pub(crate) use on_moto_and_localstack;
