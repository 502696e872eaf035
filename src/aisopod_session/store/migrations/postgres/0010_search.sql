-- Full-text search (issue 20): each message's searchable tokens as the store computes them
-- (store/_search_text.py: folded, cut, one token per Chinese/Japanese/Korean character), given
-- to PostgreSQL as they are (array_to_tsvector: no parser, no dictionary), so the index and the
-- store's matcher agree. Deleting a message deletes its row here (the foreign key cascades).
CREATE TABLE message_search (
    message_id BIGINT   NOT NULL PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    terms      tsvector NOT NULL
);
CREATE INDEX message_search_terms ON message_search USING gin (terms);
-- enabled: whether the store indexes (SessionStore.open(search=False) turns it off).
-- pending_below: messages with a smaller id were stored before the index existed (or before it
-- was turned back on) and are indexed by build_search_index, newest first; 0 once none is left.
CREATE TABLE search_state (
    id            INTEGER  PRIMARY KEY CHECK (id = 1),
    enabled       SMALLINT NOT NULL,
    pending_below BIGINT   NOT NULL
);
INSERT INTO search_state (id, enabled, pending_below) SELECT 1, 1, coalesce(max(id) + 1, 0) FROM messages;
