//! What the API server holds now, fed once to a fresh allocator: the view `switchyard ipam
//! --kubeconfig` prints, the same as `switchyard ipam DIR` prints for a manifest directory.

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use switchyard_model::crd::IPPool;
use switchyard_model::{Change, ObjectKey};

use crate::allocator::Allocator;

/// Why the API server's objects could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Listing one kind failed (for IPPools, a 404 means deploy/crds.yaml is not applied).
    #[error("listing {kind} from the API server")]
    List {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
}

fn listing(kind: &'static str) -> impl FnOnce(kube::Error) -> SnapshotError {
    move |source| SnapshotError::List { kind, source }
}

/// Every Service (with its status), IPPool and Namespace the API server holds, in an allocator
/// for `class`, reconciled once: held addresses as the status says, and what a controller
/// would do for the Services still without one.
pub async fn snapshot(client: Client, class: Option<String>) -> Result<Allocator, SnapshotError> {
    let all = ListParams::default();
    let namespaces =
        Api::<Namespace>::all(client.clone()).list(&all).await.map_err(listing("Namespaces"))?;
    let pools = Api::<IPPool>::all(client.clone()).list(&all).await.map_err(listing("IPPools"))?;
    let services = Api::<Service>::all(client).list(&all).await.map_err(listing("Services"))?;
    let mut allocator = Allocator::new(class);
    for namespace in namespaces {
        allocator.set_namespace(&namespace.name_any(), Some(namespace.labels().clone()));
    }
    for pool in pools {
        let key = ObjectKey::cluster(pool.name_any());
        allocator.apply(&Change::IPPool(key, Some(Box::new(pool))));
    }
    for service in services {
        let key = ObjectKey::new(service.namespace().unwrap_or_default(), service.name_any());
        allocator.apply(&Change::Service(key, Some(Box::new(service))));
    }
    allocator.reconcile();
    Ok(allocator)
}
