//! The planner: from what one node should run for one deployment and what its engine has, the
//! one next thing to do. Pure (no I/O), so every state a kill -9 can leave behind is a row of
//! its test table. A worker calls it, does the step, relists and calls it again until it says
//! [`Step::Converged`].

use super::spec::UpdateOrder;

/// A container's state as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Made, never started.
    Created,
    /// Running.
    Running,
    /// Docker's restart policy is about to start it again.
    Restarting,
    /// Paused.
    Paused,
    /// Stopped, or ended by itself.
    Exited,
    /// Being removed.
    Removing,
    /// Could not be removed completely.
    Dead,
}

impl Status {
    /// Docker's word for it.
    pub fn parse(s: &str) -> Status {
        match s {
            "created" => Status::Created,
            "running" => Status::Running,
            "restarting" => Status::Restarting,
            "paused" => Status::Paused,
            "removing" => Status::Removing,
            "dead" => Status::Dead,
            _ => Status::Exited,
        }
    }

    /// Whether a process of it runs (or is about to).
    pub fn is_up(self) -> bool {
        matches!(self, Status::Running | Status::Restarting | Status::Paused)
    }
}

/// One container of this deployment on this node, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Docker's id.
    pub id: String,
    /// Its spec hash label.
    pub hash: String,
    /// Its state.
    pub status: Status,
}

/// What the node should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The spec hash of the container that should exist.
    pub hash: String,
    /// Whether it should run (the deployment and the instance are not stopped).
    pub run: bool,
    /// A restart was asked for after this container last started.
    pub restart_due: bool,
    /// Whether it may be started now (after a crash, not before its backoff has passed).
    pub may_start: bool,
    /// Old before new, or new before old.
    pub order: UpdateOrder,
    /// A rollout that may come back to the old containers is open: keep them, stopped.
    pub keep_old: bool,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the node is as it should be.
    Converged,
    /// Nothing now; look again soon (Docker's restart policy is at work, or a crash backoff
    /// has not passed).
    Wait,
    /// Make the desired container (pulling its image first if needed), not started.
    Create,
    /// Start this container.
    Start(String),
    /// Stop this container (gracefully).
    Stop(String),
    /// Restart this container.
    Restart(String),
    /// Unpause this container (paused by hand).
    Unpause(String),
    /// Remove this container (stopping it first if it runs).
    Remove(String),
}

/// The next step. `desired` is `None` when the node should have none of this deployment's
/// containers; `drift` says why the desired container, although its labels match, is not what
/// was asked for (changed by hand).
pub fn plan(desired: Option<&Desired>, observed: &[Observed], drift: Option<&str>) -> Step {
    // A paused process cannot take the SIGTERM of a stop: Docker would wait out the grace and
    // kill it. So whatever is to be stopped, removed or restarted is unpaused first.
    match next(desired, observed, drift) {
        Step::Stop(id) | Step::Remove(id) | Step::Restart(id)
            if observed
                .iter()
                .any(|o| o.id == id && o.status == Status::Paused) =>
        {
            Step::Unpause(id)
        }
        step => step,
    }
}

/// The next step, before [`plan`] puts an unpause in front of a paused container's stop.
fn next(desired: Option<&Desired>, observed: &[Observed], drift: Option<&str>) -> Step {
    let Some(want) = desired else {
        // Stop gracefully, then remove; running ones first.
        return match observed.iter().find(|o| o.status.is_up()) {
            Some(o) => Step::Stop(o.id.clone()),
            None => observed
                .first()
                .map_or(Step::Converged, |o| Step::Remove(o.id.clone())),
        };
    };
    let mut ours = observed.iter().filter(|o| o.hash == want.hash);
    let current = ours.next();
    // Two of one spec cannot be made by us (the name holds the hash); remove any extra.
    if let Some(extra) = ours.next() {
        return Step::Remove(extra.id.clone());
    }
    let old_up = observed
        .iter()
        .find(|o| o.hash != want.hash && o.status.is_up());
    let Some(d) = current else {
        if want.order == UpdateOrder::StopFirst
            && let Some(o) = old_up
        {
            return Step::Stop(o.id.clone());
        }
        return Step::Create;
    };
    if drift.is_some() {
        return Step::Remove(d.id.clone());
    }
    match d.status {
        Status::Removing => return Step::Wait,
        // A container Docker failed to remove can only be removed (again); waiting for it to
        // change would wait for ever.
        Status::Dead => return Step::Remove(d.id.clone()),
        _ => {}
    }
    if want.run {
        // Never two containers of one instance running at once (ports, devices).
        if let Some(o) = old_up
            && d.status != Status::Running
        {
            return Step::Stop(o.id.clone());
        }
        match d.status {
            Status::Created | Status::Exited if want.may_start => {
                return Step::Start(d.id.clone());
            }
            Status::Created | Status::Exited | Status::Restarting => return Step::Wait,
            Status::Running if want.restart_due => return Step::Restart(d.id.clone()),
            Status::Paused => return Step::Unpause(d.id.clone()),
            _ => {}
        }
    } else if d.status.is_up() {
        return Step::Stop(d.id.clone());
    }
    if let Some(o) = old_up {
        return Step::Stop(o.id.clone());
    }
    if !want.keep_old
        && let Some(o) = observed.iter().find(|o| o.hash != want.hash)
    {
        return Step::Remove(o.id.clone());
    }
    Step::Converged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn o(id: &str, hash: &str, status: Status) -> Observed {
        Observed {
            id: id.into(),
            hash: hash.into(),
            status,
        }
    }

    fn want(hash: &str) -> Desired {
        Desired {
            hash: hash.into(),
            run: true,
            restart_due: false,
            may_start: true,
            order: UpdateOrder::PullFirst,
            keep_old: false,
        }
    }

    use Status::*;

    #[test]
    fn every_state_a_kill_can_leave_converges_by_one_step_at_a_time() {
        let stop_first = Desired {
            order: UpdateOrder::StopFirst,
            ..want("new")
        };
        let stopped = Desired {
            run: false,
            ..want("new")
        };
        let keep = Desired {
            keep_old: true,
            ..want("new")
        };
        let restart = Desired {
            restart_due: true,
            ..want("new")
        };
        let backoff = Desired {
            may_start: false,
            ..want("new")
        };
        let base = want("new");
        let s = |x: &str| x.to_owned();
        #[rustfmt::skip]
        type Row<'a> = (&'a str, Option<&'a Desired>, Vec<Observed>, Option<&'a str>, Step);
        let table: Vec<Row<'_>> = vec![
            ("nothing yet", Some(&base), vec![], None, Step::Create),
            (
                "old runs: new made first",
                Some(&base),
                vec![o("a", "old", Running)],
                None,
                Step::Create,
            ),
            (
                "old runs: stop first",
                Some(&stop_first),
                vec![o("a", "old", Running)],
                None,
                Step::Stop(s("a")),
            ),
            (
                "stop first, old stopped",
                Some(&stop_first),
                vec![o("a", "old", Exited)],
                None,
                Step::Create,
            ),
            (
                "new made, old runs",
                Some(&base),
                vec![o("a", "old", Running), o("b", "new", Created)],
                None,
                Step::Stop(s("a")),
            ),
            (
                "both stopped",
                Some(&base),
                vec![o("a", "old", Exited), o("b", "new", Created)],
                None,
                Step::Start(s("b")),
            ),
            (
                "new runs, old stopped",
                Some(&base),
                vec![o("a", "old", Exited), o("b", "new", Running)],
                None,
                Step::Remove(s("a")),
            ),
            (
                "new runs, old kept for a rollout",
                Some(&keep),
                vec![o("a", "old", Exited), o("b", "new", Running)],
                None,
                Step::Converged,
            ),
            (
                "new runs, old runs too",
                Some(&keep),
                vec![o("a", "old", Running), o("b", "new", Running)],
                None,
                Step::Stop(s("a")),
            ),
            (
                "two stale",
                Some(&base),
                vec![
                    o("a", "old", Exited),
                    o("c", "older", Exited),
                    o("b", "new", Running),
                ],
                None,
                Step::Remove(s("a")),
            ),
            (
                "converged",
                Some(&base),
                vec![o("b", "new", Running)],
                None,
                Step::Converged,
            ),
            (
                "stopped by hand",
                Some(&base),
                vec![o("b", "new", Exited)],
                None,
                Step::Start(s("b")),
            ),
            (
                "crash backoff",
                Some(&backoff),
                vec![o("b", "new", Exited)],
                None,
                Step::Wait,
            ),
            (
                "Docker restarts it",
                Some(&base),
                vec![o("b", "new", Restarting)],
                None,
                Step::Wait,
            ),
            (
                "changed by hand",
                Some(&base),
                vec![o("b", "new", Running)],
                Some("restart policy"),
                Step::Remove(s("b")),
            ),
            (
                "user stopped it",
                Some(&stopped),
                vec![o("b", "new", Running)],
                None,
                Step::Stop(s("b")),
            ),
            (
                "user stopped, done",
                Some(&stopped),
                vec![o("b", "new", Exited)],
                None,
                Step::Converged,
            ),
            (
                "user stopped, old runs",
                Some(&stopped),
                vec![o("a", "old", Running), o("b", "new", Created)],
                None,
                Step::Stop(s("a")),
            ),
            (
                "restart asked",
                Some(&restart),
                vec![o("b", "new", Running)],
                None,
                Step::Restart(s("b")),
            ),
            (
                "being removed",
                Some(&base),
                vec![o("b", "new", Removing)],
                None,
                Step::Wait,
            ),
            (
                "paused by hand: unpaused",
                Some(&base),
                vec![o("b", "new", Paused)],
                None,
                Step::Unpause(s("b")),
            ),
            (
                "paused and to be stopped: unpaused first (a frozen process takes no SIGTERM)",
                Some(&stopped),
                vec![o("b", "new", Paused)],
                None,
                Step::Unpause(s("b")),
            ),
            (
                "an old one paused: unpaused before it is stopped",
                Some(&base),
                vec![o("a", "old", Paused), o("b", "new", Created)],
                None,
                Step::Unpause(s("a")),
            ),
            (
                "dead: removed",
                Some(&base),
                vec![o("b", "new", Dead)],
                None,
                Step::Remove(s("b")),
            ),
            (
                "removed: stop first",
                None,
                vec![o("a", "old", Exited), o("b", "new", Running)],
                None,
                Step::Stop(s("b")),
            ),
            (
                "removed: then remove",
                None,
                vec![o("a", "old", Exited)],
                None,
                Step::Remove(s("a")),
            ),
            ("removed: done", None, vec![], None, Step::Converged),
        ];
        for (name, desired, observed, drift, step) in table {
            assert_eq!(plan(desired, &observed, drift), step, "{name}");
        }
    }

    /// Applies steps the way an engine would, from each starting state, and checks the node ends
    /// with exactly the one desired container running (and the plan then stays converged).
    #[test]
    fn applying_the_steps_always_ends_converged() {
        let starts: Vec<Vec<Observed>> = vec![
            vec![],
            vec![o("a", "old", Running)],
            vec![o("a", "old", Running), o("b", "new", Created)],
            vec![
                o("a", "old", Exited),
                o("b", "new", Exited),
                o("c", "x", Running),
            ],
            vec![o("b", "new", Running), o("a", "old", Running)],
        ];
        for order in [UpdateOrder::PullFirst, UpdateOrder::StopFirst] {
            for start in &starts {
                let want = Desired {
                    order,
                    ..want("new")
                };
                let mut node = start.clone();
                let mut made = 0;
                for _ in 0..20 {
                    // Never two running at once after the first step that touches the node.
                    match plan(Some(&want), &node, None) {
                        Step::Converged => break,
                        Step::Create => {
                            made += 1;
                            node.push(o(&format!("n{made}"), "new", Created));
                        }
                        Step::Start(id) | Step::Restart(id) | Step::Unpause(id) => {
                            node.iter_mut().find(|c| c.id == id).unwrap().status = Running;
                        }
                        Step::Stop(id) => {
                            node.iter_mut().find(|c| c.id == id).unwrap().status = Exited;
                        }
                        Step::Remove(id) => node.retain(|c| c.id != id),
                        Step::Wait => panic!("no wait expected from {start:?}"),
                    }
                }
                assert_eq!(node.len(), 1, "{start:?} {order:?} → {node:?}");
                assert_eq!((node[0].hash.as_str(), node[0].status), ("new", Running));
            }
        }
    }

    /// What a hand, a crash or a dropped notification can do between the reconciler's passes.
    #[derive(Debug, Clone)]
    enum Event {
        /// The deployment changed: what the node should have now (`None`: nothing).
        Want(Option<Desired>),
        /// A pass of the reconciler that is cut short after `n` steps (a kill -9, or its next
        /// notification dropped); 0 is a notification dropped whole.
        Pass(usize),
        /// Someone stops, starts or removes a container by hand (by its place in the list).
        Hand(usize, Option<Status>),
        /// A container of another revision appears (left by an earlier leader, or a crash
        /// between create and the worker's relist).
        Stale(u8, Status),
    }

    fn any_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Created),
            Just(Running),
            Just(Restarting),
            Just(Paused),
            Just(Exited),
            Just(Removing),
            Just(Dead),
        ]
    }

    fn any_desired() -> impl Strategy<Value = Option<Desired>> {
        proptest::option::weighted(
            0.8,
            (
                0u8..3,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(h, run, restart_due, may_start, stop_first, keep_old)| {
                    Desired {
                        hash: format!("h{h}"),
                        run,
                        restart_due,
                        may_start,
                        order: if stop_first {
                            UpdateOrder::StopFirst
                        } else {
                            UpdateOrder::PullFirst
                        },
                        keep_old,
                    }
                }),
        )
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => any_desired().prop_map(Event::Want),
            3 => (0usize..6).prop_map(Event::Pass),
            2 => (0usize..4, proptest::option::of(any_status())).prop_map(|(i, s)| Event::Hand(i, s)),
            1 => (0u8..3, any_status()).prop_map(|(h, s)| Event::Stale(h, s)),
        ]
    }

    /// A recording fake engine: the containers of one (deployment, node), and every call made.
    #[derive(Debug, Default)]
    struct Engine {
        containers: Vec<Observed>,
        made: usize,
        calls: Vec<Step>,
    }

    impl Engine {
        fn status(&mut self, id: &str, status: Status) {
            // A container gone meanwhile is Docker's 404: a state, nothing to do.
            if let Some(c) = self.containers.iter_mut().find(|c| c.id == id) {
                c.status = status;
            }
        }

        /// Does `step` as Docker would; time passing (a wait) ends what is transient.
        fn apply(&mut self, step: &Step, want: Option<&Desired>) {
            self.calls.push(step.clone());
            match step {
                Step::Converged => {}
                Step::Wait => {
                    self.containers.retain(|c| c.status != Removing);
                    for c in &mut self.containers {
                        if c.status == Restarting {
                            c.status = Running;
                        }
                    }
                }
                Step::Create => {
                    self.made += 1;
                    let hash = want
                        .map(|w| w.hash.clone())
                        .expect("create only what is wanted");
                    self.containers
                        .push(o(&format!("c{}", self.made), &hash, Created));
                }
                Step::Start(id) | Step::Restart(id) | Step::Unpause(id) => self.status(id, Running),
                Step::Stop(id) => self.status(id, Exited),
                Step::Remove(id) => self.containers.retain(|c| &c.id != id),
            }
        }
    }

    /// Runs passes' steps: at most `limit`, or until converged (`None` for no limit).
    fn pass(engine: &mut Engine, want: &mut Option<Desired>, limit: Option<usize>) -> bool {
        for _ in 0..limit.unwrap_or(100) {
            let step = plan(want.as_ref(), &engine.containers, None);
            if step == Step::Converged {
                return true;
            }
            engine.apply(&step, want.as_ref());
            // A start or restart is the restart asked for.
            if matches!(step, Step::Start(_) | Step::Restart(_))
                && let Some(w) = want.as_mut()
            {
                w.restart_due = false;
            }
        }
        false
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// RELIABILITY.md R1, level-triggered: whatever happened before (desired states changed
        /// in any order, passes cut short or never run because their notification was dropped,
        /// containers stopped, started, removed or left behind by hand or by crashes), one full
        /// pass with the last desired state ends with the node holding exactly that, and a second
        /// pass makes no call to the engine.
        #[test]
        fn whatever_came_before_one_pass_converges_and_a_second_does_nothing(
            events in proptest::collection::vec(any_event(), 0..40),
            last in any_desired(),
        ) {
            let mut engine = Engine::default();
            let mut want: Option<Desired> = None;
            for e in events {
                match e {
                    Event::Want(w) => want = w,
                    Event::Pass(n) => {
                        pass(&mut engine, &mut want, Some(n));
                    }
                    Event::Hand(i, status) => {
                        if let Some(c) = engine.containers.get(i).map(|c| c.id.clone()) {
                            match status {
                                Some(s) => engine.status(&c, s),
                                None => engine.containers.retain(|x| x.id != c),
                            }
                        }
                    }
                    Event::Stale(h, status) => {
                        engine.made += 1;
                        let id = format!("stale{}", engine.made);
                        engine.containers.push(o(&id, &format!("h{h}"), status));
                    }
                }
            }
            // The resync: the last desired state, with its crash backoff passed and no rollout
            // left open (what a worker sees once a rollout ends).
            let mut want = last.map(|w| Desired { may_start: true, keep_old: false, ..w });
            engine.calls.clear();
            prop_assert!(
                pass(&mut engine, &mut want, None),
                "no convergence: {:?} with {want:?}, calls {:?}",
                engine.containers,
                engine.calls
            );
            match &want {
                None => prop_assert!(engine.containers.is_empty(), "{:?}", engine.containers),
                Some(w) => {
                    prop_assert_eq!(engine.containers.len(), 1, "{:?}", engine.containers);
                    let c = &engine.containers[0];
                    prop_assert_eq!(&c.hash, &w.hash);
                    prop_assert_eq!(
                        c.status.is_up(),
                        w.run,
                        "{:?} for {:?}",
                        c,
                        w
                    );
                    if w.run {
                        prop_assert_eq!(c.status, Running);
                    }
                }
            }
            engine.calls.clear();
            prop_assert!(pass(&mut engine, &mut want, None));
            prop_assert!(engine.calls.is_empty(), "a second pass called {:?}", engine.calls);
        }
    }
}
