//! Functions as the ledger knows them: deployed handlers, their immutable
//! versions, and which version each name serves now.
//!
//! Owns the function events (deploy, rollback, remove, a key created or
//! revoked), the checks every node applies to one alone ([`check`]), and
//! the fold of all of them into each name's versions and keys
//! ([`Functions`]; what a key is, `keys`). A name belongs to the node that
//! deployed its first version (in `(at_ms, event id)` order): later
//! deploys, rollbacks, removals and key changes count only from that node
//! or an admin, judged at view time, so the arrival order of events
//! changes nothing.
//! Must not run, fetch or route anything (`node/src/functions` does) and
//! must not read clocks: the caller passes the horizon of acceptable dates.

pub mod keys;

use crate::files::{Input, Source};
use crate::ids::{BlobId, EventId, NodeId};
use crate::job::{Command, JobSpec, TaskGroup, TaskSpec};
pub use crate::trigger::Trigger;
use crate::trigger::{Firing, Origin};
use keys::{Key, KeyHash, Keys, MAX_KEYS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A handler's time-out when its deploy names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The longest time-out a function may have.
pub const MAX_TIMEOUT_MS: u64 = 15 * 60_000;
/// Most triggers one version has.
pub const MAX_TRIGGERS: usize = 16;
/// Longest handler command line.
pub const MAX_COMMAND_BYTES: usize = 4_096;
/// Most warm workers of one version on one node.
pub const MAX_WARM_PER_NODE: u32 = 64;
/// Shortest and longest time a warm worker may wait idle before it stops.
pub const MIN_IDLE_TIMEOUT_MS: u64 = 1_000;
pub const MAX_IDLE_TIMEOUT_MS: u64 = 24 * 3_600_000;
/// A warm worker's idle time-out when its deploy names none.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10 * 60_000;

/// One immutable version of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// The bundle's tree blob, stored like a package.
    pub bundle: BlobId,
    /// Run once per invocation in a fresh copy of the bundle.
    pub command: Command,
    pub triggers: Vec<Trigger>,
    /// The handler is killed after this long and the caller gets 504.
    pub timeout_ms: u64,
    /// Whether a call whose node died before answering is tried once
    /// more elsewhere (off for handlers that must not run twice).
    pub retry: bool,
    /// Attempts at a timer's, queue message's or blob's invocation before
    /// it fails (a message is then dead-lettered).
    pub max_attempts: u32,
    /// `None`: the command runs once per call. `Some`: it stays up and
    /// takes calls from a local runtime API shaped as AWS Lambda's.
    pub warm: Option<Warm>,
}

impl FunctionSpec {
    /// Whether one of this version's triggers fires `firing`.
    pub fn fires(&self, firing: &Firing) -> bool {
        firing.fits(&self.triggers)
    }

    /// The job `firing` is with this version: one task running the
    /// handler in a copy of the bundle, up to the version's attempts
    /// (the fold checks every fired job against it, so a submit that
    /// merely claims a firing's origin is not one).
    pub fn fired_job(&self, firing: &Firing) -> JobSpec {
        let mut env = vec![("PEERBATCH_FN_NAME".to_string(), firing.function.clone())];
        env.extend(firing.cause.env());
        let task = TaskSpec {
            env,
            max_wall_clock_ms: Some(self.timeout_ms),
            inputs: vec![Input {
                path: String::new(),
                source: Source::Blob(self.bundle),
                within: String::new(),
            }],
            ..TaskSpec::new(
                firing.cause.kind(),
                self.command.clone(),
                self.max_attempts.saturating_sub(1),
            )
        };
        JobSpec {
            origin: Some(Origin::Function(Box::new(firing.clone()))),
            ..JobSpec::new(
                format!("fn {} {}", firing.function, firing.cause.kind()),
                vec![TaskGroup::One(task)],
            )
        }
    }
}

/// How a warm function's workers are kept on each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warm {
    /// Workers each available node keeps up even without calls.
    pub min_warm: u32,
    /// Most workers of this version on one node at once.
    pub max_per_node: u32,
    /// A worker beyond `min_warm` idle this long is stopped.
    pub idle_timeout_ms: u64,
}

/// A change to a function, as a ledger event carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionEvent {
    /// A new version, which becomes the one served.
    Deployed {
        name: String,
        spec: FunctionSpec,
        at_ms: u64,
    },
    /// Serve again the version deployed by event `to`.
    RolledBack {
        name: String,
        to: EventId,
        at_ms: u64,
    },
    /// Serve nothing under this name any more.
    Removed { name: String, at_ms: u64 },
    /// A key that opens the function to LAN callers, under `label`.
    KeyCreated {
        name: String,
        label: String,
        hash: KeyHash,
        at_ms: u64,
    },
    /// The key under `label` opens nothing any more.
    KeyRevoked {
        name: String,
        label: String,
        at_ms: u64,
    },
}

impl FunctionEvent {
    pub fn name(&self) -> &str {
        match self {
            FunctionEvent::Deployed { name, .. }
            | FunctionEvent::RolledBack { name, .. }
            | FunctionEvent::Removed { name, .. }
            | FunctionEvent::KeyCreated { name, .. }
            | FunctionEvent::KeyRevoked { name, .. } => name,
        }
    }

    /// The author's wall-clock time, which orders a name's changes.
    pub fn at_ms(&self) -> u64 {
        match self {
            FunctionEvent::Deployed { at_ms, .. }
            | FunctionEvent::RolledBack { at_ms, .. }
            | FunctionEvent::Removed { at_ms, .. }
            | FunctionEvent::KeyCreated { at_ms, .. }
            | FunctionEvent::KeyRevoked { at_ms, .. } => *at_ms,
        }
    }
}

/// Why a function event may not enter the ledger.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    #[error("function name {0:?} must be 1 to 64 letters, digits, `-`, `_` or `.`")]
    Name(String),
    #[error("function {0}: the handler command is empty")]
    EmptyCommand(String),
    #[error("function {name}: the handler command is {len} bytes, at most {MAX_COMMAND_BYTES}")]
    LongCommand { name: String, len: usize },
    #[error("function {name}: {count} triggers; give 1 to {MAX_TRIGGERS}")]
    Triggers { name: String, count: usize },
    #[error("function {name}: time-out {ms} ms; give 1 ms to {MAX_TIMEOUT_MS} ms")]
    Timeout { name: String, ms: u64 },
    #[error("function {name}: {error}")]
    Trigger {
        name: String,
        error: crate::trigger::TriggerError,
    },
    #[error("function {name}: {max} warm workers per node; give 1 to {MAX_WARM_PER_NODE}")]
    MaxPerNode { name: String, max: u32 },
    #[error("function {name}: {min} warm workers kept, more than the {max} allowed per node")]
    MinWarm { name: String, min: u32, max: u32 },
    #[error(
        "function {name}: idle time-out {ms} ms; give {MIN_IDLE_TIMEOUT_MS} ms to {MAX_IDLE_TIMEOUT_MS} ms"
    )]
    IdleTimeout { name: String, ms: u64 },
    #[error("function {name}: a warm function takes only http calls, not a {kind} trigger; deploy the {kind} trigger without --warm")]
    WarmTrigger { name: String, kind: &'static str },
    #[error(
        "function {name}: key label {label:?} must be 1 to 64 letters, digits, `-`, `_` or `.`"
    )]
    KeyLabel { name: String, label: String },
}

/// Why this node may not make a change to a function.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error(transparent)]
    Invalid(#[from] FunctionError),
    #[error("function {name} belongs to node {owner}; only it or an admin may change it")]
    NotOwner { name: String, owner: NodeId },
    #[error("no function {0}")]
    Unknown(String),
    #[error("function {name} has a key labelled {label:?} already; revoke it first or choose another label")]
    KeyLabelTaken { name: String, label: String },
    #[error("function {name} has {MAX_KEYS} keys, the most it may have; revoke one first")]
    TooManyKeys { name: String },
    #[error("function {name} has no key labelled {label:?} that is not revoked")]
    NoKey { name: String, label: String },
}

/// Checks one function event against the rules every node applies.
pub fn check(event: &FunctionEvent) -> Result<(), FunctionError> {
    check_name(event.name())?;
    match event {
        FunctionEvent::Deployed { name, spec, .. } => check_spec(name, spec),
        FunctionEvent::KeyCreated { name, label, .. }
        | FunctionEvent::KeyRevoked { name, label, .. }
            if !keys::label_ok(label) =>
        {
            let (name, label) = (name.clone(), label.clone());
            Err(FunctionError::KeyLabel { name, label })
        }
        _ => Ok(()),
    }
}

/// Checks a function name: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), FunctionError> {
    crate::schedule::check_name(name).map_err(|_| FunctionError::Name(name.to_string()))
}

fn check_spec(name: &str, spec: &FunctionSpec) -> Result<(), FunctionError> {
    if spec.command.is_empty() {
        return Err(FunctionError::EmptyCommand(name.to_string()));
    }
    let len = match &spec.command {
        Command::Shell(line) => line.len(),
        Command::Argv(argv) => argv.iter().map(String::len).sum(),
    };
    if len > MAX_COMMAND_BYTES {
        let name = name.to_string();
        return Err(FunctionError::LongCommand { name, len });
    }
    let count = spec.triggers.len();
    if count == 0 || count > MAX_TRIGGERS {
        let name = name.to_string();
        return Err(FunctionError::Triggers { name, count });
    }
    if spec.timeout_ms == 0 || spec.timeout_ms > MAX_TIMEOUT_MS {
        let (name, ms) = (name.to_string(), spec.timeout_ms);
        return Err(FunctionError::Timeout { name, ms });
    }
    crate::trigger::check(&spec.triggers, spec.max_attempts).map_err(|error| {
        FunctionError::Trigger {
            name: name.to_string(),
            error,
        }
    })?;
    spec.warm
        .map_or(Ok(()), |w| check_warm(name, &w, &spec.triggers))
}

/// A warm version's workers, and its triggers: only HTTP calls reach a
/// warm worker (a timer's, message's or blob's job runs the command as a
/// task, which would wait for a runtime API no one serves).
fn check_warm(name: &str, warm: &Warm, triggers: &[Trigger]) -> Result<(), FunctionError> {
    let name = name.to_string();
    if let Some(t) = triggers.iter().find(|t| **t != Trigger::Http) {
        let kind = t.kind();
        return Err(FunctionError::WarmTrigger { name, kind });
    }
    let max = warm.max_per_node;
    if max == 0 || max > MAX_WARM_PER_NODE {
        return Err(FunctionError::MaxPerNode { name, max });
    }
    if warm.min_warm > max {
        let min = warm.min_warm;
        return Err(FunctionError::MinWarm { name, min, max });
    }
    let ms = warm.idle_timeout_ms;
    if !(MIN_IDLE_TIMEOUT_MS..=MAX_IDLE_TIMEOUT_MS).contains(&ms) {
        return Err(FunctionError::IdleTimeout { name, ms });
    }
    Ok(())
}

/// One version of a function that counts (deployed by its owner or an admin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// 1 for the first version of the name, then 2, 3, …
    pub number: u32,
    /// The deploy event: the version's stable id.
    pub event: EventId,
    pub spec: FunctionSpec,
    pub deployed_by: NodeId,
    pub at_ms: u64,
}

/// A function as every node with the same events sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionView {
    pub name: String,
    /// The author of the first deploy: with the admins, the only node
    /// whose changes count.
    pub owner: NodeId,
    /// Oldest first.
    pub versions: Vec<Version>,
    /// The version served now (an index into `versions`); `None` once removed.
    pub active: Option<usize>,
    /// The keys that open it to LAN callers (a removal leaves them).
    pub keys: Keys,
}

impl FunctionView {
    /// The version served now, if any.
    pub fn serving(&self) -> Option<&Version> {
        self.active.and_then(|i| self.versions.get(i))
    }

    /// Whether `node` may change this function: its owner or an admin.
    pub fn may_change(&self, node: &NodeId, admins: &BTreeSet<NodeId>) -> bool {
        self.owner == *node || admins.contains(node)
    }

    /// Why `event` would change nothing of this function's keys, if so: a
    /// create under a live label or past [`MAX_KEYS`], a revoke of a label
    /// with no live key.
    pub fn refuses_key_change(&self, event: &FunctionEvent) -> Result<(), ChangeRefused> {
        let name = self.name.clone();
        match event {
            FunctionEvent::KeyCreated { label, .. } if self.keys.live(label).is_some() => {
                let label = label.clone();
                Err(ChangeRefused::KeyLabelTaken { name, label })
            }
            FunctionEvent::KeyCreated { .. } if self.keys.live_count() >= MAX_KEYS => {
                Err(ChangeRefused::TooManyKeys { name })
            }
            FunctionEvent::KeyRevoked { label, .. } if self.keys.live(label).is_none() => {
                let label = label.clone();
                Err(ChangeRefused::NoKey { name, label })
            }
            _ => Ok(()),
        }
    }

    fn apply(&mut self, id: EventId, author: NodeId, at_ms: u64, event: &FunctionEvent) {
        match event {
            FunctionEvent::Deployed { spec, .. } => {
                self.versions.push(Version {
                    number: self.versions.len() as u32 + 1,
                    event: id,
                    spec: spec.clone(),
                    deployed_by: author,
                    at_ms,
                });
                self.active = Some(self.versions.len() - 1);
            }
            FunctionEvent::RolledBack { to, .. } => {
                if let Some(i) = self.versions.iter().position(|x| x.event == *to) {
                    self.active = Some(i);
                }
            }
            FunctionEvent::Removed { .. } => self.active = None,
            FunctionEvent::KeyCreated { label, hash, .. } => self.keys.create(Key {
                label: label.clone(),
                hash: *hash,
                created_by: author,
                created_ms: at_ms,
                revoked_ms: None,
            }),
            FunctionEvent::KeyRevoked { label, .. } => self.keys.revoke(label, at_ms),
        }
    }
}

/// One name's events by `(at_ms, event id)`, each with its author.
type History = BTreeMap<(u64, EventId), (NodeId, FunctionEvent)>;

/// Every function event, by name and `(at_ms, event id)`.
#[derive(Default)]
pub struct Functions {
    by_name: BTreeMap<String, History>,
}

impl Functions {
    /// Keeps an event (already valid and verified).
    pub fn insert(&mut self, id: EventId, author: NodeId, event: &FunctionEvent) {
        self.by_name
            .entry(event.name().to_string())
            .or_default()
            .insert((event.at_ms(), id), (author, event.clone()));
    }

    /// Every name any function event names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The function `name` from the events dated at or before
    /// `horizon_ms` (one dated later counts once the horizon reaches it),
    /// counting changes only from its owner or one of `admins`.
    pub fn view(
        &self,
        name: &str,
        admins: &BTreeSet<NodeId>,
        horizon_ms: u64,
    ) -> Option<FunctionView> {
        let events = self
            .by_name
            .get(name)?
            .range(..=(horizon_ms, EventId([0xff; 32])));
        let mut view: Option<FunctionView> = None;
        for ((at_ms, id), (author, event)) in events {
            let owner = match &view {
                Some(v) => v.owner,
                None if matches!(event, FunctionEvent::Deployed { .. }) => *author,
                None => continue,
            };
            if owner != *author && !admins.contains(author) {
                continue;
            }
            let v = view.get_or_insert_with(|| FunctionView {
                name: name.to_string(),
                owner,
                versions: Vec::new(),
                active: None,
                keys: Keys::default(),
            });
            v.apply(*id, *author, *at_ms, event);
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bundle: u8) -> FunctionSpec {
        FunctionSpec {
            bundle: BlobId([bundle; 32]),
            command: Command::Shell("python3 handler.py".into()),
            triggers: vec![Trigger::Http],
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry: true,
            max_attempts: crate::trigger::DEFAULT_MAX_ATTEMPTS,
            warm: None,
        }
    }

    fn deploy(bundle: u8, at_ms: u64) -> FunctionEvent {
        FunctionEvent::Deployed {
            name: "hello".into(),
            spec: spec(bundle),
            at_ms,
        }
    }

    const OWNER: NodeId = NodeId([1; 32]);
    const OTHER: NodeId = NodeId([2; 32]);
    const ADMIN: NodeId = NodeId([3; 32]);

    fn fold(events: &[(u8, NodeId, FunctionEvent)]) -> FunctionView {
        let mut f = Functions::default();
        for (id, author, e) in events {
            f.insert(EventId([*id; 32]), *author, e);
        }
        f.view("hello", &BTreeSet::from([ADMIN]), u64::MAX).unwrap()
    }

    #[test]
    fn a_new_version_is_served_and_a_rollback_serves_the_old_one_again() {
        let v2 = fold(&[(1, OWNER, deploy(1, 10)), (2, OWNER, deploy(2, 20))]);
        assert_eq!(v2.serving().unwrap().number, 2);
        let back = FunctionEvent::RolledBack {
            name: "hello".into(),
            to: EventId([1; 32]),
            at_ms: 30,
        };
        let v1 = fold(&[
            (3, OWNER, back),
            (2, OWNER, deploy(2, 20)),
            (1, OWNER, deploy(1, 10)),
        ]);
        assert_eq!(v1.serving().unwrap().spec.bundle, BlobId([1; 32]));
        assert_eq!(v1.versions.len(), 2);
    }

    #[test]
    fn only_the_owner_or_an_admin_may_deploy_roll_back_or_remove() {
        let remove = |at_ms| FunctionEvent::Removed {
            name: "hello".into(),
            at_ms,
        };
        let forged = fold(&[
            (1, OWNER, deploy(1, 10)),
            (2, OTHER, deploy(9, 20)),
            (3, OTHER, remove(30)),
        ]);
        assert_eq!(forged.versions.len(), 1);
        assert_eq!(forged.serving().unwrap().spec.bundle, BlobId([1; 32]));
        let by_admin = fold(&[(1, OWNER, deploy(1, 10)), (3, ADMIN, remove(30))]);
        assert_eq!(by_admin.serving(), None);
    }

    #[test]
    fn only_the_owner_or_an_admin_may_create_or_revoke_a_key() {
        use super::keys::KeyRefused;
        let create = |label: &str, secret: &[u8], at_ms| FunctionEvent::KeyCreated {
            name: "hello".into(),
            label: label.into(),
            hash: KeyHash::of(secret),
            at_ms,
        };
        let revoke = |label: &str, at_ms| FunctionEvent::KeyRevoked {
            name: "hello".into(),
            label: label.into(),
            at_ms,
        };
        let forged = fold(&[
            (1, OWNER, deploy(1, 10)),
            (2, OWNER, create("ci", b"s1", 20)),
            (3, OTHER, create("mine", b"s2", 30)),
            (4, OTHER, revoke("ci", 40)),
        ]);
        assert_eq!(forged.keys.admit(KeyHash::of(b"s1")), Ok(()));
        assert_eq!(
            forged.keys.admit(KeyHash::of(b"s2")),
            Err(KeyRefused::Wrong)
        );
        let by_admin = fold(&[
            (1, OWNER, deploy(1, 10)),
            (2, OWNER, create("ci", b"s1", 20)),
            (4, ADMIN, revoke("ci", 40)),
        ]);
        assert_eq!(
            by_admin.keys.admit(KeyHash::of(b"s1")),
            Err(KeyRefused::Revoked)
        );
        assert!(matches!(
            by_admin.refuses_key_change(&revoke("ci", 50)),
            Err(ChangeRefused::NoKey { .. })
        ));
        let bad_label = create("a b", b"s3", 50);
        assert!(matches!(
            check(&bad_label),
            Err(FunctionError::KeyLabel { .. })
        ));
    }

    #[test]
    fn a_firing_runs_the_handler_in_its_bundle_up_to_the_versions_attempts() {
        let s = spec(1);
        let firing = Firing {
            function: "hello".into(),
            version: EventId([1; 32]),
            cause: crate::trigger::Cause::Queue {
                message: b"hi".to_vec(),
            },
        };
        assert!(!s.fires(&firing));
        let job = s.fired_job(&firing);
        assert!(job.validate().is_ok());
        let task = job.groups[0].spec();
        assert_eq!(task.max_retries, crate::trigger::DEFAULT_MAX_ATTEMPTS - 1);
        assert_eq!(task.inputs[0].source, Source::Blob(BlobId([1; 32])));
        assert_eq!(task.command, s.command);
    }

    #[test]
    fn a_deploy_without_triggers_or_with_a_huge_timeout_is_invalid() {
        let mut s = spec(1);
        s.triggers.clear();
        let e = FunctionEvent::Deployed {
            name: "hello".into(),
            spec: s.clone(),
            at_ms: 0,
        };
        assert!(matches!(check(&e), Err(FunctionError::Triggers { .. })));
        s.triggers.push(Trigger::Http);
        s.timeout_ms = MAX_TIMEOUT_MS + 1;
        let e = FunctionEvent::Deployed {
            name: "../x".into(),
            spec: s,
            at_ms: 0,
        };
        assert!(matches!(check(&e), Err(FunctionError::Name(_))));
    }

    #[test]
    fn a_warm_deploy_outside_its_bounds_is_invalid() {
        let deployed = |warm| FunctionEvent::Deployed {
            name: "hello".into(),
            spec: FunctionSpec {
                warm: Some(warm),
                ..spec(1)
            },
            at_ms: 0,
        };
        let fine = Warm {
            min_warm: 1,
            max_per_node: 4,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
        };
        assert_eq!(check(&deployed(fine)), Ok(()));
        let too_many = Warm {
            max_per_node: MAX_WARM_PER_NODE + 1,
            ..fine
        };
        assert!(matches!(
            check(&deployed(too_many)),
            Err(FunctionError::MaxPerNode { .. })
        ));
        let min_over_max = Warm {
            min_warm: 5,
            ..fine
        };
        assert!(matches!(
            check(&deployed(min_over_max)),
            Err(FunctionError::MinWarm { .. })
        ));
        let instant = Warm {
            idle_timeout_ms: 10,
            ..fine
        };
        assert!(matches!(
            check(&deployed(instant)),
            Err(FunctionError::IdleTimeout { .. })
        ));
    }

    #[test]
    fn a_warm_function_with_a_trigger_other_than_http_is_invalid() {
        let deployed = FunctionEvent::Deployed {
            name: "hello".into(),
            spec: FunctionSpec {
                triggers: vec![Trigger::Http, Trigger::Queue],
                warm: Some(Warm {
                    min_warm: 0,
                    max_per_node: 4,
                    idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
                }),
                ..spec(1)
            },
            at_ms: 0,
        };
        let why = check(&deployed).unwrap_err();
        assert!(matches!(
            why,
            FunctionError::WarmTrigger { kind: "queue", .. }
        ));
        assert!(why.to_string().contains("without --warm"), "{why}");
    }
}
