-- The change feed: one entry per committed change, written in the transaction that made the
-- change. Positions follow commit order: a transaction takes its positions from
-- change_positions as its last statement, holding that row's lock until it commits (SQLite has
-- one writer at a time anyway). Entries hold identifiers, kinds and counts, never message
-- content or a session key: the key is read from the session row when the feed is read.
CREATE TABLE changes (
    position   INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    agent_id   TEXT,
    session_id INTEGER,
    data       TEXT    NOT NULL
);
CREATE INDEX changes_agent ON changes (agent_id, position);

CREATE TABLE change_positions (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    -- the position of the newest entry
    last           INTEGER NOT NULL,
    -- entries at or below this position were pruned (a cursor before it has expired)
    pruned_through INTEGER NOT NULL
);
INSERT INTO change_positions (id, last, pruned_through) VALUES (1, 0, 0);
