-- A random key made once per database, shared by every process and replica that opens it. The
-- store signs the cursors it hands out with it (HMAC-SHA256), so a cursor cannot be forged or
-- edited and is accepted only by the listing it came from. 32 random bytes (two version-4 UUIDs
-- from the server's strong random source, 244 random bits), hex.
CREATE TABLE store_secret (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO store_secret (name, value)
VALUES ('cursor', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
