-- A ranked (best-first) search scores up to MAX_RANKED_MATCHES candidates from how often each
-- word occurs in them and how many tokens they hold (issue 20). Reading every candidate's token
-- text out of FTS5 for that was most of a search's time; instead FTS5's own index counts the
-- occurrences (message_fts_instances, one row per occurrence of a term: read for the query's
-- terms only) and the message row, which the search reads anyway for its scope, keeps the
-- token count. search_tokens is written with the message's index entry; NULL: not indexed (or
-- indexed before this migration and not counted here), and a search then reads its text.
ALTER TABLE messages ADD COLUMN search_tokens INTEGER;
UPDATE messages SET search_tokens = (SELECT length(f.body) - length(replace(f.body, ' ', '')) + 1 FROM message_fts f WHERE f.rowid = messages.id) WHERE id IN (SELECT rowid FROM message_fts);
UPDATE messages SET search_tokens = (SELECT length(s.body) - length(replace(s.body, ' ', '')) + 1 FROM message_fts_staged s WHERE s.id = messages.id) WHERE id IN (SELECT id FROM message_fts_staged);
CREATE VIRTUAL TABLE message_fts_instances USING fts5vocab(message_fts, instance);
