//! EC2's refusal to delete a security group that another group's rule still names,
//! which the emulators do not play (moto deletes it and leaves the rule dangling): a
//! `DeleteSecurityGroup` of such a group is answered with `DependencyViolation` (HTTP
//! 400, "resource sg-… has a dependent object") and not forwarded.
//!
//! The proxy asks the emulator itself, with `DescribeSecurityGroups` calls of its own
//! (not counted among the calls the proxy saw): one filtered on the ingress rules that
//! name the group (`ip-permission.group-id`), one on the egress rules
//! (`egress.ip-permission.group-id`). It then reads the answers' rules rather than
//! trusting the filter, so an emulator that ignores a filter still gets the right
//! verdict; a group naming itself does not count, as on AWS. When the emulator cannot
//! say, the delete is forwarded as before.

use http::{Method, Request, request::Parts};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use super::{
    Forwarder, form_values,
    hiding::{XmlAnswer, descendants_at, ec2_error, element_text, readable_xml, xml_escape},
};

/// EC2's `DescribeSecurityGroups` filters on the groups a rule names, inbound and
/// outbound.
const NAMING_FILTERS: [&str; 2] = ["ip-permission.group-id", "egress.ip-permission.group-id"];

/// The API version of the proxy's own calls when the client's call carries none.
const EC2_API_VERSION: &str = "2016-11-15";

impl Forwarder {
    /// EC2's answer to the `DeleteSecurityGroup` `request` (with its `form` body) when
    /// another group's rule names the group: `DependencyViolation`. `None` to forward
    /// the call: no other group names it, the call names the group by `GroupName`
    /// rather than `GroupId`, or the emulator could not tell.
    pub(super) async fn refusal_to_delete_named_group(
        &self,
        request: &Parts,
        form: &[u8],
    ) -> Option<XmlAnswer> {
        let group_id = form_values(form, |key| key == "GroupId").pop()?;
        let version = form_values(form, |key| key == "Version")
            .pop()
            .unwrap_or_else(|| EC2_API_VERSION.to_owned());
        for filter in NAMING_FILTERS {
            let describe = form_urlencoded::Serializer::new(String::new())
                .append_pair("Action", "DescribeSecurityGroups")
                .append_pair("Version", &version)
                .append_pair("Filter.1.Name", filter)
                .append_pair("Filter.1.Value.1", &group_id)
                .finish();
            let answer = self.ask_emulator(request, describe).await?;
            match groups_naming(&answer, &group_id) {
                Ok(naming) if !naming.is_empty() => return Some(dependency_violation(&group_id)),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "fault proxy: unreadable DescribeSecurityGroups answer, delete forwarded");
                    return None;
                }
            }
        }
        None
    }

    /// The emulator's XML answer to a call of the proxy's own with the `form` body, sent
    /// with the headers of the client's `request` (its signature's credential scope
    /// picks the emulator's account and region; the emulators do not check the
    /// signature); `None`, with a warning, when it fails.
    async fn ask_emulator(&self, request: &Parts, form: String) -> Option<String> {
        let mut call = Request::builder()
            .method(Method::POST)
            .uri(self.upstream_uri(&request.uri));
        for (name, value) in &request.headers {
            if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                call = call.header(name, value);
            }
        }
        let call = call
            .body(Full::new(Bytes::from(form)))
            .expect("a valid request");
        let answer = match self.client.request(call).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, "fault proxy: the emulator did not answer its own call");
                return None;
            }
        };
        let (parts, body) = answer.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        if !parts.status.is_success() {
            tracing::warn!(status = %parts.status, "fault proxy: the emulator refused its own call");
            return None;
        }
        readable_xml(&parts.headers, &body).map(str::to_owned)
    }
}

/// The ids of the groups in a `DescribeSecurityGroups` answer whose ingress or egress
/// rules name `group_id` (`ipPermissions/item/groups/item/groupId` and the same under
/// `ipPermissionsEgress`), other than that group itself.
fn groups_naming(answer: &str, group_id: &str) -> Result<Vec<String>, roxmltree::Error> {
    let document = roxmltree::Document::parse(answer)?;
    let names_group = |group: roxmltree::Node, rules: &str| {
        descendants_at(group, &[rules, "item", "groups", "item", "groupId"])
            .into_iter()
            .filter_map(element_text)
            .any(|peer| peer == group_id)
    };
    Ok(
        descendants_at(document.root_element(), &["securityGroupInfo", "item"])
            .into_iter()
            .filter(|group| {
                names_group(*group, "ipPermissions") || names_group(*group, "ipPermissionsEgress")
            })
            .filter_map(|group| {
                descendants_at(group, &["groupId"])
                    .into_iter()
                    .find_map(element_text)
            })
            .filter(|id| *id != group_id)
            .map(str::to_owned)
            .collect(),
    )
}

/// EC2's answer to deleting `group_id` while something depends on it.
fn dependency_violation(group_id: &str) -> XmlAnswer {
    ec2_error(
        "DependencyViolation",
        format!("resource {} has a dependent object", xml_escape(group_id)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sg-2abf3093c2fdd094d";
    const B: &str = "sg-effec4b2a5044719e";

    /// moto 5's answer to `DescribeSecurityGroups` filtered on `ip-permission.group-id`
    /// = B, as it came: A's ingress admits B; B admits itself (ssh) and its egress
    /// reaches A.
    const MOTO_ANSWER: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
        <DescribeSecurityGroupsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"><securityGroupInfo>\
        <item><groupId>sg-2abf3093c2fdd094d</groupId><ipPermissionsEgress><item><ipProtocol>-1</ipProtocol>\
        <groups/><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges><ipv6Ranges/><prefixListIds/>\
        </item></ipPermissionsEgress><tagSet/><vpcId>vpc-1f4d04507b7d65459</vpcId>\
        <securityGroupArn>arn:aws:ec2:us-east-1:123456789012:security-group/sg-2abf3093c2fdd094d</securityGroupArn>\
        <ownerId>123456789012</ownerId><groupName>a</groupName><groupDescription>a</groupDescription>\
        <ipPermissions><item><ipProtocol>tcp</ipProtocol><fromPort>5432</fromPort><toPort>5432</toPort>\
        <groups><item><userId>123456789012</userId><groupId>sg-effec4b2a5044719e</groupId></item></groups>\
        <ipRanges/><ipv6Ranges/><prefixListIds/></item></ipPermissions></item>\
        <item><groupId>sg-effec4b2a5044719e</groupId><ipPermissionsEgress><item><ipProtocol>-1</ipProtocol>\
        <groups/><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges><ipv6Ranges/><prefixListIds/>\
        </item><item><ipProtocol>tcp</ipProtocol><fromPort>5432</fromPort><toPort>5432</toPort><groups><item>\
        <userId>123456789012</userId><groupId>sg-2abf3093c2fdd094d</groupId></item></groups><ipRanges/>\
        <ipv6Ranges/><prefixListIds/></item></ipPermissionsEgress><tagSet/><vpcId>vpc-1f4d04507b7d65459</vpcId>\
        <securityGroupArn>arn:aws:ec2:us-east-1:123456789012:security-group/sg-effec4b2a5044719e</securityGroupArn>\
        <ownerId>123456789012</ownerId><groupName>b</groupName><groupDescription>b</groupDescription>\
        <ipPermissions><item><ipProtocol>tcp</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><groups>\
        <item><userId>123456789012</userId><groupId>sg-effec4b2a5044719e</groupId></item></groups><ipRanges/>\
        <ipv6Ranges/><prefixListIds/></item></ipPermissions></item>\
        </securityGroupInfo><requestId>request-id</requestId></DescribeSecurityGroupsResponse>";

    #[test]
    fn a_group_is_named_by_the_other_groups_ingress_and_egress_rules_not_its_own() {
        // A's ingress names B; B's rule naming itself does not count.
        assert_eq!(groups_naming(MOTO_ANSWER, B).unwrap(), [A]);
        // B's egress names A; A names only B.
        assert_eq!(groups_naming(MOTO_ANSWER, A).unwrap(), [B]);
        // A filter the emulator ignored: the rules decide, not the answer's length.
        assert!(groups_naming(MOTO_ANSWER, "sg-0nobody").unwrap().is_empty());
    }

    #[test]
    fn no_group_in_the_answer_names_nothing_and_an_unreadable_answer_is_an_error() {
        let empty = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DescribeSecurityGroupsResponse \
            xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"><securityGroupInfo/>\
            <requestId>request-id</requestId></DescribeSecurityGroupsResponse>";
        assert!(groups_naming(empty, A).unwrap().is_empty());
        assert!(groups_naming("<DescribeSecurityGroupsResponse><securityGroupInfo>", A).is_err());
    }

    #[test]
    fn the_refusal_is_ec2s_dependency_violation() {
        let answer = dependency_violation(A);
        assert_eq!(answer.status, http::StatusCode::BAD_REQUEST);
        let document = roxmltree::Document::parse(&answer.body).unwrap();
        let field = |name| {
            descendants_at(document.root_element(), &["Errors", "Error", name])
                .into_iter()
                .find_map(element_text)
        };
        assert_eq!(field("Code"), Some("DependencyViolation"));
        assert_eq!(
            field("Message"),
            Some("resource sg-2abf3093c2fdd094d has a dependent object")
        );
    }
}
