#!/usr/bin/env python3
"""Fakes of the REST APIs credrot's github, gcp-secret-manager and azure-key-vault stores
call, for the end-to-end tests (python3 standard library only).

    fake_cloud.py SERVICE --port PORT [--token T] [--read-token T] [--scope S]...

SERVICE is `github`, `gcp` or `azure`. Each fake follows the service's published REST
reference for the calls credrot makes (paths, verbs, query parameters, headers, body schema,
status codes and error bodies), keeps its state in memory for the life of the process, and
refuses what the real service refuses. The GitHub fake opens every sealed box with the
scope's private key (X25519 + XSalsa20-Poly1305, libsodium's crypto_box_seal, written here
from RFC 7748 and the Salsa20 specification) and checks the key_id.

Control endpoints (no auth), for the tests:
  GET  /__fake/state      the state as JSON (GitHub secrets opened: their plaintext)
  POST /__fake/seed       merge a JSON object into the state (see each class's seed())
  POST /__fake/fail       {"method": "PUT", "path": "regex", "skip": 0, "count": 1,
                           "status": 403 | "hang" | "garble" | "reset"}: the next `count`
                          matching calls after `skip` fail that way; a status call answers
                          the service's real error body without changing anything; "garble"
                          does the work and answers 2xx with a body that is not JSON;
                          "hang" does nothing and never answers; "reset" closes the
                          connection after doing the work (an answer lost on the way back)
  GET  /__fake/log        every API call as {"method", "path", "status"}
The fake prints "listening on PORT" once it accepts connections.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets as random_bytes
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

# ---------------------------------------------------------------------------------------
# X25519 (RFC 7748), Salsa20/HSalsa20 (Bernstein's specification), Poly1305 (RFC 8439)
# ---------------------------------------------------------------------------------------

P25519 = 2**255 - 19
A24 = 121665


def x25519(k: bytes, u: bytes) -> bytes:
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    scalar = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (scalar >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P25519, (x2 - z2) % P25519
        aa, bb = a * a % P25519, b * b % P25519
        e = (aa - bb) % P25519
        c, d = (x3 + z3) % P25519, (x3 - z3) % P25519
        da, cb = d * a % P25519, c * b % P25519
        x3 = (da + cb) ** 2 % P25519
        z3 = x1 * (da - cb) ** 2 % P25519
        x2 = aa * bb % P25519
        z2 = e * (aa + A24 * e) % P25519
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P25519 - 2, P25519) % P25519).to_bytes(32, "little")


def x25519_public(private: bytes) -> bytes:
    return x25519(private, (9).to_bytes(32, "little"))


def _rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def _salsa_rounds(x):
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11)):
            x[b] ^= _rotl((x[a] + x[d]) & 0xFFFFFFFF, 7)
            x[c] ^= _rotl((x[b] + x[a]) & 0xFFFFFFFF, 9)
            x[d] ^= _rotl((x[c] + x[b]) & 0xFFFFFFFF, 13)
            x[a] ^= _rotl((x[d] + x[c]) & 0xFFFFFFFF, 18)
        for a, b, c, d in ((0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14)):
            x[b] ^= _rotl((x[a] + x[d]) & 0xFFFFFFFF, 7)
            x[c] ^= _rotl((x[b] + x[a]) & 0xFFFFFFFF, 9)
            x[d] ^= _rotl((x[c] + x[b]) & 0xFFFFFFFF, 13)
            x[a] ^= _rotl((x[d] + x[c]) & 0xFFFFFFFF, 18)


SIGMA = [int.from_bytes(b"expand 32-byte k"[i:i + 4], "little") for i in range(0, 16, 4)]


def _state(key: bytes, n16: bytes):
    k = [int.from_bytes(key[i:i + 4], "little") for i in range(0, 32, 4)]
    n = [int.from_bytes(n16[i:i + 4], "little") for i in range(0, 16, 4)]
    return [SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], n[0], n[1], n[2], n[3],
            SIGMA[2], k[4], k[5], k[6], k[7], SIGMA[3]]


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    x = _state(key, nonce16)
    _salsa_rounds(x)
    return b"".join(x[i].to_bytes(4, "little") for i in (0, 5, 10, 15, 6, 7, 8, 9))


def salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        init = _state(key, nonce8 + counter.to_bytes(8, "little"))
        x = list(init)
        _salsa_rounds(x)
        out += b"".join(((x[i] + init[i]) & 0xFFFFFFFF).to_bytes(4, "little") for i in range(16))
        counter += 1
    return bytes(out[:length])


def poly1305(key: bytes, msg: bytes) -> bytes:
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        block = msg[i:i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def seal_open(sealed: bytes, public: bytes, private: bytes):
    """crypto_box_seal_open: ephemeral pk (32) || MAC (16) || ciphertext. None if forged."""
    if len(sealed) < 48:
        return None
    epk, mac, cipher = sealed[:32], sealed[32:48], sealed[48:]
    nonce = hashlib.blake2b(epk + public, digest_size=24).digest()
    shared = hsalsa20(x25519(private, epk), b"\x00" * 16)
    subkey = hsalsa20(shared, nonce[:16])
    stream = salsa20_stream(subkey, nonce[16:], 32 + len(cipher))
    if poly1305(stream[:32], cipher) != mac:
        return None
    return bytes(c ^ k for c, k in zip(cipher, stream[32:]))


# ---------------------------------------------------------------------------------------
# Shared server machinery
# ---------------------------------------------------------------------------------------

def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


class Fake:
    """State, failure rules and the call log of one fake service."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rules = []
        self.log = []

    # Each service fills these in.
    def handle(self, method, path, query, headers, body):
        raise NotImplementedError

    def error_body(self, status, message):
        raise NotImplementedError

    def dump(self):
        raise NotImplementedError

    def seed(self, data):
        raise NotImplementedError

    def fault_for(self, method, path):
        with self.lock:
            for rule in self.rules:
                if rule["method"] != method or not re.search(rule["path"], path):
                    continue
                if rule["skip"] > 0:
                    rule["skip"] -= 1
                    continue
                if rule["count"] <= 0:
                    continue
                rule["count"] -= 1
                return rule["status"]
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: Fake = None

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if status == 204:
            data = b""
        self.send_response(status)
        if data or status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self):
        fake = self.fake
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/__fake/"):
            return self._control(url.path, raw)
        method = self.command
        fault = fake.fault_for(method, url.path)
        if fault == "hang":
            with fake.lock:
                fake.log.append({"method": method, "path": url.path, "status": "hang"})
            time.sleep(3600)
            return
        if isinstance(fault, int):
            with fake.lock:
                fake.log.append({"method": method, "path": url.path, "status": fault})
            return self._send(fault, fake.error_body(fault, "injected failure"))
        try:
            with fake.lock:
                status, body = fake.handle(method, url.path, parse_qs(url.query, keep_blank_values=True),
                                           self.headers, raw)
        except ApiError as e:
            status, body = e.status, e.body
        with fake.lock:
            fake.log.append({"method": method, "path": url.path, "status": status})
        if fault == "reset" and 200 <= status < 300:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            self.connection.close()
            return
        if fault == "garble" and 200 <= status < 300:
            return self._send(200, b"<html>upstream proxy error", "text/html")
        if isinstance(body, tuple):
            return self._send(status, body[0], body[1])
        return self._send(status, body)

    def _control(self, path, raw):
        fake = self.fake
        if path == "/__fake/state" and self.command == "GET":
            with fake.lock:
                return self._send(200, fake.dump())
        if path == "/__fake/log" and self.command == "GET":
            with fake.lock:
                return self._send(200, list(fake.log))
        if path == "/__fake/seed" and self.command == "POST":
            with fake.lock:
                fake.seed(json.loads(raw))
            return self._send(200, {})
        if path == "/__fake/fail" and self.command == "POST":
            rule = json.loads(raw)
            rule.setdefault("skip", 0)
            rule.setdefault("count", 1)
            with fake.lock:
                fake.rules.append(rule)
            return self._send(200, {})
        return self._send(404, {"message": "unknown control endpoint"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _route


def json_body(raw, error):
    try:
        value = json.loads(raw or b"null")
    except ValueError:
        raise error("Problems parsing JSON")
    if not isinstance(value, dict):
        raise error("the body is not a JSON object")
    return value


# ---------------------------------------------------------------------------------------
# GitHub: Actions secrets and variables (docs.github.com/en/rest/actions/secrets, .../variables)
# ---------------------------------------------------------------------------------------

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class GitHub(Fake):
    """Scopes are `repo:OWNER/REPO`, `env:OWNER/REPO/ENV` and `org:ORG` (--scope)."""

    def __init__(self, args):
        super().__init__(args)
        self.scopes = {}
        for scope in args.scope or []:
            self._add_scope(scope)

    def _add_scope(self, scope):
        private = random_bytes.token_bytes(32)
        self.scopes[scope] = {
            "private": private,
            "public": x25519_public(private),
            "key_id": str(int.from_bytes(random_bytes.token_bytes(7), "big")),
            "secrets": {},
            "variables": {},
        }

    def error_body(self, status, message):
        messages = {401: "Bad credentials", 403: "Resource not accessible by personal access token",
                    404: "Not Found", 409: "Conflict", 422: "Validation Failed",
                    500: "Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return {"message": messages.get(status, message),
                "documentation_url": "https://docs.github.com/rest",
                "status": str(status)}

    def _error(self, status, message=None):
        body = self.error_body(status, message or "")
        if message:
            body["message"] = message
        return ApiError(status, body)

    def dump(self):
        out = {}
        for name, scope in self.scopes.items():
            out[name] = {
                "key_id": scope["key_id"],
                "secrets": {k: {"value": v["value"], "visibility": v.get("visibility"),
                                "updated_at": v["updated_at"], "writes": v["writes"]}
                            for k, v in scope["secrets"].items()},
                "variables": {k: v["value"] for k, v in scope["variables"].items()},
            }
        return out

    def seed(self, data):
        """{"rotate_public_key": SCOPE} gives the scope a new key pair (and key id);
        {"variables": {SCOPE: {NAME: VALUE}}} sets variables; {"secrets": {SCOPE: {NAME:
        VALUE}}} sets secrets as if written."""
        if "rotate_public_key" in data:
            old = self.scopes[data["rotate_public_key"]]
            self._add_scope(data["rotate_public_key"])
            new = self.scopes[data["rotate_public_key"]]
            new["secrets"], new["variables"] = old["secrets"], old["variables"]
        for scope, variables in data.get("variables", {}).items():
            for name, value in variables.items():
                self.scopes[scope]["variables"][name.upper()] = {
                    "value": value, "created_at": now_iso(), "updated_at": now_iso()}
        for scope, secrets in data.get("secrets", {}).items():
            for name, value in secrets.items():
                self.scopes[scope]["secrets"][name.upper()] = {
                    "value": value, "created_at": now_iso(), "updated_at": now_iso(), "writes": 0}

    def _auth(self, headers, write):
        auth = headers.get("Authorization")
        if not auth:
            raise self._error(401, "Requires authentication")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token:
            raise self._error(401)
        if token == self.args.token:
            return
        if token == self.args.read_token:
            if write:
                raise self._error(403)
            return
        raise self._error(401)

    def _scope(self, path):
        """(scope name, rest of the path) of an Actions secrets/variables path."""
        patterns = [
            (r"^/repos/([^/]+)/([^/]+)/actions/(.*)$", lambda m: f"repo:{unquote(m[1])}/{unquote(m[2])}"),
            (r"^/repos/([^/]+)/([^/]+)/environments/([^/]+)/(.*)$",
             lambda m: f"env:{unquote(m[1])}/{unquote(m[2])}/{unquote(m[3])}"),
            (r"^/orgs/([^/]+)/actions/(.*)$", lambda m: f"org:{unquote(m[1])}"),
        ]
        for pattern, name in patterns:
            m = re.match(pattern, path)
            if m:
                return name(m), m.groups()[-1]
        raise self._error(404)

    def handle(self, method, path, query, headers, raw):
        version = headers.get("X-GitHub-Api-Version")
        if version is not None and version != "2022-11-28":
            raise self._error(400, f"API version '{version}' is not supported.")
        write = method in ("PUT", "POST", "PATCH", "DELETE")
        self._auth(headers, write)
        scope_name, rest = self._scope(path)
        scope = self.scopes.get(scope_name)
        if scope is None:
            raise self._error(404)
        is_org = scope_name.startswith("org:")
        error422 = lambda message: self._error(422, message)

        if rest == "secrets/public-key" and method == "GET":
            return 200, {"key_id": scope["key_id"],
                         "key": base64.b64encode(scope["public"]).decode()}
        m = re.match(r"^secrets/([^/]+)$", rest)
        if m:
            name = unquote(m[1]).upper()
            secret = scope["secrets"].get(name)
            if method == "GET":
                if secret is None:
                    raise self._error(404)
                out = {"name": name, "created_at": secret["created_at"], "updated_at": secret["updated_at"]}
                if is_org:
                    out["visibility"] = secret.get("visibility", "private")
                return 200, out
            if method == "DELETE":
                if secret is None:
                    raise self._error(404)
                del scope["secrets"][name]
                return 204, b""
            if method == "PUT":
                if not NAME_RE.match(name) or name.startswith("GITHUB_"):
                    raise error422(f"Secret names can only contain alphanumeric characters or underscores and may not start with GITHUB_: {name}")
                body = json_body(raw, error422)
                allowed = {"encrypted_value", "key_id"} | ({"visibility", "selected_repository_ids"} if is_org else set())
                unknown = set(body) - allowed
                if unknown:
                    raise error422(f"Invalid request.\n\n{sorted(unknown)} are not permitted keys.")
                for field in ("encrypted_value", "key_id"):
                    if not isinstance(body.get(field), str):
                        raise error422(f"Invalid request.\n\n\"{field}\" wasn't supplied.")
                if is_org:
                    visibility = body.get("visibility")
                    if visibility not in ("all", "private", "selected"):
                        raise error422("Invalid request.\n\n\"visibility\" wasn't supplied.")
                    if visibility == "selected" and not all(isinstance(i, int) for i in body.get("selected_repository_ids", [None])):
                        raise error422("Invalid request.\n\nselected_repository_ids must be integers.")
                if body["key_id"] != scope["key_id"]:
                    raise error422("Bad request - key_id is not valid")
                try:
                    sealed = base64.b64decode(body["encrypted_value"], validate=True)
                except ValueError:
                    raise error422("Bad request - encrypted_value is not valid base64")
                value = seal_open(sealed, scope["public"], scope["private"])
                if value is None:
                    raise error422("Bad request - encrypted_value could not be decrypted with the key for key_id")
                created = secret is None
                scope["secrets"][name] = {
                    "value": value.decode(), "visibility": body.get("visibility"),
                    "created_at": secret["created_at"] if secret else now_iso(),
                    "updated_at": now_iso(),
                    "writes": (secret["writes"] if secret else 0) + 1,
                }
                return (201, {}) if created else (204, b"")
            raise self._error(404)
        if rest == "variables" and method == "POST":
            body = json_body(raw, error422)
            allowed = {"name", "value"} | ({"visibility", "selected_repository_ids"} if is_org else set())
            if set(body) - allowed or not isinstance(body.get("name"), str) or not isinstance(body.get("value"), str):
                raise error422("Invalid request.\n\nname and value are required strings.")
            if is_org and body.get("visibility") not in ("all", "private", "selected"):
                raise error422("Invalid request.\n\n\"visibility\" wasn't supplied.")
            name = body["name"].upper()
            if not NAME_RE.match(name) or name.startswith("GITHUB_"):
                raise error422(f"Variable names can only contain alphanumeric characters or underscores: {name}")
            if name in scope["variables"]:
                raise self._error(409, "Already exists - Variable already exists")
            scope["variables"][name] = {"value": body["value"], "created_at": now_iso(), "updated_at": now_iso()}
            return 201, {}
        m = re.match(r"^variables/([^/]+)$", rest)
        if m:
            name = unquote(m[1]).upper()
            variable = scope["variables"].get(name)
            if variable is None:
                raise self._error(404)
            if method == "GET":
                return 200, {"name": name, "value": variable["value"],
                             "created_at": variable["created_at"], "updated_at": variable["updated_at"]}
            if method == "PATCH":
                body = json_body(raw, error422)
                allowed = {"name", "value"} | ({"visibility", "selected_repository_ids"} if is_org else set())
                if set(body) - allowed or ("value" in body and not isinstance(body["value"], str)):
                    raise error422("Invalid request.\n\nvalue must be a string.")
                if "name" in body and body["name"].upper() != name:
                    scope["variables"][body["name"].upper()] = scope["variables"].pop(name)
                    variable = scope["variables"][body["name"].upper()]
                if "value" in body:
                    variable["value"] = body["value"]
                variable["updated_at"] = now_iso()
                return 204, b""
            if method == "DELETE":
                del scope["variables"][name]
                return 204, b""
        raise self._error(404)


# ---------------------------------------------------------------------------------------
# OAuth token endpoints and JWT (RS256) checks, shared by the GCP and Azure fakes
# ---------------------------------------------------------------------------------------

def der_read(data, pos):
    """(tag, content, next position) of the DER element at `pos`."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, data[pos:pos + length], pos + length


def rsa_public_from_pkcs8(pem):
    """(n, e) of a PEM PKCS#8 RSA private key."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    der = base64.b64decode(body)
    _, info, _ = der_read(der, 0)                 # PrivateKeyInfo
    _, _, pos = der_read(info, 0)                 # version
    _, _, pos = der_read(info, pos)               # algorithm
    _, octets, _ = der_read(info, pos)            # privateKey
    _, rsa, _ = der_read(octets, 0)               # RSAPrivateKey
    _, _, pos = der_read(rsa, 0)                  # version
    _, n, pos = der_read(rsa, pos)
    _, e, pos = der_read(rsa, pos)
    return int.from_bytes(n, "big"), int.from_bytes(e, "big")


SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rs256_verify(jwt, public):
    """The claims of `jwt` if its RS256 signature is good under `public` (n, e), else None."""
    try:
        head, claims, signature = jwt.split(".")
        header = json.loads(b64url(head))
        if header.get("alg") != "RS256":
            return None
        n, e = public
        k = (n.bit_length() + 7) // 8
        em = pow(int.from_bytes(b64url(signature), "big"), e, n).to_bytes(k, "big")
        digest = hashlib.sha256(f"{head}.{claims}".encode()).digest()
        expected = b"\x00\x01" + b"\xff" * (k - 3 - len(SHA256_PREFIX) - 32) + b"\x00" + SHA256_PREFIX + digest
        if em != expected:
            return None
        return json.loads(b64url(claims))
    except (ValueError, KeyError):
        return None


def form_body(headers, raw):
    if (headers.get("Content-Type") or "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    return {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}


# ---------------------------------------------------------------------------------------
# GCP Secret Manager v1 (cloud.google.com/secret-manager/docs/reference/rest) and Google's
# OAuth 2.0 token endpoint (refresh_token and jwt-bearer grants)
# ---------------------------------------------------------------------------------------

GCP_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
              500: "INTERNAL", 503: "UNAVAILABLE"}
SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


class Gcp(Fake):
    """--config JSON: {"project": ID, "project_number": N, "service_account": PATH to a
    service-account key file (its token_uri is the audience), "authorized_user": {client_id,
    client_secret, refresh_token}}. The token endpoint is POST /token."""

    def __init__(self, args):
        super().__init__(args)
        config = json.load(open(args.config))
        self.project = config["project"]
        self.number = str(config.get("project_number", "123456789012"))
        self.user = config.get("authorized_user")
        self.account = None
        if config.get("service_account"):
            sa = json.load(open(config["service_account"]))
            self.account = {"email": sa["client_email"], "audience": sa["token_uri"],
                            "public": rsa_public_from_pkcs8(sa["private_key"])}
        self.tokens = set()
        self.secrets = {}
        self.grants = []

    def error_body(self, status, message):
        return {"error": {"code": status, "message": message, "status": GCP_STATUS.get(status, "UNKNOWN")}}

    def _error(self, status, message, code=None):
        body = self.error_body(status, message)
        if code:
            body["error"]["status"] = code
        return ApiError(status, body)

    def dump(self):
        out = {"grants": list(self.grants), "secrets": {}}
        for sid, secret in self.secrets.items():
            out["secrets"][sid] = {
                "labels": secret["labels"], "replication": secret["replication"],
                "versions": {str(n): {"state": v["state"],
                                      "data": v["data"].decode() if v["data"] is not None else None}
                             for n, v in secret["versions"].items()},
            }
        return out

    def seed(self, data):
        """{"expire_tokens": true} forgets every issued token."""
        if data.get("expire_tokens"):
            self.tokens.clear()

    def _token_endpoint(self, headers, raw):
        form = form_body(headers, raw)
        oauth_error = lambda error, description: ApiError(400, {"error": error, "error_description": description})
        if form is None:
            raise oauth_error("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        grant = form.get("grant_type")
        if grant == "refresh_token":
            want = self.user or {}
            if not want or any(form.get(k) != want[k] for k in ("client_id", "client_secret", "refresh_token")):
                raise oauth_error("invalid_grant", "Bad Request")
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            if not self.account:
                raise oauth_error("invalid_grant", "Invalid JWT Signature.")
            claims = rs256_verify(form.get("assertion", ""), self.account["public"])
            if claims is None:
                raise oauth_error("invalid_grant", "Invalid JWT Signature.")
            now = time.time()
            if claims.get("iss") != self.account["email"] or claims.get("aud") != self.account["audience"]:
                raise oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
            if not (claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0)) or claims["exp"] - claims["iat"] > 3600:
                raise oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
            if "https://www.googleapis.com/auth/cloud-platform" not in claims.get("scope", "").split():
                raise oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        else:
            raise oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant}")
        token = "ya29.fake-" + random_bytes.token_hex(16)
        self.tokens.add(token)
        self.grants.append(grant)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _version_body(self, sid, n, version):
        return {"name": f"projects/{self.number}/secrets/{sid}/versions/{n}",
                "createTime": version["created"], "state": version["state"],
                "replicationStatus": {"automatic": {}}, "etag": f"\"{version['etag']}\"",
                "clientSpecifiedPayloadChecksum": True}

    def handle(self, method, path, query, headers, raw):
        if path == "/token" and method == "POST":
            return self._token_endpoint(headers, raw)
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise self._error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
        m = re.match(r"^/v1/projects/([^/]+)/secrets(?:/([^/:]+))?(?:/versions(?:/([^/:]+))?)?(?::(\w+))?$", path)
        if not m:
            raise self._error(404, "The requested URL was not found on this server.")
        project, sid, version, verb = unquote(m[1]), m[2] and unquote(m[2]), m[3], m[4]
        in_versions = "/versions" in path
        if project not in (self.project, self.number):
            raise self._error(403, f"Permission 'secretmanager.secrets.get' denied for resource 'projects/{project}' (or it may not exist).")
        bad = lambda message: self._error(400, message)
        if sid is None:
            if method != "POST":
                raise self._error(404, "The requested URL was not found on this server.")
            sid = (query.get("secretId") or [""])[0]
            if not SECRET_ID_RE.match(sid):
                raise bad("Invalid secret id: must be 1-255 characters of letters, digits, - and _.")
            body = json_body(raw, bad)
            if set(body) - {"replication", "labels", "annotations"}:
                raise bad(f"Invalid JSON payload received. Unknown name {sorted(set(body) - {'replication', 'labels'})[0]!r}")
            if body.get("replication") not in ({"automatic": {}},) and "userManaged" not in (body.get("replication") or {}):
                raise bad("Secret.replication must be specified.")
            if sid in self.secrets:
                raise self._error(409, f"Secret [projects/{self.number}/secrets/{sid}] already exists.")
            self.secrets[sid] = {"labels": body.get("labels", {}), "replication": body["replication"],
                                 "created": now_iso(), "versions": {}, "next": 1}
            return 200, {"name": f"projects/{self.number}/secrets/{sid}", "replication": body["replication"],
                         "createTime": now_iso(), "labels": body.get("labels", {}), "etag": "\"1\""}
        secret = self.secrets.get(sid)
        if secret is None:
            raise self._error(404, f"Secret [projects/{self.number}/secrets/{sid}] not found or has no versions.")
        if not in_versions:
            if verb == "addVersion" and method == "POST":
                body = json_body(raw, bad)
                payload = body.get("payload")
                if set(body) != {"payload"} or not isinstance(payload, dict) or set(payload) - {"data", "dataCrc32c"}:
                    raise bad("Invalid JSON payload: expected {\"payload\": {\"data\", \"dataCrc32c\"}}.")
                try:
                    data = base64.b64decode(payload.get("data", ""), validate=True)
                except ValueError:
                    raise bad("Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed.")
                if not data or len(data) > 65536:
                    raise bad("Secret Payload cannot be empty or larger than 64KiB.")
                if "dataCrc32c" in payload and str(crc32c(data)) != str(payload["dataCrc32c"]):
                    raise bad("The checksum in field data_crc32c did not match the data.")
                n = secret["next"]
                secret["next"] += 1
                secret["versions"][n] = {"data": data, "state": "ENABLED", "created": now_iso(), "etag": 1}
                return 200, self._version_body(sid, n, secret["versions"][n])
            if verb is None and method == "GET":
                return 200, {"name": f"projects/{self.number}/secrets/{sid}", "replication": secret["replication"],
                             "createTime": secret["created"], "labels": secret["labels"], "etag": "\"1\""}
            if verb is None and method == "DELETE":
                del self.secrets[sid]
                return 200, {}
            raise self._error(404, "The requested URL was not found on this server.")
        if version is None:
            if method != "GET" or verb:
                raise self._error(404, "The requested URL was not found on this server.")
            size = int((query.get("pageSize") or ["25"])[0])
            start = int((query.get("pageToken") or ["0"])[0] or 0)
            ordered = sorted(secret["versions"].items(), reverse=True)
            page = ordered[start:start + size]
            out = {"versions": [self._version_body(sid, n, v) for n, v in page], "totalSize": len(ordered)}
            if start + size < len(ordered):
                out["nextPageToken"] = str(start + size)
            return 200, out
        if version == "latest":
            if not secret["versions"]:
                raise self._error(404, f"Secret Version [projects/{self.number}/secrets/{sid}/versions/latest] not found.")
            n = max(secret["versions"])   # the most recently created, whatever its state
        elif version.isdigit() and int(version) in secret["versions"]:
            n = int(version)
        else:
            raise self._error(404, f"Secret Version [projects/{self.number}/secrets/{sid}/versions/{version}] not found.")
        v = secret["versions"][n]
        name = f"projects/{self.number}/secrets/{sid}/versions/{n}"
        if verb == "access" and method == "GET":
            if v["state"] != "ENABLED":
                raise self._error(400, f"Secret Version [{name}] is in {v['state']} state.", "FAILED_PRECONDITION")
            return 200, {"name": name, "payload": {"data": base64.b64encode(v["data"]).decode(),
                                                   "dataCrc32c": str(crc32c(v["data"]))}}
        if verb in ("disable", "enable", "destroy") and method == "POST":
            body = json_body(raw, bad)
            if set(body) - {"etag"}:
                raise bad("Invalid JSON payload: only etag may be given.")
            if v["state"] == "DESTROYED":
                raise self._error(400, f"Secret Version [{name}] is in DESTROYED state.", "FAILED_PRECONDITION")
            v["state"] = {"disable": "DISABLED", "enable": "ENABLED", "destroy": "DESTROYED"}[verb]
            if verb == "destroy":
                v["data"] = None
            v["etag"] += 1
            return 200, self._version_body(sid, n, v)
        if verb is None and method == "GET":
            return 200, self._version_body(sid, n, v)
        raise self._error(404, "The requested URL was not found on this server.")


# ---------------------------------------------------------------------------------------
# Azure Key Vault secrets, REST api-version 7.4 (learn.microsoft.com/rest/api/keyvault/
# secrets), the Microsoft identity platform's client-credentials token endpoint and the
# managed identity endpoints (instance metadata service, App Service IDENTITY_ENDPOINT)
# ---------------------------------------------------------------------------------------

AZURE_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")


class Azure(Fake):
    """--config JSON: {"tenant": ID, "client_id": ID, "client_secret": S, "identity_header": H}.
    Token endpoints: POST /{tenant}/oauth2/v2.0/token, GET /metadata/identity/oauth2/token
    (IMDS), GET /msi/token (App Service). Secrets at /secrets/..."""

    def __init__(self, args):
        super().__init__(args)
        self.config = json.load(open(args.config))
        self.tokens = set()
        self.secrets = {}
        self.grants = []

    def error_body(self, status, message):
        codes = {400: "BadParameter", 401: "Unauthorized", 403: "Forbidden", 404: "SecretNotFound",
                 409: "Conflict", 429: "Throttled", 500: "InternalServerError", 503: "ServiceUnavailable"}
        return {"error": {"code": codes.get(status, "Unknown"), "message": message}}

    def _error(self, status, message, inner=None):
        body = self.error_body(status, message)
        if inner:
            body["error"]["innererror"] = {"code": inner}
        return ApiError(status, body)

    def dump(self):
        return {"grants": list(self.grants),
                "secrets": {name: [{"version": v["version"], "enabled": v["enabled"], "value": v["value"],
                                    "tags": v["tags"], "contentType": v["contentType"]}
                                   for v in versions]
                            for name, versions in self.secrets.items()}}

    def seed(self, data):
        if data.get("expire_tokens"):
            self.tokens.clear()

    def _issue(self, grant, extra):
        token = "eyJ0eXAiOiJKV1Qi.fake." + random_bytes.token_hex(16)
        self.tokens.add(token)
        self.grants.append(grant)
        return 200, dict({"access_token": token, "token_type": "Bearer"}, **extra)

    def _bundle(self, name, v, with_value=True):
        out = {"id": f"{self.base}/secrets/{name}/{v['version']}",
               "attributes": {"enabled": v["enabled"], "created": v["created"], "updated": v["updated"],
                              "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
               "tags": v["tags"]}
        if v["contentType"] is not None:
            out["contentType"] = v["contentType"]
        if with_value:
            out["value"] = v["value"]
        return out

    def handle(self, method, path, query, headers, raw):
        self.base = f"http://{headers.get('Host')}"
        cfg = self.config
        m = re.match(r"^/([^/]+)/oauth2/v2\.0/token$", path)
        if m and method == "POST":
            form = form_body(headers, raw)
            aad = lambda status, error, desc: ApiError(status, {"error": error, "error_description": desc, "error_codes": [0]})
            if form is None:
                raise aad(400, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
            if unquote(m[1]) != cfg["tenant"]:
                raise aad(400, "invalid_request", f"AADSTS90002: Tenant '{m[1]}' not found.")
            if form.get("grant_type") != "client_credentials":
                raise aad(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
            if form.get("client_id") != cfg["client_id"]:
                raise aad(400, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
            if form.get("client_secret") != cfg["client_secret"]:
                raise aad(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
            if form.get("scope") != "https://vault.azure.net/.default":
                raise aad(400, "invalid_scope", "AADSTS70011: The provided value for the input parameter 'scope' is not valid.")
            return self._issue("client_credentials", {"expires_in": 3599, "ext_expires_in": 3599})
        if path == "/metadata/identity/oauth2/token" and method == "GET":
            if headers.get("Metadata") != "true":
                raise ApiError(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            if query.get("api-version") != ["2018-02-01"] or query.get("resource") != ["https://vault.azure.net"]:
                raise ApiError(400, {"error": "invalid_request", "error_description": "Required query variable 'api-version' or 'resource' is missing or wrong"})
            return self._issue("imds", {"expires_in": "86399", "expires_on": str(int(time.time()) + 86399),
                                        "resource": "https://vault.azure.net"})
        if path == "/msi/token" and method == "GET":
            if headers.get("X-IDENTITY-HEADER") != cfg.get("identity_header"):
                raise ApiError(401, {"statusCode": 401, "message": "Unauthorized request"})
            if query.get("api-version") != ["2019-08-01"] or query.get("resource") != ["https://vault.azure.net"]:
                raise ApiError(400, {"statusCode": 400, "message": "api-version or resource is wrong"})
            return self._issue("app_service", {"expires_on": str(int(time.time()) + 86399),
                                               "resource": "https://vault.azure.net"})

        m = re.match(r"^/secrets/([^/]+)(?:/([^/]+))?$", path)
        if not m:
            raise self._error(404, "The requested resource was not found.", None)
        versions = query.get("api-version")
        if not versions:
            raise self._error(400, "Missing required query parameter: api-version")
        if versions != ["7.4"]:
            raise self._error(400, f"The specified version ({versions[0]}) is not recognized. Consider using the latest supported version (7.4).")
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise ApiError(401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})
        name, version = unquote(m[1]), m[2]
        if not AZURE_NAME_RE.match(name):
            raise self._error(400, "The request URI contains an invalid name: " + name)
        history = self.secrets.get(name.lower())
        bad = lambda message: self._error(400, message)
        if version is None and method == "PUT":
            body = json_body(raw, bad)
            if set(body) - {"value", "contentType", "tags", "attributes"} or not isinstance(body.get("value"), str):
                raise bad("Property 'value' is required and only value, contentType, tags and attributes are known.")
            tags = body.get("tags") or {}
            if not isinstance(tags, dict) or len(tags) > 15 or not all(isinstance(v, str) for v in tags.values()):
                raise bad("Tags must be at most 15 string values.")
            v = {"version": random_bytes.token_hex(16), "value": body["value"], "enabled": True,
                 "contentType": body.get("contentType"), "tags": tags,
                 "created": int(time.time()), "updated": int(time.time())}
            self.secrets.setdefault(name.lower(), []).append(v)
            return 200, self._bundle(name, v)
        if history is None:
            raise self._error(404, f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")
        if version is None and method == "GET":
            v = history[-1]
        elif version is not None:
            found = [v for v in history if v["version"] == version]
            if not found:
                raise self._error(404, f"A secret with (name/id) {name}/{version} was not found in this key vault.")
            v = found[0]
        else:
            raise self._error(405, "The requested method is not allowed.")
        if method == "GET":
            if not v["enabled"]:
                raise self._error(403, "Operation get is not allowed on a disabled secret.", "SecretDisabled")
            return 200, self._bundle(name, v)
        if method == "PATCH" and version is not None:
            body = json_body(raw, bad)
            if set(body) - {"contentType", "tags", "attributes"}:
                raise bad("Only contentType, tags and attributes can be updated.")
            attributes = body.get("attributes") or {}
            if set(attributes) - {"enabled", "nbf", "exp"} or ("enabled" in attributes and not isinstance(attributes["enabled"], bool)):
                raise bad("attributes.enabled must be a boolean.")
            if "enabled" in attributes:
                v["enabled"] = attributes["enabled"]
            if "tags" in body:
                v["tags"] = body["tags"]
            v["updated"] = int(time.time())
            return 200, self._bundle(name, v, with_value=False)
        raise self._error(405, "The requested method is not allowed.")


SERVICES = {"github": GitHub, "gcp": Gcp, "azure": Azure}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--read-token", default=None)
    parser.add_argument("--scope", action="append")
    parser.add_argument("--config", default=None, help="a JSON file of service settings")
    args = parser.parse_args()
    fake = SERVICES[args.service](args)
    Handler.fake = fake
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
