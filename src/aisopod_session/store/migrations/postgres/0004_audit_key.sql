-- The audit log names a person by a keyed hash (HMAC-SHA-256) of their channel and id. An
-- unkeyed hash of a guessable id (a phone number) can be reversed by trying them all, so it
-- would outlive the person's erasure. The key is random, made here once per database (each
-- gen_random_uuid holds 122 random bits from the server's strong random source), and never
-- leaves it. Rows written before this migration keep their unkeyed "sha256:" subjects.
CREATE TABLE audit_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key TEXT    NOT NULL
);
INSERT INTO audit_key (id, key)
    VALUES (1, replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
