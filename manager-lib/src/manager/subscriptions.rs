//! The subscription scenarios: a user's subscription found by its token
//! (the nodes exactly as the node-list call finds them), a token rotated,
//! the devices that fetch it within the user's limit, and a node's profile
//! (what subscriptions show of it) set.

use super::{Manager, ManagerError, ManagerResult};
use crate::domain::{
    Device, DevicePolicy, DeviceSighting, DeviceVerdict, Node, NodeId, NodeProfile,
    SubscriptionKey, SubscriptionToken, Timestamp, User, UserId, UserNodes,
};
use crate::storage::StorageError;

impl Manager {
    /// The user a subscription token names, with the nodes that can serve
    /// the user now (none for a disabled or blocked user). A token that does
    /// not parse, names no user or carries an old key is
    /// [`ManagerError::SubscriptionNotFound`], all alike: the answer tells
    /// nothing about which users exist. The user's row comes through the
    /// same read (and cache) as the node-list call's, with usage totals at
    /// most `subscription_usage_max_age` old, and the key is compared in
    /// constant time.
    pub async fn subscription(&self, token: &str) -> ManagerResult<UserNodes> {
        let (id, key) =
            SubscriptionToken::parse(token).ok_or(ManagerError::SubscriptionNotFound)?;
        // The usage headers show what was counted: a cached row's totals
        // only while they are young enough (usage is not a change).
        let found = match self
            .storage
            .user_nodes_with_usage(id, self.settings.subscription_usage_max_age)
            .await
        {
            Ok(found) => found,
            Err(StorageError::NotFound(_)) => return Err(ManagerError::SubscriptionNotFound),
            Err(e) => return Err(e.into()),
        };
        if !found.user.subscription_key.matches(&key) {
            return Err(ManagerError::SubscriptionNotFound);
        }
        Ok(found)
    }

    /// Gives the user a new subscription key: the old URL is unknown from
    /// then on, on every replica. Answers the user with the new key.
    pub async fn rotate_subscription(&self, id: UserId) -> ManagerResult<User> {
        let user = self
            .storage
            .set_subscription_key(id, SubscriptionKey::random())
            .await?;
        Ok(user)
    }

    /// Whether `device` may fetch `user`'s subscription: within the user's
    /// own limit, else the policy's (0: none). A fetch without a hardware
    /// id is not counted, or refused for a limited user when the policy
    /// requires one. A new device within the limit is recorded.
    pub async fn admit_device(
        &self,
        user: &User,
        device: Option<&DeviceSighting>,
        policy: DevicePolicy,
    ) -> ManagerResult<DeviceVerdict> {
        let limit = user.device_limit.unwrap_or(policy.default_limit);
        let Some(device) = device else {
            return Ok(match policy.require_hwid && limit > 0 {
                true => DeviceVerdict::OverLimit,
                false => DeviceVerdict::Allowed,
            });
        };
        Ok(self
            .storage
            .record_device(user.id, device, limit, Timestamp::now())
            .await?)
    }

    /// Sets how many devices may fetch the user's subscription (`None`: the
    /// settings' default; `Some(0)`: no limit).
    pub async fn set_device_limit(&self, id: UserId, limit: Option<u32>) -> ManagerResult<User> {
        Ok(self.storage.set_device_limit(id, limit).await?)
    }

    pub async fn list_devices(&self, id: UserId) -> ManagerResult<Vec<Device>> {
        Ok(self.storage.list_devices(id).await?)
    }

    /// Forgets a device: its next fetch counts as a new device.
    pub async fn delete_device(&self, id: UserId, hwid: &str) -> ManagerResult<()> {
        Ok(self.storage.delete_device(id, hwid).await?)
    }

    /// Sets what subscriptions show of a node (its address, name and
    /// per-inbound overrides); [`ManagerError::InvalidProfile`] (also for
    /// an override the node's described inbounds cannot take) changes
    /// nothing.
    pub async fn set_node_profile(&self, id: NodeId, profile: NodeProfile) -> ManagerResult<Node> {
        profile.validate().map_err(ManagerError::InvalidProfile)?;
        let node = self.storage.get_node(id).await?;
        profile
            .validate_for(&node.inbounds)
            .map_err(ManagerError::InvalidProfile)?;
        Ok(self.storage.set_node_profile(id, &profile).await?)
    }
}
