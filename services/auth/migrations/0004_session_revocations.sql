-- A session row of the revocation feed revokes every access token whose `sid`
-- is `session_id` (the refresh family of a login that ended: logout, reuse of
-- a spent refresh token); `forget_after` is when its last token expires.
ALTER TABLE revocations ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
