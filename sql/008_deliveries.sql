-- Delivery per alert and channel (email, each Slack channel), and the daily digest's deliveries.
-- One channel's failure neither blocks nor repeats another's: each (alert, channel) row is claimed,
-- sent and marked on its own. alerts.notified_at now means "every routed channel delivered".

CREATE TABLE alert_deliveries (
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel     text NOT NULL,                 -- 'email' or 'slack:<name from the routing config>'
    target      text NOT NULL,                 -- the recipients, or the Airflow connection id (never a webhook URL)
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX alert_deliveries_open_idx ON alert_deliveries (alert_id) WHERE status <> 'sent';

-- Alerts emailed before this migration: their one channel was email, and it was delivered.
INSERT INTO alert_deliveries (alert_id, channel, target, status, attempts, sent_at, updated_at)
SELECT id, 'email', '(before delivery tracking)', 'sent', notify_attempts, notified_at, notified_at
FROM alerts WHERE notified_at IS NOT NULL;

CREATE TABLE digest_deliveries (
    day         date NOT NULL,                 -- the UTC day the digest summarises
    channel     text NOT NULL,
    target      text NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    PRIMARY KEY (day, channel)
);

GRANT SELECT ON alert_deliveries, digest_deliveries TO finsent_dashboard;
