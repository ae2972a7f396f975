//! Authorization as a layer in front of the `Operator` service.
//!
//! Every call is mapped from its gRPC path to its [`Rpc`] and checked — an
//! operator certificate, registered on this collector, enabled, holding the
//! role [`Rpc::needs`] — before the service sees it; refusals go to the action
//! log ([`Denials`]). A handler learns who called only through [`caller`],
//! which reads the [`Caller`] only this layer puts into a request: a handler
//! cannot run unauthorized, and a call with no [`Rpc`] is refused
//! (`UNIMPLEMENTED`) rather than served unchecked.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bannin_proto::identity::{OperatorName, PeerIdentity};
use bannin_proto::tls::PeerInfo;
use bannin_proto::v1;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use super::Rpc;
use crate::denials::Denials;
use crate::link::internal;
use crate::store::Store;

/// The operator a call was authorized for, put into the request by
/// [`Authorized`].
#[derive(Debug, Clone)]
struct Caller(OperatorName);

/// Who called, as the layer authorized them. An error only when the layer
/// did not run (a wiring mistake): the call is refused, never served.
pub(super) fn caller<T>(request: &tonic::Request<T>) -> Result<OperatorName, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|c| c.0.clone())
        .ok_or_else(|| Status::internal("the call was not authorized"))
}

/// The `Operator` service behind the authorization layer.
#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    store: Store,
    denials: Arc<Denials>,
}

impl<S> Authorized<S> {
    /// `inner`, whose callers are checked against `store`'s operators;
    /// refusals recorded through `denials`.
    pub fn new(inner: S, store: Store, denials: Arc<Denials>) -> Self {
        Self {
            inner,
            store,
            denials,
        }
    }
}

impl<S: NamedService> NamedService for Authorized<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authorized<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The service made ready is the one that serves (tower's contract).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (store, denials) = (self.store.clone(), self.denials.clone());
        Box::pin(async move {
            let method = request.uri().path().rsplit('/').next().unwrap_or_default();
            let Some(rpc) = Rpc::of_method(method) else {
                return Ok(
                    Status::unimplemented(format!("no operator call {method:?}")).into_http(),
                );
            };
            match check(&store, &denials, &mut request, rpc).await {
                Ok(name) => {
                    request.extensions_mut().insert(Caller(name));
                    inner.call(request).await
                }
                Err(refusal) => Ok(refusal.into_http()),
            }
        })
    }
}

/// The calling operator, if registered, enabled and holding the role `rpc`
/// needs; refusals are written to the action log.
async fn check(
    store: &Store,
    denials: &Denials,
    request: &mut http::Request<Body>,
    rpc: Rpc,
) -> Result<OperatorName, Status> {
    let Some(peer) = request.extensions().get::<PeerInfo>() else {
        return Err(Status::unauthenticated("no client certificate"));
    };
    let refused_kind = |who: String, why: &str| (who, Status::permission_denied(why));
    let name = match &peer.identity {
        PeerIdentity::Operator(name) => name.clone(),
        PeerIdentity::Agent(host) => {
            tracing::warn!(peer.addr = %peer.remote_addr, host.id = %host, "Agent certificate refused on the operator API");
            let (who, status) = refused_kind(
                format!("agent {host}"),
                "an agent certificate cannot call the operator API",
            );
            denials
                .refused(&who, "operator_api", status.message())
                .await;
            return Err(status);
        }
        PeerIdentity::Collector(name) => {
            tracing::warn!(peer.addr = %peer.remote_addr, collector = %name, "Collector certificate refused on the operator API");
            let (who, status) = refused_kind(
                format!("collector {name}"),
                "a collector certificate (cluster mode's, for NATS) cannot call the operator API",
            );
            denials
                .refused(&who, "operator_api", status.message())
                .await;
            return Err(status);
        }
    };
    let (needed, verb) = rpc.needs();
    let record = store
        .operator(name.as_str())
        .map_err(|e| internal("reading operators", &e))?;
    let why = match &record {
        None => format!(
            "operator {name} is not registered on this collector (an admin adds them with `bannin operator add`)"
        ),
        Some(r) if !r.enabled => format!("operator {name} is disabled"),
        Some(r) if r.role < needed => format!(
            "{verb} needs the {} role; operator {name} is a {}",
            needed.as_str(),
            r.role.as_str()
        ),
        Some(_) => return Ok(name),
    };
    // A refused command is logged as the command it was (`command.isolate`):
    // its verb is read from the request, which is not served.
    let verb = match rpc {
        Rpc::IssueCommand => command_verb(request).await,
        _ => verb.to_owned(),
    };
    tracing::warn!(operator = %name, verb, reason = %why, "Operator call denied");
    denials.refused(name.as_str(), &verb, &why).await;
    Err(Status::permission_denied(why))
}

/// `command.NAME` of a refused `IssueCommand` request (`command` when the
/// request cannot be read or names no command).
async fn command_verb(request: &mut http::Request<Body>) -> String {
    use prost::Message;
    /// A command request is small; a larger body is not read.
    const MAX: usize = 64 * 1024;
    let body = std::mem::take(request.body_mut());
    let Ok(bytes) = http_body_util::Limited::new(body, MAX).collect().await else {
        return "command".into();
    };
    let bytes = bytes.to_bytes();
    // One gRPC frame: an uncompressed flag, a 4-byte length, the message.
    let message = match bytes.get(..5) {
        Some([0, len @ ..]) => {
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            bytes.get(5..5 + len)
        }
        _ => None,
    };
    match message
        .and_then(|m| v1::IssueCommandRequest::decode(m).ok())
        .and_then(|r| r.command)
        .map(|c| c.name())
    {
        Some(name) if !name.is_empty() => format!("command.{name}"),
        _ => "command".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every call of the `Operator` service in the contract has an [`Rpc`]
    /// (a call without one would be refused as unimplemented).
    #[test]
    fn every_operator_call_of_the_contract_is_mapped() {
        let proto = include_str!("../../../proto/proto/bannin/v1/bannin.proto");
        let service = proto
            .split("service Operator {")
            .nth(1)
            .and_then(|s| s.split("\n}").next())
            .expect("the Operator service");
        let methods: Vec<&str> = service
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .collect();
        assert!(methods.len() > 30, "{methods:?}");
        for method in methods {
            assert!(Rpc::of_method(method).is_some(), "{method} has no Rpc");
        }
        assert_eq!(Rpc::of_method("Session"), None);
    }
}
