//! Paths of the fake API server, and the requests about one object: GET, POST (create), PUT
//! (replace, or the `status` subresource), PATCH (JSON merge patch) and DELETE, with
//! resourceVersion preconditions answered by 409 Conflict as the API server does.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Inner, Resource, json_response, name_of, status};

/// A path the fake serves: `/api/v1/[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]]`, or the same
/// under `/apis/GROUP/VERSION/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Route {
    /// `None` for paths the fake does not serve.
    pub fn parse(path: &str) -> Option<Self> {
        let (api_version, rest) = match path.strip_prefix("/api/v1/") {
            Some(rest) => ("v1".to_owned(), rest),
            None => {
                let rest = path.strip_prefix("/apis/")?;
                let mut parts = rest.splitn(3, '/');
                let (group, version) = (parts.next()?, parts.next()?);
                (format!("{group}/{version}"), parts.next().unwrap_or_default())
            }
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (namespace, segments) = match segments.as_slice() {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
                (Some((*namespace).to_owned()), rest)
            }
            all => (None, all),
        };
        let (plural, name, subresource) = match segments {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some(*name), None),
            [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
            _ => return None,
        };
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.api_version() == api_version && r.plural() == plural)?;
        Some(Self {
            resource,
            namespace,
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
        })
    }
}

fn not_found(route: &Route) -> Response {
    let name = route.name.clone().unwrap_or_default();
    let message = format!("{} {name:?} not found", route.resource.plural());
    json_response(StatusCode::NOT_FOUND, &status(404, "NotFound", &message))
}

fn conflict(message: &str) -> Response {
    json_response(StatusCode::CONFLICT, &status(409, "Conflict", message))
}

/// Answers a request about one object (or a create).
pub(super) fn object_request(
    inner: &mut Inner,
    method: &Method,
    route: &Route,
    body: &[u8],
) -> Response {
    let namespace = route.namespace.clone().unwrap_or_default();
    let key = |name: &str| (route.resource, namespace.clone(), name.to_owned());
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match (method.as_str(), &route.name) {
        ("GET", Some(name)) => match inner.objects.get(&key(name)) {
            Some(object) => json_response(StatusCode::OK, object),
            None => not_found(route),
        },
        ("POST", None) => {
            let Some(mut object) = parsed else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &status(400, "BadRequest", "body is not JSON"),
                );
            };
            object["kind"] = json!(route.resource.kind());
            object["apiVersion"] = json!(route.resource.api_version());
            if route.namespace.is_some() {
                object["metadata"]["namespace"] = json!(namespace);
            }
            inner.serial += 1;
            if name_of(&object).is_empty() {
                let prefix =
                    object["metadata"]["generateName"].as_str().unwrap_or_default().to_owned();
                object["metadata"]["name"] = json!(format!("{prefix}{:05}", inner.serial));
            }
            if inner.objects.contains_key(&key(&name_of(&object))) {
                let message =
                    format!("{} {:?} already exists", route.resource.plural(), name_of(&object));
                return json_response(
                    StatusCode::CONFLICT,
                    &status(409, "AlreadyExists", &message),
                );
            }
            object["metadata"]["uid"] = json!(format!("uid-{}", inner.serial));
            inner.put(object.clone());
            json_response(StatusCode::CREATED, &inner.objects[&key(&name_of(&object))])
        }
        ("PUT" | "PATCH", Some(name)) => {
            let Some(update) = parsed else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &status(400, "BadRequest", "body is not JSON"),
                );
            };
            let Some(current) = inner.objects.get(&key(name)).cloned() else {
                return not_found(route);
            };
            if let Some(left) = inner.conflicts.get_mut(&route.resource).filter(|n| **n > 0) {
                *left -= 1;
                return conflict(
                    "the object has been modified; please apply your changes to the latest version",
                );
            }
            if let Some(version) = update["metadata"]["resourceVersion"].as_str()
                && Some(version) != current["metadata"]["resourceVersion"].as_str()
            {
                return conflict(
                    "the object has been modified; please apply your changes to the latest version",
                );
            }
            let status_only = route.subresource.as_deref() == Some("status");
            let mut next = current.clone();
            match (method.as_str(), status_only) {
                ("PUT", true) => next["status"] = update["status"].clone(),
                ("PUT", false) => {
                    next = update;
                    next["kind"] = json!(route.resource.kind());
                    next["apiVersion"] = json!(route.resource.api_version());
                    if route.resource.has_status() {
                        next["status"] = current["status"].clone();
                    }
                }
                (_, true) => merge_patch(&mut next["status"], &update["status"]),
                (_, false) => merge_patch(&mut next, &update),
            }
            if next["status"].is_null()
                && let Some(map) = next.as_object_mut()
            {
                map.remove("status");
            }
            inner.put(next);
            json_response(StatusCode::OK, &inner.objects[&key(name)])
        }
        ("DELETE", Some(name)) => {
            if !inner.objects.contains_key(&key(name)) {
                return not_found(route);
            }
            inner.delete(route.resource, &namespace, name);
            json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            )
        }
        _ => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &status(405, "MethodNotAllowed", "the fake API server does not do that"),
        ),
    }
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            if let Some(map) = target.as_object_mut() {
                map.remove(key);
            }
        } else {
            merge_patch(&mut target[key.as_str()], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a path parses to: resource, namespace, name, subresource.
    type Parsed<'a> = (Resource, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    #[test]
    fn parses_the_paths_kube_rs_uses() {
        let cases: &[(&str, Option<Parsed<'_>>)] = &[
            ("/api/v1/services", Some((Resource::Services, None, None, None))),
            (
                "/api/v1/namespaces/ns/services/web/status",
                Some((Resource::Services, Some("ns"), Some("web"), Some("status"))),
            ),
            (
                "/apis/switchyard.io/v1alpha1/ippools/blue/status",
                Some((Resource::IPPools, None, Some("blue"), Some("status"))),
            ),
            (
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x",
                Some((Resource::Leases, Some("kube-system"), Some("x"), None)),
            ),
            ("/api/v1/namespaces", Some((Resource::Namespaces, None, None, None))),
            ("/api/v1/namespaces/team", Some((Resource::Namespaces, None, Some("team"), None))),
            ("/api/v1/namespaces/team/events", Some((Resource::Events, Some("team"), None, None))),
            (
                "/apis/discovery.k8s.io/v1/endpointslices",
                Some((Resource::EndpointSlices, None, None, None)),
            ),
            ("/api/v1/pods", None),
        ];
        for (path, expected) in cases {
            let got = Route::parse(path).map(|r| (r.resource, r.namespace, r.name, r.subresource));
            let expected = expected.map(|(r, ns, n, s)| {
                (r, ns.map(str::to_owned), n.map(str::to_owned), s.map(str::to_owned))
            });
            assert_eq!(got, expected, "{path}");
        }
    }
}
