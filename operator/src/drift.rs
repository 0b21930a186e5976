//! Whether a child as the API server holds it still carries everything the operator applies.
//!
//! The reconciler applies a child when its spec hash differs from the desired one (the app
//! changed) or when [`contains`] finds a field the operator sets whose value the cluster no
//! longer has (someone edited the child: `kubectl edit`, `kubectl scale deployment`,
//! `kubectl set image`). A child that matches in both ways is left alone, so a reconcile of an
//! unchanged app makes no write.
//!
//! The comparison is "desired ⊆ observed" over the JSON forms, with the normalizations the API
//! server applies on its own: defaulted fields may be added, empty values (`""`, `0`, `false`,
//! `[]`, `{}`) may be dropped, and resource quantities are canonicalized (`0.5` → `500m`).
//! Lists of objects match as an ordered subsequence (the server and other managers may add
//! entries the operator does not own, which server-side apply would not remove either); lists
//! of scalars (args, values) must be equal.

use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use crate::builders::spec_hash;

/// Why a child must be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyReason {
    /// The desired child changed (its spec hash differs).
    Changed,
    /// Someone changed or removed a field the operator sets.
    Drifted,
}

/// Why `observed` must be applied again to become `desired`, or `None` when it already has
/// what `desired` sets: the same spec hash and every desired field.
pub fn apply_reason<K: Resource + Serialize>(observed: &K, desired: &K) -> Option<ApplyReason> {
    match (spec_hash(observed), spec_hash(desired)) {
        (Some(seen), Some(wanted)) if seen == wanted => {}
        _ => return Some(ApplyReason::Changed),
    }
    match (
        serde_json::to_value(observed),
        serde_json::to_value(desired),
    ) {
        (Ok(observed), Ok(desired)) => {
            (!contains(&observed, &desired)).then_some(ApplyReason::Drifted)
        }
        // Plain data always serializes; if it ever did not, applying is the safe answer.
        _ => Some(ApplyReason::Changed),
    }
}

/// Whether `observed` has every field of `desired` with an equal value (see the module docs
/// for what counts as equal).
pub fn contains(observed: &Value, desired: &Value) -> bool {
    contains_at(observed, desired, Context::Plain)
}

/// What the values under the current key are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Plain,
    /// Resource quantities (values of `limits`, `requests`, `sizeLimit`).
    Quantity,
}

fn child_context(key: &str) -> Context {
    match key {
        "limits" | "requests" | "sizeLimit" => Context::Quantity,
        _ => Context::Plain,
    }
}

fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn contains_at(observed: &Value, desired: &Value, context: Context) -> bool {
    if observed.is_null() {
        return is_empty_value(desired);
    }
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(seen), Value::Object(wanted)) => wanted.iter().all(|(key, value)| {
            let inner = if context == Context::Quantity {
                Context::Quantity
            } else {
                child_context(key)
            };
            contains_at(seen.get(key).unwrap_or(&Value::Null), value, inner)
        }),
        (Value::Array(seen), Value::Array(wanted)) => {
            if wanted.iter().all(|v| !v.is_object()) {
                seen.len() == wanted.len()
                    && seen
                        .iter()
                        .zip(wanted)
                        .all(|(s, w)| contains_at(s, w, context))
            } else {
                // Ordered subsequence: each desired entry in a later observed entry.
                let mut rest = seen.iter();
                wanted
                    .iter()
                    .all(|w| rest.by_ref().any(|s| contains_at(s, w, context)))
            }
        }
        (Value::String(seen), Value::String(wanted)) => {
            seen == wanted || (context == Context::Quantity && same_quantity(seen, wanted))
        }
        (Value::Number(seen), Value::Number(wanted)) => seen.as_f64() == wanted.as_f64(),
        (seen, wanted) => seen == wanted,
    }
}

/// Whether two quantities stand for the same amount (`0.5` and `500m`, `1024Mi` and `1Gi`).
fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(a), Some(b)) => a == b || (a - b).abs() <= f64::EPSILON * 16.0 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// The amount a Kubernetes quantity stands for (`64Mi`, `500m`, `0.5`, `1e3`, `2G`).
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn added_and_defaulted_fields_are_not_drift() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"name": "http", "containerPort": 8080}]}
        ]}}}});
        let observed = json!({"spec": {"replicas": 2, "revisionHistoryLimit": 10,
            "template": {"spec": {"dnsPolicy": "ClusterFirst",
            "containers": [{"name": "app", "image": "a:1", "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]}}}});
        assert!(contains(&observed, &desired));
    }

    #[test]
    fn a_changed_value_or_a_removed_field_is_drift() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "a:1"}]}}}});
        let scaled = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "app", "image": "a:1"}]}}}});
        let new_image = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": "a:2"}]}}}});
        let no_image = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app"}]}}}});
        for observed in [scaled, new_image, no_image] {
            assert!(!contains(&observed, &desired), "{observed}");
        }
    }

    #[test]
    fn empty_values_match_fields_the_server_dropped() {
        let desired = json!({"args": [], "env": [{"name": "A", "value": ""}], "readOnly": false,
                             "initialDelaySeconds": 0, "labels": {}});
        assert!(contains(&json!({"env": [{"name": "A"}]}), &desired));
        assert!(!contains(
            &json!({"env": [{"name": "A", "value": "x"}]}),
            &desired
        ));
    }

    #[test]
    fn quantities_compare_by_amount_only_where_they_are_quantities() {
        let desired = json!({"resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}},
                             "emptyDir": {"sizeLimit": "1000Ki"}});
        let canonical = json!({"resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                               "emptyDir": {"sizeLimit": "1000Ki"}});
        assert!(contains(&canonical, &desired));
        let raised = json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            "emptyDir": {"sizeLimit": "1000Ki"}});
        assert!(!contains(&raised, &desired));
        // An env value is text, even when it looks like a quantity.
        assert!(!contains(
            &json!({"env": [{"name": "N", "value": "1k"}]}),
            &json!({"env": [{"name": "N", "value": "1000"}]})
        ));
    }

    #[test]
    fn object_lists_match_in_order_and_scalar_lists_exactly() {
        let desired =
            json!({"env": [{"name": "PORT", "value": "8080"}, {"name": "A", "value": "1"}]});
        // Someone else's variable in between is theirs: not drift.
        let extra = json!({"env": [{"name": "PORT", "value": "8080"}, {"name": "X", "value": "9"},
                                   {"name": "A", "value": "1"}]});
        assert!(contains(&extra, &desired));
        let reordered =
            json!({"env": [{"name": "A", "value": "1"}, {"name": "PORT", "value": "8080"}]});
        assert!(!contains(&reordered, &desired));
        assert!(!contains(
            &json!({"args": ["a", "b", "c"]}),
            &json!({"args": ["a", "b"]})
        ));
        assert!(contains(
            &json!({"args": ["a", "b"]}),
            &json!({"args": ["a", "b"]})
        ));
    }

    #[test]
    fn quantity_parsing() {
        assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("2G"), Some(2e9));
        assert_eq!(quantity("lots"), None);
    }
}
