// Entitlement grants decoded as the contract says: the JWT payload is the JSON
// form of tokenmesh.claims.vN.EntitlementClaims, read with the generated schema
// of the version it names. Tolerant, like every reader: unknown fields ignored.
import { fromJson, toJson, type JsonObject } from "@bufbuild/protobuf";
import { EntitlementClaimsSchema as V1 } from "./gen/tokenmesh/claims/v1/claims_pb.js";
import { EntitlementClaimsSchema as V2 } from "./gen/tokenmesh/claims/v2/claims_pb.js";

export interface DecodedGrant {
  /** The claims version the grant carries (`ver`). */
  version: number;
  /** The claims, as the generated schema of that version reads them. */
  claims: JsonObject;
  /** The products it entitles to. */
  productIds: string[];
}

/** The payload of a compact JWS, parsed as JSON (not verified: Orders verifies). */
function payload(jwt: string): JsonObject {
  const part = jwt.split(".")[1];
  if (part === undefined) throw new Error("not a JWT");
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as JsonObject;
}

/** Decodes a grant of claims version 1 or 2; another version is reported as such. */
export function decodeGrant(jwt: string): DecodedGrant {
  const json = payload(jwt);
  const version = Number(json["ver"] ?? 0);
  const options = { ignoreUnknownFields: true };
  switch (version) {
    case 1: {
      const claims = fromJson(V1, json, options);
      return { version, claims: toJson(V1, claims) as JsonObject, productIds: claims.productIds };
    }
    case 2: {
      const claims = fromJson(V2, json, options);
      return {
        version,
        claims: toJson(V2, claims) as JsonObject,
        productIds: claims.grants.map((g) => g.productId),
      };
    }
    default:
      throw new Error(`claims version ${version}: this console reads versions 1 and 2`);
  }
}
