//! The reference backend's changes written with their webhook events
//! ([`NotifyingStore`]), and the node and plan writes they share with the
//! plain methods.
//!
//! One transaction here is the fleet's lock and the outbox's (and the
//! tokens') held together, always in that order. Where the events come
//! from the changed users, the change is made on a copy of the state that
//! replaces it only once every delivery passed its check: a refusal leaves
//! nothing changed, as a rolled-back transaction does.

use async_trait::async_trait;

use super::{MemoryStorage, State};
use crate::domain::usage::{EnforceOutcome, IngestOutcome, UsageCursor, UsagePage};
use crate::domain::{
    ActualStatus, ApiToken, EventKind, InboundDescription, NewDelivery, NodeId, PlanEdit, Seq,
    Timestamp, TokenId, TokenVerifier, User, UserId,
};
use crate::storage::kit::outbox::{block_event, check_delivery};
use crate::storage::{Notices, NotifyingStore, StorageResult, kit};

impl State {
    pub(super) fn observe(&mut self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        let node = self.node_mut(id)?;
        let now = Timestamp::now();
        if actual != ActualStatus::Error {
            node.last_seen = Some(now);
        }
        if node.actual_status != actual {
            node.actual_status = actual;
            node.updated_at = now;
        }
        Ok(())
    }

    pub(super) fn finish_start(
        &mut self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
    ) -> StorageResult<()> {
        let node = self.node_mut(id)?;
        let now = Timestamp::now();
        node.actual_status = ActualStatus::Running;
        node.user_config_template = Some(template.to_owned());
        node.inbounds = inbounds.to_vec();
        node.applied_seq = node.applied_seq.max(seq);
        node.state_up_to_date = true;
        node.last_seen = Some(now);
        node.updated_at = now;
        Ok(())
    }

    pub(super) fn edit_plan(
        &mut self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
    ) -> StorageResult<User> {
        let plan = edit.apply(self.live_user(id)?.plan)?;
        self.change_user(id, |u| {
            u.plan = plan;
            u.next_reset_at = plan.reset.next_reset_after(now);
            u.blocked = kit::usage::plan_block(&plan, u.used(), now);
        })
    }

    pub(super) fn reset_usage(&mut self, id: UserId, now: Timestamp) -> StorageResult<User> {
        self.change_user(id, |u| {
            u.used_up = 0;
            u.used_down = 0;
            u.last_reset_at = Some(now);
            u.blocked = kit::usage::block_after_reset(u.blocked);
        })
    }

    fn users(&self, ids: &[UserId]) -> Vec<User> {
        ids.iter()
            .filter_map(|id| self.live_user(*id).ok().cloned())
            .collect()
    }
}

impl MemoryStorage {
    /// Runs `change` on a copy of the state; the copy becomes the state, and
    /// the deliveries it names go to the outbox, only when both succeed.
    fn transact<T>(
        &self,
        change: impl FnOnce(&mut State) -> StorageResult<(T, Vec<NewDelivery>)>,
    ) -> StorageResult<T> {
        let mut st = self.lock();
        let mut copy = st.clone();
        let (out, deliveries) = change(&mut copy)?;
        *st = copy;
        self.outbox().enqueue(&deliveries);
        Ok(out)
    }

    /// A user changed from `before`: the event that is, as deliveries.
    fn plan_change(
        before: &User,
        after: &User,
        notices: &Notices,
    ) -> StorageResult<Vec<NewDelivery>> {
        match block_event(before.blocked, after.blocked) {
            Some(kind) => notices.deliveries(kind, std::slice::from_ref(after)),
            None => Ok(Vec::new()),
        }
    }
}

fn checked(deliveries: &[NewDelivery]) -> StorageResult<()> {
    deliveries.iter().try_for_each(check_delivery)
}

#[async_trait]
impl NotifyingStore for MemoryStorage {
    async fn ingest_usage_notifying(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<IngestOutcome> {
        self.transact(|st| {
            let outcome = st.ingest(node, pulled_with, page, now)?;
            let limited = st.users(&outcome.newly_blocked);
            let deliveries = notices.deliveries(EventKind::UserLimited, &limited)?;
            Ok((outcome, deliveries))
        })
    }

    async fn enforce_time_notifying(
        &self,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<EnforceOutcome> {
        self.transact(|st| {
            let outcome = st.enforce_time(now);
            let mut deliveries =
                notices.deliveries(EventKind::UserExpired, &st.users(&outcome.expired))?;
            deliveries.extend(
                notices.deliveries(EventKind::UserReEnabled, &st.users(&outcome.unblocked))?,
            );
            Ok((outcome, deliveries))
        })
    }

    async fn edit_user_plan_notifying(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        self.transact(|st| {
            let before = st.live_user(id)?.clone();
            let after = st.edit_plan(id, edit, now)?;
            let deliveries = Self::plan_change(&before, &after, notices)?;
            Ok((after, deliveries))
        })
    }

    async fn reset_user_usage_notifying(
        &self,
        id: UserId,
        now: Timestamp,
        notices: &Notices,
    ) -> StorageResult<User> {
        self.transact(|st| {
            let before = st.live_user(id)?.clone();
            let after = st.reset_usage(id, now)?;
            let deliveries = Self::plan_change(&before, &after, notices)?;
            Ok((after, deliveries))
        })
    }

    async fn record_observation_notifying(
        &self,
        id: NodeId,
        actual: ActualStatus,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        checked(deliveries)?;
        let mut st = self.lock();
        st.observe(id, actual)?;
        self.outbox().enqueue(deliveries);
        Ok(())
    }

    async fn finish_start_notifying(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        checked(deliveries)?;
        let mut st = self.lock();
        st.finish_start(id, seq, template, inbounds)?;
        self.outbox().enqueue(deliveries);
        Ok(())
    }

    async fn create_token_notifying(
        &self,
        token: &ApiToken,
        verifier: &TokenVerifier,
        deliveries: &[NewDelivery],
    ) -> StorageResult<()> {
        checked(deliveries)?;
        let mut access = self.access();
        access.create(token, verifier)?;
        self.outbox().enqueue(deliveries);
        Ok(())
    }

    async fn revoke_token_notifying(
        &self,
        id: TokenId,
        now: Timestamp,
        deliveries: &[NewDelivery],
    ) -> StorageResult<ApiToken> {
        checked(deliveries)?;
        let mut access = self.access();
        let (token, first) = access.revoke(id, now)?;
        if first {
            self.outbox().enqueue(deliveries);
        }
        Ok(token)
    }
}
