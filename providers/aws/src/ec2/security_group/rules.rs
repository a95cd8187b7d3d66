//! The rules in the form tether compares them, one peer a rule: from the spec (with
//! peer groups resolved), from EC2's permissions, to EC2's permissions, and in words.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};
use tether_api::{external::Context, managed::Managed};

use super::{Direction, ObservedRule, SecurityGroup, types::rule_reference_field};

impl SecurityGroup {
    /// Whether a rule's peer group is not resolved yet (its SecurityGroup is not Ready,
    /// or the object is being deleted): the desired rules then lack it, and rules with
    /// a peer group are not removed, since one of them may be that peer's.
    pub(super) fn peers_unresolved(&self, context: &Context<'_>) -> bool {
        self.references()
            .iter()
            .any(|reference| context.reference(&reference.field).is_none())
    }

    /// The rules the spec declares in `direction`, one per peer, with references
    /// resolved through `context` (a reference not resolved, while the object is being
    /// deleted, is left out).
    pub(super) fn desired_rules(
        &self,
        direction: Direction,
        context: &Context<'_>,
    ) -> BTreeSet<ObservedRule> {
        let mut desired = BTreeSet::new();
        for (rule_direction, index, rule) in self.rules() {
            if rule_direction != direction {
                continue;
            }
            let referenced = (0..rule.security_group_refs.len()).filter_map(|position| {
                context
                    .reference(&rule_reference_field(direction, index, position))
                    .map(str::to_owned)
            });
            let peers = rule
                .cidr_blocks
                .iter()
                .chain(&rule.ipv6_cidr_blocks)
                .chain(&rule.security_group_ids)
                .cloned()
                .chain(referenced);
            for peer in peers {
                desired.insert(ObservedRule::new(
                    rule.protocol.aws_name(),
                    rule.from_port,
                    rule.to_port,
                    peer,
                ));
            }
        }
        desired
    }
}

impl ObservedRule {
    /// A rule in the form tether compares: EC2's protocol name (numbers of the named
    /// protocols become names), and no ports for `-1`.
    pub(super) fn new(
        protocol: &str,
        from_port: Option<i32>,
        to_port: Option<i32>,
        peer: String,
    ) -> Self {
        let protocol = match protocol {
            "all" | "-1" => "-1",
            "6" => "tcp",
            "17" => "udp",
            "1" => "icmp",
            "58" => "icmpv6",
            other => other,
        };
        let all = protocol == "-1";
        Self {
            protocol: protocol.to_owned(),
            from_port: from_port.filter(|_| !all),
            to_port: to_port.filter(|_| !all),
            peer,
        }
    }

    /// Whether the rule's peer is a security group other than `group_id`: a rule that
    /// keeps that group from being deleted.
    pub(super) fn names_another_group(&self, group_id: &str) -> bool {
        self.peer.starts_with("sg-") && self.peer != group_id
    }

    /// The rule as EC2's authorize and revoke calls take it.
    pub(super) fn to_permission(&self) -> IpPermission {
        let permission = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .set_from_port(self.from_port)
            .set_to_port(self.to_port);
        let peer = self.peer.clone();
        let permission = if peer.starts_with("sg-") {
            permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(peer).build())
        } else if peer.starts_with("pl-") {
            permission.prefix_list_ids(PrefixListId::builder().prefix_list_id(peer).build())
        } else if peer.contains(':') {
            permission.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(peer).build())
        } else {
            permission.ip_ranges(IpRange::builder().cidr_ip(peer).build())
        };
        permission.build()
    }

    /// The rules of one EC2 permission, one per peer.
    pub(super) fn from_permission(
        permission: &IpPermission,
    ) -> impl Iterator<Item = ObservedRule> + '_ {
        let peers = permission
            .ip_ranges()
            .iter()
            .filter_map(|range| range.cidr_ip())
            .chain(
                permission
                    .ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6()),
            )
            .chain(
                permission
                    .user_id_group_pairs()
                    .iter()
                    .filter_map(|p| p.group_id()),
            )
            .chain(
                permission
                    .prefix_list_ids()
                    .iter()
                    .filter_map(|p| p.prefix_list_id()),
            );
        peers.map(|peer| {
            ObservedRule::new(
                permission.ip_protocol().unwrap_or("-1"),
                permission.from_port(),
                permission.to_port(),
                peer.to_owned(),
            )
        })
    }

    /// The rule in words, e.g. `tcp 22 from 10.0.0.0/8`.
    pub(super) fn describe(&self, direction: Direction) -> String {
        let protocol = match self.protocol.as_str() {
            "-1" => "all traffic",
            other => other,
        };
        let ports = match (self.protocol.as_str(), self.from_port, self.to_port) {
            ("icmp" | "icmpv6", Some(kind), Some(code)) => format!(" type {kind} code {code}"),
            (_, Some(from), Some(to)) if from == to => format!(" {from}"),
            (_, Some(from), Some(to)) => format!(" {from}-{to}"),
            _ => String::new(),
        };
        let preposition = match direction {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        format!("{protocol}{ports} {preposition} {}", self.peer)
    }
}

/// The group's rules in `direction` as AWS reports them.
pub(super) fn observed_rules(
    group: &aws_sdk_ec2::types::SecurityGroup,
    direction: Direction,
) -> Vec<ObservedRule> {
    let permissions = match direction {
        Direction::Ingress => group.ip_permissions(),
        Direction::Egress => group.ip_permissions_egress(),
    };
    let rules: BTreeSet<ObservedRule> = permissions
        .iter()
        .flat_map(ObservedRule::from_permission)
        .collect();
    rules.into_iter().collect()
}
