-- Every cut-off (password change, deactivation) bumps `credential_version`: a
-- login starts its refresh family only if the version it read with the password
-- hash is still the user's, so a login that checked an old password before the
-- change committed gets nothing after it.
ALTER TABLE users ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0;
