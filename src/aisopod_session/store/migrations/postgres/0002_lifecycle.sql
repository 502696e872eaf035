-- Lifecycle, retention and privacy (issue 9); the same shape as migrations/sqlite/0002.
ALTER TABLE messages ADD COLUMN compacted_at BIGINT;
UPDATE messages SET compacted_at = (
    SELECT coalesce(s.last_compacted_at, messages.created_at) FROM sessions s
    WHERE s.id = messages.session_id
) WHERE compacted = 1;
CREATE INDEX messages_compacted_at ON messages (compacted_at) WHERE compacted = 1;
CREATE INDEX sessions_archived_at ON sessions (archived_at) WHERE status = 'archived';
CREATE INDEX sessions_peer ON sessions (channel, peer_id, peer_kind);
CREATE TABLE audit_log (
    id       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT  NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    subject  TEXT,
    sessions BIGINT  NOT NULL DEFAULT 0,
    messages BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX audit_log_at ON audit_log (at);
