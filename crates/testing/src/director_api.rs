//! One fake API server for the lab's directors: served in each director's namespace (each
//! reaches it on its own 127.0.0.1), a kubeconfig per director, and the directors' published
//! previous-node records read back (docs/director.md).

use crate::director_lab::Director;
use crate::e2e::Cluster;
use crate::fake_api::{FakeApi, Resource};

/// The fake API server the directors read, and each director's kubeconfig.
#[allow(missing_debug_implementations, reason = "holds a tokio runtime and the fake server")]
pub struct SharedApi {
    pub api: FakeApi,
    kubeconfigs: Vec<(String, String)>,
    _runtime: tokio::runtime::Runtime,
}

impl SharedApi {
    /// Serves one fake API server in the namespace of each of `directors`.
    pub fn start(cluster: &Cluster, directors: &[&str]) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let bind = |member: &str| {
            cluster
                .lab
                .run_in(member, || std::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap()
                .unwrap()
        };
        let (first, rest) = directors.split_first().expect("at least one director");
        let api = runtime.block_on(FakeApi::start_on(bind(first)));
        let mut addresses = vec![(*first, api.addr)];
        {
            let _entered = runtime.enter();
            for name in rest {
                addresses.push((*name, api.serve_also(bind(name))));
            }
        }
        let kubeconfigs = addresses
            .into_iter()
            .map(|(name, addr)| {
                let path = cluster.manifests.join(format!("{name}-kubeconfig"));
                api.write_kubeconfig_for(&path, addr);
                (name.to_owned(), path.display().to_string())
            })
            .collect();
        SharedApi { api, kubeconfigs, _runtime: runtime }
    }

    /// Director `name` reading the fake API server and publishing its record on its Node
    /// object (`--node-name name`), with `extra` arguments.
    pub fn start_director(&self, cluster: &Cluster, name: &str, extra: &[&str]) -> Director {
        let kubeconfig = &self.kubeconfigs.iter().find(|(n, _)| n == name).unwrap().1;
        let args = [&["--node-name", name][..], extra].concat();
        Director::start_from(cluster, name, &["--kubeconfig", kubeconfig], &args)
    }

    /// The Node objects, to the agents (manifests) and the directors (the fake API server);
    /// `deleted`: a Node deleted outright.
    pub fn nodes(&self, cluster: &Cluster, nodes: &str, deleted: Option<&str>) {
        cluster.apply("nodes.yaml", nodes);
        self.api.put_yaml(nodes);
        if let Some(name) = deleted {
            self.api.delete(Resource::Nodes, "", name);
        }
    }

    /// Director `name`'s published previous-node record.
    pub fn record(&self, name: &str) -> Option<String> {
        let node = self.api.get(Resource::Nodes, "", name)?;
        node["metadata"]["annotations"]["switchyard.io/director-previous"]
            .as_str()
            .map(str::to_owned)
    }
}
