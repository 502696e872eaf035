-- Each message's searchable tokens as text, in order and separated by spaces, as FTS5 keeps them
-- in message_fts.body on SQLite: the store's matcher confirms and scores a candidate from them
-- instead of decoding, folding and cutting the message's content again (issue 20). Written in
-- the same statement as the tsvector and deleted with its row (the foreign key cascades).
-- NULL for a message indexed before this migration: the matcher computes the tokens then.
ALTER TABLE message_search ADD COLUMN body TEXT;
-- Those messages are marked pending (as when search is turned back on), so build_search_index
-- fills their token text in batches while the store keeps working; meanwhile their tsvector
-- still finds them. Nothing to do when search is off (the index is empty).
UPDATE search_state SET pending_below = greatest(pending_below, (SELECT coalesce(max(message_id) + 1, 0) FROM message_search)) WHERE enabled = 1;
