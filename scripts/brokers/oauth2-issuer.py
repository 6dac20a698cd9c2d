#!/usr/bin/env python3
"""The local OAuth2 issuer (scripts/brokers.sh, service `oauth2`): the identity provider
stand-in for Pulsar's OAuth2 client credentials flow.

    oauth2-issuer.py PORT CLIENTS_FILE SIGNING_KEY_FILE ISSUED_FILE

Serves on 127.0.0.1:PORT, as an OpenID provider does:
  GET  /.well-known/openid-configuration   the discovery document (issuer, token endpoint)
  GET  /.well-known/jwks.json              no keys (discovery fetches them)
  POST /oauth/token                        grant_type=client_credentials with client_id and
                                           client_secret in the form body (or HTTP Basic)
A client of CLIENTS_FILE (JSON: {"client_id": "client_secret", ...}) with its secret gets a JWT
(HS256, signed with SIGNING_KEY_FILE: the key Pulsar's token provider verifies with) whose `sub`
is the client id, for an hour; any other client gets 401 invalid_client. Each token issued is
appended to ISSUED_FILE, so tests can check that none of them shows in what Sluice prints.
Secrets never appear in its log.
"""

import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_LIFETIME_S = 3600


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(key, claims):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def main():
    port, clients_file, key_file, issued_file = sys.argv[1:5]
    # With the trailing slash a URL parser gives a bare host: OpenID clients compare the
    # document's issuer with the issuer URL they were given, as URLs.
    issuer = f"http://127.0.0.1:{port}/"
    with open(clients_file) as f:
        clients = json.load(f)
    with open(key_file, "rb") as f:
        key = f.read()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            # OpenID discovery fetches the signing keys too; an HMAC key is not published.
            if self.path == "/.well-known/jwks.json":
                return self.answer(200, {"keys": []})
            if self.path != "/.well-known/openid-configuration":
                return self.answer(404, {"error": "not_found"})
            self.answer(200, {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}oauth/authorize",
                "token_endpoint": f"{issuer}oauth/token",
                "jwks_uri": f"{issuer}.well-known/jwks.json",
                "response_types_supported": ["token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            })

        def do_POST(self):
            if self.path != "/oauth/token":
                return self.answer(404, {"error": "not_found"})
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            field = lambda name: (form.get(name) or [""])[0]
            client_id, secret = field("client_id"), field("client_secret")
            basic = self.headers.get("Authorization", "")
            if basic.startswith("Basic "):
                decoded = base64.b64decode(basic[6:]).decode()
                client_id, _, secret = decoded.partition(":")
                client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
            if field("grant_type") != "client_credentials":
                return self.answer(400, {"error": "unsupported_grant_type"})
            expected = clients.get(client_id)
            if expected is None or not hmac.compare_digest(expected, secret):
                return self.answer(401, {
                    "error": "invalid_client",
                    "error_description": f"unknown client or wrong secret for client {client_id!r}",
                })
            now = int(time.time())
            claims = {"sub": client_id, "iss": issuer, "iat": now, "exp": now + TOKEN_LIFETIME_S}
            token = jwt(key, claims)
            with open(issued_file, "a") as f:
                f.write(token + "\n")
            self.answer(200, {"access_token": token, "token_type": "Bearer",
                              "expires_in": TOKEN_LIFETIME_S})

        def log_message(self, format, *args):
            # The request line only (no bodies, so no secrets).
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    print(f"OAuth2 issuer {issuer} serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
