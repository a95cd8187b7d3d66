//! The rules in front of every cloud write, kept by the runtime so that no kind can
//! skip them:
//!
//! - the write gate: every create, update and delete a reconcile asks of a provider
//!   (and every change to a login inside a database) first checks that this replica
//!   still leads ([`WriteGate`]), so a replica that lost the lease, or cannot be sure
//!   it holds it, writes nothing to AWS however far its reconciles had got;
//! - the write guard: every create, update and delete holds the guard the kind names
//!   for the resource in its shared snapshot ([`ExternalClient::write_guard`]) until
//!   the call returns, so that nothing the snapshot saw before the write ended answers
//!   for the resource afterwards.
//!
//! Observing and preparing (or renewing) credentials write nothing to the cloud and
//! pass as they are.

use std::future::Future;

use tether_api::{
    external::{
        ConnectionDetails, Connector, Context, Created, ExternalClient, ObservationOf, ObservedOf,
        ProviderError,
    },
    managed::{DeletionPolicy, Managed},
    rotation::Login,
    snapshot::WriteGuard,
};

use crate::leader::WriteGate;

/// A connector whose clients pass the write gate before every cloud write.
pub struct GatedConnector<C> {
    inner: C,
    gate: WriteGate,
}

impl<C> GatedConnector<C> {
    pub fn new(inner: C, gate: WriteGate) -> Self {
        Self { inner, gate }
    }
}

impl<M: Managed, C: Connector<M>> Connector<M> for GatedConnector<C> {
    type Client = GatedClient<C::Client>;

    async fn connect(&self, object: &M) -> Result<Self::Client, ProviderError> {
        Ok(GatedClient {
            inner: self.inner.connect(object).await?,
            gate: self.gate.clone(),
        })
    }
}

/// A provider's client whose writes pass the write gate.
pub struct GatedClient<X> {
    inner: X,
    gate: WriteGate,
}

impl<X> GatedClient<X> {
    /// Whether the write may go ahead; a refusal is Waiting: nothing was sent, and the
    /// replica that leads does the work.
    fn pass(&self) -> Result<(), ProviderError> {
        self.gate
            .check()
            .map_err(|refused| ProviderError::waiting(refused.to_string()))
    }
}

impl<M: Managed, X: ExternalClient<M>> ExternalClient<M> for GatedClient<X> {
    fn observe(
        &self,
        object: &M,
        context: Context<'_>,
    ) -> impl Future<Output = Result<ObservationOf<M>, ProviderError>> + Send {
        self.inner.observe(object, context)
    }

    fn prepare(
        &self,
        object: &M,
        context: Context<'_>,
    ) -> impl Future<Output = Result<Option<ConnectionDetails>, ProviderError>> + Send {
        self.inner.prepare(object, context)
    }

    fn renew_credentials(
        &self,
        object: &M,
        published: &ConnectionDetails,
    ) -> impl Future<Output = Result<Option<ConnectionDetails>, ProviderError>> + Send {
        self.inner.renew_credentials(object, published)
    }

    fn write_guard(&self, object: &M, context: Context<'_>) -> Option<WriteGuard> {
        self.inner.write_guard(object, context)
    }

    async fn create(&self, object: &M, context: Context<'_>) -> Result<Created, ProviderError> {
        self.pass()?;
        let _written = self.inner.write_guard(object, context);
        self.inner.create(object, context).await
    }

    async fn update(
        &self,
        object: &M,
        context: Context<'_>,
        observed: &ObservedOf<M>,
    ) -> Result<(), ProviderError> {
        self.pass()?;
        let _written = self.inner.write_guard(object, context);
        self.inner.update(object, context, observed).await
    }

    async fn delete(
        &self,
        object: &M,
        context: Context<'_>,
        policy: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        self.pass()?;
        let _written = self.inner.write_guard(object, context);
        self.inner.delete(object, context, policy).await
    }

    async fn activate_login(
        &self,
        object: &M,
        master: &ConnectionDetails,
        observed: &ObservedOf<M>,
        login: Login,
    ) -> Result<ConnectionDetails, ProviderError> {
        self.pass()?;
        self.inner
            .activate_login(object, master, observed, login)
            .await
    }

    async fn retire_login(
        &self,
        object: &M,
        master: &ConnectionDetails,
        observed: &ObservedOf<M>,
        login: Login,
    ) -> Result<(), ProviderError> {
        self.pass()?;
        self.inner
            .retire_login(object, master, observed, login)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        time::{Duration, Instant, SystemTime},
    };

    use tether_api::{
        ErrorClass,
        external::{Observed, Readiness},
        snapshot::Known,
    };

    use super::*;
    use crate::reconciler::fake::{FakeClient, FakeKind, fake};

    /// A Ready resource as observed, up to date.
    fn ready() -> ObservedOf<FakeKind> {
        Observed {
            external_name: None,
            owner_uid: None,
            delta: Default::default(),
            readiness: Readiness::Ready,
            at_provider: Default::default(),
            connection: ConnectionDetails::default(),
        }
    }

    /// Every call the runtime can make, through `client`; whether each succeeded.
    async fn every_call(client: &GatedClient<FakeClient>) -> BTreeMap<&'static str, bool> {
        let object: FakeKind = fake("web", None);
        let context = Context::named(Some("sg-1"));
        let observed = ready();
        BTreeMap::from([
            ("observe", client.observe(&object, context).await.is_ok()),
            ("prepare", client.prepare(&object, context).await.is_ok()),
            ("create", client.create(&object, context).await.is_ok()),
            (
                "update",
                client.update(&object, context, &observed).await.is_ok(),
            ),
            (
                "delete",
                client
                    .delete(&object, context, DeletionPolicy::Delete)
                    .await
                    .is_ok(),
            ),
            (
                "activate_login",
                client
                    .activate_login(&object, &ConnectionDetails::default(), &observed, Login::A)
                    .await
                    .is_ok(),
            ),
            (
                "retire_login",
                client
                    .retire_login(&object, &ConnectionDetails::default(), &observed, Login::B)
                    .await
                    .is_ok(),
            ),
        ])
    }

    #[tokio::test]
    async fn every_write_holds_the_kinds_write_guard_until_it_returns() {
        let provider = FakeClient::default();
        let client = GatedClient {
            inner: provider.clone(),
            gate: WriteGate::default(),
        };
        let object: FakeKind = fake("web", None);
        let context = Context::named(Some("web"));
        let observed = ready();
        for write in ["create", "update", "delete"] {
            // The read that decided the write; the fake records another while the
            // write is under way.
            provider.snapshot().record("web", Instant::now(), Some(1));
            let done = match write {
                "create" => client.create(&object, context).await.map(drop),
                "update" => client.update(&object, context, &observed).await,
                _ => client
                    .delete(&object, context, DeletionPolicy::Delete)
                    .await
                    .map(drop),
            };
            assert_eq!(done, Ok(()));
            assert_eq!(
                provider.known("web").await,
                Known::Unknown,
                "{write}: nothing read before the write ended answers for the resource"
            );
        }
        assert_eq!(provider.calls(), ["create", "update", "delete"]);

        // The kind takes no guard itself: called past the runtime, the read made during
        // the write would be taken for the resource as it is now.
        provider.create(&object, context).await.unwrap();
        assert_eq!(provider.known("web").await, Known::Present(0));
    }

    #[tokio::test]
    async fn a_replica_that_does_not_lead_reads_the_cloud_but_writes_nothing_to_it() {
        let provider = FakeClient::default();
        let gate = WriteGate::elected();
        let client = GatedClient {
            inner: provider.clone(),
            gate: gate.clone(),
        };
        let outcomes = every_call(&client).await;
        assert_eq!(
            outcomes,
            BTreeMap::from([
                ("observe", true),
                ("prepare", true),
                ("create", false),
                ("update", false),
                ("delete", false),
                ("activate_login", false),
                ("retire_login", false),
            ])
        );
        assert_eq!(provider.calls(), ["observe"]);
        let refused = client
            .create(&fake("web", None), Context::named(None))
            .await
            .unwrap_err();
        assert_eq!(refused.class, ErrorClass::Waiting, "nothing was sent");
    }

    #[tokio::test]
    async fn a_leader_writes_through_and_so_does_a_replica_without_leader_election() {
        for gate in [WriteGate::default(), {
            let gate = WriteGate::elected();
            gate.hold_until(SystemTime::now() + Duration::from_secs(60));
            gate
        }] {
            let provider = FakeClient::default();
            let client = GatedClient {
                inner: provider.clone(),
                gate,
            };
            assert!(every_call(&client).await.values().all(|ok| *ok));
            assert_eq!(
                provider.calls(),
                [
                    "observe",
                    "create",
                    "update",
                    "delete",
                    "activate_login",
                    "retire_login"
                ]
            );
        }
    }
}
