//! The EC2 calls that find, create, change and delete a security group, and add and
//! remove its rules.

use std::{collections::BTreeSet, time::Duration};

use aws_sdk_ec2::{
    error::ProvideErrorMetadata,
    types::{Filter, IpPermission, ResourceType, SecurityGroup as Ec2SecurityGroup},
};
use kube::ResourceExt;
use tether_api::{
    ErrorClass,
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::DeletionPolicy,
    snapshot::{Freshness, Listing, Snapshot, WriteGuard},
};

use super::{
    Direction, ObservedRule, SecurityGroup, SecurityGroupObservation,
    diff::{RuleChanges, diff},
    rules::observed_rules,
};
use crate::{
    call_metrics::AwsConfig,
    ec2::{
        is_not_found, retried_only_when_throttled, sync_tags, tag_map, tag_specification,
        tagged_filter, uid_filter, uid_tag,
    },
    errors::{absent_if, provider_error},
    paging::for_each_page,
    tags::UID_TAG,
};

/// EC2's answer to a create whose group name is taken in the VPC.
const GROUP_DUPLICATE: &str = "InvalidGroup.Duplicate";

/// EC2's answer to a delete of a group still in use: named by another group's rule,
/// or attached to a network interface.
const DEPENDENCY_VIOLATION: &str = "DependencyViolation";

/// How old a read of the group may be for its delete to revoke the rules it saw: the
/// deletion's own observe reads it just before.
const OBSERVED_FOR_DELETE: Duration = Duration::from_secs(30);

/// EC2's filters on the groups that ingress and egress rules name.
const NAMING_FILTERS: [&str; 2] = ["ip-permission.group-id", "egress.ip-permission.group-id"];

/// Adding or removing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Add,
    Remove,
}

impl Change {
    /// The error code that says the change was already made: a rule added that is
    /// there, or removed that is gone.
    fn already_done_code(self) -> &'static str {
        match self {
            Self::Add => "InvalidPermission.Duplicate",
            Self::Remove => "InvalidPermission.NotFound",
        }
    }
}

/// The most groups one `DescribeSecurityGroups` page may hold.
const PAGE_SIZE: i32 = 1000;

/// Observes and changes security groups through the EC2 API. Clones share the
/// snapshot.
#[derive(Clone, Debug)]
pub struct SecurityGroupClient {
    ec2: aws_sdk_ec2::Client,
    /// Every security group tether tagged in this account and region, by UID: answers
    /// the polls of every SecurityGroup of this ProviderConfig at once.
    snapshot: Snapshot<Ec2SecurityGroup>,
}

impl SecurityGroupClient {
    /// A client that calls EC2 through `ec2`.
    pub fn new(ec2: aws_sdk_ec2::Client) -> Self {
        Self {
            ec2,
            snapshot: Snapshot::default(),
        }
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &AwsConfig) -> Self {
        Self::new(config.ec2())
    }

    /// The group `id`, unless EC2 has no such group.
    async fn by_id(&self, id: &str) -> Result<Option<Ec2SecurityGroup>, ProviderError> {
        let described = absent_if(
            self.ec2
                .describe_security_groups()
                .group_ids(id)
                .send()
                .await,
            is_not_found,
        )?;
        Ok(described.and_then(|d| d.security_groups().first().cloned()))
    }

    /// Every group carrying a `tether.dev/uid` tag, by that tag's value, over all pages.
    async fn tagged_groups(&self) -> Result<Listing<Ec2SecurityGroup>, ProviderError> {
        let mut entries = Vec::new();
        let request = self.ec2.describe_security_groups().filters(tagged_filter());
        let pages = for_each_page!(request, PAGE_SIZE, |page| {
            entries.extend(
                page.security_groups()
                    .iter()
                    .filter_map(|group| Some((uid_tag(group.tags())?.to_owned(), group.clone()))),
            );
        });
        Ok(Listing { entries, pages })
    }

    /// The group of `object`, as a record at most `freshness` old saw it (the shared
    /// snapshot, or a direct read made since), else as [`Self::find`] finds it now.
    async fn group(
        &self,
        object: &SecurityGroup,
        external_name: Option<&str>,
        freshness: Freshness,
    ) -> Result<Option<Ec2SecurityGroup>, ProviderError> {
        let Some(uid) = object.uid() else {
            return self.find(object, external_name).await;
        };
        self.snapshot
            .get(
                &uid,
                freshness,
                || self.tagged_groups(),
                // Found by its UID tag: the object's group, unless the object names
                // another (adopted) one.
                |group| external_name.is_none_or(|id| group.group_id() == Some(id)),
                || self.find(object, external_name),
            )
            .await
    }

    /// The group with id `external_name`, else the one tagged with the object's UID.
    async fn find(
        &self,
        object: &SecurityGroup,
        external_name: Option<&str>,
    ) -> Result<Option<Ec2SecurityGroup>, ProviderError> {
        if let Some(id) = external_name
            && let Some(group) = self.by_id(id).await?
        {
            return Ok(Some(group));
        }
        let Some(uid) = object.uid() else {
            return Ok(None);
        };
        let described = self
            .ec2
            .describe_security_groups()
            .filters(uid_filter(&uid))
            .send()
            .await
            .map_err(provider_error)?;
        Ok(described.security_groups().first().cloned())
    }

    /// After `InvalidGroup.Duplicate`: the group named `group_name` in the object's VPC
    /// is this object's own (it carries the object's UID), found again; any other is
    /// someone else's, and the create fails with `error`'s code and a message that says
    /// so. A group not visible yet is Waiting.
    async fn duplicate(
        &self,
        object: &SecurityGroup,
        group_name: &str,
        error: ProviderError,
    ) -> Result<Created, ProviderError> {
        let mut filters = vec![
            Filter::builder()
                .name("group-name")
                .values(group_name)
                .build(),
        ];
        if let Some(vpc) = &object.spec.vpc_id {
            filters.push(Filter::builder().name("vpc-id").values(vpc).build());
        }
        let described = self
            .ec2
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(provider_error)?;
        let Some(group) = described.security_groups().first() else {
            return Err(error.reclassed(
                ErrorClass::Waiting,
                format!(
                    "security group {group_name} exists but DescribeSecurityGroups does not show it yet"
                ),
            ));
        };
        let ours = object.uid().is_some_and(|uid| {
            tag_map(group.tags()).get(UID_TAG).map(String::as_str) == Some(uid.as_str())
        });
        match group.group_id() {
            Some(id) if ours => Ok(Created {
                external_name: Some(id.to_owned()),
            }),
            id => Err(error.reclassed(
                ErrorClass::Terminal,
                format!(
                    "security group {group_name} ({}) exists and was not created by this object; \
                     to manage it, set {}; for a new one, choose another groupName",
                    id.unwrap_or("no id"),
                    tether_api::managed::EXTERNAL_NAME_ANNOTATION
                ),
            )),
        }
    }

    /// After `error`, EC2's `DependencyViolation` to deleting `group_id`: when other
    /// groups' rules still name the group, an error that names those groups (AWS's
    /// message does not), Transient so that the retries back off: the wait ends only
    /// when someone removes those rules or groups, which may be never. Otherwise
    /// something else uses the group (an instance shutting down): `error` as it is.
    async fn still_named(&self, group_id: &str, error: ProviderError) -> ProviderError {
        let naming = match self.groups_naming(group_id).await {
            Ok(naming) if naming.is_empty() => return error,
            Ok(naming) => naming,
            Err(lookup) => return lookup,
        };
        let naming: Vec<&str> = naming.iter().map(String::as_str).collect();
        error.reclassed(
            ErrorClass::Transient,
            format!(
                "security group {group_id} is still named by rules of {}, and AWS keeps a group \
                 that another group's rule names: tether deletes it once those rules or groups \
                 are gone",
                naming.join(", ")
            ),
        )
    }

    /// The other groups whose ingress or egress rules name `group_id`, over all pages.
    async fn groups_naming(&self, group_id: &str) -> Result<BTreeSet<String>, ProviderError> {
        let mut naming = BTreeSet::new();
        for (filter, direction) in NAMING_FILTERS
            .into_iter()
            .zip([Direction::Ingress, Direction::Egress])
        {
            let request = self
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name(filter).values(group_id).build());
            for_each_page!(request, PAGE_SIZE, |page| {
                naming.extend(
                    page.security_groups()
                        .iter()
                        .filter(|group| {
                            observed_rules(group, direction)
                                .iter()
                                .any(|rule| rule.peer == group_id)
                        })
                        .filter_map(|group| group.group_id())
                        .filter(|id| *id != group_id)
                        .map(str::to_owned),
                );
            });
        }
        Ok(naming)
    }

    /// Makes the group's rules in `direction` the `desired` ones, given `actual`:
    /// adds first, then removes, so traffic allowed before and after never stops.
    async fn converge(
        &self,
        group_id: &str,
        direction: Direction,
        desired: &BTreeSet<ObservedRule>,
        actual: &[ObservedRule],
        keep_group_peers: bool,
    ) -> Result<(), ProviderError> {
        let changes = RuleChanges::between(desired, actual, keep_group_peers);
        self.change(group_id, direction, Change::Add, &changes.add)
            .await?;
        self.change(group_id, direction, Change::Remove, &changes.remove)
            .await
    }

    /// Adds or removes `rules`, in one call; when AWS says part of it was already
    /// done (our view of the rules was stale), one call per rule, skipping those.
    pub(super) async fn change(
        &self,
        group_id: &str,
        direction: Direction,
        change: Change,
        rules: &[ObservedRule],
    ) -> Result<(), ProviderError> {
        if rules.is_empty() {
            return Ok(());
        }
        let permissions: Vec<IpPermission> =
            rules.iter().map(ObservedRule::to_permission).collect();
        let already_done =
            |error: &ProviderError| error.code.as_deref() == Some(change.already_done_code());
        match self
            .send(group_id, direction, change, permissions.clone())
            .await
        {
            Err(error) if already_done(&error) && permissions.len() > 1 => {
                for permission in permissions {
                    match self
                        .send(group_id, direction, change, vec![permission])
                        .await
                    {
                        Err(error) if !already_done(&error) => return Err(error),
                        _ => {}
                    }
                }
                Ok(())
            }
            Err(error) if already_done(&error) => Ok(()),
            result => result,
        }
    }

    async fn send(
        &self,
        group_id: &str,
        direction: Direction,
        change: Change,
        permissions: Vec<IpPermission>,
    ) -> Result<(), ProviderError> {
        // The four operations take the same input and answer nothing, each through a
        // fluent builder of its own type.
        macro_rules! send {
            ($operation:ident) => {
                self.ec2
                    .$operation()
                    .group_id(group_id)
                    .set_ip_permissions(Some(permissions))
                    .send()
                    .await
                    .map(drop)
                    .map_err(provider_error)
            };
        }
        match (direction, change) {
            (Direction::Ingress, Change::Add) => send!(authorize_security_group_ingress),
            (Direction::Ingress, Change::Remove) => send!(revoke_security_group_ingress),
            (Direction::Egress, Change::Add) => send!(authorize_security_group_egress),
            (Direction::Egress, Change::Remove) => send!(revoke_security_group_egress),
        }
    }
}

impl ExternalClient<SecurityGroup> for SecurityGroupClient {
    /// Groups are kept by the object's UID (their `tether.dev/uid` tag).
    fn write_guard(&self, object: &SecurityGroup, _context: Context<'_>) -> Option<WriteGuard> {
        Some(self.snapshot.write_guard(&object.uid()?))
    }

    async fn observe(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
    ) -> Result<ObservationOf<SecurityGroup>, ProviderError> {
        let Some(group) = self
            .group(object, context.external_name, context.freshness)
            .await?
        else {
            return Ok(Observation::Missing);
        };
        let at_provider = SecurityGroupObservation {
            group_id: group.group_id().unwrap_or_default().to_owned(),
            arn: group.security_group_arn().map(str::to_owned),
            group_name: group.group_name().map(str::to_owned),
            vpc_id: group.vpc_id().map(str::to_owned),
            ingress: observed_rules(&group, Direction::Ingress),
            egress: observed_rules(&group, Direction::Egress),
        };
        let tags = tag_map(group.tags());
        let delta = diff(object, &context, &at_provider, &tags);
        Ok(Observation::Exists(Observed {
            external_name: Some(at_provider.group_id.clone()),
            owner_uid: tags.get(UID_TAG).cloned(),
            delta,
            readiness: Readiness::Ready,
            at_provider,
            connection: ConnectionDetails::default(),
        }))
    }

    async fn create(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
    ) -> Result<Created, ProviderError> {
        let group_name = object.group_name();
        let created = self
            .ec2
            .create_security_group()
            .group_name(&group_name)
            .description(&object.spec.description)
            .set_vpc_id(object.spec.vpc_id.clone())
            .tag_specifications(tag_specification(
                ResourceType::SecurityGroup,
                &object.desired_tags(),
            ))
            .customize()
            .config_override(retried_only_when_throttled())
            .send()
            .await;
        let group_id = match created {
            Ok(created) => created.group_id().unwrap_or_default().to_owned(),
            Err(error) if error.code() == Some(GROUP_DUPLICATE) => {
                // The name is taken: by this object's own group, which a read right
                // after its create did not show, or by someone else's.
                return self
                    .duplicate(object, &group_name, provider_error(error))
                    .await;
            }
            Err(error) => return Err(provider_error(error)),
        };
        // A new group has AWS's default rules: all traffic out to 0.0.0.0/0, and to ::/0
        // in a VPC with IPv6. Read them rather than assume them; if the group cannot be
        // read yet, assume the IPv4 rule and let the next observe correct the rest.
        let (ingress, egress) = match self.by_id(&group_id).await? {
            Some(group) => (
                observed_rules(&group, Direction::Ingress),
                observed_rules(&group, Direction::Egress),
            ),
            None => (
                Vec::new(),
                vec![ObservedRule::new("-1", None, None, "0.0.0.0/0".to_owned())],
            ),
        };
        for (direction, actual) in [(Direction::Ingress, &ingress), (Direction::Egress, &egress)] {
            self.converge(
                &group_id,
                direction,
                &object.desired_rules(direction, &context),
                actual,
                object.peers_unresolved(&context),
            )
            .await?;
        }
        Ok(Created {
            external_name: Some(group_id),
        })
    }

    async fn update(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
        observed: &ObservedOf<SecurityGroup>,
    ) -> Result<(), ProviderError> {
        let group = &observed.at_provider;
        if observed.delta.tags {
            sync_tags(
                &self.ec2,
                &group.group_id,
                &object.desired_tags(),
                context.applied_tags,
            )
            .await?;
        }
        for (direction, actual) in [
            (Direction::Ingress, &group.ingress),
            (Direction::Egress, &group.egress),
        ] {
            self.converge(
                &group.group_id,
                direction,
                &object.desired_rules(direction, &context),
                actual,
                object.peers_unresolved(&context),
            )
            .await?;
        }
        Ok(())
    }

    /// Revokes the group's rules that name other groups, then deletes it: AWS refuses
    /// to delete a group while another group's rule names it, so two groups that name
    /// each other could otherwise never go. While another group still names it, the
    /// error says which (see [`SecurityGroupClient::still_named`]).
    async fn delete(
        &self,
        object: &SecurityGroup,
        context: Context<'_>,
        _policy: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        let Some(group_id) = context.external_name else {
            return Ok(None);
        };
        // The group as the deletion's observe just read it (before this write makes
        // that read stale), else read now.
        let group = self
            .group(
                object,
                Some(group_id),
                Freshness::Reads(OBSERVED_FOR_DELETE),
            )
            .await?
            .filter(|group| group.group_id() == Some(group_id));
        if let Some(group) = &group {
            for direction in [Direction::Ingress, Direction::Egress] {
                let naming_others: Vec<ObservedRule> = observed_rules(group, direction)
                    .into_iter()
                    .filter(|rule| rule.names_another_group(group_id))
                    .collect();
                self.change(group_id, direction, Change::Remove, &naming_others)
                    .await?;
            }
        }
        let deleted = self
            .ec2
            .delete_security_group()
            .group_id(group_id)
            .send()
            .await;
        match deleted {
            Err(error) if error.code() == Some(DEPENDENCY_VIOLATION) => {
                Err(self.still_named(group_id, provider_error(error)).await)
            }
            deleted => absent_if(deleted, is_not_found).map(|_| None),
        }
    }
}
