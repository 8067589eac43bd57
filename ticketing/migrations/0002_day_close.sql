-- The branch day: queue queries are restricted to the current local day,
-- ended days are closed once (their unfinished tickets become not_served),
-- transfers to a desk have their own time limit, and idempotency keys keep
-- what they asked for. Portable SQL (SQLite and PostgreSQL).

-- Every queue query (call next, waiting counts, position, oldest waiting,
-- board calls, a desk's current ticket) reads one branch's tickets by
-- status first: once days are closed, only today's are waiting, called or
-- being served, so history (all finished) does not count.
CREATE INDEX tickets_queue ON tickets (branch, status, day, service);
DROP INDEX IF EXISTS tickets_waiting;

-- When a ticket was transferred to assigned_desk (NULL: not transferred
-- to a desk, or by an older release).
ALTER TABLE tickets ADD COLUMN transferred_at BIGINT;

-- What the key asked for (e.g. `issue A`, `transfer desk 2`); '' for keys
-- remembered before it was kept.
ALTER TABLE idempotency ADD COLUMN request TEXT NOT NULL DEFAULT '';
CREATE INDEX idempotency_created ON idempotency (branch, created_at);

-- One row per closed branch day, written by whichever twin closed it.
CREATE TABLE day_closes (
    branch TEXT NOT NULL,
    day TEXT NOT NULL,
    closed_at BIGINT NOT NULL,
    not_served BIGINT NOT NULL,
    PRIMARY KEY (branch, day)
);
