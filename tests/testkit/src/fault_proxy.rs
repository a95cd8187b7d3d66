//! A fault-injecting HTTP proxy in front of an AWS emulator: it counts calls per AWS
//! operation and, on request, throttles them, delays them, drops the response after
//! the emulator has acted on the call, or plays AWS's eventual consistency after a
//! create ([`FaultProxy::hide_new_resources_for`]): an EC2 instance, security group or
//! RDS DB instance created through the proxy stays invisible to reads for a while.
//!
//! The operation comes from the request itself: `Action=` in the form body (EC2, RDS,
//! STS, IAM: the query protocols) or the `X-Amz-Target` header (JSON protocols such as
//! Secrets Manager). The service comes from the SigV4 credential scope.
//!
//! Hiding reads the emulator's XML with a parser, never by exact text: moto and
//! LocalStack differ in whitespace, namespaces and element order. Only the answers that
//! must change are rewritten (the elements of the hidden resources are cut out of the
//! text, the rest is kept byte for byte); every other answer passes through unchanged.
//! The hiding is in `fault_proxy/hiding.rs`.
//!
//! EC2's `DependencyViolation` is played always: a `DeleteSecurityGroup` of a group
//! that another group's rule still names is refused, as AWS refuses it, where the
//! emulators delete the group and leave the rule dangling
//! (`fault_proxy/dependencies.rs`).
//!
//! [`FaultProxy::serve_databases`] puts a real PostgreSQL server behind each
//! `postgres` DB instance and a real MariaDB server behind each `mysql` or `mariadb`
//! one, RDS's data plane (`fault_proxy/databases.rs`).
//!
//! [`FaultProxy::limit_rate`] plays AWS's request throttling: a token bucket per
//! service, and calls beyond it refused with the service's throttling error
//! (`fault_proxy/rate_limit.rs`).

mod databases;
mod dependencies;
mod hiding;
mod rate_limit;

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

use databases::ServedDatabase;
pub use databases::{DATABASE_ADDRESS, DataPlaneError};
use hiding::{NewResource, ec2_error, xml_response};
use rate_limit::{RateLimit, ServiceBuckets};

/// A fault the proxy can inject into matching calls.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with the service's throttling error without forwarding the call:
    /// `RequestLimitExceeded` (HTTP 503) for EC2, `Throttling` (HTTP 400) for the other
    /// query services, `ThrottlingException` for JSON services.
    Throttle,
    /// Wait this long before forwarding the call.
    Latency(Duration),
    /// Forward the call, wait for the emulator's answer, then close the connection
    /// without answering: the call took effect but the client sees a transport error.
    DropResponse,
}

/// One call as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Signing name of the service, e.g. `ec2`, `rds`, `sts`.
    pub service: String,
    /// Operation name, e.g. `RunInstances`.
    pub operation: String,
    /// Access key id the call was signed with (not a secret; shows whose credentials
    /// were used).
    pub access_key_id: String,
    /// Whether the call reached the emulator.
    pub forwarded: bool,
    /// Whether the proxy refused the call with the service's throttling error (a
    /// [`Fault::Throttle`] rule, or the rate limit of [`FaultProxy::limit_rate`]).
    pub throttled: bool,
    /// When the call reached the proxy.
    pub at: std::time::Instant,
    /// Which attempt of its SDK invocation the call is (1 for the first; from the
    /// SDK's `amz-sdk-request` header, 1 when it has none): a retry the SDK made
    /// itself, told apart from a new call.
    pub attempt: u32,
}

struct Rule {
    operation: String,
    fault: Fault,
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    calls: Vec<Call>,
    /// The calls a [`Fault::Latency`] held, as they arrived.
    held: Vec<Call>,
    /// How long a new resource stays hidden; zero when hiding is off.
    hide_new_for: Duration,
    /// Until when each created resource (by kind and normalized id) stays hidden.
    hidden_until: HashMap<(NewResource, String), Instant>,
    /// Session tokens the calls carried, and the secret keys and session tokens STS
    /// handed out: what must never reach a log.
    credentials_seen: BTreeSet<String>,
    /// EC2's answer to each successful `RunInstances`, by its `ClientToken`, with the
    /// call's parameters.
    launches: HashMap<String, Launch>,
    /// The `ClientToken` of every `RunInstances` the proxy did not refuse with a
    /// throttling error, in order (repeats included).
    launch_tokens: Vec<String>,
    /// The token bucket of each service, when calls are rate-limited.
    rate_limit: Option<ServiceBuckets>,
    /// The database server of each served DB instance (by lower-case identifier), when
    /// [`FaultProxy::serve_databases`] is on.
    databases: Option<HashMap<String, ServedDatabase>>,
}

/// A successful `RunInstances`, as EC2 remembers it for its `ClientToken`.
struct Launch {
    /// The call's parameters, sorted, without `ClientToken`.
    parameters: Vec<(String, String)>,
    /// EC2's answer.
    answer: Bytes,
}

/// The parameters of a query-protocol call, sorted, without `ClientToken`: what EC2
/// compares when a call repeats a token.
fn launch_parameters(body: &[u8]) -> Vec<(String, String)> {
    let mut parameters: Vec<(String, String)> = form_urlencoded::parse(body)
        .filter(|(name, _)| name != "ClientToken")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    parameters.sort();
    parameters
}

impl State {
    /// Picks the faults for a call, using up counted rules.
    fn faults_for(&mut self, operation: &str) -> Vec<Fault> {
        let mut faults = Vec::new();
        for rule in &mut self.rules {
            let matches = rule.operation == "*" || rule.operation == operation;
            if matches && rule.remaining != Some(0) {
                if let Some(remaining) = &mut rule.remaining {
                    *remaining -= 1;
                }
                faults.push(rule.fault.clone());
            }
        }
        faults
    }

    /// Whether the rate limit (if any) lets a call to `service` through now.
    fn within_rate_limit(&mut self, service: &str) -> bool {
        self.rate_limit
            .as_mut()
            .is_none_or(|buckets| buckets.admit(service, Instant::now()))
    }
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 and a free port, forwarding to `upstream`
    /// (e.g. `http://127.0.0.1:5000`), on the current tokio runtime.
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_on(upstream, 0)
            .await
            .expect("binding 127.0.0.1:0")
    }

    /// Starts a proxy on 127.0.0.1 and `port` (0: a free one), forwarding to
    /// `upstream`, on the current tokio runtime; fails when the port is taken.
    pub async fn start_on(upstream: &str, port: u16) -> std::io::Result<FaultProxy> {
        let upstream: Uri = upstream.parse().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let forwarder = Forwarder {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            state: state.clone(),
        };
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let forwarder = forwarder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let forwarder = forwarder.clone();
                        async move { forwarder.handle(request).await }
                    });
                    // A dropped response ends the connection with an error by design.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            address,
            state,
            task,
        })
    }

    /// The URL to give clients in place of the emulator's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Injects `fault` into the next `times` calls of `operation` (`"*"` for every
    /// operation); `None` for every call until [`FaultProxy::clear_faults`].
    pub fn inject(&self, operation: &str, fault: Fault, times: Option<usize>) {
        self.state.lock().unwrap().rules.push(Rule {
            operation: operation.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Removes every fault rule ([`FaultProxy::inject`]); the rate limit and the
    /// hiding of new resources stay as they are.
    pub fn clear_rules(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Removes every fault rule and the rate limit, and switches off hiding new
    /// resources ([`FaultProxy::hide_new_resources_for`]).
    pub fn clear_faults(&self) {
        let mut state = self.state.lock().unwrap();
        state.rules.clear();
        state.rate_limit = None;
        state.hide_new_for(Duration::ZERO);
    }

    /// Throttles like AWS does: from now on each service (by signing name: `ec2`,
    /// `rds`, …) has a token bucket of its own that holds `burst` calls (full at first)
    /// and refills at `per_second`; a call that finds its service's bucket empty is
    /// answered like [`Fault::Throttle`] and not forwarded.
    pub fn limit_rate(&self, per_second: f64, burst: f64) {
        assert!(
            per_second > 0.0 && burst >= 1.0,
            "a bucket that admits calls"
        );
        self.state.lock().unwrap().rate_limit =
            Some(ServiceBuckets::new(RateLimit { per_second, burst }));
    }

    /// How many calls the proxy refused with a throttling error.
    pub fn throttled_count(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|call| call.throttled)
            .count()
    }

    /// Every session token a call through the proxy carried (`X-Amz-Security-Token`),
    /// and every secret access key and session token that STS's `AssumeRole` answers
    /// handed out through it: secrets a test can search logs for.
    pub fn credentials_seen(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .credentials_seen
            .iter()
            .cloned()
            .collect()
    }

    /// The `ClientToken` of every `RunInstances` that was not refused with a
    /// throttling error (it reached EC2, or EC2's idempotency answered it), in order.
    pub fn launch_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().launch_tokens.clone()
    }

    /// Every call seen so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every call a [`Fault::Latency`] held, in the order they arrived, including those
    /// still waiting: the calls in [`FaultProxy::calls`] are there once their wait is
    /// over.
    pub fn held(&self) -> Vec<Call> {
        self.state.lock().unwrap().held.clone()
    }

    /// How many calls of `operation` reached the proxy (forwarded or not).
    pub fn count(&self, operation: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|call| call.operation == operation)
            .count()
    }

    /// Calls per operation name.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for call in &self.state.lock().unwrap().calls {
            *counts.entry(call.operation.clone()).or_default() += 1;
        }
        counts
    }

    /// Forgets the calls seen so far.
    pub fn reset_counts(&self) {
        let mut state = self.state.lock().unwrap();
        state.calls.clear();
        state.held.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Stops the database servers (a server still starting stops once it is up).
        let databases = self.state.lock().unwrap().databases.take();
        drop(databases);
    }
}

#[derive(Clone)]
struct Forwarder {
    upstream: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    state: Arc<Mutex<State>>,
}

impl Forwarder {
    async fn handle(
        &self,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, DroppedResponse> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(DroppedResponse),
        };
        let service = credential_scope_part(&parts.headers, SCOPE_SERVICE).unwrap_or_default();
        let access_key_id =
            credential_scope_part(&parts.headers, SCOPE_ACCESS_KEY_ID).unwrap_or_default();
        let operation = operation(&parts.headers, parts.uri.path(), &body).unwrap_or_default();
        if let Some(token) = parts
            .headers
            .get("x-amz-security-token")
            .and_then(|token| token.to_str().ok())
        {
            let mut state = self.state.lock().unwrap();
            state.credentials_seen.insert(token.to_owned());
        }
        let at = std::time::Instant::now();
        let attempt = sdk_attempt(&parts.headers);
        let assume_role = service == "sts" && operation == "AssumeRole";
        let client_token = (operation == "RunInstances")
            .then(|| form_values(&body, |name| name == "ClientToken").pop())
            .flatten();
        let (faults, throttled) = {
            let mut state = self.state.lock().unwrap();
            let faults = state.faults_for(&operation);
            // A call a rule refuses takes no token from the bucket.
            let throttled = faults.contains(&Fault::Throttle) || !state.within_rate_limit(&service);
            (faults, throttled)
        };
        // EC2's documented idempotency: a RunInstances repeated with a ClientToken it
        // has seen answers with the first launch and launches nothing, or, when its
        // parameters differ, `IdempotentParameterMismatch`. The emulators play neither.
        if let Some(token) = client_token.as_ref().filter(|_| !throttled) {
            let mut state = self.state.lock().unwrap();
            state.launch_tokens.push(token.clone());
            let answer = state.launches.get(token).map(|first| {
                if first.parameters == launch_parameters(&body) {
                    Ok(first.answer.clone())
                } else {
                    Err(())
                }
            });
            if let Some(answer) = answer {
                state.calls.push(Call {
                    service,
                    operation,
                    access_key_id,
                    forwarded: false,
                    throttled: false,
                    at,
                    attempt,
                });
                return Ok(match answer {
                    Ok(first) => Response::builder()
                        .status(StatusCode::OK)
                        .header(http::header::CONTENT_TYPE, "text/xml")
                        .body(Full::new(first))
                        .expect("a valid response"),
                    Err(()) => xml_response(ec2_error(
                        "IdempotentParameterMismatch",
                        "The client token you have provided is associated with a resource \
                         that is already deleted or has different parameters (fault proxy)."
                            .to_owned(),
                    )),
                });
            }
        }
        let create = NewResource::created_by(&service, &operation);
        let rds_operation = (service == "rds").then(|| operation.clone());
        let read = NewResource::read_by(&service, &operation);
        let mut call = Call {
            service: service.clone(),
            operation,
            access_key_id,
            forwarded: false,
            throttled: false,
            at,
            attempt,
        };
        if throttled {
            call.throttled = true;
            self.state.lock().unwrap().calls.push(call);
            return Ok(throttling_response(&service, &parts.headers));
        }
        for fault in &faults {
            if let Fault::Latency(delay) = fault {
                self.state.lock().unwrap().held.push(call.clone());
                tokio::time::sleep(*delay).await;
            }
        }
        if let Some(kind) = read {
            let hidden = self.state.lock().unwrap().hidden(kind, Instant::now());
            if let Some(id) = kind.names_hidden(&body, &hidden) {
                self.state.lock().unwrap().calls.push(call);
                return Ok(xml_response(kind.not_found(&id)));
            }
        }
        if service == "ec2"
            && call.operation == "DeleteSecurityGroup"
            && let Some(refusal) = self.refusal_to_delete_named_group(&parts, &body).await
        {
            self.state.lock().unwrap().calls.push(call);
            return Ok(xml_response(refusal));
        }
        call.forwarded = true;
        self.state.lock().unwrap().calls.push(call);

        let request_body = body.clone();
        let mut upstream_request = Request::from_parts(parts, Full::new(body));
        *upstream_request.uri_mut() = self.upstream_uri(upstream_request.uri());
        let response = match self.client.request(upstream_request).await {
            Ok(response) => response,
            Err(error) => {
                return Ok(plain_response(
                    StatusCode::BAD_GATEWAY,
                    format!("fault proxy: upstream failed: {error}"),
                ));
            }
        };
        let (mut parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|_| DroppedResponse)?
            .to_bytes();
        if let Some(kind) = create
            && parts.status.is_success()
        {
            self.learn_created(kind, &request_body, &parts.headers, &body);
        }
        let mut body = body;
        if let Some(operation) = &rds_operation
            && parts.status.is_success()
        {
            self.apply_to_databases(operation, &request_body).await;
            if let Some(rewritten) = self.with_database_endpoints(operation, &parts.headers, &body)
            {
                // The body changed length: hyper sets Content-Length from the new body.
                parts.headers.remove(http::header::CONTENT_LENGTH);
                parts.headers.remove(http::header::TRANSFER_ENCODING);
                body = Bytes::from(rewritten);
            }
        }
        if let Some(token) = client_token
            && parts.status.is_success()
        {
            self.state.lock().unwrap().launches.insert(
                token,
                Launch {
                    parameters: launch_parameters(&request_body),
                    answer: body.clone(),
                },
            );
        }
        if assume_role && parts.status.is_success() {
            let issued = issued_credentials(&body);
            self.state.lock().unwrap().credentials_seen.extend(issued);
        }
        if faults.contains(&Fault::DropResponse) {
            return Err(DroppedResponse);
        }
        if let Some(kind) = read
            && parts.status.is_success()
            && let Some(stripped) = self.strip_hidden(kind, &parts.headers, &body)
        {
            // The body changed length: hyper sets Content-Length from the new body.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            return Ok(Response::from_parts(
                parts,
                Full::new(Bytes::from(stripped)),
            ));
        }
        Ok(Response::from_parts(parts, Full::new(body)))
    }

    fn upstream_uri(&self, uri: &Uri) -> Uri {
        let mut parts = uri.clone().into_parts();
        parts.scheme = self.upstream.scheme().cloned();
        parts.authority = self.upstream.authority().cloned();
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some("/".parse().expect("a valid path"));
        }
        Uri::from_parts(parts).expect("a valid upstream URI")
    }
}

/// Returned by the proxy's service to make hyper drop the connection unanswered.
#[derive(Debug)]
struct DroppedResponse;

impl std::fmt::Display for DroppedResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped by the fault proxy")
    }
}

impl std::error::Error for DroppedResponse {}

/// Part `index` of the SigV4 credential scope of a request's `Authorization` header,
/// `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, …`:
/// 0 is the access key id, 3 the service's signing name.
fn credential_scope_part(headers: &HeaderMap, index: usize) -> Option<String> {
    let authorization = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let scope = authorization.split("Credential=").nth(1)?;
    scope.split('/').nth(index).map(str::to_owned)
}

/// The attempt number of the SDK's `amz-sdk-request: attempt=2; max=3` header; 1
/// when the call has none.
fn sdk_attempt(headers: &HeaderMap) -> u32 {
    headers
        .get("amz-sdk-request")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .split(';')
                .find_map(|part| part.trim().strip_prefix("attempt="))
        })
        .and_then(|attempt| attempt.parse().ok())
        .unwrap_or(1)
}

const SCOPE_ACCESS_KEY_ID: usize = 0;
const SCOPE_SERVICE: usize = 3;

/// The operation of an AWS call: `X-Amz-Target` (JSON protocols), the rpcv2 path
/// (`/service/S/operation/Op`), or `Action=` in a form body (query protocols).
fn operation(headers: &HeaderMap, path: &str, body: &[u8]) -> Option<String> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().map(str::to_owned);
    }
    if let Some((_, operation)) = path.split_once("/operation/") {
        return Some(operation.to_owned());
    }
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "Action")
        .map(|(_, value)| value.into_owned())
}

fn throttling_response(service: &str, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if headers.contains_key("x-amz-target") {
        (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded (fault proxy)"}"#
                .to_owned(),
        )
    } else if service == "ec2" {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>RequestLimitExceeded</Code><Message>Request limit exceeded (fault proxy).</Message>\
             </Error></Errors><RequestID>fault-proxy</RequestID></Response>"
                .to_owned(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "text/xml",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
             <Message>Rate exceeded (fault proxy)</Message></Error>\
             <RequestId>fault-proxy</RequestId></ErrorResponse>"
                .to_owned(),
        )
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// The values of the form fields whose name `key` accepts.
fn form_values(form: &[u8], key: impl Fn(&str) -> bool) -> Vec<String> {
    form_urlencoded::parse(form)
        .filter(|(name, _)| key(name))
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// The `SecretAccessKey` and `SessionToken` of an STS answer.
fn issued_credentials(body: &[u8]) -> Vec<String> {
    let Some(document) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| roxmltree::Document::parse(text).ok())
    else {
        return Vec::new();
    };
    document
        .descendants()
        .filter(|node| matches!(node.tag_name().name(), "SecretAccessKey" | "SessionToken"))
        .filter_map(|node| node.text())
        .map(str::to_owned)
        .collect()
}

fn plain_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_comes_from_the_form_body_or_the_target_header() {
        let empty = HeaderMap::new();
        assert_eq!(
            operation(&empty, "/", b"Action=RunInstances&Version=2016-11-15").as_deref(),
            Some("RunInstances")
        );
        let mut json = HeaderMap::new();
        json.insert(
            "x-amz-target",
            "secretsmanager.GetSecretValue".parse().unwrap(),
        );
        assert_eq!(
            operation(&json, "/", b"{}").as_deref(),
            Some("GetSecretValue")
        );
        assert_eq!(operation(&empty, "/", b"").as_deref(), None);
    }

    #[test]
    fn service_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/rds/aws4_request, SignedHeaders=host, Signature=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            credential_scope_part(&headers, SCOPE_SERVICE).as_deref(),
            Some("rds")
        );
        assert_eq!(
            credential_scope_part(&headers, SCOPE_ACCESS_KEY_ID).as_deref(),
            Some("AKID")
        );
    }

    #[test]
    fn the_keys_sts_hands_out_are_picked_from_its_answer() {
        let answer = br#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret/key+1</SecretAccessKey><SessionToken>FQoGZXIvYXdzEXAMPLE</SessionToken><Expiration>2026-11-30T13:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"#;
        assert_eq!(
            issued_credentials(answer),
            ["secret/key+1", "FQoGZXIvYXdzEXAMPLE"]
        );
        assert!(issued_credentials(b"not xml").is_empty());
    }

    #[test]
    fn a_repeated_launch_compares_every_parameter_but_its_token() {
        let first = launch_parameters(
            b"Action=RunInstances&ClientToken=a&TagSpecification.1.Tag.1.Value=x&ImageId=ami-1",
        );
        let repeat = launch_parameters(
            b"ImageId=ami-1&Action=RunInstances&ClientToken=b&TagSpecification.1.Tag.1.Value=x",
        );
        assert_eq!(first, repeat, "order and token do not count");
        let changed = launch_parameters(
            b"Action=RunInstances&ClientToken=a&TagSpecification.1.Tag.1.Value=y&ImageId=ami-1",
        );
        assert_ne!(first, changed);
    }

    #[test]
    fn counted_rules_run_out() {
        let mut state = State::default();
        state.rules.push(Rule {
            operation: "RunInstances".into(),
            fault: Fault::Throttle,
            remaining: Some(2),
        });
        assert_eq!(state.faults_for("RunInstances"), vec![Fault::Throttle]);
        assert_eq!(state.faults_for("DescribeInstances"), vec![]);
        assert_eq!(state.faults_for("RunInstances"), vec![Fault::Throttle]);
        assert_eq!(state.faults_for("RunInstances"), vec![]);
    }
}
