//! The checks of DESIGN.md's invariants 2–8 on the simulated nodes.
//!
//! Owns what a node has shown so far (for monotonicity) and the checks:
//! per node (each core's cached views equal the pure fold of its ledger;
//! terminal states never revert; live attempts never go back; no attempt
//! past its max retries; what the faulty member forged changed nothing),
//! across nodes (replicas holding the same events have byte-identical
//! state and so one canonical result per task), and at the end. Each
//! returns the broken invariant as text beginning with its kind. Must not
//! change the world: it only reads cores.

use crate::disk::SimStore;
use peerbatch_protocol::exit::{verdict, ExitAction, Verdict};
use peerbatch_protocol::job::OnDependencyFailure;
use peerbatch_protocol::ledger::JobRecord;
use peerbatch_protocol::{codec, Core, Event, EventId, JobId, Ledger, NodeId, TaskState, TaskView};
use std::collections::{BTreeMap, BTreeSet};

/// What one node has shown of one task so far.
#[derive(Clone, Copy, Default)]
struct Seen {
    attempt: u32,
    terminal: bool,
    /// Ended only because what it waits for failed (skipped or failed
    /// without a result of its own): a late success of that dependency
    /// (a reclaimed last attempt's result, say) reopens it.
    provisional: bool,
}

/// What one node has shown so far, per job by task index.
#[derive(Default)]
pub struct Watch {
    seen: BTreeMap<JobId, Vec<Seen>>,
    done: BTreeMap<JobId, u32>,
    /// Jobs the node forgot (invariant 8): never shown again.
    forgot: BTreeSet<JobId>,
    /// Its claims when it was first seen draining, while it still is.
    drained_claims: Option<u64>,
    /// Since when (world time) its ledger has said whether to drain.
    asked: Option<(u64, bool)>,
}

/// A submitted job: its id, task count and max retries.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub id: JobId,
    pub tasks: u32,
    pub max_retries: u32,
}

impl Watch {
    /// Cheap, after every input: a draining node claims nothing.
    pub fn check_draining(&mut self, core: &Core<SimStore>) -> Result<(), String> {
        let claims = core.stats().claims;
        match (core.draining(), self.drained_claims) {
            (true, Some(before)) if claims > before => Err(format!(
                "drain: claimed {} tasks while draining",
                claims - before
            )),
            (true, None) => {
                self.drained_claims = Some(claims);
                Ok(())
            }
            (true, Some(_)) => Ok(()),
            (false, _) => {
                self.drained_claims = None;
                Ok(())
            }
        }
    }

    /// A node whose own ledger has said for `lag` ms of world time,
    /// judged at its wall clock `wall_ms`, that it should drain (or not)
    /// does as it says (nothing else drains a simulated node).
    pub fn check_drain_request(
        &mut self,
        core: &Core<SimStore>,
        now: u64,
        wall_ms: u64,
        lag: u64,
    ) -> Result<(), String> {
        let asked = core.ledger().drain_requested(&core.node_id(), wall_ms) == Some(true);
        match self.asked {
            Some((since, was)) if was == asked => {
                if now >= since + lag && core.draining() != asked {
                    return Err(format!(
                        "drain: its ledger has asked it since {since} ms to {}, and it does not",
                        if asked { "drain" } else { "take tasks" }
                    ));
                }
            }
            _ => self.asked = Some((now, asked)),
        }
        Ok(())
    }

    /// Cheap, after every input: terminal counts per job never drop.
    pub fn check_counts(&mut self, core: &Core<SimStore>, jobs: &[Job]) -> Result<(), String> {
        if let Some(back) = self.forgot.iter().find(|j| core.ledger().job(j).is_some()) {
            return Err(format!(
                "forgetting: job {back} came back after it was forgotten"
            ));
        }
        for job in jobs.iter().filter(|j| !self.forgot.contains(&j.id)) {
            let done = core.progress(&job.id).done();
            let before = self.done.insert(job.id, done).unwrap_or(0);
            // A job that waits may reopen tasks (see `Seen::provisional`);
            // `check_tasks` checks those one by one.
            if done < before && !waits(core, &job.id) {
                return Err(format!(
                    "monotonic: job {} went from {before} to {done} terminal tasks",
                    job.id
                ));
            }
        }
        Ok(())
    }

    /// Per task: the cached view is the fold's, terminal states stay
    /// terminal, live attempts only grow and stay within max retries.
    pub fn check_tasks(&mut self, core: &Core<SimStore>, jobs: &[Job]) -> Result<(), String> {
        for job in jobs.iter().filter(|j| !self.forgot.contains(&j.id)) {
            let seen_job = self
                .seen
                .entry(job.id)
                .or_insert_with(|| vec![Seen::default(); job.tasks as usize]);
            if core.ledger().is_sealed(&job.id) {
                // Checked while live; sealing keeps a job's views (see
                // protocol's tests), and a late fact unseals it.
                continue;
            }
            for v in core.views(job.id) {
                if core.ledger().view(v.task).as_ref() != Some(&v) {
                    return Err(format!(
                        "convergence: cached view {v:?} is not the fold's {:?}",
                        core.ledger().view(v.task)
                    ));
                }
                if v.attempt > job.max_retries {
                    return Err(format!(
                        "duplicates: {:?} at attempt {} past max retries {}",
                        v.task, v.attempt, job.max_retries
                    ));
                }
                let terminal = v.state.terminal();
                let seen = &mut seen_job[v.task.index as usize];
                if seen.terminal && !terminal && !seen.provisional {
                    return Err(format!(
                        "monotonic: {:?} left a terminal state: {v:?}",
                        v.task
                    ));
                }
                // A terminal view shows its canonical result's attempt, which
                // may be lower than the last live one; live attempts only grow.
                if !terminal && v.attempt < seen.attempt {
                    return Err(format!(
                        "monotonic: {:?} went back from attempt {} to {}",
                        v.task, seen.attempt, v.attempt
                    ));
                }
                seen.terminal = terminal || (seen.terminal && !seen.provisional);
                seen.provisional = terminal && provisional(core, &v);
                if !terminal {
                    seen.attempt = v.attempt;
                }
            }
        }
        Ok(())
    }

    /// The node forgot `job`: nothing live is forgotten, so every one of
    /// its tasks was last shown terminal.
    pub fn forgotten(&mut self, job: &Job) -> Result<(), String> {
        let done = self.done.get(&job.id).copied().unwrap_or(0);
        if done < job.tasks {
            return Err(format!(
                "forgetting: job {} forgotten with {done} of its {} tasks terminal",
                job.id, job.tasks
            ));
        }
        self.forgot.insert(job.id);
        Ok(())
    }

    /// Forgets what was shown (the node's storage was wiped).
    pub fn forget(&mut self) {
        *self = Watch::default();
    }

    /// After a crash, keeps only what the durable events show: what was
    /// shown from writes lost before their flush may go.
    pub fn rebase(&mut self, restarted: &Core<SimStore>, jobs: &[Job]) {
        self.forget();
        // What it forgot durably stays forgotten.
        self.forgot = restarted.ledger().tombstones().map(|(j, _)| *j).collect();
        // Cannot fail on a fresh watch: nothing was seen before.
        let _ = self.check_counts(restarted, jobs);
        let _ = self.check_tasks(restarted, jobs);
    }
}

/// Invariant 7, authority: a node's state is what the same events without
/// the faulty member's forgeries fold to, over the same tombstones — tasks, jobs, cancels and drain
/// requests alike — so no event from a node that may not write it changed
/// anything. `bytes` finds an event's encoding; a node holding an event
/// whose bytes are not found yet is checked another time.
pub fn check_authority(
    core: &Core<SimStore>,
    forged: &BTreeSet<EventId>,
    bytes: impl Fn(&EventId) -> Option<Vec<u8>>,
    nodes: &[NodeId],
    wall_ms: u64,
) -> Result<(), String> {
    let ledger = core.ledger();
    if !ledger.ids().iter().any(|id| forged.contains(id)) {
        return Ok(());
    }
    let mut honest = Ledger::with_admins(ledger.admins().clone());
    // What the node forgot is an input of its fold besides its events (a
    // job waiting `after` a forgotten one reads its outcome from the
    // tombstone), as at a restart: tombstones first.
    for (job, tombstone) in ledger.tombstones() {
        honest.restore_tombstone(*job, *tombstone);
    }
    for id in ledger.ids().iter().filter(|id| !forged.contains(id)) {
        let Some(b) = bytes(id) else {
            return Ok(());
        };
        let event: Event = codec::decode(&b).map_err(|e| format!("authority: event {id}: {e}"))?;
        honest.insert(*id, &event);
    }
    let jobs = |l: &Ledger| -> Vec<(JobId, bool)> {
        l.jobs().map(|j| (j.id, l.is_cancelled(&j.id))).collect()
    };
    if jobs(&honest) != jobs(ledger) {
        return Err("authority: forged events changed which jobs exist or are cancelled".into());
    }
    if honest.state_digest() != ledger.state_digest() {
        return Err("authority: forged events changed task state".into());
    }
    for node in nodes {
        if honest.drain_requested(node, wall_ms) != ledger.drain_requested(node, wall_ms) {
            return Err(format!(
                "authority: forged events changed the drain request of {node}"
            ));
        }
    }
    Ok(())
}

/// Replicas holding the same events must have byte-identical state (and so
/// the same canonical result for every task): checked on every group of
/// live nodes with equal fingerprints.
pub fn check_convergence(cores: &[(usize, &Core<SimStore>)]) -> Result<(), String> {
    let mut groups: BTreeMap<(usize, Vec<u8>), Vec<usize>> = BTreeMap::new();
    for (i, (_, core)) in cores.iter().enumerate() {
        let l = core.ledger();
        let key = (
            l.event_count(),
            peerbatch_protocol::codec::encode(l.fingerprints()),
        );
        groups.entry(key).or_default().push(i);
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        let (first, core) = cores[members[0]];
        let digest = core.ledger().state_digest();
        for &m in &members[1..] {
            let (node, other) = cores[m];
            if other.ledger().ids() != core.ledger().ids() {
                continue; // equal fingerprints, different events: not comparable
            }
            if other.ledger().state_digest() != digest {
                return Err(format!(
                    "convergence: node {node} holds the same events as node {first} but a different state"
                ));
            }
        }
    }
    Ok(())
}

/// Whether job `job` waits for something: tasks of its own or `after` jobs.
fn waits(core: &Core<SimStore>, job: &JobId) -> bool {
    (core.ledger().job(job)).is_some_and(|r| r.deps.is_some() || !r.spec.after.is_empty())
}

/// Whether a terminal view ended only because what it waits for failed.
fn provisional(core: &Core<SimStore>, v: &TaskView) -> bool {
    let by_dependency = matches!(
        (v.state, &v.result),
        (TaskState::Skipped | TaskState::Failed, None)
    );
    by_dependency && waits(core, &v.task.job)
}

/// What a task's canonical result means under its exit-code rules.
fn judged(record: &JobRecord, v: &TaskView) -> Option<Verdict> {
    let rules = &record.spec.template(v.task.index)?.exit_codes;
    Some(verdict(&v.result.as_ref()?.outcome, rules))
}

/// The end state, every node live with the same events: every task
/// terminal with one canonical result, the same on every node that has
/// not forgotten its job.
pub fn check_end(
    cores: &[&Core<SimStore>],
    jobs: &[Job],
    may_fail: impl Fn(&Job) -> bool,
) -> Result<(), String> {
    for job in jobs {
        let knowing: Vec<&Core<SimStore>> = cores
            .iter()
            .copied()
            .filter(|c| !c.ledger().is_forgotten(&job.id))
            .collect();
        let Some(first) = knowing.first().copied() else {
            continue;
        };
        let views = first.views(job.id);
        if views.len() != job.tasks as usize {
            return Err(format!(
                "liveness: job {} has {} views of {} tasks",
                job.id,
                views.len(),
                job.tasks
            ));
        }
        let Some(record) = first.ledger().job(&job.id) else {
            return Err(format!("liveness: job {} is not known", job.id));
        };
        // A result judged `fail_job` fails the job even when it is not its
        // task's canonical one (a lower attempt's success wins there), so
        // a job whose rules can fail it may have skipped tasks.
        let fail_job = (record.spec.groups.iter()).any(|g| {
            g.spec()
                .exit_codes
                .iter()
                .any(|r| r.action == ExitAction::FailJob)
        });
        for v in &views {
            let waits = record.deps.is_some() || !record.spec.after.is_empty();
            let unmet = |rule| waits && record.spec.on_dependency_failure == rule;
            let ok = match (&v.state, &v.result) {
                (TaskState::Succeeded, Some(_)) => judged(record, v) == Some(Verdict::Success),
                (TaskState::Failed, Some(r)) => match judged(record, v) {
                    Some(Verdict::FailTask | Verdict::FailJob) => true,
                    Some(Verdict::Retry) => r.attempt == job.max_retries,
                    _ => false,
                },
                // Reclaimed at its last attempt, or what it waits for
                // failed.
                (TaskState::Failed, None) => {
                    v.attempt == job.max_retries || unmet(OnDependencyFailure::Fail)
                }
                (TaskState::Skipped, None) => fail_job || unmet(OnDependencyFailure::Skip),
                (TaskState::Cancelled, None) => first.ledger().is_cancelled(&job.id),
                _ => false,
            };
            if !ok || (!may_fail(job) && v.state == TaskState::Failed) {
                return Err(format!("canonical: {:?} ended as {v:?}", v.task));
            }
        }
        for (i, core) in knowing.iter().enumerate() {
            let theirs = core.views(job.id);
            if let Some((v, t)) = views.iter().zip(&theirs).find(|(v, t)| v != t) {
                return Err(format!(
                    "canonical: node {i} shows {:?} as {t:?}, node 0 as {v:?}",
                    v.task
                ));
            }
            if theirs.len() != views.len() {
                return Err(format!(
                    "canonical: node {i} has {} views of job {}, node 0 {}",
                    theirs.len(),
                    job.id,
                    views.len()
                ));
            }
        }
    }
    Ok(())
}
