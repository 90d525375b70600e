//! The reference backend's devices: each user's recorded devices, on the
//! same state as everything else.

use super::State;
use crate::domain::device::LAST_SEEN_STEP_MS;
use crate::domain::{Device, DeviceSighting, DeviceVerdict, Timestamp, UserId};
use crate::storage::{Entity, StorageError, StorageResult};

impl State {
    pub(super) fn record_device(
        &mut self,
        id: UserId,
        sighting: &DeviceSighting,
        limit: u32,
        now: Timestamp,
    ) -> StorageResult<DeviceVerdict> {
        self.live_user(id)?;
        let devices = self.devices.entry(id).or_default();
        if let Some(known) = devices.get_mut(&sighting.hwid) {
            if now.0 - known.last_seen.0 >= LAST_SEEN_STEP_MS {
                known.os.clone_from(&sighting.os);
                known.os_version.clone_from(&sighting.os_version);
                known.model.clone_from(&sighting.model);
                known.user_agent.clone_from(&sighting.user_agent);
                known.last_seen = now;
            }
            return Ok(DeviceVerdict::Allowed);
        }
        if limit > 0 && devices.len() >= limit as usize {
            return Ok(DeviceVerdict::OverLimit);
        }
        devices.insert(
            sighting.hwid.clone(),
            Device {
                hwid: sighting.hwid.clone(),
                os: sighting.os.clone(),
                os_version: sighting.os_version.clone(),
                model: sighting.model.clone(),
                user_agent: sighting.user_agent.clone(),
                first_seen: now,
                last_seen: now,
            },
        );
        Ok(DeviceVerdict::Allowed)
    }

    pub(super) fn list_devices(&self, id: UserId) -> StorageResult<Vec<Device>> {
        self.live_user(id)?;
        let mut devices: Vec<Device> = self
            .devices
            .get(&id)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default();
        devices.sort_by(|a, b| (a.first_seen, &a.hwid).cmp(&(b.first_seen, &b.hwid)));
        Ok(devices)
    }

    pub(super) fn delete_device(&mut self, id: UserId, hwid: &str) -> StorageResult<()> {
        self.live_user(id)?;
        self.devices
            .get_mut(&id)
            .and_then(|d| d.remove(hwid))
            .map(drop)
            .ok_or(StorageError::NotFound(Entity::Device))
    }
}
