-- Console sign-ins signed out before they expired. A console cookie is signed, not stored, so
-- signing out records it here (by a digest of its random nonce, never the cookie) and every
-- replica refuses a cookie found here. A row is needed only until the cookie would have expired
-- anyway (expires_at, microseconds since the epoch); rows past it are pruned.
CREATE TABLE console_revocations (
    nonce_digest TEXT    NOT NULL PRIMARY KEY,
    expires_at   INTEGER NOT NULL
);

CREATE INDEX console_revocations_expiry ON console_revocations (expires_at);
