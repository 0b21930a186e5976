//! The WasmApp status, computed from the app's Deployment. Pure: the reconciler compares what
//! this returns with the stored status and writes only when they differ.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::builders::{selector_string, service_url};
use crate::{WasmApp, WasmAppStatus};

/// Condition: every wanted replica runs the current spec and is ready.
pub const CONDITION_READY: &str = "Ready";
/// Condition: a rollout or scale is under way.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition: something keeps the app from its wanted state (failed rollout, failed apply).
pub const CONDITION_DEGRADED: &str = "Degraded";

/// The three conditions every status carries, in this order.
pub const CONDITION_TYPES: [&str; 3] = [CONDITION_READY, CONDITION_PROGRESSING, CONDITION_DEGRADED];

/// One condition's state before timestamps: status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ConditionState {
    fn new(status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Ready, Progressing and Degraded for an app whose Deployment is `deployment` (`None` when
/// it does not exist yet).
pub fn conditions_from_deployment(
    deployment: Option<&Deployment>,
) -> [(&'static str, ConditionState); 3] {
    let Some(deployment) = deployment else {
        return [
            (
                CONDITION_READY,
                ConditionState::new(
                    false,
                    "DeploymentMissing",
                    "the Deployment does not exist yet",
                ),
            ),
            (
                CONDITION_PROGRESSING,
                ConditionState::new(true, "Creating", "creating the Deployment"),
            ),
            (
                CONDITION_DEGRADED,
                ConditionState::new(false, "AsExpected", "no problem seen"),
            ),
        ];
    };

    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let deployment_condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|condition| condition.type_ == kind)
    };

    let failure = deployment_condition("ReplicaFailure").filter(|c| c.status == "True");
    let deadline = deployment_condition("Progressing")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    let degraded = if let Some(condition) = failure {
        ConditionState::new(
            true,
            "ReplicaFailure",
            condition.message.clone().unwrap_or_default(),
        )
    } else if let Some(condition) = deadline {
        ConditionState::new(
            true,
            "ProgressDeadlineExceeded",
            condition.message.clone().unwrap_or_default(),
        )
    } else {
        ConditionState::new(false, "AsExpected", "no problem seen")
    };

    let rolled_out = observed && updated >= wanted && total <= updated;
    let progressing = if !observed {
        ConditionState::new(
            true,
            "Updating",
            "the Deployment controller has not seen the new spec yet",
        )
    } else if !rolled_out {
        ConditionState::new(
            true,
            "RollingOut",
            format!("{updated} of {wanted} replicas updated, {total} running"),
        )
    } else if ready < wanted {
        ConditionState::new(
            true,
            "WaitingForReady",
            format!("{ready} of {wanted} replicas ready"),
        )
    } else {
        ConditionState::new(false, "RolloutComplete", "the current spec is rolled out")
    };

    let ready_state = if rolled_out && ready >= wanted {
        if wanted == 0 {
            ConditionState::new(true, "ScaledToZero", "no replicas are wanted")
        } else {
            ConditionState::new(
                true,
                "AllReplicasReady",
                format!("{ready} of {wanted} replicas ready"),
            )
        }
    } else {
        ConditionState::new(
            false,
            "ReplicasNotReady",
            format!("{ready} of {wanted} replicas ready"),
        )
    };

    [
        (CONDITION_READY, ready_state),
        (CONDITION_PROGRESSING, progressing),
        (CONDITION_DEGRADED, degraded),
    ]
}

/// The status to store for `app`: replica counts and conditions from `deployment`, with
/// `override_degraded` (a failed apply) taking the place of the Deployment's view when given.
///
/// A condition whose status did not change keeps its `lastTransitionTime` from the stored
/// status; only changed ones get `now`. So an unchanged world yields a status equal to the
/// stored one, and the reconciler writes nothing.
pub fn desired_status(
    app: &WasmApp,
    deployment: Option<&Deployment>,
    override_degraded: Option<ConditionState>,
    now: &Time,
) -> WasmAppStatus {
    let previous = app.status.as_ref();
    let mut states = conditions_from_deployment(deployment);
    if let Some(degraded) = override_degraded {
        states[2].1 = degraded;
    }
    let generation = app.metadata.generation;
    let conditions = states
        .into_iter()
        .map(|(kind, state)| {
            let status = if state.status { "True" } else { "False" };
            let last_transition_time = previous
                .and_then(|p| p.conditions.iter().find(|c| c.type_ == kind))
                .filter(|c| c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: kind.to_string(),
                status: status.to_string(),
                reason: state.reason.to_string(),
                message: state.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();

    let deployment_status = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    WasmAppStatus {
        observed_generation: generation,
        replicas: deployment_status.replicas.unwrap_or(0),
        ready_replicas: deployment_status.ready_replicas.unwrap_or(0),
        conditions,
        url: app
            .namespace()
            .map(|namespace| service_url(&app.name_any(), &namespace)),
        selector: Some(selector_string(app)),
    }
}

/// The condition of `kind` in `status`, if any.
pub fn condition<'a>(status: Option<&'a WasmAppStatus>, kind: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == kind)
}

/// Whether the condition `kind` is `True` in `status`.
pub fn is_true(status: Option<&WasmAppStatus>, kind: &str) -> bool {
    condition(status, kind).is_some_and(|c| c.status == "True")
}

/// The stored status with Degraded replaced by `degraded` (a failed apply): replica counts,
/// Ready and Progressing stay as last seen, since the failure says nothing new about them.
pub fn degraded_status(app: &WasmApp, degraded: ConditionState, now: &Time) -> WasmAppStatus {
    let mut status = app
        .status
        .clone()
        .unwrap_or_else(|| desired_status(app, None, None, now));
    status.observed_generation = app.metadata.generation;
    let new_status = if degraded.status { "True" } else { "False" };
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_DEGRADED)
        .cloned();
    let last_transition_time = previous
        .as_ref()
        .filter(|c| c.status == new_status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    status.conditions.retain(|c| c.type_ != CONDITION_DEGRADED);
    status.conditions.push(Condition {
        type_: CONDITION_DEGRADED.to_string(),
        status: new_status.to_string(),
        reason: degraded.reason.to_string(),
        message: degraded.message,
        observed_generation: app.metadata.generation,
        last_transition_time,
    });
    status
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::WasmAppSpec;

    fn deployment(wanted: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(wanted),
                ..Default::default()
            }),
            status: Some(status),
        }
    }

    fn rolled_out(wanted: i32, ready: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(wanted),
            updated_replicas: Some(wanted),
            ready_replicas: Some(ready),
            ..Default::default()
        }
    }

    fn states(d: Option<&Deployment>) -> Vec<(&'static str, bool, &'static str)> {
        conditions_from_deployment(d)
            .into_iter()
            .map(|(kind, state)| (kind, state.status, state.reason))
            .collect()
    }

    #[test]
    fn all_ready_is_ready_and_not_progressing() {
        assert_eq!(
            states(Some(&deployment(3, rolled_out(3, 3)))),
            [
                ("Ready", true, "AllReplicasReady"),
                ("Progressing", false, "RolloutComplete"),
                ("Degraded", false, "AsExpected")
            ]
        );
    }

    #[test]
    fn waiting_for_pods_is_progressing_and_not_ready() {
        assert_eq!(
            states(Some(&deployment(3, rolled_out(3, 1)))),
            [
                ("Ready", false, "ReplicasNotReady"),
                ("Progressing", true, "WaitingForReady"),
                ("Degraded", false, "AsExpected")
            ]
        );
    }

    #[test]
    fn an_unobserved_generation_is_updating() {
        let mut status = rolled_out(3, 3);
        status.observed_generation = Some(1);
        let found = states(Some(&deployment(3, status)));
        assert_eq!(found[0], ("Ready", false, "ReplicasNotReady"));
        assert_eq!(found[1], ("Progressing", true, "Updating"));
    }

    #[test]
    fn old_pods_still_running_is_rolling_out() {
        let mut status = rolled_out(3, 3);
        status.replicas = Some(4);
        status.updated_replicas = Some(2);
        assert_eq!(
            states(Some(&deployment(3, status)))[1],
            ("Progressing", true, "RollingOut")
        );
    }

    #[test]
    fn a_missed_deadline_or_replica_failure_is_degraded() {
        let mut status = rolled_out(3, 1);
        status.conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet hello-1 has timed out progressing".into()),
            ..Default::default()
        }]);
        assert_eq!(
            states(Some(&deployment(3, status)))[2],
            ("Degraded", true, "ProgressDeadlineExceeded")
        );
        let mut status = rolled_out(3, 0);
        status.conditions = Some(vec![DeploymentCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("pods \"hello\" is forbidden: exceeded quota".into()),
            ..Default::default()
        }]);
        let conditions = conditions_from_deployment(Some(&deployment(3, status)));
        assert_eq!(conditions[2].1.reason, "ReplicaFailure");
        assert!(conditions[2].1.message.contains("exceeded quota"));
    }

    #[test]
    fn zero_replicas_is_ready_as_scaled_to_zero() {
        assert_eq!(
            states(Some(&deployment(0, rolled_out(0, 0))))[0],
            ("Ready", true, "ScaledToZero")
        );
    }

    #[test]
    fn no_deployment_yet_is_not_ready() {
        assert_eq!(states(None)[0], ("Ready", false, "DeploymentMissing"));
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let mut app = WasmApp::new("hello", WasmAppSpec::default());
        app.metadata.namespace = Some("demo".into());
        app.metadata.generation = Some(2);
        let t1 = Time(Timestamp::from_second(1_700_000_000).expect("time"));
        let t2 = Time(Timestamp::from_second(1_700_000_100).expect("time"));
        let first = desired_status(&app, Some(&deployment(3, rolled_out(3, 1))), None, &t1);
        app.status = Some(first.clone());
        // Same world later: identical status, so no write.
        let again = desired_status(&app, Some(&deployment(3, rolled_out(3, 1))), None, &t2);
        assert_eq!(again, first);
        // Ready flips: only Ready and Progressing get the new time.
        let ready = desired_status(&app, Some(&deployment(3, rolled_out(3, 3))), None, &t2);
        let time_of =
            |kind: &str| condition(Some(&ready), kind).map(|c| c.last_transition_time.clone());
        assert_eq!(time_of(CONDITION_READY), Some(t2.clone()));
        assert_eq!(time_of(CONDITION_PROGRESSING), Some(t2));
        assert_eq!(time_of(CONDITION_DEGRADED), Some(t1));
        assert_eq!(ready.ready_replicas, 3);
        assert_eq!(ready.observed_generation, Some(2));
    }

    #[test]
    fn a_failed_apply_marks_degraded_and_keeps_the_rest() {
        let mut app = WasmApp::new("hello", WasmAppSpec::default());
        app.metadata.namespace = Some("demo".into());
        let now = Time(Timestamp::from_second(1_700_000_000).expect("time"));
        app.status = Some(desired_status(
            &app,
            Some(&deployment(1, rolled_out(1, 1))),
            None,
            &now,
        ));
        let degraded = degraded_status(
            &app,
            ConditionState::new(
                true,
                "ApplyFailed",
                "apply Deployment demo/hello: forbidden",
            ),
            &now,
        );
        assert!(is_true(Some(&degraded), CONDITION_DEGRADED));
        assert!(is_true(Some(&degraded), CONDITION_READY));
        assert_eq!(degraded.ready_replicas, 1);
        assert_eq!(degraded.conditions.len(), 3);
    }
}
