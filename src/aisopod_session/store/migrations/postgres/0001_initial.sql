-- Sessions and their messages: the same shape as on SQLite (see migrations/sqlite), so both
-- backends run the same statements. Timestamps are bigint microseconds since the epoch (UTC).
CREATE TABLE sessions (
    id                      BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id                TEXT    NOT NULL,
    channel                 TEXT    NOT NULL,
    account_id              TEXT    NOT NULL,
    peer_kind               TEXT    NOT NULL,
    peer_id                 TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('active', 'idle', 'compacted', 'archived')),
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL,
    message_count           BIGINT  NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    token_usage             BIGINT  NOT NULL DEFAULT 0 CHECK (token_usage >= 0),
    metadata                TEXT    NOT NULL DEFAULT '{}',
    compaction_count        BIGINT  NOT NULL DEFAULT 0,
    last_compacted_at       BIGINT,
    last_compaction_summary TEXT,
    last_seq                BIGINT  NOT NULL DEFAULT 0,
    archived_at             BIGINT
);

CREATE UNIQUE INDEX sessions_live_key
    ON sessions (agent_id, channel, account_id, peer_kind, peer_id) WHERE status <> 'archived';
CREATE INDEX sessions_key ON sessions (agent_id, channel, account_id, peer_kind, peer_id);
CREATE INDEX sessions_agent_updated ON sessions (agent_id, updated_at, id);
CREATE INDEX sessions_agent_status_updated ON sessions (agent_id, status, updated_at, id);
CREATE INDEX sessions_updated ON sessions (updated_at, id);
CREATE INDEX sessions_status_updated ON sessions (status, updated_at, id);

CREATE TABLE messages (
    id          BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  BIGINT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         BIGINT   NOT NULL,
    role        TEXT     NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content     TEXT     NOT NULL,
    tool_calls  TEXT,
    created_at  BIGINT   NOT NULL,
    token_count BIGINT,
    external_id TEXT,
    compacted   SMALLINT NOT NULL DEFAULT 0
);

CREATE INDEX messages_history ON messages (session_id, compacted, seq);
CREATE UNIQUE INDEX messages_external_id
    ON messages (session_id, external_id) WHERE external_id IS NOT NULL;
