//! The plan scenarios: a user created with a plan, a plan changed, a
//! user's usage reset, a node's multiplier set, and the usage reads. Every
//! change that takes a user off the nodes or brings them back goes through
//! the change log like a disable or an enable, so it is pushed at once.

use super::{Manager, ManagerError, ManagerResult};
use crate::domain::plan::{Plan, PlanEdit};
use crate::domain::usage::{NodeUsage, UsageGrouping, UsageRow};
use crate::domain::{NewUser, Node, NodeId, Timestamp, User, UserId};

impl Manager {
    /// Creates a user with `plan`, Disabled and on no node.
    pub async fn new_user_with_plan(&self, name: &str, plan: Plan) -> ManagerResult<User> {
        plan.validate().map_err(ManagerError::InvalidPlan)?;
        let mut new = NewUser::new(name).map_err(ManagerError::InvalidUserName)?;
        new.plan = plan;
        Ok(self.storage.create_user(new).await?)
    }

    /// Edits a user's plan: the storage applies `edit` to the plan it holds
    /// at that moment, so concurrent edits of different fields all land
    /// (`PlanEdit::from(plan)` replaces the whole plan). An edited plan
    /// [`Plan::validate`] refuses is [`ManagerError::InvalidPlan`] and
    /// changes nothing. A user whose edited plan no longer blocks them
    /// (limit above the used bytes, expiry in the future) is back on the
    /// nodes, one it blocks now leaves them, both pushed at once; the event
    /// that is (`user.re_enabled`, `.limited`, `.expired`) is written with
    /// the edit.
    pub async fn edit_user_plan(&self, id: UserId, edit: PlanEdit) -> ManagerResult<User> {
        let user = self.store_plan_edit(id, edit).await?;
        self.trigger.pull();
        Ok(user)
    }

    /// Zeroes a user's used bytes; a user blocked by the limit comes back.
    pub async fn reset_user_usage(&self, id: UserId) -> ManagerResult<User> {
        let user = self.store_usage_reset(id).await?;
        self.trigger.pull();
        Ok(user)
    }

    /// What a byte through `id` counts in users' totals from now on.
    pub async fn set_node_multiplier(&self, id: NodeId, multiplier: f64) -> ManagerResult<Node> {
        if !multiplier.is_finite() || multiplier <= 0.0 || multiplier > 1000.0 {
            return Err(ManagerError::InvalidMultiplier(multiplier));
        }
        Ok(self.storage.set_node_multiplier(id, multiplier).await?)
    }

    /// A user's bytes in `[from, to)`, per day or per node.
    pub async fn user_usage(
        &self,
        id: UserId,
        from: Timestamp,
        to: Timestamp,
        group: UsageGrouping,
    ) -> ManagerResult<Vec<UsageRow>> {
        // An unknown user is `UserNotFound` (the storage's contract), not
        // an empty history.
        Ok(self.storage.user_usage(id, from, to, group).await?)
    }

    /// The bytes through each node in `[from, to)` (raw).
    pub async fn node_usage(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> ManagerResult<Vec<NodeUsage>> {
        Ok(self.storage.node_usage(from, to).await?)
    }
}
