-- Subscriptions (issue 17).
--
-- The random half of each user's subscription token, as 32 hex digits;
-- rotating it makes the old URL unknown. Existing users get one here
-- (randomblob reads SQLite's CSPRNG, seeded from the OS).
ALTER TABLE users ADD COLUMN subscription_key TEXT NOT NULL DEFAULT '';
UPDATE users SET subscription_key = lower(hex(randomblob(16)));

-- What the node's agent described of its inbounds on its last start (a
-- JSON array), and the operator's subscription settings of the node (a
-- JSON object): read whole, never queried by field.
ALTER TABLE nodes ADD COLUMN inbounds TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';

-- How many devices may fetch the user's subscription (NULL: the settings'
-- default; 0: no limit), and each user's devices (hardware ids sent by the
-- client apps), gone with the user's row.
ALTER TABLE users ADD COLUMN device_limit INTEGER CHECK (device_limit >= 0);
CREATE TABLE user_devices (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hwid       TEXT NOT NULL,
    os         TEXT NOT NULL,
    os_version TEXT NOT NULL,
    model      TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (user_id, hwid)
) STRICT, WITHOUT ROWID;
