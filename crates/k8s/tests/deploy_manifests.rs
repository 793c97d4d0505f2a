//! Every manifest under deploy/ parses into its typed k8s-openapi object, and the DaemonSet,
//! the controller's Deployment and the RBAC grant no more than each role needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// Every object in deploy/, typed.
#[derive(Debug, Default)]
struct Deploy {
    daemon_sets: Vec<DaemonSet>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    config_maps: Vec<ConfigMap>,
    crds: Vec<CustomResourceDefinition>,
    deployments: Vec<Deployment>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
}

/// The agent's objects are named `switchyard`, the controller's `switchyard-controller`.
fn named<'a, T: k8s_openapi::Metadata<Ty = ObjectMeta>>(objects: &'a [T], name: &str) -> &'a T {
    objects
        .iter()
        .find(|o| o.metadata().name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {name}"))
}

/// Every (group, resource, verb) a role's rules grant.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none(), "no non-resource URLs: {rule:?}");
        assert!(rule.resource_names.is_none(), "no resourceNames: {rule:?}");
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    grants.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

/// `(group, resource, verb)` triples, as [`grants`] returns them.
fn owned(triples: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    triples.iter().map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned())).collect()
}

/// A binding's subjects are exactly the ServiceAccount `account`.
fn binds_only(subjects: Option<&[Subject]>, account: &ObjectMeta) {
    let subjects = subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.name.as_ref());
    assert_eq!(subjects[0].namespace, account.namespace);
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value, place: &str) -> T {
    serde_path_to_error::deserialize(value).unwrap_or_else(|err| panic!("{place}: {err}"))
}

fn load() -> Deploy {
    let mut deploy = Deploy::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "deploy/ holds the manifests: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (index, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let place = format!("{} document {}", file.display(), index + 1);
            let value =
                serde_json::Value::deserialize(document).unwrap_or_else(|e| panic!("{place}: {e}"));
            if value.is_null() {
                continue;
            }
            match (value["apiVersion"].as_str(), value["kind"].as_str()) {
                // The kustomize base lists the others (the_kustomize_base_renders_every_manifest).
                (Some("kustomize.config.k8s.io/v1beta1"), Some("Kustomization")) => {}
                (Some("apps/v1"), Some("DaemonSet")) => {
                    deploy.daemon_sets.push(typed(value, &place))
                }
                (Some("v1"), Some("ServiceAccount")) => {
                    deploy.service_accounts.push(typed(value, &place))
                }
                (Some("v1"), Some("ConfigMap")) => deploy.config_maps.push(typed(value, &place)),
                (Some("apiextensions.k8s.io/v1"), Some("CustomResourceDefinition")) => {
                    deploy.crds.push(typed(value, &place));
                }
                (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
                    deploy.cluster_roles.push(typed(value, &place));
                }
                (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
                    deploy.bindings.push(typed(value, &place));
                }
                (Some("apps/v1"), Some("Deployment")) => {
                    deploy.deployments.push(typed(value, &place))
                }
                (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => {
                    deploy.roles.push(typed(value, &place));
                }
                (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
                    deploy.role_bindings.push(typed(value, &place));
                }
                (api_version, kind) => panic!("{place}: unexpected {api_version:?} {kind:?}"),
            }
        }
    }
    deploy
}

#[test]
fn every_manifest_parses_into_its_typed_object() {
    let deploy = load();
    assert_eq!(deploy.daemon_sets.len(), 2, "agent and director");
    assert_eq!(deploy.service_accounts.len(), 3, "agent, controller and director");
    assert_eq!(deploy.cluster_roles.len(), 3);
    assert_eq!(deploy.bindings.len(), 3);
    assert_eq!(deploy.deployments.len(), 1, "the controller");
    assert_eq!(
        (deploy.roles.len(), deploy.role_bindings.len()),
        (2, 3),
        "the controller's Lease, the BGP passwords (bound to the agent and the director)"
    );
    assert_eq!(deploy.config_maps.len(), 2, "the agent's and the director's settings");
    assert_eq!(deploy.crds.len(), 4, "IPPool, BGPPeer, BGPAdvertisement, L2Advertisement");
}

#[test]
fn cluster_role_grants_exactly_list_and_watch_on_what_a_proxy_reads() {
    let deploy = load();
    let role = named(&deploy.cluster_roles, "switchyard");
    let mut grants = BTreeSet::new();
    for rule in role.rules.as_deref().unwrap_or_default() {
        assert!(rule.non_resource_urls.is_none(), "no non-resource URLs: {rule:?}");
        assert!(rule.resource_names.is_none(), "no resourceNames: {rule:?}");
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    grants.insert((group.as_str(), resource.as_str(), verb.as_str()));
                }
            }
        }
    }
    let expected: BTreeSet<_> = [
        ("", "services", "list"),
        ("", "services", "watch"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("switchyard.io", "ippools", "list"),
        ("switchyard.io", "ippools", "watch"),
        ("switchyard.io", "bgppeers", "list"),
        ("switchyard.io", "bgppeers", "watch"),
        ("switchyard.io", "bgpadvertisements", "list"),
        ("switchyard.io", "bgpadvertisements", "watch"),
        ("switchyard.io", "l2advertisements", "list"),
        ("switchyard.io", "l2advertisements", "watch"),
    ]
    .into_iter()
    .collect();
    assert_eq!(grants, expected);
    assert!(role.aggregation_rule.is_none());
}

#[test]
fn binding_ties_the_role_to_the_daemonsets_service_account() {
    let deploy = load();
    let account = &named(&deploy.service_accounts, "switchyard").metadata;
    let binding = named(&deploy.bindings, "switchyard");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "switchyard");
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.name.as_ref());
    assert_eq!(subjects[0].namespace, account.namespace);
    let agent = named(&deploy.daemon_sets, "switchyard");
    let pod = agent.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, account.name);
    assert_eq!(agent.metadata.namespace, account.namespace);
}

#[test]
fn daemonset_has_host_network_and_only_the_capabilities_and_mounts_it_needs() {
    let deploy = load();
    let daemon_set = named(&deploy.daemon_sets, "switchyard");
    let pod = daemon_set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    // The stale-socket sweep finds pods' namespaces through the host's /proc.
    assert_eq!(pod.host_pid, Some(true));
    assert_ne!(pod.host_ipc, Some(true));
    let os = pod.node_selector.as_ref().and_then(|s| s.get("kubernetes.io/os"));
    assert_eq!(os.map(String::as_str), Some("linux"));
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_ne!(security.privileged, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added: BTreeSet<&str> = capabilities.add.iter().flatten().map(String::as_str).collect();
    // sweep_privileges.rs shows the sweep needs SYS_ADMIN and SYS_PTRACE.
    assert_eq!(added, BTreeSet::from(["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]));

    let host_paths: BTreeSet<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            v.host_path
                .as_ref()
                .map(|h| h.path.as_str())
                .unwrap_or_else(|| panic!("volume {} is not a hostPath", v.name))
        })
        .collect();
    assert_eq!(host_paths, BTreeSet::from(["/sys/fs/bpf", "/sys/fs/cgroup", "/run/switchyard"]));
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let mount = |name: &str| mounts.iter().find(|m| m.name == name).unwrap();
    // A bpffs mounted on the host after the container started is seen in it.
    assert_eq!(mount("bpffs").mount_propagation.as_deref(), Some("HostToContainer"));
    // The API socket's directory is writable (the root filesystem is not).
    assert_eq!(mount("run").mount_path, "/run/switchyard");
    assert_ne!(mount("run").read_only, Some(true));
    let args: Vec<&str> = container.args.iter().flatten().map(String::as_str).collect();
    assert!(args.contains(&"--api-socket=/run/switchyard/agent.sock"), "{args:?}");

    // The init container mounts a bpffs on the host's /sys/fs/bpf when there is none: the
    // mount reaches the host only with Bidirectional propagation, which needs privileged.
    let inits = pod.init_containers.as_deref().unwrap_or_default();
    let init = inits.iter().find(|c| c.name == "mount-bpffs").expect("mount-bpffs");
    assert_eq!(init.image, container.image);
    let init_args: Vec<&str> = init.args.iter().flatten().map(String::as_str).collect();
    assert_eq!(init_args, ["agent", "--mount-bpffs=/sys/fs/bpf"]);
    assert_eq!(init.security_context.as_ref().unwrap().privileged, Some(true));
    let init_mount = &init.volume_mounts.as_deref().unwrap_or_default()[0];
    assert_eq!(
        (init_mount.name.as_str(), init_mount.mount_path.as_str()),
        ("bpffs", "/sys/fs/bpf")
    );
    assert_eq!(init_mount.mount_propagation.as_deref(), Some("Bidirectional"));
    let bpffs = pod.volumes.iter().flatten().find(|v| v.name == "bpffs").unwrap();
    assert_eq!(bpffs.host_path.as_ref().unwrap().type_.as_deref(), Some("DirectoryOrCreate"));

    // The node name comes from the downward API; settings from the ConfigMap in deploy/.
    let env = container.env.as_deref().unwrap_or_default();
    let node_name = env.iter().find(|e| e.name == "NODE_NAME").expect("NODE_NAME");
    let field = node_name.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    let config_map = named(&deploy.config_maps, "switchyard");
    let data = config_map.data.as_ref().unwrap();
    for source in container.env_from.iter().flatten() {
        let reference = source.config_map_ref.as_ref().unwrap();
        assert_eq!(Some(&reference.name), config_map.metadata.name.as_ref());
    }
    // Every $(VAR) in the arguments is defined, or Kubernetes would pass it through literally.
    for arg in container.args.iter().flatten() {
        if let Some(start) = arg.find("$(") {
            let name = &arg[start + 2..arg[start..].find(')').unwrap() + start];
            assert!(
                data.contains_key(name) || env.iter().any(|e| e.name == name),
                "{arg}: {name} undefined"
            );
        }
    }
    // The per-packet path is on: devices come from the ConfigMap.
    assert!(args.contains(&"--devices=$(DEVICES)"), "{args:?}");
    assert!(!data["DEVICES"].trim().is_empty(), "DEVICES names the uplink");
    // The probes ask the health server on the port the ConfigMap binds: startup and
    // readiness wait for the first sync (/readyz) for up to 15 minutes; liveness (/livez)
    // only starts after the startup probe passed.
    let probes = [
        (&container.startup_probe, "/readyz"),
        (&container.readiness_probe, "/readyz"),
        (&container.liveness_probe, "/livez"),
    ];
    for (probe, path) in probes {
        let probe = probe.as_ref().unwrap_or_else(|| panic!("a probe on {path}"));
        let get = probe.http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        let port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
            other => panic!("probe port {other:?}"),
        };
        assert!(data["HEALTHZ_BIND_ADDRESS"].ends_with(&format!(":{port}")));
    }
    let startup = container.startup_probe.as_ref().unwrap();
    let patience = startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
    assert!(patience >= 15 * 60, "a first sync may take {patience} s at most");
}

#[test]
fn the_kustomize_base_renders_every_manifest() {
    let dir = deploy_dir();
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let base: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let listed: BTreeSet<String> = base["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml lists every manifest in deploy/");

    // kubectl's own kustomize renders it (scripts/setup installs a kubectl when none is there).
    let output = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl on PATH (scripts/setup installs kubernetes-client when missing)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl kustomize deploy/: {stderr}");
    let rendered = String::from_utf8(output.stdout).unwrap();
    let mut kinds = BTreeSet::new();
    for document in serde_norway::Deserializer::from_str(&rendered) {
        let value = serde_json::Value::deserialize(document).unwrap();
        kinds.insert(value["kind"].as_str().unwrap().to_owned());
    }
    let load = load();
    let expected = [
        ("DaemonSet", load.daemon_sets.len()),
        ("Deployment", load.deployments.len()),
        ("CustomResourceDefinition", load.crds.len()),
    ];
    for (kind, count) in expected {
        assert!(count > 0 && kinds.contains(kind), "{kind} rendered: {kinds:?}");
    }
    let documents = serde_norway::Deserializer::from_str(&rendered).count();
    let objects = load.daemon_sets.len()
        + load.deployments.len()
        + load.crds.len()
        + load.service_accounts.len()
        + load.cluster_roles.len()
        + load.bindings.len()
        + load.roles.len()
        + load.role_bindings.len()
        + load.config_maps.len();
    assert_eq!(documents, objects, "every object of deploy/ rendered once");
}

#[test]
fn the_agent_may_watch_only_the_named_bgp_password_secret() {
    let deploy = load();
    let role = named(&deploy.roles, "switchyard-bgp-passwords");
    assert_eq!(role.metadata.namespace.as_deref(), Some("kube-system"));
    let rules = role.rules.as_deref().unwrap_or_default();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(rule.resources.as_deref(), Some(&["secrets".to_owned()][..]));
    assert_eq!(rule.resource_names.as_deref(), Some(&["switchyard-bgp".to_owned()][..]));
    assert_eq!(rule.verbs, ["list", "watch"]);
    let binding = named(&deploy.role_bindings, "switchyard-bgp-passwords");
    assert_eq!(
        (binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
        ("Role", "switchyard-bgp-passwords")
    );
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    let account = &named(&deploy.service_accounts, "switchyard").metadata;
    assert_eq!(Some(&subjects[0].name), account.name.as_ref());
    assert_eq!(subjects[0].namespace, account.namespace);
}

#[test]
fn the_controller_may_write_status_events_and_its_lease_and_nothing_else() {
    let deploy = load();
    let cluster_role = named(&deploy.cluster_roles, "switchyard-controller");
    assert_eq!(
        grants(cluster_role.rules.as_deref().unwrap_or_default()),
        owned(&[
            ("", "services", "get"),
            ("", "services", "list"),
            ("", "services", "watch"),
            ("", "services/status", "update"),
            ("", "namespaces", "get"),
            ("", "namespaces", "list"),
            ("", "namespaces", "watch"),
            ("", "events", "create"),
            ("switchyard.io", "ippools", "get"),
            ("switchyard.io", "ippools", "list"),
            ("switchyard.io", "ippools", "watch"),
            ("switchyard.io", "ippools/status", "update"),
        ])
    );
    let role = named(&deploy.roles, "switchyard-controller");
    assert_eq!(role.metadata.namespace.as_deref(), Some("kube-system"));
    assert_eq!(
        grants(role.rules.as_deref().unwrap_or_default()),
        owned(&[
            ("coordination.k8s.io", "leases", "get"),
            ("coordination.k8s.io", "leases", "create"),
            ("coordination.k8s.io", "leases", "update"),
        ])
    );
    let account = &named(&deploy.service_accounts, "switchyard-controller").metadata;
    let binding = named(&deploy.bindings, "switchyard-controller");
    assert_eq!(binding.role_ref.name, "switchyard-controller");
    binds_only(binding.subjects.as_deref(), account);
    let role_binding = named(&deploy.role_bindings, "switchyard-controller");
    assert_eq!(
        (role_binding.role_ref.kind.as_str(), role_binding.role_ref.name.as_str()),
        ("Role", "switchyard-controller")
    );
    binds_only(role_binding.subjects.as_deref(), account);

    // Two replicas, the controller subcommand, no host access, no capabilities.
    let deployment = &deploy.deployments[0];
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, account.name);
    assert_ne!(pod.host_network, Some(true));
    assert!(pod.volumes.is_none());
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_deref().unwrap_or_default().first().map(String::as_str),
        Some("controller")
    );
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(capabilities.add.is_none());
    let env: BTreeSet<&str> = container.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains("POD_NAME") && env.contains("POD_NAMESPACE"), "{env:?}");
}

#[test]
fn the_director_may_read_what_it_serves_and_patch_nodes_and_needs_three_capabilities() {
    let deploy = load();
    let role = named(&deploy.cluster_roles, "switchyard-director");
    assert_eq!(
        grants(role.rules.as_deref().unwrap_or_default()),
        owned(&[
            ("", "services", "list"),
            ("", "services", "watch"),
            ("", "nodes", "list"),
            ("", "nodes", "watch"),
            // Its previous-node record, an annotation of its own Node.
            ("", "nodes", "patch"),
            ("discovery.k8s.io", "endpointslices", "list"),
            ("discovery.k8s.io", "endpointslices", "watch"),
            ("switchyard.io", "ippools", "list"),
            ("switchyard.io", "ippools", "watch"),
            ("switchyard.io", "bgppeers", "list"),
            ("switchyard.io", "bgppeers", "watch"),
            ("switchyard.io", "bgpadvertisements", "list"),
            ("switchyard.io", "bgpadvertisements", "watch"),
        ])
    );
    let account = &named(&deploy.service_accounts, "switchyard-director").metadata;
    let binding = named(&deploy.bindings, "switchyard-director");
    assert_eq!(binding.role_ref.name, "switchyard-director");
    binds_only(binding.subjects.as_deref(), account);
    // The BGP passwords: the agent's Role, bound to the director's account too.
    let passwords = named(&deploy.role_bindings, "switchyard-director-bgp-passwords");
    assert_eq!(
        (passwords.role_ref.kind.as_str(), passwords.role_ref.name.as_str()),
        ("Role", "switchyard-bgp-passwords")
    );
    binds_only(passwords.subjects.as_deref(), account);

    let daemon_set = named(&deploy.daemon_sets, "switchyard-director");
    assert_eq!(daemon_set.metadata.namespace, account.namespace);
    let pod = daemon_set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, account.name);
    assert_eq!(pod.host_network, Some(true));
    assert_ne!(pod.host_pid, Some(true));
    // Only on the machines labelled as directors (the lab's label, crates/testing director_lab).
    let selector = pod.node_selector.as_ref().unwrap();
    assert_eq!(selector.get("switchyard.io/role").map(String::as_str), Some("director"));
    // Longer than the shutdown grace: withdraw, keep forwarding, then exit.
    let container = &pod.containers[0];
    let args: Vec<&str> = container.args.iter().flatten().map(String::as_str).collect();
    assert_eq!(args.first(), Some(&"director"));
    let grace: i64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--shutdown-grace-seconds="))
        .expect("--shutdown-grace-seconds")
        .parse()
        .unwrap();
    assert!(pod.termination_grace_period_seconds.unwrap_or(30) > grace);
    let security = container.security_context.as_ref().unwrap();
    assert_ne!(security.privileged, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added: BTreeSet<&str> = capabilities.add.iter().flatten().map(String::as_str).collect();
    // crates/switchyard/tests/director_api_e2e.rs runs the director with exactly these.
    assert_eq!(added, BTreeSet::from(["BPF", "NET_ADMIN", "SYS_ADMIN"]));

    // Every $(VAR) is defined: the downward API, the seed's Secret, or one of the ConfigMaps.
    let env = container.env.as_deref().unwrap_or_default();
    let mut defined: BTreeSet<String> = env.iter().map(|e| e.name.clone()).collect();
    for source in container.env_from.iter().flatten() {
        let reference = source.config_map_ref.as_ref().expect("ConfigMaps only");
        let config_map = named(&deploy.config_maps, &reference.name);
        defined.extend(config_map.data.iter().flatten().map(|(k, _)| k.clone()));
    }
    for arg in &args {
        if let Some(start) = arg.find("$(") {
            let name = &arg[start + 2..arg[start..].find(')').unwrap() + start];
            assert!(defined.contains(name), "{arg}: {name} undefined");
        }
    }
    let seed = env.iter().find(|e| e.name == "SEED").expect("SEED");
    let secret = seed.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).unwrap();
    assert_eq!(secret.name, "switchyard-director-seed");
    assert_ne!(secret.optional, Some(true), "no director runs on a seed clients know");
    let host_ips = env.iter().find(|e| e.name == "HOST_IPS").expect("HOST_IPS");
    let field = host_ips.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).unwrap();
    assert_eq!(field.field_path, "status.hostIPs");
    // The API server's real address comes from the agent's ConfigMap, as the agent's does.
    let agent_settings = named(&deploy.config_maps, "switchyard");
    assert!(agent_settings.data.as_ref().unwrap().contains_key("KUBERNETES_SERVICE_HOST"));
    // Its pins on the host's bpffs (mounted by the same init container as the agent's).
    let inits = pod.init_containers.as_deref().unwrap_or_default();
    let init = inits.iter().find(|c| c.name == "mount-bpffs").expect("mount-bpffs");
    let init_args: Vec<&str> = init.args.iter().flatten().map(String::as_str).collect();
    assert_eq!(init_args, ["agent", "--mount-bpffs=/sys/fs/bpf"]);
    assert!(args.contains(&"--bpf-dir=/sys/fs/bpf/switchyard-director"), "{args:?}");
}
