-- Short writes stage their index entries here instead of in message_fts (issue 20): FTS5 writes
-- a new segment at every commit that indexed anything, which doubled the cost of a one-message
-- append. The write that fills this table to STAGED_LIMIT entries (store/_search_index.py) moves
-- them all into message_fts in its own transaction; a write of that many messages or more goes
-- into message_fts at once. A search reads both. Same columns as message_fts: id = the message
-- id, body = its tokens.
CREATE TABLE message_fts_staged (
    id   INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
-- A deleted message leaves the staged table in the same transaction too.
CREATE TRIGGER message_fts_staged_forget AFTER DELETE ON messages BEGIN DELETE FROM message_fts_staged WHERE id = old.id; END;
