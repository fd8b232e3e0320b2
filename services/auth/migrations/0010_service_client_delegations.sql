-- What each service client may do in a token exchange: the audiences it may ask
-- for, and which of the user's scopes pass on to each (space-separated). No row
-- for an audience: no exchange for it. Rewritten whenever Auth registers the
-- clients it is handed at start-up.
CREATE TABLE service_client_delegations (
    client_id TEXT NOT NULL REFERENCES service_clients (client_id) ON DELETE CASCADE,
    audience  TEXT NOT NULL,
    scopes    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (client_id, audience)
);
