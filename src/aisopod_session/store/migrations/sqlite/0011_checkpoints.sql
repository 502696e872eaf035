-- LangGraph checkpoints (issue 23; aisopod_session.integrations.langgraph): a graph's thread is
-- a session, and its checkpoints and pending writes belong to that session's row: deleting,
-- purging or erasing the session deletes them (the foreign keys cascade), and so does archiving
-- it (a reset, a sweep: the trigger below; the transcript stays for operators, a graph cannot
-- resume an archived thread). The checkpoint and metadata are stored as the checkpointer's
-- serializer wrote them (its type name + bytes).
CREATE TABLE checkpoints (
    session_id    INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    checkpoint_ns TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    parent_id     TEXT,
    -- the thread id as the graph gave it (the session key escapes it)
    thread_id     TEXT    NOT NULL,
    -- the run that wrote the checkpoint (its metadata's run_id), for delete_for_runs
    run_id        TEXT,
    type          TEXT    NOT NULL,
    checkpoint    BLOB    NOT NULL,
    metadata_type TEXT    NOT NULL,
    metadata      BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (session_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX checkpoints_run ON checkpoints (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE checkpoint_writes (
    session_id    INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    checkpoint_ns TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    task_id       TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    channel       TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    value         BLOB    NOT NULL,
    task_path     TEXT    NOT NULL,
    PRIMARY KEY (session_id, checkpoint_ns, checkpoint_id, task_id, idx)
);

-- Archiving a session (reset, sweep) drops its graph state; one line: see _migrations._statements.
CREATE TRIGGER checkpoints_archived AFTER UPDATE OF status ON sessions WHEN new.status = 'archived' AND old.status <> 'archived' BEGIN DELETE FROM checkpoint_writes WHERE session_id = new.id; DELETE FROM checkpoints WHERE session_id = new.id; END;
