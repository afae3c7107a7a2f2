//! Steps before they get their ids, and the chain that gives them ids and
//! order.

use crate::plan::{Action, Check, Role, Step, StepName};

/// A step before it gets its id.
pub(super) struct Draft {
    name: StepName,
    role: Role,
    action: Action,
    requires: Vec<Check>,
    done_when: Vec<Check>,
    past_when: Vec<Check>,
    /// Names of the steps it follows; None: the step before it.
    after: Option<Vec<StepName>>,
}

/// A step named `name` doing `action`, by the one role that performs it.
pub(super) fn draft(name: StepName, action: Action) -> Draft {
    Draft {
        name,
        role: action.kind().role(),
        action,
        requires: vec![],
        done_when: vec![],
        past_when: vec![],
        after: None,
    }
}

impl Draft {
    pub(super) fn requires(mut self, c: Vec<Check>) -> Draft {
        self.requires = c;
        self
    }
    pub(super) fn done_when(mut self, c: Vec<Check>) -> Draft {
        self.done_when = c;
        self
    }
    pub(super) fn past_when(mut self, c: Vec<Check>) -> Draft {
        self.past_when = c;
        self
    }
    pub(super) fn name(&self) -> StepName {
        self.name
    }

    /// Whether it is a read-only check of the clouds that opens a plan.
    pub(super) fn checks_inputs(&self) -> bool {
        self.action.kind().checks_inputs()
    }

    /// Whether it waits for its image to be idle before it acts.
    pub(super) fn waits_idle(&self) -> bool {
        self.requires
            .iter()
            .any(|c| matches!(c, Check::NotInUse { .. }))
    }

    /// Follows these steps from now on (see [`Draft::after`]).
    pub(super) fn follow(&mut self, names: Vec<StepName>) {
        self.after = Some(names);
    }

    /// Follows `name` too (it already follows a list of steps).
    pub(super) fn also_after(&mut self, name: StepName) {
        if let Some(a) = &mut self.after {
            a.push(name);
        }
    }

    /// Follows these steps (of this image) rather than the one before it:
    /// the step before may then run alongside it.
    pub(super) fn after(mut self, names: Vec<StepName>) -> Draft {
        self.after = Some(names);
        self
    }
}

/// The steps with their ids and order.
pub(super) fn chain(n: usize, steps: Vec<Draft>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    for (j, d) in steps.into_iter().enumerate() {
        let after = match &d.after {
            None => out.last().map(|p| vec![p.id.clone()]).unwrap_or_default(),
            Some(names) => names
                .iter()
                .map(|name| {
                    out.iter()
                        .find(|p| p.name == *name)
                        .unwrap_or_else(|| panic!("{} follows {name}, planned before it", d.name))
                        .id
                        .clone()
                })
                .collect(),
        };
        out.push(Step {
            id: format!("{n}.{}", j + 1),
            name: d.name,
            role: d.role,
            action: d.action,
            after,
            requires: d.requires,
            done_when: d.done_when,
            past_when: d.past_when,
        });
    }
    out
}
