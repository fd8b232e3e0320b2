"""Verifies a tokenmesh access token with PyJWT, an independent JOSE
implementation, against Auth's HTTP JWKS. Prints the subject; exits non-zero
when PyJWT refuses the token.

usage: verify_with_pyjwt.py JWKS_URL TOKEN ISSUER AUDIENCE
"""

import sys

import jwt

jwks_url, token, issuer, audience = sys.argv[1:5]
signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
claims = jwt.decode(
    token,
    signing_key.key,
    algorithms=[signing_key.algorithm_name],
    audience=audience,
    issuer=issuer,
    options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
)
print(f"{signing_key.algorithm_name} {claims['sub']}")
