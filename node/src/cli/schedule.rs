//! The `schedule` commands: add a job file as a recurring schedule (every
//! interval or on a cron expression), list, remove.
//!
//! Owns what they print; talks to the node only through `client`.

use crate::api::types::{AddSchedule, Named, Removed, Schedule};
use crate::bad_input::BadInput;
use crate::cli::text::{opt, print_json, seg};
use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Submit FILE's job at every occurrence, exactly once across the mesh.
    Add {
        /// The schedule's name, unique in the mesh.
        name: String,
        /// The job file submitted at each occurrence.
        file: PathBuf,
        /// An interval such as 30s, 10m, 2h (the first job is submitted now).
        #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
        every: Option<String>,
        /// A cron expression, minute hour day month weekday, in local time.
        #[arg(long)]
        cron: Option<String>,
    },
    /// List schedules.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule (jobs it submitted stay).
    Remove {
        /// The schedule's name.
        name: String,
    },
}

pub fn schedule(client: &Client, cmd: ScheduleCmd) -> Result<()> {
    match cmd {
        ScheduleCmd::Add {
            name,
            file,
            every,
            cron,
        } => {
            let draft = crate::jobfile::load(&file).map_err(|e| BadInput(e.to_string()))?;
            let template = crate::draft::finish(client, draft)?;
            let every_ms = match every {
                Some(text) => Some(
                    crate::jobfile::parse_duration_ms(&text)
                        .map_err(|e| BadInput(format!("--every: {e}")))?,
                ),
                None => None,
            };
            let body = AddSchedule {
                name: name.clone(),
                every_ms,
                cron,
                template,
            };
            let _: Named = client.post("/v1/schedules", &body)?;
            eprintln!("schedule {name} added");
            Ok(())
        }
        ScheduleCmd::List { json } => {
            let list: Vec<Schedule> = client.get("/v1/schedules")?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<20} {:<16} {:<20} {:>6}  LAST FIRED (ms)",
                "NAME", "WHEN", "JOB", "TASKS"
            );
            for sc in &list {
                let when = match sc.every_ms {
                    Some(ms) => format!("every {}s", ms as f64 / 1000.0),
                    None => opt(&sc.cron),
                };
                println!(
                    "{:<20} {:<16} {:<20} {:>6}  {}",
                    sc.name,
                    when,
                    sc.job_name,
                    sc.tasks,
                    opt(&sc.last_fired_ms)
                );
            }
            Ok(())
        }
        ScheduleCmd::Remove { name } => {
            let _: Removed = client.delete(&format!("/v1/schedules/{}", seg(&name)))?;
            eprintln!("schedule {name} removed");
            Ok(())
        }
    }
}
