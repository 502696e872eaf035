-- Runs: at most one active run per session key, across every process and replica. One row per
-- key (not per session), so that a run's fence keeps increasing across resets and archived
-- generations. A run is active while owner is set; an active run whose expires_at has passed
-- (by the database's clock) may be taken over by the next start_run.
CREATE TABLE runs (
    agent_id       TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    account_id     TEXT    NOT NULL,
    peer_kind      TEXT    NOT NULL,
    peer_id        TEXT    NOT NULL,
    -- the fence of the newest run started on this key: from one counter for every key
    -- (run_fences), so that a fence is never handed out twice, not even after a delete
    fence          BIGINT  NOT NULL CHECK (fence >= 1),
    owner          TEXT,
    started_at     BIGINT,
    expires_at     BIGINT,
    ttl            BIGINT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    -- the run took the session over from one whose lease had expired
    took_over      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, channel, account_id, peer_kind, peer_id)
);

-- Messages that arrived for a key while a run was active, waiting for a run to take them into
-- the history. Kept by key, not by session: a reset or an archived session does not strand them.
CREATE TABLE inbox (
    id          BIGSERIAL PRIMARY KEY,
    agent_id    TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    peer_kind   TEXT    NOT NULL,
    peer_id     TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content     TEXT    NOT NULL,
    tool_calls  TEXT,
    created_at  BIGINT  NOT NULL,
    token_count BIGINT,
    external_id TEXT,
    enqueued_at BIGINT  NOT NULL
);
CREATE INDEX inbox_key ON inbox (agent_id, channel, account_id, peer_kind, peer_id, id);
CREATE UNIQUE INDEX inbox_external_id
    ON inbox (agent_id, channel, account_id, peer_kind, peer_id, external_id)
    WHERE external_id IS NOT NULL;

CREATE SEQUENCE run_fences;
