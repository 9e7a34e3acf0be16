//! Answers about functions: list, show, change (deploy, roll back,
//! remove), and what one call needs.
//!
//! Owns reading a function by name and refusing a change the core refuses;
//! must not run or route calls (`functions` does).

use crate::driver::command::Refusal;
use crate::driver::Driver;
use crate::functions::route::Plan;
use crate::identity::node_name;
use crate::wallclock::wall_ms;
use peerbatch_protocol::function::{ChangeRefused, FunctionEvent, FunctionView};

impl Driver {
    pub(super) fn function_list(&self) -> Vec<FunctionView> {
        let (ledger, wall) = (self.core.ledger(), wall_ms());
        let names = ledger.function_names();
        names.filter_map(|n| ledger.function(n, wall)).collect()
    }

    pub(super) fn function(&self, name: &str) -> Result<FunctionView, Refusal> {
        (self.core.ledger().function(name, wall_ms()))
            .ok_or_else(|| Refusal::NotFound(format!("no function {name:?}")))
    }

    /// Publishes a change; answers the number of the version serving
    /// afterwards.
    pub(super) fn change_function(&mut self, event: FunctionEvent) -> Result<Option<u32>, Refusal> {
        let name = event.name().to_string();
        let now = self.now();
        let changed = self.core.change_function(now, event, wall_ms());
        changed.map_err(|e| change_refused(&name, e))?;
        Ok(self.function(&name)?.serving().map(|v| v.number))
    }

    /// What a call of function `name` needs from the driver.
    pub(super) fn plan(&self, name: &str) -> Result<Plan, Refusal> {
        let view = self.function(name)?;
        let version = (view.serving().cloned())
            .ok_or_else(|| Refusal::NotFound(format!("function {name:?} was removed")))?;
        Ok(Plan {
            name: name.to_string(),
            version,
            available_here: self.unavailable.is_none(),
            peers: self.willing_peers(),
        })
    }
}

fn change_refused(name: &str, e: ChangeRefused) -> Refusal {
    match e {
        ChangeRefused::Invalid(e) => Refusal::Invalid(e.to_string()),
        ChangeRefused::Unknown(_) => Refusal::NotFound(e.to_string()),
        ChangeRefused::NotOwner { owner, .. } => Refusal::NotAllowed(format!(
            "function {name} belongs to node {}; only it or an admin node may change it",
            node_name(&owner)
        )),
    }
}
