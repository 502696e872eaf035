-- Full-text search (issue 20). The index holds each message's searchable tokens as the store
-- computes them (store/_search_text.py: folded, cut, one token per Chinese/Japanese/Korean
-- character), separated by spaces: FTS5's ascii tokenizer splits them exactly there (every
-- non-ASCII character is a token character to it), so the index and the store's matcher agree.
-- rowid = messages.id. columnsize = 0: the store ranks by itself, FTS5's bm25 is never used.
CREATE VIRTUAL TABLE message_fts USING fts5(body, tokenize = 'ascii', columnsize = 0);
-- Every deleted message leaves the index in the same transaction, whichever statement deleted
-- it (a session's delete cascades to its messages, and fires this for each).
CREATE TRIGGER message_fts_forget AFTER DELETE ON messages BEGIN DELETE FROM message_fts WHERE rowid = old.id; END;
-- enabled: whether the store indexes (SessionStore.open(search=False) turns it off).
-- pending_below: messages with a smaller id were stored before the index existed (or before it
-- was turned back on) and are indexed by build_search_index, newest first; 0 once none is left.
CREATE TABLE search_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    enabled       INTEGER NOT NULL,
    pending_below INTEGER NOT NULL
);
INSERT INTO search_state (id, enabled, pending_below) SELECT 1, 1, coalesce(max(id) + 1, 0) FROM messages;
