//! What makes a rollout lose no request: surge before taking old pods down, readiness on
//! every pod, a preStop sleep and a grace period that covers the drain.

use super::*;

#[test]
fn without_a_readiness_path_readiness_is_a_tcp_check_of_the_port() {
    let probe = container(&build(&minimal()))
        .readiness_probe
        .clone()
        .expect("a readiness probe even without spec.readinessProbe");
    assert_eq!(probe.http_get, None);
    let tcp = probe.tcp_socket.expect("tcpSocket");
    assert_eq!(tcp.port, IntOrString::String("http".into()));
    assert_eq!(probe.period_seconds, Some(2));
}

#[test]
fn rollouts_keep_every_old_pod_until_a_new_one_is_ready() {
    let d = build(&minimal());
    let strategy = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rollingUpdate");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
}

#[test]
fn a_stopping_pod_sleeps_in_pre_stop_then_drains_within_its_grace_period() {
    let d = build(&minimal());
    let lifecycle = container(&d).lifecycle.clone().expect("lifecycle");
    let pre_stop = lifecycle.pre_stop.expect("preStop");
    // The kubelet's own sleep action: a wasm pod has no shell for `exec sleep`.
    assert_eq!(pre_stop.exec, None);
    assert_eq!(
        pre_stop.sleep.map(|s| s.seconds),
        Some(PRESTOP_SLEEP_SECONDS)
    );
    assert_eq!(lifecycle.post_start, None);
    // preStop sleep + the shim's drain limit (no request timeout) + margin.
    assert_eq!(
        pod_spec(&d).termination_grace_period_seconds,
        Some(PRESTOP_SLEEP_SECONDS + DEFAULT_DRAIN_SECONDS + DRAIN_MARGIN_SECONDS)
    );
    assert_eq!(PRESTOP_SLEEP_SECONDS + DRAIN_MARGIN_SECONDS, 10);
    // With a request timeout, the drain takes at most that long (rounded up to a second).
    for (timeout, grace) in [("30s", 40), ("500ms", 11), ("2m", 130), ("1.5s", 12)] {
        let mut app = minimal();
        app.spec.request_timeout = Some(timeout.into());
        assert_eq!(termination_grace_seconds(&app), grace, "{timeout}");
        assert_eq!(
            pod_spec(&build(&app)).termination_grace_period_seconds,
            Some(grace)
        );
    }
}
