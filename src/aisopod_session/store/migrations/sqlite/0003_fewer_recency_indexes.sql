-- Every append moves its session's updated_at, and so its entry in every index that holds
-- updated_at: four of them made the session row the most expensive part of an append. Two are
-- enough. A list of one status (or of several: one index range per status, merged by
-- updated_at, see store/_ops.list_sessions) reads sessions_agent_status_updated for one agent
-- and sessions_status_updated across agents.
DROP INDEX sessions_agent_updated;
DROP INDEX sessions_updated;
