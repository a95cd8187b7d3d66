//! Hiding new resources for a while after their create, as AWS's eventual consistency
//! may ([`FaultProxy::hide_new_resources_for`]): which calls create and read which
//! kind, the ids a create answer and a read request name, AWS's not-found answers, and
//! read answers with the hidden resources cut out.

use std::{collections::HashSet, ops::Range, time::Duration};

use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use tokio::time::Instant;

use super::{FaultProxy, Forwarder, State, form_values};

impl FaultProxy {
    /// Hides each resource created through the proxy from reads for `lag` after its
    /// create answer passed through, as AWS's eventual consistency may: EC2 instances
    /// (`RunInstances`), EC2 security groups (`CreateSecurityGroup`) and RDS DB
    /// instances (`CreateDBInstance`). A create whose answer the proxy drops
    /// ([`Fault::DropResponse`](super::Fault::DropResponse)) counts too: the resource
    /// exists all the same.
    ///
    /// While a resource is hidden, a read that names it (`DescribeInstances` with
    /// `InstanceIds`, `DescribeSecurityGroups` with `GroupIds`, `DescribeDBInstances`
    /// with `DBInstanceIdentifier`) gets AWS's not-found error without reaching the
    /// emulator (`InvalidInstanceID.NotFound` or `InvalidGroup.NotFound`, HTTP 400;
    /// `DBInstanceNotFound`, HTTP 404), and any other read of that kind (by filters, or
    /// listing everything) reaches the emulator and has the hidden resources cut out of
    /// its answer. Create answers and writes pass through unchanged.
    ///
    /// `lag` applies to resources created from now on; [`Duration::ZERO`] switches
    /// hiding off and reveals the resources hidden so far, as
    /// [`FaultProxy::clear_faults`] does.
    pub fn hide_new_resources_for(&self, lag: Duration) {
        self.state.lock().unwrap().hide_new_for(lag);
    }
}

impl State {
    /// Switches hiding of new resources on for `lag` (off for zero, which also reveals
    /// the resources hidden so far).
    pub(super) fn hide_new_for(&mut self, lag: Duration) {
        self.hide_new_for = lag;
        if lag.is_zero() {
            self.hidden_until.clear();
        }
    }

    /// Records resources of `kind` whose create answer passed through at `now`.
    fn created(&mut self, kind: NewResource, ids: Vec<String>, now: Instant) {
        if self.hide_new_for.is_zero() {
            return;
        }
        let until = now + self.hide_new_for;
        for id in ids {
            self.hidden_until.insert((kind, kind.normalize(&id)), until);
        }
    }

    /// The normalized ids of the resources of `kind` still hidden at `now`; forgets the
    /// ones that have become visible.
    pub(super) fn hidden(&mut self, kind: NewResource, now: Instant) -> HashSet<String> {
        self.hidden_until.retain(|_, until| now < *until);
        self.hidden_until
            .keys()
            .filter(|(hidden_kind, _)| *hidden_kind == kind)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

impl Forwarder {
    /// Learns the ids a successful create answer names, when hiding is on.
    pub(super) fn learn_created(
        &self,
        kind: NewResource,
        request_body: &[u8],
        headers: &HeaderMap,
        answer: &[u8],
    ) {
        if self.state.lock().unwrap().hide_new_for.is_zero() {
            return;
        }
        let Some(answer) = readable_xml(headers, answer) else {
            return;
        };
        let ids = match kind.created_ids(request_body, answer) {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(?kind, %error, "fault proxy: unreadable create answer");
                Vec::new()
            }
        };
        if ids.is_empty() {
            tracing::warn!(
                ?kind,
                "fault proxy: no id in a create answer, nothing hidden"
            );
        }
        self.state
            .lock()
            .unwrap()
            .created(kind, ids, Instant::now());
    }

    /// The read answer without the resources hidden now; `None` to pass it unchanged.
    pub(super) fn strip_hidden(
        &self,
        kind: NewResource,
        headers: &HeaderMap,
        answer: &[u8],
    ) -> Option<String> {
        let hidden = self.state.lock().unwrap().hidden(kind, Instant::now());
        if hidden.is_empty() {
            return None;
        }
        let answer = readable_xml(headers, answer)?;
        match kind.strip_hidden(answer, &hidden) {
            Ok(stripped) => stripped,
            Err(error) => {
                tracing::warn!(?kind, %error, "fault proxy: unreadable read answer, passed unchanged");
                None
            }
        }
    }
}

/// A kind of resource that [`FaultProxy::hide_new_resources_for`] hides after its
/// create, with the AWS calls that create and read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum NewResource {
    /// EC2 instance: `RunInstances`, `DescribeInstances`.
    Ec2Instance,
    /// EC2 security group: `CreateSecurityGroup`, `DescribeSecurityGroups`.
    SecurityGroup,
    /// RDS DB instance: `CreateDBInstance`, `DescribeDBInstances`.
    DbInstance,
}

/// An answer the proxy makes up: status and XML body.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct XmlAnswer {
    pub(super) status: StatusCode,
    pub(super) body: String,
}

impl NewResource {
    /// Each kind with its service and the calls that create and read it.
    const CALLS: [(Self, &'static str, &'static str, &'static str); 3] = [
        (
            Self::Ec2Instance,
            "ec2",
            "RunInstances",
            "DescribeInstances",
        ),
        (
            Self::SecurityGroup,
            "ec2",
            "CreateSecurityGroup",
            "DescribeSecurityGroups",
        ),
        (
            Self::DbInstance,
            "rds",
            "CreateDBInstance",
            "DescribeDBInstances",
        ),
    ];

    /// The kind a call creates, if it is a create this proxy can hide.
    pub(super) fn created_by(service: &str, operation: &str) -> Option<Self> {
        Self::CALLS
            .into_iter()
            .find(|&(_, of, create, _)| (of, create) == (service, operation))
            .map(|(kind, ..)| kind)
    }

    /// The kind a call reads, if it is a read that hides new resources.
    pub(super) fn read_by(service: &str, operation: &str) -> Option<Self> {
        Self::CALLS
            .into_iter()
            .find(|&(_, of, _, read)| (of, read) == (service, operation))
            .map(|(kind, ..)| kind)
    }

    /// The id as compared: RDS identifiers are case-insensitive (AWS stores them in
    /// lower case), EC2 ids are not.
    fn normalize(self, id: &str) -> String {
        match self {
            Self::DbInstance => id.to_lowercase(),
            Self::Ec2Instance | Self::SecurityGroup => id.to_owned(),
        }
    }

    /// The ids a successful create answer names: every `instancesSet/item/instanceId`
    /// of `RunInstances`, the `groupId` of `CreateSecurityGroup`, the
    /// `CreateDBInstanceResult/DBInstance/DBInstanceIdentifier` of `CreateDBInstance`
    /// (or else its request's `DBInstanceIdentifier`).
    fn created_ids(
        self,
        request_form: &[u8],
        answer: &str,
    ) -> Result<Vec<String>, roxmltree::Error> {
        let document = roxmltree::Document::parse(answer)?;
        let root = document.root_element();
        let path: &[&str] = match self {
            Self::Ec2Instance => &["instancesSet", "item", "instanceId"],
            Self::SecurityGroup => &["groupId"],
            Self::DbInstance => &[
                "CreateDBInstanceResult",
                "DBInstance",
                "DBInstanceIdentifier",
            ],
        };
        let mut ids: Vec<String> = descendants_at(root, path)
            .into_iter()
            .filter_map(element_text)
            .map(str::to_owned)
            .collect();
        if ids.is_empty() && self == Self::DbInstance {
            ids = form_values(request_form, |key| key == "DBInstanceIdentifier");
        }
        Ok(ids)
    }

    /// The ids a read request names: `InstanceId.N`, `GroupId.N` (EC2 query lists) or
    /// `DBInstanceIdentifier`.
    fn named_ids(self, request_form: &[u8]) -> Vec<String> {
        let list_member = |key: &str, prefix: &str| {
            key.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        };
        match self {
            Self::Ec2Instance => form_values(request_form, |key| list_member(key, "InstanceId")),
            Self::SecurityGroup => form_values(request_form, |key| list_member(key, "GroupId")),
            Self::DbInstance => form_values(request_form, |key| key == "DBInstanceIdentifier"),
        }
    }

    /// The first id the read request names that is among `hidden` (normalized ids).
    pub(super) fn names_hidden(
        self,
        request_form: &[u8],
        hidden: &HashSet<String>,
    ) -> Option<String> {
        if hidden.is_empty() {
            return None;
        }
        self.named_ids(request_form)
            .into_iter()
            .find(|id| hidden.contains(&self.normalize(id)))
    }

    /// AWS's answer to a read that names the missing resource `id`.
    pub(super) fn not_found(self, id: &str) -> XmlAnswer {
        let id = xml_escape(id);
        match self {
            Self::Ec2Instance => ec2_error(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{id}' does not exist"),
            ),
            Self::SecurityGroup => ec2_error(
                "InvalidGroup.NotFound",
                format!("The security group '{id}' does not exist"),
            ),
            Self::DbInstance => XmlAnswer {
                status: StatusCode::NOT_FOUND,
                body: format!(
                    "<ErrorResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><Error>\
                     <Type>Sender</Type><Code>DBInstanceNotFound</Code>\
                     <Message>DBInstance {id} not found.</Message></Error>\
                     <RequestId>{FAULT_PROXY_REQUEST_ID}</RequestId></ErrorResponse>"
                ),
            },
        }
    }

    /// The read answer with the `hidden` resources (normalized ids) cut out; `None` when
    /// it lists none of them. EC2 instances: their `reservationSet/item/instancesSet/item`,
    /// or the whole reservation `item` when all its instances are hidden. Security
    /// groups: their `securityGroupInfo/item`. DB instances: their
    /// `DescribeDBInstancesResult/DBInstances/DBInstance`.
    fn strip_hidden(
        self,
        answer: &str,
        hidden: &HashSet<String>,
    ) -> Result<Option<String>, roxmltree::Error> {
        let document = roxmltree::Document::parse(answer)?;
        let root = document.root_element();
        let is_hidden = |node: roxmltree::Node, id_element: &str| {
            child_elements(node, id_element)
                .next()
                .and_then(element_text)
                .is_some_and(|id| hidden.contains(&self.normalize(id)))
        };
        let mut cuts = Vec::new();
        match self {
            Self::Ec2Instance => {
                for reservation in descendants_at(root, &["reservationSet", "item"]) {
                    let instances = descendants_at(reservation, &["instancesSet", "item"]);
                    let hidden_instances: Vec<_> = instances
                        .iter()
                        .filter(|instance| is_hidden(**instance, "instanceId"))
                        .collect();
                    if hidden_instances.is_empty() {
                        continue;
                    }
                    if hidden_instances.len() == instances.len() {
                        cuts.push(reservation.range());
                    } else {
                        cuts.extend(hidden_instances.iter().map(|instance| instance.range()));
                    }
                }
            }
            Self::SecurityGroup => cuts.extend(
                descendants_at(root, &["securityGroupInfo", "item"])
                    .into_iter()
                    .filter(|group| is_hidden(*group, "groupId"))
                    .map(|group| group.range()),
            ),
            Self::DbInstance => cuts.extend(
                descendants_at(
                    root,
                    &["DescribeDBInstancesResult", "DBInstances", "DBInstance"],
                )
                .into_iter()
                .filter(|instance| is_hidden(*instance, "DBInstanceIdentifier"))
                .map(|instance| instance.range()),
            ),
        }
        if cuts.is_empty() {
            return Ok(None);
        }
        Ok(Some(cut_out(answer, cuts)))
    }
}

/// The request id of the answers the proxy makes up.
const FAULT_PROXY_REQUEST_ID: &str = "fault-proxy";

/// An EC2 error answer (HTTP 400) with `code` and `message` (already escaped).
pub(super) fn ec2_error(code: &str, message: String) -> XmlAnswer {
    XmlAnswer {
        status: StatusCode::BAD_REQUEST,
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
             <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
             <RequestID>{FAULT_PROXY_REQUEST_ID}</RequestID></Response>"
        ),
    }
}

/// The child elements of `node` named `name` (local name: namespaces differ between
/// emulators).
fn child_elements<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children()
        .filter(move |child| child.is_element() && child.tag_name().name() == name)
}

/// The elements reached from `node` by following child element names along `path`.
pub(super) fn descendants_at<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    path: &[&'a str],
) -> Vec<roxmltree::Node<'a, 'input>> {
    let mut nodes = vec![node];
    for name in path {
        nodes = nodes
            .into_iter()
            .flat_map(|node| child_elements(node, name))
            .collect();
    }
    nodes
}

/// The trimmed text of an element, if not empty.
pub(super) fn element_text<'a>(node: roxmltree::Node<'a, '_>) -> Option<&'a str> {
    node.text().map(str::trim).filter(|text| !text.is_empty())
}

/// `text` without the byte `ranges` (element ranges from one document: disjoint or
/// nested).
fn cut_out(text: &str, mut ranges: Vec<Range<usize>>) -> String {
    ranges.sort_by_key(|range| range.start);
    let mut kept = String::with_capacity(text.len());
    let mut position = 0;
    for range in ranges {
        if range.start >= position {
            kept.push_str(&text[position..range.start]);
        }
        position = position.max(range.end);
    }
    kept.push_str(&text[position..]);
    kept
}

pub(super) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The body as XML text, or `None` (with a warning) when it is encoded or not UTF-8.
/// The AWS SDK asks for no `Content-Encoding` and hyper undoes the chunked transfer
/// encoding, so an emulator's answer is plain text here.
pub(super) fn readable_xml<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<&'a str> {
    let encoding = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("identity");
    if !encoding.eq_ignore_ascii_case("identity") {
        tracing::warn!(encoding, "fault proxy: encoded answer passed unchanged");
        return None;
    }
    match std::str::from_utf8(body) {
        Ok(text) => Some(text),
        Err(_) => {
            tracing::warn!("fault proxy: answer not UTF-8, passed unchanged");
            None
        }
    }
}

pub(super) fn xml_response(answer: XmlAnswer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(answer.status)
        .header(http::header::CONTENT_TYPE, "text/xml")
        .body(Full::new(Bytes::from(answer.body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC2_NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15";
    const RDS_NS: &str = "http://rds.amazonaws.com/doc/2014-10-31/";

    fn hidden(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// An `instancesSet` item as moto 5 writes it (nested `item`s and a `groupId` of
    /// the instance's security group included), trimmed of a few leaf elements.
    fn moto_instance(id: &str) -> String {
        format!(
            "<item><architecture>x86_64</architecture><blockDeviceMapping><item>\
             <deviceName>/dev/sda1</deviceName><ebs><attachTime>2026-11-30T12:32:39.000Z</attachTime>\
             <deleteOnTermination>true</deleteOnTermination><status>attached</status>\
             <volumeId>vol-017b44747e89a7daf</volumeId></ebs></item></blockDeviceMapping>\
             <clientToken>ABCDE</clientToken><ebsOptimized>false</ebsOptimized><hypervisor>xen</hypervisor>\
             <networkInterfaceSet><item><attachment><attachmentId>eni-attach-cc2d3d54c1d1a576b</attachmentId>\
             <deviceIndex>0</deviceIndex><status>attached</status></attachment>\
             <description>Primary network interface</description><groupSet><item>\
             <groupId>sg-6b79bb074218ce850</groupId><groupName>default</groupName></item></groupSet>\
             <ipv6AddressesSet/><networkInterfaceId>eni-71bcde59e0552e7b9</networkInterfaceId>\
             <privateIpAddress>10.78.147.86</privateIpAddress><subnetId>subnet-a721e4205837b4de6</subnetId>\
             </item></networkInterfaceSet><rootDeviceName>/dev/sda1</rootDeviceName>\
             <rootDeviceType>ebs</rootDeviceType><groupSet/><stateReason><code/><message/></stateReason>\
             <tagSet><item><key>tether.dev/owner</key><value>default/web</value></item></tagSet>\
             <metadataOptions><state>applied</state><httpTokens>optional</httpTokens></metadataOptions>\
             <instanceId>{id}</instanceId><imageId>ami-12c6146b</imageId><instanceState><code>0</code>\
             <name>pending</name></instanceState><reason/><amiLaunchIndex>0</amiLaunchIndex>\
             <productCodes/><instanceType>t3.micro</instanceType><launchTime>2026-11-30T12:32:39.000Z</launchTime>\
             <placement><groupName/><tenancy>default</tenancy><availabilityZone>us-east-1a</availabilityZone>\
             </placement><monitoring><state>disabled</state></monitoring>\
             <subnetId>subnet-a721e4205837b4de6</subnetId><vpcId>vpc-59ff986852a2259e8</vpcId>\
             <privateIpAddress>10.78.147.86</privateIpAddress></item>"
        )
    }

    fn moto_reservation(id: &str, instances: &[&str]) -> String {
        let instances: String = instances.iter().map(|id| moto_instance(id)).collect();
        format!(
            "<item><reservationId>{id}</reservationId><ownerId>123456789012</ownerId><groupSet/>\
             <instancesSet>{instances}</instancesSet></item>"
        )
    }

    fn moto_describe_instances(reservations: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DescribeInstancesResponse xmlns=\"{EC2_NS}\">\
             <reservationSet>{reservations}</reservationSet><requestId>request-id</requestId>\
             </DescribeInstancesResponse>"
        )
    }

    /// A `securityGroupInfo` item as moto writes it; `peer` is a group its ingress
    /// rule allows.
    fn moto_security_group(id: &str, name: &str, peer: Option<&str>) -> String {
        let ingress = match peer {
            Some(peer) => format!(
                "<ipPermissions><item><ipProtocol>tcp</ipProtocol><fromPort>5432</fromPort>\
                 <toPort>5432</toPort><groups><item><userId>123456789012</userId>\
                 <groupId>{peer}</groupId></item></groups><ipRanges/><ipv6Ranges/>\
                 <prefixListIds/></item></ipPermissions>"
            ),
            None => "<ipPermissions/>".to_owned(),
        };
        format!(
            "<item><groupId>{id}</groupId><ipPermissionsEgress><item><ipProtocol>-1</ipProtocol>\
             <groups/><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges><ipv6Ranges/>\
             <prefixListIds/></item></ipPermissionsEgress><tagSet/><vpcId>vpc-59ff986852a2259e8</vpcId>\
             <securityGroupArn>arn:aws:ec2:us-east-1:123456789012:security-group/{id}</securityGroupArn>\
             <ownerId>123456789012</ownerId><groupName>{name}</groupName>\
             <groupDescription>d</groupDescription>{ingress}</item>"
        )
    }

    fn moto_describe_security_groups(groups: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DescribeSecurityGroupsResponse xmlns=\"{EC2_NS}\">\
             <securityGroupInfo>{groups}</securityGroupInfo><requestId>request-id</requestId>\
             </DescribeSecurityGroupsResponse>"
        )
    }

    /// A `DBInstance` as moto writes it, trimmed of a few leaf elements.
    fn moto_db_instance(id: &str) -> String {
        format!(
            "<DBInstance><DBInstanceIdentifier>{id}</DBInstanceIdentifier>\
             <DBInstanceClass>db.t3.micro</DBInstanceClass><Engine>postgres</Engine>\
             <DBInstanceStatus>available</DBInstanceStatus><MasterUsername>u</MasterUsername>\
             <Endpoint><Address>{id}.aaaaaaaaaa.us-east-1.rds.amazonaws.com</Address><Port>5432</Port>\
             </Endpoint><AllocatedStorage>20</AllocatedStorage><DBSecurityGroups/><VpcSecurityGroups>\
             <VpcSecurityGroupMembership><VpcSecurityGroupId>sg-6b79bb074218ce850</VpcSecurityGroupId>\
             <Status>active</Status></VpcSecurityGroupMembership></VpcSecurityGroups>\
             <ReadReplicaDBInstanceIdentifiers/><DbiResourceId>db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U</DbiResourceId>\
             <DBInstanceArn>arn:aws:rds:us-east-1:123456789012:db:{id}</DBInstanceArn>\
             <DeletionProtection>false</DeletionProtection><TagList/></DBInstance>"
        )
    }

    fn moto_describe_db_instances(instances: &str) -> String {
        format!(
            "<DescribeDBInstancesResponse xmlns=\"{RDS_NS}\"><DescribeDBInstancesResult>\
             <DBInstances>{instances}</DBInstances></DescribeDBInstancesResult><ResponseMetadata>\
             <RequestId>E63uwQqiVxhDJcSHkjof2TnmxdCGOYvSbXFqZTMWHdSiL1aYyP5T</RequestId>\
             </ResponseMetadata></DescribeDBInstancesResponse>"
        )
    }

    #[test]
    fn creates_and_reads_are_recognized_by_service_and_operation() {
        use NewResource::*;
        type Recognizer = fn(&str, &str) -> Option<NewResource>;
        let (created, read): (Recognizer, Recognizer) =
            (NewResource::created_by, NewResource::read_by);
        for (recognizer, service, operation, expected) in [
            (created, "ec2", "RunInstances", Some(Ec2Instance)),
            (created, "ec2", "CreateSecurityGroup", Some(SecurityGroup)),
            (created, "rds", "CreateDBInstance", Some(DbInstance)),
            (created, "ec2", "CreateTags", None),
            (read, "ec2", "DescribeInstances", Some(Ec2Instance)),
            (read, "ec2", "DescribeSecurityGroups", Some(SecurityGroup)),
            (read, "rds", "DescribeDBInstances", Some(DbInstance)),
            (read, "rds", "DescribeDBSubnetGroups", None),
            (read, "opsworks", "DescribeInstances", None),
        ] {
            assert_eq!(
                recognizer(service, operation),
                expected,
                "{service} {operation}"
            );
        }
    }

    #[test]
    fn new_ids_come_from_the_create_answers() {
        let run_instances = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<RunInstancesResponse xmlns=\"{EC2_NS}\">\
             <reservationId>r-e57a9726bc2ddea2a</reservationId><ownerId>123456789012</ownerId>\
             <groupSet/><instancesSet>{}{}</instancesSet><requestId>request-id</requestId>\
             </RunInstancesResponse>",
            moto_instance("i-c8005bcd8c8658926"),
            moto_instance("i-1875328cab2f72f4d"),
        );
        assert_eq!(
            NewResource::Ec2Instance
                .created_ids(b"Action=RunInstances&MinCount=2&MaxCount=2", &run_instances)
                .unwrap(),
            ["i-c8005bcd8c8658926", "i-1875328cab2f72f4d"]
        );

        let create_security_group = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CreateSecurityGroupResponse xmlns=\"{EC2_NS}\">\
             <groupId>sg-2caf8b6d38e441ace</groupId><securityGroupArn>arn:aws:ec2:us-east-1:\
             123456789012:security-group/sg-2caf8b6d38e441ace</securityGroupArn>\
             <requestId>request-id</requestId></CreateSecurityGroupResponse>"
        );
        assert_eq!(
            NewResource::SecurityGroup
                .created_ids(
                    b"Action=CreateSecurityGroup&GroupName=web",
                    &create_security_group
                )
                .unwrap(),
            ["sg-2caf8b6d38e441ace"]
        );

        let create_db_instance = format!(
            "<CreateDBInstanceResponse xmlns=\"{RDS_NS}\"><CreateDBInstanceResult>{}\
             </CreateDBInstanceResult><ResponseMetadata><RequestId>7vLbfTptLBij</RequestId>\
             </ResponseMetadata></CreateDBInstanceResponse>",
            moto_db_instance("db1")
        );
        let request = b"Action=CreateDBInstance&DBInstanceIdentifier=DB1&Engine=postgres";
        assert_eq!(
            NewResource::DbInstance
                .created_ids(request, &create_db_instance)
                .unwrap(),
            ["db1"]
        );
        // An answer without the identifier: the request's is used.
        let bare = format!("<CreateDBInstanceResponse xmlns=\"{RDS_NS}\"/>");
        assert_eq!(
            NewResource::DbInstance.created_ids(request, &bare).unwrap(),
            ["DB1"]
        );
        assert!(
            NewResource::Ec2Instance
                .created_ids(b"", "not xml")
                .is_err()
        );
    }

    #[test]
    fn named_ids_come_from_the_query_lists_of_the_request() {
        let describe_instances = b"Action=DescribeInstances&Version=2016-11-15\
            &InstanceId.1=i-aaa&InstanceId.2=i-bbb\
            &Filter.1.Name=instance-id&Filter.1.Value.1=i-ccc&MaxResults=5";
        assert_eq!(
            NewResource::Ec2Instance.named_ids(describe_instances),
            ["i-aaa", "i-bbb"]
        );
        assert_eq!(
            NewResource::Ec2Instance.named_ids(b"Action=DescribeInstances&InstanceIdx=i-aaa"),
            Vec::<String>::new()
        );
        let describe_groups =
            b"Action=DescribeSecurityGroups&GroupId.1=sg-1&GroupName.1=web&Filter.1.Name=group-id";
        assert_eq!(
            NewResource::SecurityGroup.named_ids(describe_groups),
            ["sg-1"]
        );
        assert_eq!(
            NewResource::DbInstance.named_ids(
                b"Action=DescribeDBInstances&Version=2014-10-31&DBInstanceIdentifier=db1"
            ),
            ["db1"]
        );
        assert_eq!(
            NewResource::DbInstance.named_ids(b"Action=DescribeDBInstances&MaxRecords=100"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_read_naming_a_hidden_resource_gets_the_services_not_found_error() {
        let instances = NewResource::Ec2Instance;
        let request = b"Action=DescribeInstances&InstanceId.1=i-old&InstanceId.2=i-new";
        assert_eq!(
            instances
                .names_hidden(request, &hidden(&["i-new"]))
                .as_deref(),
            Some("i-new")
        );
        assert_eq!(instances.names_hidden(request, &hidden(&["i-other"])), None);
        assert_eq!(instances.names_hidden(request, &hidden(&[])), None);
        assert_eq!(
            instances.not_found("i-new"),
            XmlAnswer {
                status: StatusCode::BAD_REQUEST,
                body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
                       <Code>InvalidInstanceID.NotFound</Code>\
                       <Message>The instance ID 'i-new' does not exist</Message></Error>\
                       </Errors><RequestID>fault-proxy</RequestID></Response>"
                    .to_owned(),
            }
        );

        let groups = NewResource::SecurityGroup;
        let answer = groups.not_found("sg-new");
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let document = roxmltree::Document::parse(&answer.body).unwrap();
        let error = descendants_at(document.root_element(), &["Errors", "Error"]);
        assert_eq!(error.len(), 1);
        let field = |name| child_elements(error[0], name).next().and_then(element_text);
        assert_eq!(field("Code"), Some("InvalidGroup.NotFound"));
        assert_eq!(
            field("Message"),
            Some("The security group 'sg-new' does not exist")
        );

        // RDS identifiers are case-insensitive.
        let databases = NewResource::DbInstance;
        let request = b"Action=DescribeDBInstances&DBInstanceIdentifier=Orders-DB";
        let name = databases.names_hidden(request, &hidden(&["orders-db"]));
        assert_eq!(name.as_deref(), Some("Orders-DB"));
        assert_eq!(
            databases.not_found(&name.unwrap()),
            XmlAnswer {
                status: StatusCode::NOT_FOUND,
                body: format!(
                    "<ErrorResponse xmlns=\"{RDS_NS}\"><Error><Type>Sender</Type>\
                     <Code>DBInstanceNotFound</Code><Message>DBInstance Orders-DB not found.</Message>\
                     </Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
                ),
            }
        );
        // What the client sent is escaped, not echoed as markup.
        assert!(
            databases
                .not_found("a<b>&")
                .body
                .contains("DBInstance a&lt;b&gt;&amp; not found.")
        );
    }

    #[test]
    fn describe_instances_loses_hidden_instances_and_the_reservations_they_empty() {
        let answer = moto_describe_instances(&format!(
            "{}{}",
            moto_reservation("r-1", &["i-new1", "i-old"]),
            moto_reservation("r-2", &["i-new2"]),
        ));
        let stripped = NewResource::Ec2Instance
            .strip_hidden(&answer, &hidden(&["i-new1", "i-new2"]))
            .unwrap();
        assert_eq!(
            stripped.as_deref(),
            Some(moto_describe_instances(&moto_reservation("r-1", &["i-old"])).as_str())
        );
        // Hiding everything leaves an empty reservationSet, as AWS answers.
        let stripped = NewResource::Ec2Instance
            .strip_hidden(&answer, &hidden(&["i-new1", "i-new2", "i-old"]))
            .unwrap();
        assert_eq!(
            stripped.as_deref(),
            Some(moto_describe_instances("").as_str())
        );
        // Nothing hidden among the answer's instances: the answer is kept as it is.
        assert_eq!(
            NewResource::Ec2Instance
                .strip_hidden(&answer, &hidden(&["i-gone"]))
                .unwrap(),
            None
        );
    }

    #[test]
    fn describe_instances_is_read_by_structure_not_by_layout() {
        // LocalStack-like: single-quoted declaration, `<x />`, indentation, a namespace
        // prefix and a different element order. The instance's own `instanceId` is what
        // counts, not one nested deeper.
        let answer = "<?xml version='1.0' encoding='utf-8'?>\n\
            <ec2:DescribeInstancesResponse xmlns:ec2=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n\
            \x20 <ec2:requestId>5d1a</ec2:requestId>\n\
            \x20 <ec2:reservationSet>\n\
            \x20   <ec2:item>\n\
            \x20     <ec2:instancesSet>\n\
            \x20       <ec2:item>\n\
            \x20         <ec2:instanceId> i-new </ec2:instanceId>\n\
            \x20         <ec2:groupSet />\n\
            \x20       </ec2:item>\n\
            \x20       <ec2:item>\n\
            \x20         <ec2:tagSet><ec2:item><ec2:instanceId>i-new</ec2:instanceId></ec2:item></ec2:tagSet>\n\
            \x20         <ec2:instanceId>i-old</ec2:instanceId>\n\
            \x20       </ec2:item>\n\
            \x20     </ec2:instancesSet>\n\
            \x20     <ec2:reservationId>r-1</ec2:reservationId>\n\
            \x20   </ec2:item>\n\
            \x20 </ec2:reservationSet>\n\
            </ec2:DescribeInstancesResponse>\n";
        let stripped = NewResource::Ec2Instance
            .strip_hidden(answer, &hidden(&["i-new"]))
            .unwrap()
            .expect("i-new is listed");
        let document = roxmltree::Document::parse(&stripped).unwrap();
        let instances = descendants_at(
            document.root_element(),
            &["reservationSet", "item", "instancesSet", "item"],
        );
        let ids: Vec<_> = instances
            .iter()
            .filter_map(|instance| child_elements(*instance, "instanceId").next())
            .filter_map(element_text)
            .collect();
        assert_eq!(ids, ["i-old"]);
        assert!(stripped.contains("<ec2:reservationId>r-1</ec2:reservationId>"));
    }

    #[test]
    fn describe_security_groups_loses_hidden_groups_only() {
        // The old group allows the new one: that reference is not the new group.
        let old = moto_security_group(
            "sg-6b79bb074218ce850",
            "default",
            Some("sg-2caf8b6d38e441ace"),
        );
        let new = moto_security_group("sg-2caf8b6d38e441ace", "web", None);
        let answer = moto_describe_security_groups(&format!("{old}{new}"));
        let stripped = NewResource::SecurityGroup
            .strip_hidden(&answer, &hidden(&["sg-2caf8b6d38e441ace"]))
            .unwrap();
        assert_eq!(
            stripped.as_deref(),
            Some(moto_describe_security_groups(&old).as_str())
        );
        assert_eq!(
            NewResource::SecurityGroup
                .strip_hidden(&answer, &hidden(&["sg-elsewhere"]))
                .unwrap(),
            None
        );
    }

    #[test]
    fn describe_db_instances_loses_hidden_instances() {
        let answer = moto_describe_db_instances(&format!(
            "{}{}",
            moto_db_instance("db1"),
            moto_db_instance("db2")
        ));
        let stripped = NewResource::DbInstance
            .strip_hidden(&answer, &hidden(&["db2"]))
            .unwrap();
        assert_eq!(
            stripped.as_deref(),
            Some(moto_describe_db_instances(&moto_db_instance("db1")).as_str())
        );
        // Compared in lower case, as RDS does.
        let stripped = NewResource::DbInstance
            .strip_hidden(
                &moto_describe_db_instances(&moto_db_instance("DB1")),
                &hidden(&["db1"]),
            )
            .unwrap();
        assert_eq!(
            stripped.as_deref(),
            Some(moto_describe_db_instances("").as_str())
        );
    }

    #[test]
    fn an_unreadable_answer_is_an_error_not_a_guess() {
        assert!(
            NewResource::SecurityGroup
                .strip_hidden(
                    "<DescribeSecurityGroupsResponse><securityGroupInfo>",
                    &hidden(&["sg-1"])
                )
                .is_err()
        );
    }

    #[test]
    fn new_resources_stay_hidden_for_the_lag_then_show() {
        let mut state = State::default();
        let start = Instant::now();
        let lag = Duration::from_secs(30);
        // Off: creates are not remembered.
        state.created(NewResource::Ec2Instance, vec!["i-early".into()], start);
        assert!(state.hidden(NewResource::Ec2Instance, start).is_empty());

        state.hide_new_for(lag);
        state.created(NewResource::Ec2Instance, vec!["i-1".into()], start);
        state.created(NewResource::DbInstance, vec!["Orders".into()], start);
        assert_eq!(
            state.hidden(NewResource::Ec2Instance, start),
            hidden(&["i-1"])
        );
        assert_eq!(
            state.hidden(NewResource::DbInstance, start),
            hidden(&["orders"])
        );
        assert!(state.hidden(NewResource::SecurityGroup, start).is_empty());
        let almost = start + lag - Duration::from_millis(1);
        assert_eq!(
            state.hidden(NewResource::Ec2Instance, almost),
            hidden(&["i-1"])
        );
        assert!(
            state
                .hidden(NewResource::Ec2Instance, start + lag)
                .is_empty()
        );

        // Switching off reveals what is still hidden.
        state.created(NewResource::SecurityGroup, vec!["sg-1".into()], start + lag);
        state.hide_new_for(Duration::ZERO);
        assert!(
            state
                .hidden(NewResource::SecurityGroup, start + lag)
                .is_empty()
        );
        state.created(NewResource::SecurityGroup, vec!["sg-2".into()], start + lag);
        assert!(
            state
                .hidden(NewResource::SecurityGroup, start + lag)
                .is_empty()
        );
    }

    #[test]
    fn cutting_out_nested_ranges_keeps_the_rest() {
        assert_eq!(cut_out("abcdefgh", vec![5..7, 1..3]), "adeh");
        assert_eq!(cut_out("abcdefgh", vec![1..6, 2..4]), "agh");
        assert_eq!(cut_out("abcdefgh", vec![]), "abcdefgh");
    }
}
