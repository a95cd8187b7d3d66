//! The custom resource.

use super::*;

// The CRD.

#[test]
fn the_crd_carries_the_cel_rules() {
    let crd = serde_json::to_string(&SecurityGroup::crd()).unwrap();
    for message in [
        "a security group cannot reference itself in securityGroupRefs",
        "a security group has no snapshot: use Delete or Retain",
        "groupName is immutable: AWS cannot rename a security group",
        "groupName must not start with sg-",
        "description is immutable: AWS cannot change a security group's description",
        "vpcId is immutable: a security group cannot move to another VPC",
        "tcp and udp rules need fromPort and toPort, with 0 <= fromPort <= toPort <= 65535",
        "icmp and icmpv6 rules need fromPort (the ICMP type) and toPort (the code)",
        "a rule for protocol all covers every port: leave out fromPort and toPort",
        "a rule needs at least one of cidrBlocks, ipv6CidrBlocks, securityGroupIds or \
         securityGroupRefs",
        "cidrBlocks: each entry must be an IPv4 CIDR without host bits",
        "ipv6CidrBlocks: each entry must be an IPv6 CIDR without host bits",
    ] {
        assert!(crd.contains(message), "{message} is missing");
    }
    for column in ["Ready", "Synced", "Group", "VPC"] {
        assert!(crd.contains(&format!("\"name\":\"{column}\"")), "{column}");
    }
    assert!(crd.contains(r"^sg-[0-9a-f]+$"));
    assert!(crd.contains(r"^vpc-[0-9a-f]+$"));
    assert!(crd.contains("\"sg\""), "the short name");
}
