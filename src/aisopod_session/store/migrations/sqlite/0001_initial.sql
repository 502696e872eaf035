-- Sessions and their messages. Timestamps are integer microseconds since the Unix epoch (UTC):
-- exact, sortable, and the same on every backend. JSON is stored as text, exactly as written.
CREATE TABLE sessions (
    -- AUTOINCREMENT: an id is never handed out again after its session is deleted, so an id
    -- kept by an operator (or a console link) can never point at someone else's session.
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id                TEXT    NOT NULL,
    channel                 TEXT    NOT NULL,
    account_id              TEXT    NOT NULL,
    peer_kind               TEXT    NOT NULL,
    peer_id                 TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('active', 'idle', 'compacted', 'archived')),
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    message_count           INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    token_usage             INTEGER NOT NULL DEFAULT 0 CHECK (token_usage >= 0),
    metadata                TEXT    NOT NULL DEFAULT '{}',
    compaction_count        INTEGER NOT NULL DEFAULT 0,
    last_compacted_at       INTEGER,
    last_compaction_summary TEXT,
    -- history position of the newest message; appends take the next ones
    last_seq                INTEGER NOT NULL DEFAULT 0,
    archived_at             INTEGER
);

-- One live (not archived) session per key, enforced by the database.
CREATE UNIQUE INDEX sessions_live_key
    ON sessions (agent_id, channel, account_id, peer_kind, peer_id) WHERE status <> 'archived';
-- Every generation of a key (delete, archived lookups).
CREATE INDEX sessions_key ON sessions (agent_id, channel, account_id, peer_kind, peer_id);
-- Listing: most recently updated first, per agent and across agents, with or without status.
CREATE INDEX sessions_agent_updated ON sessions (agent_id, updated_at, id);
CREATE INDEX sessions_agent_status_updated ON sessions (agent_id, status, updated_at, id);
CREATE INDEX sessions_updated ON sessions (updated_at, id);
CREATE INDEX sessions_status_updated ON sessions (status, updated_at, id);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- position in the history; a compaction's replacement shares the position of what it replaces
    seq         INTEGER NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content     TEXT    NOT NULL,
    tool_calls  TEXT,
    created_at  INTEGER NOT NULL,
    token_count INTEGER,
    external_id TEXT,
    compacted   INTEGER NOT NULL DEFAULT 0
);

-- History reads: the live history in order (compacted = 0), and the whole transcript.
CREATE INDEX messages_history ON messages (session_id, compacted, seq);
-- A channel's message id is stored once per session (webhook redelivery).
CREATE UNIQUE INDEX messages_external_id
    ON messages (session_id, external_id) WHERE external_id IS NOT NULL;
