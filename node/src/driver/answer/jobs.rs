//! Answers about jobs and their tasks: list, show, submit, cancel, forget.
//!
//! Owns reading a job or task by what a user calls it (an id, a unique id
//! prefix or name; a task's id) and the refusals that go with it. Must
//! not shape answers for the API.

use crate::driver::command::{
    Accepted, FoundTask, Gang, JobEntry, JobTasks, Refusal, Reply, TaskEntry,
};
use crate::driver::Driver;
use crate::wallclock::wall_ms;
use peerbatch_protocol::core::ForgetRefused;
use peerbatch_protocol::ledger::JobRecord;
use peerbatch_protocol::resources::unschedulable;
use peerbatch_protocol::{JobId, JobSpec, NodeInfo, TaskRef, TaskView};

impl Driver {
    pub(super) fn job_list(&self) -> Vec<JobEntry> {
        let jobs = self.core.ledger().jobs();
        jobs.map(|record| self.job_entry(record)).collect()
    }

    fn job_entry(&self, record: &JobRecord) -> JobEntry {
        JobEntry {
            record: record.clone(),
            progress: self.core.progress(&record.id),
            forget_at: self.core.forget_at(&record.id),
            unschedulable: None,
        }
    }

    /// A job, with why its waiting tasks fit no node if some wait.
    pub(super) fn job_shown(&self, job: &str) -> Result<JobEntry, Refusal> {
        let record = self.job_record(job)?;
        let mut entry = self.job_entry(record);
        if entry.progress.pending + entry.progress.blocked > 0 {
            let groups = self.unschedulable_groups(record);
            entry.unschedulable = groups.into_iter().flatten().next();
        }
        Ok(entry)
    }

    pub(super) fn job_id(&self, job: &str) -> Result<JobId, Refusal> {
        self.resolve_job(job).map_err(Refusal::NotFound)
    }

    fn job_record(&self, job: &str) -> Result<&JobRecord, Refusal> {
        let id = self.job_id(job)?;
        let record = self.core.ledger().job(&id);
        record.ok_or_else(|| Refusal::NotFound(job.to_string()))
    }

    /// Why each task group of a job fits no node of the mesh, if it does not.
    fn unschedulable_groups(&self, record: &JobRecord) -> Vec<Option<String>> {
        let nodes: Vec<&NodeInfo> = self.core.ledger().nodes().map(|(_, i)| i).collect();
        let groups = record.spec.groups.iter();
        groups
            .map(|g| unschedulable(&g.spec().resources, nodes.iter().copied()))
            .collect()
    }

    /// Submits a job; `replicated` hears how many peers hold it once it is
    /// durable here.
    pub(super) fn submit(
        &mut self,
        spec: JobSpec,
        replicated: Reply<usize>,
    ) -> Result<Accepted, Refusal> {
        let now = self.now();
        let submitted = self.core.submit(now, spec, wall_ms());
        let (job, event) = submitted.map_err(|e| Refusal::Invalid(e.to_string()))?;
        self.replicate_then_reply(event, replicated);
        Ok(Accepted {
            job,
            peers_connected: self.peers_connected(),
        })
    }

    pub(super) fn cancel_job(&mut self, job: &str) -> Result<JobId, Refusal> {
        let id = self.job_id(job)?;
        let now = self.now();
        if !self.core.cancel(now, id) {
            return Err(Refusal::NotAllowed(format!(
                "job {id} may be cancelled only from the node that submitted it or an admin node"
            )));
        }
        Ok(id)
    }

    pub(super) fn forget_job(&mut self, job: &str) -> Result<JobId, Refusal> {
        let id = self.job_id(job)?;
        let now = self.now();
        match self.core.forget(now, id) {
            Ok(_) => Ok(id),
            Err(e @ ForgetRefused::Unknown(_)) => Err(Refusal::NotFound(e.to_string())),
            Err(e @ ForgetRefused::NotAllowed(_)) => Err(Refusal::NotAllowed(e.to_string())),
            Err(e @ ForgetRefused::Live(_)) => Err(Refusal::Conflict(e.to_string())),
        }
    }

    pub(super) fn task_list(&self, job: &str) -> Result<JobTasks, Refusal> {
        let record = self.job_record(job)?;
        let views = self.core.views(record.id);
        let gangs = (views.iter())
            .map(|v| (v.task.index, self.gang_of(record, v)))
            .filter(|(_, gang)| !gang.is_empty())
            .collect();
        Ok(JobTasks {
            views,
            gangs,
            unschedulable: self.unschedulable_groups(record),
            record: record.clone(),
        })
    }

    /// Task `task` (its id) of job `job` (an id, id prefix or name).
    pub(super) fn found_task(&self, job: &str, task: &str) -> Result<FoundTask, Refusal> {
        let record = self.job_record(job)?;
        let index = (record.spec.position_of(task))
            .ok_or_else(|| Refusal::NotFound(format!("job {} has no task {task:?}", record.id)))?;
        let task = TaskRef {
            job: record.id,
            index,
        };
        let entry = self.core.view(task).map(|view| TaskEntry {
            gang: self.gang_of(record, &view),
            view,
        });
        Ok(FoundTask { task, entry })
    }

    /// A multi-instance task's hosts for its view's attempt, in rank
    /// order, each with its instance's result once reported.
    fn gang_of(&self, record: &JobRecord, view: &TaskView) -> Gang {
        match (view.node, self.core.ledger().gang(&view.task)) {
            (Some(primary), Some(steps)) => {
                let template = record.spec.template(view.task.index);
                let instances = template.map_or(1, |t| t.resources.instances);
                let members = steps.members(view.attempt, primary, instances);
                members.into_iter().map(|(n, r)| (n, r.cloned())).collect()
            }
            _ => Vec::new(),
        }
    }
}
