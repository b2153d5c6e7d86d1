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
    /// Remove this container (stopping it first if it runs).
    Remove(String),
}

/// The next step. `desired` is `None` when the node should have none of this deployment's
/// containers; `drift` says why the desired container, although its labels match, is not what
/// was asked for (changed by hand).
pub fn plan(desired: Option<&Desired>, observed: &[Observed], drift: Option<&str>) -> Step {
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
    if matches!(d.status, Status::Removing | Status::Dead) {
        return Step::Wait;
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
                        Step::Start(id) | Step::Restart(id) => {
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
}
