//! OpenAPI schemas for the Kubernetes types our kinds embed (k8s-openapi's schemars support
//! would rebuild every crate for two types).

use schemars::{Schema, SchemaGenerator, json_schema};

/// `metav1.LabelSelector`: `matchLabels` and `matchExpressions`.
pub(crate) fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A standard label selector: matchLabels and matchExpressions, ANDed. \
                        An empty selector selects everything.",
        "type": "object",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": { "type": "string" }
            },
            "matchExpressions": {
                "type": "array",
                "x-kubernetes-list-type": "atomic",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": { "type": "string" },
                        "operator": {
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "type": "array",
                            "x-kubernetes-list-type": "atomic",
                            "items": { "type": "string" }
                        }
                    }
                }
            }
        }
    })
}

/// A list of `metav1.LabelSelector`.
pub(crate) fn label_selectors(generator: &mut SchemaGenerator) -> Schema {
    let item = label_selector(generator);
    json_schema!({
        "description": "Label selectors; an object is selected when any of them selects it.",
        "type": "array",
        "x-kubernetes-list-type": "atomic",
        "items": item
    })
}

/// A list of `metav1.Condition`, one per type.
pub(crate) fn conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Current state of the object, one condition per type.",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": { "type": "string" },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0 },
                "lastTransitionTime": { "type": "string", "format": "date-time" },
                "reason": { "type": "string" },
                "message": { "type": "string" }
            }
        }
    })
}
