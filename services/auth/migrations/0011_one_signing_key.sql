-- At most one signing key signs: replicas racing to generate the first key, or
-- to rotate, collide on this index instead of each signing with its own. Keys
-- that an earlier race left unretired are retired first (all but the newest),
-- published for another week so that tokens they signed still verify.
UPDATE signing_keys
   SET retired_at = (SELECT MAX(created_at) FROM signing_keys),
       expires_at = (SELECT MAX(created_at) FROM signing_keys) + 604800
 WHERE retired_at IS NULL
   AND kid <> (SELECT kid FROM signing_keys WHERE retired_at IS NULL
               ORDER BY created_at DESC, kid LIMIT 1);
CREATE UNIQUE INDEX signing_keys_one_signer ON signing_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;
