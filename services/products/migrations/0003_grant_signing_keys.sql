-- Products' grant-signing keys, in its database so that every replica signs
-- grants with the same key and publishes every live one: sealed under the
-- key-encryption key (base64(nonce || AES-256-GCM ciphertext || tag), the key id
-- as associated data), the same shape as Auth's `signing_keys`. At most one key
-- signs: replicas racing to generate the first key collide on the index.
CREATE TABLE grant_signing_keys (
    kid                TEXT PRIMARY KEY,
    algorithm          TEXT NOT NULL,
    sealed_private_key TEXT,
    plaintext_pem      TEXT,
    created_at         BIGINT NOT NULL,
    retired_at         BIGINT,
    expires_at         BIGINT,
    CHECK (sealed_private_key IS NOT NULL OR plaintext_pem IS NOT NULL)
);
CREATE UNIQUE INDEX grant_signing_keys_one_signer ON grant_signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;
