"""Mint a JWT with PyJWT, as an identity provider would: mint_pyjwt.py ALG KEYFILE KID CLAIMS_JSON.

KEYFILE is a PKCS#8 PEM private key ("-" for alg none). KID "-" leaves the header without kid.
Prints the token on stdout.
"""
import json
import sys

import jwt

alg, keyfile, kid, claims = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
key = None if keyfile == "-" else open(keyfile, "rb").read()
headers = {} if kid == "-" else {"kid": kid}
print(jwt.encode(claims, key, algorithm=alg, headers=headers))
