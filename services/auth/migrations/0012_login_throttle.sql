-- The login throttle, one budget per username for every Auth replica: failures
-- since the last success, attempts being evaluated (a reservation older than a
-- minute is presumed lost with its replica), and the lock they imposed: the last
-- delay (doubled by each further failure) and until when (Unix milliseconds).
-- Rows untouched past `expires_at` count as fresh and are pruned.
CREATE TABLE login_throttle (
    name_hash    TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    in_flight    BIGINT NOT NULL,
    reserved_at  BIGINT NOT NULL,
    delay_ms     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX login_throttle_expires_at ON login_throttle (expires_at);
