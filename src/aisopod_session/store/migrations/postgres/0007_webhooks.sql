-- Webhooks: where each configured webhook's delivery stands, and the log of its deliveries.
-- One row per webhook name. Its holder (one delivery worker across every replica) holds a lease
-- that expires by the database's clock, and every claim increments fence: a write of a worker
-- whose fence is no longer the row's (its lease expired and another worker claimed it) cannot
-- move the position. position is the feed entry handled last (delivered, failed or skipped by
-- the webhook's filters): delivery goes on after it.
CREATE TABLE webhook_state (
    name       TEXT    PRIMARY KEY,
    position   BIGINT  NOT NULL,
    fence      BIGINT  NOT NULL CHECK (fence >= 1),
    owner      TEXT,
    expires_at BIGINT,
    delivered  BIGINT  NOT NULL DEFAULT 0,
    failed     BIGINT  NOT NULL DEFAULT 0,
    -- outcomes logged by a worker that had lost the lease: the next holder delivers them again
    duplicates BIGINT  NOT NULL DEFAULT 0,
    -- entries the feed pruned before they could be delivered (at most: filters not applied)
    skipped    BIGINT  NOT NULL DEFAULT 0
);

-- One row per delivery of a feed entry to a webhook: its attempts so far and how it ended.
-- Kept as long as the feed keeps the entry (pruned with it, by the delivery workers).
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    webhook          TEXT    NOT NULL,
    position         BIGINT  NOT NULL,
    kind             TEXT    NOT NULL,
    agent_id         TEXT,
    session_id       BIGINT,
    status           TEXT    NOT NULL
        CHECK (status IN ('delivered', 'failed', 'retrying', 'interrupted')),
    attempts         INTEGER NOT NULL,
    http_status      INTEGER,
    error            TEXT,
    owner            TEXT    NOT NULL,
    lease_lost       INTEGER NOT NULL DEFAULT 0,
    first_attempt_at BIGINT  NOT NULL,
    last_attempt_at  BIGINT  NOT NULL,
    duration_us      BIGINT  NOT NULL
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook, id);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, webhook, id);
CREATE INDEX webhook_deliveries_position ON webhook_deliveries (position);
