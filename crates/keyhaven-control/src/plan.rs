//! The reconciler's decisions, as pure functions of the desired state (the store's rows)
//! and the observed state (what the nodes answered). `reconciler.rs` loads both, asks
//! these functions what to do, and applies the answer (runtime calls, store writes); every
//! rule is unit-tested here, table-driven, without a node or a store.
//!
//! The rules:
//! - a node under promotion is the promotion procedure's alone;
//! - a powered-off node is stopped, never started;
//! - a node's spec carries its row's role generation (the runtime refuses an older one than
//!   it applied, and the store records an observation only for the generation it was made
//!   for: generations only go up);
//! - a primary's spec never names a source, so a promoted node is never re-attached, even
//!   while a stale link to its old primary still exists;
//! - a replica becomes RUNNING only once it is current (synced and caught up); it stays
//!   RUNNING while its link is up and it is not resyncing;
//! - an interrupted promotion is rolled forward with a doubling delay, never in a loop.

use crate::spec::node_spec;
use keyhaven_core::{NodeHealth, Role, ServiceState};
use keyhaven_runtime::NodeSpec;
use keyhaven_store::{IntegrationRow, LinkStatus, ServiceRow};
use std::time::{Duration, Instant};

/// How long a node that has not answered since it was created (or powered on) is taken to
/// be starting: its "connection refused" is then no error to show. A node still silent
/// after this long shows why.
pub const FIRST_START_GRACE: Duration = Duration::from_secs(10);
/// How often an unchanged observation is written again (to refresh `observed_at`, and the
/// offset and command count, which change on every observation).
pub const UNCHANGED_REWRITE: Duration = Duration::from_secs(5);
/// First delay before a failed roll-forward of a promotion is retried; it doubles.
pub const ROLL_FORWARD_RETRY: Duration = Duration::from_secs(2);
pub const ROLL_FORWARD_MAX_DELAY: Duration = Duration::from_secs(60);

/// What to do with a service's node in this activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Under promotion: only the promotion procedure acts on it.
    LeaveToPromotion,
    /// Powered off: stop it, keeping its data and port; never start it.
    Stop,
    /// Make it run as this spec says.
    Ensure(Box<NodeSpec>),
}

/// The action for `row`'s node, given its read_replica link (as destination), that link's
/// source, whether a promotion of the link runs in this process, and where the source is
/// reached.
pub fn node_action(
    row: &ServiceRow,
    link: Option<&IntegrationRow>,
    source: Option<&ServiceRow>,
    promotion_running: bool,
    source_host: &str,
) -> NodeAction {
    if link.is_some_and(|l| l.status == LinkStatus::Promoting || promotion_running) {
        return NodeAction::LeaveToPromotion;
    }
    if !row.powered {
        return NodeAction::Stop;
    }
    NodeAction::Ensure(Box::new(node_spec(row, source, source_host)))
}

/// The state a service shows for an observation of its node: RUNNING once the node
/// answers in its desired role; a replica also needs to have completed its sync and caught
/// up with its primary. A replica that was RUNNING stays RUNNING while its link is briefly
/// down (its health shows it), unless a full sync starts.
pub fn state_of(service: &ServiceRow, health: &NodeHealth) -> ServiceState {
    if !health.answered {
        return ServiceState::Rebuilding;
    }
    match service.role {
        Role::Primary if health.valkey_role.as_deref() == Some("master") => ServiceState::Running,
        Role::Primary => ServiceState::Rebuilding,
        Role::Replica if health.current => ServiceState::Running,
        Role::Replica
            if service.state == ServiceState::Running
                && health.valkey_role.as_deref() == Some("slave")
                && !health.sync_in_progress =>
        {
            ServiceState::Running
        }
        Role::Replica => ServiceState::Rebuilding,
    }
}

/// Whether a node that does not answer is still in its first start: it has not answered
/// since the service was created or powered on (the last observation did not answer and
/// showed no error either), and that was less than [`FIRST_START_GRACE`] ago.
pub fn starting(service: &ServiceRow, now: i64) -> bool {
    service.state != ServiceState::Running
        && !service.health.answered
        && service.health.error.is_none()
        && now - service.update_time < FIRST_START_GRACE.as_micros() as i64
}

/// What a powered service records for an observation of its node. A starting node's
/// silence is no error; why its node could not be started (`ensure_error`) explains "does
/// not answer" better than the refused connection does.
pub fn record_observed(
    service: &ServiceRow,
    mut health: NodeHealth,
    ensure_error: Option<String>,
    now: i64,
) -> (ServiceState, NodeHealth) {
    if !health.answered && starting(service, now) {
        health.error = None;
    }
    if let Some(e) = ensure_error {
        health.error = Some(e);
    }
    (state_of(service, &health), health)
}

/// What a powered-off service records once its node is stopped: POWEROFF, and what a later
/// check needs kept (the data in use, whether a replica ever held a whole dataset).
pub fn record_powered_off(service: &ServiceRow) -> (ServiceState, NodeHealth) {
    let h = &service.health;
    (
        ServiceState::Poweroff,
        NodeHealth {
            observed_at: h.observed_at,
            used_memory: h.used_memory,
            synced: h.synced,
            bytes_behind: h.bytes_behind,
            ..NodeHealth::default()
        },
    )
}

/// What a powered-off service records while its stop failed: its state stays, the error
/// shows why.
pub fn record_stop_failed(
    service: &ServiceRow,
    error: Option<String>,
) -> (ServiceState, NodeHealth) {
    let mut health = service.health.clone();
    health.error = error;
    (service.state, health)
}

/// Whether a new record is worth a store write (each is an fsync). Unchanged health is
/// rewritten only every [`UNCHANGED_REWRITE`]; figures that move on an idle node too (its
/// offset with every heartbeat, its command count with every INFO) do not count as change.
pub fn worth_writing(
    service: &ServiceRow,
    state: ServiceState,
    health: &NodeHealth,
    now: i64,
) -> bool {
    let steady = |h: &NodeHealth| NodeHealth {
        observed_at: 0,
        repl_offset: None,
        commands_processed: None,
        ..h.clone()
    };
    state != service.state
        || steady(health) != steady(&service.health)
        || now - service.health.observed_at >= UNCHANGED_REWRITE.as_micros() as i64
}

/// Whether an interrupted promotion is to be rolled forward now, given its last attempt
/// (when, and how many so far): the attempt's number, or `None` while its retry delay
/// (doubling from [`ROLL_FORWARD_RETRY`] up to [`ROLL_FORWARD_MAX_DELAY`]) runs.
pub fn roll_forward_attempt(last: Option<(Instant, u32)>, now: Instant) -> Option<u32> {
    let Some((at, count)) = last else {
        return Some(1);
    };
    let delay = ROLL_FORWARD_RETRY
        .saturating_mul(1 << count.saturating_sub(1).min(5))
        .min(ROLL_FORWARD_MAX_DELAY);
    (now.saturating_duration_since(at) >= delay).then_some(count + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhaven_store::LinkStatus;
    use serde_json::json;

    fn row(role: Role, state: ServiceState) -> ServiceRow {
        ServiceRow {
            id: "id-r".into(),
            project: "p".into(),
            name: "r".into(),
            service_type: "valkey".into(),
            plan: "startup-4".into(),
            cloud: "local".into(),
            host: "127.0.0.2".into(),
            user_config: json!({}),
            termination_protection: false,
            port: 16001,
            service_password: "s".into(),
            admin_password: "a".into(),
            repl_password: "rp".into(),
            role,
            generation: 7,
            state,
            health: NodeHealth::default(),
            lost_bytes_estimate: None,
            create_time: 0,
            update_time: 0,
            powered: true,
        }
    }

    fn source() -> ServiceRow {
        ServiceRow {
            id: "id-p".into(),
            name: "p".into(),
            port: 16000,
            repl_password: "primary-repl".into(),
            ..row(Role::Primary, ServiceState::Running)
        }
    }

    fn link(status: LinkStatus) -> IntegrationRow {
        IntegrationRow {
            id: "l".into(),
            project: "p".into(),
            integration_type: "read_replica".into(),
            source_service_id: "id-p".into(),
            source_service: "p".into(),
            dest_service_id: "id-r".into(),
            dest_service: "r".into(),
            status,
            lossy: false,
            create_time: 0,
            claim: None,
        }
    }

    fn health(answered: bool, role: &str, current: bool, syncing: bool) -> NodeHealth {
        NodeHealth {
            answered,
            valkey_role: Some(role.into()),
            current,
            sync_in_progress: syncing,
            ..NodeHealth::default()
        }
    }

    #[test]
    fn node_actions() {
        use NodeAction::*;
        let replica = row(Role::Replica, ServiceState::Running);
        let off = ServiceRow {
            powered: false,
            ..replica.clone()
        };
        let promoted = row(Role::Primary, ServiceState::Running);
        let active = link(LinkStatus::Active);
        let promoting = link(LinkStatus::Promoting);
        let src = source();
        // (case, row, link, promotion running here, expected: None = Ensure)
        type Case<'a> = (
            &'a str,
            &'a ServiceRow,
            Option<&'a IntegrationRow>,
            bool,
            Option<NodeAction>,
        );
        let cases: [Case; 5] = [
            (
                "a link being promoted",
                &replica,
                Some(&promoting),
                false,
                Some(LeaveToPromotion),
            ),
            (
                "a promotion running here",
                &replica,
                Some(&active),
                true,
                Some(LeaveToPromotion),
            ),
            ("powered off", &off, Some(&active), false, Some(Stop)),
            ("a replica", &replica, Some(&active), false, None),
            (
                "a promoted node with its old link",
                &promoted,
                Some(&active),
                false,
                None,
            ),
        ];
        for (case, r, l, running, want) in cases {
            let got = node_action(r, l, Some(&src), running, "127.0.0.9");
            match want {
                Some(w) => assert_eq!(got, w, "{case}"),
                None => assert!(matches!(got, Ensure(_)), "{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_spec_carries_the_generation_and_only_a_replica_a_source() {
        let src = source();
        let NodeAction::Ensure(spec) = node_action(
            &row(Role::Replica, ServiceState::Rebuilding),
            Some(&link(LinkStatus::Active)),
            Some(&src),
            false,
            "127.0.0.9",
        ) else {
            panic!("a replica is ensured");
        };
        assert_eq!(spec.generation, 7);
        let s = spec.source.expect("a replica follows its primary");
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.9", 16000));
        assert_eq!(s.repl_password, "primary-repl");
        // Promoted: role primary at a newer generation, its old link still there.
        let promoted = ServiceRow {
            generation: 8,
            ..row(Role::Primary, ServiceState::Running)
        };
        let NodeAction::Ensure(spec) = node_action(
            &promoted,
            Some(&link(LinkStatus::Active)),
            Some(&src),
            false,
            "127.0.0.9",
        ) else {
            panic!("a primary is ensured");
        };
        assert_eq!(spec.generation, 8);
        assert_eq!(spec.source, None, "a promoted node was re-attached");
    }

    #[test]
    fn states() {
        use Role::*;
        use ServiceState::*;
        // (case, role, state before, health, expected)
        let cases = [
            (
                "primary answering as master",
                Primary,
                Rebuilding,
                health(true, "master", false, false),
                Running,
            ),
            (
                "primary not answering",
                Primary,
                Running,
                health(false, "master", false, false),
                Rebuilding,
            ),
            (
                "primary still answering as a replica",
                Primary,
                Running,
                health(true, "slave", false, false),
                Rebuilding,
            ),
            (
                "replica current",
                Replica,
                Rebuilding,
                health(true, "slave", true, false),
                Running,
            ),
            (
                "replica linked, not yet current",
                Replica,
                Rebuilding,
                health(true, "slave", false, false),
                Rebuilding,
            ),
            (
                "replica running, briefly behind",
                Replica,
                Running,
                health(true, "slave", false, false),
                Running,
            ),
            (
                "replica running, resyncing",
                Replica,
                Running,
                health(true, "slave", false, true),
                Rebuilding,
            ),
            (
                "replica answering as a primary",
                Replica,
                Running,
                health(true, "master", false, false),
                Rebuilding,
            ),
            (
                "replica not answering",
                Replica,
                Running,
                health(false, "slave", true, false),
                Rebuilding,
            ),
        ];
        for (case, role, before, h, want) in cases {
            assert_eq!(state_of(&row(role, before), &h), want, "{case}");
        }
    }

    #[test]
    fn a_starting_nodes_silence_is_no_error_but_a_failed_start_is() {
        let mut r = row(Role::Primary, ServiceState::Rebuilding);
        r.update_time = 1_000_000;
        let silent = NodeHealth {
            error: Some("connection refused".into()),
            ..NodeHealth::default()
        };
        let (state, h) = record_observed(&r, silent.clone(), None, 2_000_000);
        assert_eq!((state, h.error), (ServiceState::Rebuilding, None));
        let (_, h) = record_observed(&r, silent.clone(), Some("port taken".into()), 2_000_000);
        assert_eq!(h.error.as_deref(), Some("port taken"));
        // Past the grace, the silence shows.
        let late = 1_000_000 + FIRST_START_GRACE.as_micros() as i64 + 1;
        let (_, h) = record_observed(&r, silent, None, late);
        assert_eq!(h.error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn powered_off_keeps_what_a_later_check_needs() {
        let mut r = row(Role::Replica, ServiceState::Running);
        r.health = NodeHealth {
            answered: true,
            synced: true,
            used_memory: Some(42),
            link_up: Some(true),
            ..NodeHealth::default()
        };
        let (state, h) = record_powered_off(&r);
        assert_eq!(state, ServiceState::Poweroff);
        assert_eq!(
            (h.synced, h.used_memory, h.answered, h.link_up),
            (true, Some(42), false, None)
        );
        let (state, h) = record_stop_failed(&r, Some("stop failed".into()));
        assert_eq!(
            (state, h.error.as_deref()),
            (ServiceState::Running, Some("stop failed"))
        );
    }

    #[test]
    fn unchanged_health_is_written_only_every_few_seconds() {
        let mut r = row(Role::Primary, ServiceState::Running);
        r.health = NodeHealth {
            observed_at: 10_000_000,
            answered: true,
            repl_offset: Some(100),
            ..NodeHealth::default()
        };
        let moved_offset = NodeHealth {
            repl_offset: Some(999),
            commands_processed: Some(5),
            observed_at: 11_000_000,
            ..r.health.clone()
        };
        let soon = 11_000_000;
        let later = 10_000_000 + UNCHANGED_REWRITE.as_micros() as i64;
        assert!(!worth_writing(
            &r,
            ServiceState::Running,
            &moved_offset,
            soon
        ));
        assert!(worth_writing(
            &r,
            ServiceState::Running,
            &moved_offset,
            later
        ));
        assert!(worth_writing(
            &r,
            ServiceState::Rebuilding,
            &moved_offset,
            soon
        ));
        let lost_link = NodeHealth {
            link_up: Some(false),
            ..moved_offset
        };
        assert!(worth_writing(&r, ServiceState::Running, &lost_link, soon));
    }

    #[test]
    fn roll_forwards_back_off_doubling() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (last attempt, now, expected)
        let cases = [
            (None, t0, Some(1)),
            (Some((t0, 1)), t0 + s(1), None),
            (Some((t0, 1)), t0 + s(2), Some(2)),
            (Some((t0, 2)), t0 + s(3), None),
            (Some((t0, 2)), t0 + s(4), Some(3)),
            (Some((t0, 10)), t0 + s(59), None),
            (Some((t0, 10)), t0 + s(60), Some(11)),
        ];
        for (last, now, want) in cases {
            assert_eq!(
                roll_forward_attempt(last, now),
                want,
                "{last:?} at +{:?}",
                now - t0
            );
        }
    }
}
