//! Label selectors (`matchLabels` and `matchExpressions`, ANDed) matched against an object's labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// True when `labels` satisfy `selector`, as the API server decides: every `matchLabels` pair and
/// every expression must hold; an empty selector selects everything. An expression with an
/// operator Kubernetes does not know selects nothing (`validate` reports it).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten();
    let matches_pairs = pairs.into_iter().all(|(key, value)| labels.get(key) == Some(value));
    matches_pairs
        && selector.match_expressions.iter().flatten().all(|expression| {
            let values = expression.values.as_deref().unwrap_or_default();
            let value = labels.get(&expression.key);
            match expression.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// [`selects`] for an optional selector: unset selects everything.
pub fn selects_optional(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_none_or(|selector| selects(selector, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selector(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn selectors_match_as_the_api_server_decides() {
        let labels: BTreeMap<String, String> =
            [("rack", "r1"), ("zone", "a")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
        let cases = [
            (json!({}), true),
            (json!({"matchLabels": {"rack": "r1"}}), true),
            (json!({"matchLabels": {"rack": "r2"}}), false),
            (json!({"matchLabels": {"rack": "r1", "zone": "b"}}), false),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "edge", "operator": "NotIn", "values": ["x"]}]}),
                true,
            ),
            (json!({"matchExpressions": [{"key": "rack", "operator": "Exists"}]}), true),
            (json!({"matchExpressions": [{"key": "rack", "operator": "DoesNotExist"}]}), false),
            (
                json!({"matchExpressions": [{"key": "rack", "operator": "Equals", "values": ["r1"]}]}),
                false,
            ),
            (
                json!({"matchLabels": {"rack": "r1"},
                       "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}),
                false,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(selects(&selector(value.clone()), &labels), expected, "{value}");
        }
        assert!(selects_optional(None, &BTreeMap::new()));
    }
}
