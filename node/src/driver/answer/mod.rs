//! The driver's answers to [`Command`]s: [`Driver::on_command`] matches
//! every command in one place and hands it to a short function of the
//! resource's file (`jobs`, `mesh`, …), which reads or changes the core
//! and says what happened in the command's typed answer.
//!
//! Owns those answers; must not know about HTTP or JSON (the API shapes
//! answers) and must not wait: every answer is computed at once on the
//! driver's task, and whatever takes long (fetching, storing) happens off
//! it, after the answer.

mod defined;
mod functions;
mod jobs;
mod mesh;

use super::command::{Command, Functions, Jobs, Mesh, Packages, Pools, Reply, Schedules, Tasks};
use super::Driver;

/// Sends an answer; a caller that stopped waiting is no matter.
fn answer<T>(reply: Reply<T>, value: T) {
    let _ = reply.send(value);
}

impl Driver {
    /// Answers one command.
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Jobs(Jobs::List { reply }) => answer(reply, self.job_list()),
            Command::Jobs(Jobs::Show { job, reply }) => answer(reply, self.job_shown(&job)),
            Command::Jobs(Jobs::Resolve { job, reply }) => answer(reply, self.job_id(&job)),
            Command::Jobs(Jobs::Submit {
                spec,
                replicated,
                reply,
            }) => answer(reply, self.submit(spec, replicated)),
            Command::Jobs(Jobs::Cancel { job, reply }) => answer(reply, self.cancel_job(&job)),
            Command::Jobs(Jobs::Forget { job, reply }) => answer(reply, self.forget_job(&job)),
            Command::Tasks(Tasks::List { job, reply }) => answer(reply, self.task_list(&job)),
            Command::Tasks(Tasks::Show { job, task, reply }) => {
                answer(reply, self.found_task(&job, &task))
            }
            Command::Tasks(Tasks::View { task, reply }) => answer(reply, self.core.view(task)),
            Command::Mesh(Mesh::State { reply }) => answer(reply, self.node_state()),
            Command::Mesh(Mesh::Nodes { reply }) => answer(reply, self.node_list()),
            Command::Mesh(Mesh::Drain { node, drain, reply }) => {
                answer(reply, self.drain(&node, drain))
            }
            Command::Mesh(Mesh::Peers { reply }) => answer(reply, self.connected_peers()),
            Command::Pools(Pools::List { reply }) => answer(reply, self.pool_list()),
            Command::Pools(Pools::Define {
                name,
                start_task,
                wait_for_success,
                reply,
            }) => answer(reply, self.define_pool(&name, start_task, wait_for_success)),
            Command::Pools(Pools::StartResult { pool, node, reply }) => {
                answer(reply, self.start_result(&pool, &node))
            }
            Command::Schedules(Schedules::List { reply }) => answer(reply, self.schedule_list()),
            Command::Schedules(Schedules::Add {
                name,
                recurrence,
                template,
                reply,
            }) => answer(reply, self.add_schedule(&name, recurrence, *template)),
            Command::Schedules(Schedules::Remove { name, reply }) => {
                answer(reply, self.remove_schedule(&name))
            }
            Command::Packages(Packages::List { reply }) => answer(reply, self.package_list()),
            Command::Packages(Packages::Add {
                name,
                version,
                blob,
                reply,
            }) => answer(reply, self.add_package(&name, &version, blob)),
            Command::Functions(Functions::List { reply }) => answer(reply, self.function_list()),
            Command::Functions(Functions::Show { name, reply }) => {
                answer(reply, self.function(&name))
            }
            Command::Functions(Functions::Change { event, reply }) => {
                answer(reply, self.change_function(event))
            }
            Command::Functions(Functions::Plan { name, key, reply }) => {
                answer(reply, self.plan(&name, key))
            }
            Command::Functions(Functions::Enqueue {
                name,
                message,
                replicated,
                reply,
            }) => answer(reply, self.enqueue(&name, message, replicated)),
            Command::Functions(Functions::Queue { name, reply }) => {
                answer(reply, self.queue(&name))
            }
            Command::Functions(Functions::BlobPut { blob, name, reply }) => {
                answer(reply, self.blob_put(blob, &name))
            }
        }
    }
}
