-- Twinport ticketing schema. Portable SQL: the same file runs on SQLite
-- and PostgreSQL (times are Unix milliseconds, days are branch-local
-- YYYY-MM-DD, flags are integers).

-- One row per branch, bumped by every change: the row lock orders the
-- branch's writes, and the version tells every instance that a board,
-- a desk or a tracking page needs a fresh view.
CREATE TABLE branch_state (
    branch TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

-- The last number given per branch, service and local day.
CREATE TABLE counters (
    branch TEXT NOT NULL,
    service TEXT NOT NULL,
    day TEXT NOT NULL,
    last_number BIGINT NOT NULL,
    PRIMARY KEY (branch, service, day)
);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    branch TEXT NOT NULL,
    -- The service the number was given in, and the one it waits for now
    -- (they differ after a transfer).
    number_service TEXT NOT NULL,
    service TEXT NOT NULL,
    day TEXT NOT NULL,
    number BIGINT NOT NULL,
    display TEXT NOT NULL,
    priority_group TEXT,
    booking_code TEXT,
    booking_slot BIGINT,
    issued_at BIGINT NOT NULL,
    -- Since when it waits; kept across a transfer.
    queued_since BIGINT NOT NULL,
    -- waiting, called, serving, done, no_show
    status TEXT NOT NULL,
    desk TEXT,
    assigned_desk TEXT,
    called_at BIGINT,
    recalls BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT,
    finished_at BIGINT,
    escalated BIGINT NOT NULL DEFAULT 0,
    UNIQUE (branch, number_service, day, number)
);
CREATE INDEX tickets_waiting ON tickets (branch, status, service);
CREATE INDEX tickets_called ON tickets (branch, called_at);

-- Idempotency-Key → the ticket it issued.
CREATE TABLE idempotency (
    branch TEXT NOT NULL,
    key TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (branch, key)
);

-- A booking keeps only what the visit needs: no name, no contact.
CREATE TABLE bookings (
    branch TEXT NOT NULL,
    code TEXT NOT NULL,
    service TEXT NOT NULL,
    slot BIGINT NOT NULL,
    day TEXT NOT NULL,
    -- booked, cancelled, checked_in
    status TEXT NOT NULL,
    ticket_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (branch, code)
);

CREATE TABLE desks (
    branch TEXT NOT NULL,
    desk TEXT NOT NULL,
    open BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (branch, desk)
);
