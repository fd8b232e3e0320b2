// The signed-in user's tokens, in this module's memory only: never in
// localStorage, sessionStorage or a cookie, so a reload signs out and no other
// script or request can pick them up. The access token is refreshed before it
// expires (the refresh token rotates on every use).
import type { Client } from "@connectrpc/connect";
import type { AuthService, TokenResponse } from "./gen/tokenmesh/auth/v1/auth_pb.js";

/** Refresh when this share of the access token's lifetime has passed. */
const REFRESH_AT = 0.8;

export interface Session {
  username: string;
  accessToken: string;
  refreshToken: string;
  scopes: string[];
  /** When the access token expires, ms since the epoch. */
  expiresAt: number;
}

let current: Session | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;

/** The session, if signed in. */
export function session(): Session | undefined {
  return current;
}

/** The bearer token to send, if signed in. */
export function accessToken(): string | undefined {
  return current?.accessToken;
}

/**
 * Signs in: keeps the tokens in memory and refreshes them before expiry.
 * `changed` is told of every refresh, and of the sign-out a failed refresh means.
 */
export function start(
  auth: Client<typeof AuthService>,
  username: string,
  tokens: TokenResponse,
  changed: (session: Session | undefined, error?: unknown) => void,
): Session {
  const adopt = (t: TokenResponse): Session => {
    current = {
      username,
      accessToken: t.accessToken,
      refreshToken: t.refreshToken,
      scopes: t.scope.split(" ").filter((s) => s.length > 0),
      expiresAt: Date.now() + Number(t.expiresIn) * 1000,
    };
    clearTimeout(timer);
    const lifetimeMs = Number(t.expiresIn) * 1000;
    timer = setTimeout(refresh, Math.max(1000, lifetimeMs * REFRESH_AT));
    return current;
  };
  const refresh = async () => {
    const refreshToken = current?.refreshToken;
    if (refreshToken === undefined) return;
    try {
      changed(adopt(await auth.refresh({ refreshToken })));
    } catch (error) {
      clear();
      changed(undefined, error);
    }
  };
  return adopt(tokens);
}

/** Forgets the tokens; returns the refresh token to revoke at Auth, if any. */
export function clear(): string | undefined {
  clearTimeout(timer);
  timer = undefined;
  const refreshToken = current?.refreshToken;
  current = undefined;
  return refreshToken;
}
