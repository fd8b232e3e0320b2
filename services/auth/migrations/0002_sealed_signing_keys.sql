-- Private signing keys are encrypted at rest: `sealed_private_key` is
-- base64(nonce || AES-256-GCM ciphertext || tag) under the key-encryption key,
-- which is never stored here; the key id is the associated data. Rows from
-- before keep their PEM in `plaintext_pem` only until Auth's next start seals
-- them and clears it. SQLite cannot relax NOT NULL in place, hence the copy.
CREATE TABLE signing_keys_sealed (
    kid                TEXT PRIMARY KEY,
    algorithm          TEXT NOT NULL,
    sealed_private_key TEXT,
    plaintext_pem      TEXT,
    created_at         BIGINT NOT NULL,
    retired_at         BIGINT,
    expires_at         BIGINT,
    CHECK (sealed_private_key IS NOT NULL OR plaintext_pem IS NOT NULL)
);
INSERT INTO signing_keys_sealed (kid, algorithm, plaintext_pem, created_at, retired_at, expires_at)
    SELECT kid, algorithm, private_key_pem, created_at, retired_at, expires_at FROM signing_keys;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_sealed RENAME TO signing_keys;
