-- Lifecycle, retention and privacy (issue 9).
-- When a message left the live history: retention counts from then.
ALTER TABLE messages ADD COLUMN compacted_at INTEGER;
UPDATE messages SET compacted_at = (
    SELECT coalesce(s.last_compacted_at, messages.created_at) FROM sessions s
    WHERE s.id = messages.session_id
) WHERE compacted = 1;
CREATE INDEX messages_compacted_at ON messages (compacted_at) WHERE compacted = 1;
-- Sweeps and purges walk sessions by status and age.
CREATE INDEX sessions_archived_at ON sessions (archived_at) WHERE status = 'archived';
-- A person's sessions across agents and accounts (forget_peer, export_peer).
CREATE INDEX sessions_peer ON sessions (channel, peer_id, peer_kind);
-- Who did what to whose data, and how much: never any content.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    subject  TEXT,
    sessions INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX audit_log_at ON audit_log (at);
