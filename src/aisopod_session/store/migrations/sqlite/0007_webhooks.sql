-- Webhooks: where each configured webhook's delivery stands, and the log of its deliveries.
-- One row per webhook name. Its holder (one delivery worker across every replica) holds a lease
-- that expires by the database's clock, and every claim increments fence: a write of a worker
-- whose fence is no longer the row's (its lease expired and another worker claimed it) cannot
-- move the position. position is the feed entry handled last (delivered, failed or skipped by
-- the webhook's filters): delivery goes on after it.
CREATE TABLE webhook_state (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    fence      INTEGER NOT NULL CHECK (fence >= 1),
    owner      TEXT,
    expires_at INTEGER,
    delivered  INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    -- outcomes logged by a worker that had lost the lease: the next holder delivers them again
    duplicates INTEGER NOT NULL DEFAULT 0,
    -- entries the feed pruned before they could be delivered (at most: filters not applied)
    skipped    INTEGER NOT NULL DEFAULT 0
);

-- One row per delivery of a feed entry to a webhook: its attempts so far and how it ended.
-- Kept as long as the feed keeps the entry (pruned with it, by the delivery workers).
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook          TEXT    NOT NULL,
    position         INTEGER NOT NULL,
    kind             TEXT    NOT NULL,
    agent_id         TEXT,
    session_id       INTEGER,
    status           TEXT    NOT NULL
        CHECK (status IN ('delivered', 'failed', 'retrying', 'interrupted')),
    attempts         INTEGER NOT NULL,
    http_status      INTEGER,
    error            TEXT,
    owner            TEXT    NOT NULL,
    lease_lost       INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER NOT NULL,
    last_attempt_at  INTEGER NOT NULL,
    duration_us      INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook, id);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, webhook, id);
CREATE INDEX webhook_deliveries_position ON webhook_deliveries (position);
