//! `isolate`: the agent's own nftables table, a self-test that the collector is
//! still reachable (rolled back if not), and the state saved so a restart
//! re-applies it.

use super::super::command::Isolate;
use super::super::isolate::{self, Spec};
use super::super::{Persisted, Responder, ResponseError};

/// Isolates the host, or says exactly why not.
pub(in crate::response) async fn apply(
    responder: &Responder,
    command: Isolate,
) -> Result<String, ResponseError> {
    if responder.config.local_operator && !command.confirm_local {
        return Err(ResponseError::LocalOperator);
    }
    let collector = isolate::resolve_all(&responder.config.collectors).await?;
    let spec = Spec {
        collector: collector.clone(),
        resolvers: responder.config.dns_resolvers.clone(),
        allow: command.allow,
    };
    isolate::apply(&spec).await?;
    if let Err(why) = isolate::self_test(&collector).await {
        let rollback = isolate::remove().await;
        tracing::error!(reason = %why, "Isolation self-test failed: collector unreachable; rolled back");
        return Err(match rollback {
            Ok(_) => ResponseError::RolledBack(why),
            Err(remove) => ResponseError::RollbackFailed { why, remove },
        });
    }
    responder.persist(Some(&Persisted { spec: spec.clone() }))?;
    Ok(format!(
        "isolated: collector {:?}, resolvers {:?}, allowed {:?}",
        spec.collector,
        spec.resolvers,
        spec.allow.iter().map(|n| n.addr).collect::<Vec<_>>()
    ))
}
