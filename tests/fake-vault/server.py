#!/usr/bin/env python3
"""A fake HashiCorp Vault server for credrot's tests: the KV version 2 secrets engine and
AppRole login, as the published HTTP API describes them.

  GET  /v1/{mount}/data/{path}     200 {"data": {"data": {...}, "metadata": {"version": N,
                                   ...}}}; 404 {"errors": []} when there is none
  POST /v1/{mount}/data/{path}     (PUT too) {"data": {...}, "options": {"cas": N}}: cas 0
                                   creates, N must be the current version, else 400
                                   {"errors": ["check-and-set parameter did not match the
                                   current version"]}; with --cas-required a missing cas is
                                   400 "check-and-set parameter required for this call"
  POST /v1/auth/approle/login      {"role_id", "secret_id"} -> {"auth": {"client_token"}}

Every other call needs a known X-Vault-Token (else 403 {"errors": ["permission denied"]});
--namespace NS makes the server a Vault Enterprise namespace that requests must name in
X-Vault-Namespace. Unknown mounts answer 404 "no handler for route"; KV v1-style paths on a
v2 mount answer 404 with the real warning. Every version is kept (GET ?version=N works).

Control (tests/support/fake_http.py): seed {"mount": M, "path": P, "data": {...}} writes a
version; interfere {"mount": M, "path": P, "set": {...}} writes a version as another writer.
"""

import json
import os
import re
import sys
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import fake_http  # noqa: E402

CAS_MISMATCH = "check-and-set parameter did not match the current version"


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def errors(code, *messages):
    return code, "application/json", json.dumps({"errors": list(messages)}).encode()


def answer(data, warnings=None):
    return 200, "application/json", json.dumps({
        "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
        "data": data, "wrap_info": None, "warnings": warnings, "auth": None}).encode()


class Vault(fake_http.App):
    def __init__(self, args):
        super().__init__(args)
        self.tokens = set(args.token or [])
        self.approles = {}
        for spec in args.approle or []:
            role_id, secret_id, token = spec.split(":")
            self.approles[role_id] = (secret_id, token)
        self.mounts = set(args.mount or ["secret"])
        # (mount, path) -> list of versions: {"data", "created_time"}
        self.secrets = {}

    def error(self, code, method, path):
        if code == 403:
            return errors(403, "permission denied")[1:]
        if code == 400:
            return errors(400, CAS_MISMATCH)[1:]
        if code == 500:
            return errors(500, "internal error")[1:]
        if code == 503:
            return errors(503, "Vault is sealed")[1:]
        return errors(code, "fault injected")[1:]

    def write(self, mount, path, data):
        versions = self.secrets.setdefault((mount, path), [])
        versions.append({"data": data, "created_time": now()})
        return len(versions)

    def metadata(self, versions, n):
        return {"created_time": versions[n - 1]["created_time"], "custom_metadata": None,
                "deletion_time": "", "destroyed": False, "version": n}

    def handle(self, method, path, query, headers, body, peer_cert):
        if not path.startswith("/v1/"):
            return 404, "text/plain", b"404 page not found\n"
        if self.args.namespace and headers.get("x-vault-namespace", "").strip("/") != self.args.namespace:
            return errors(404, f'no handler for route "{path[4:]}". route entry not found.')
        route = path[4:]
        if route == "auth/approle/login":
            return self.login(method, body)
        token = headers.get("x-vault-token")
        if not token:
            return errors(403, "permission denied")
        if token not in self.tokens:
            return errors(403, "permission denied")
        mount, _, rest = route.partition("/")
        if mount not in self.mounts:
            return errors(404, f'no handler for route "{route}". route entry not found.')
        kind, _, secret = rest.partition("/")
        if kind != "data" or not secret:
            return 404, "application/json", json.dumps({"errors": [], "warnings": ["Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."]}).encode()
        versions = self.secrets.get((mount, secret), [])
        if method == "GET":
            wanted = parse_qs(query).get("version", [None])[0]
            n = int(wanted) if wanted else len(versions)
            if n == 0 or n > len(versions):
                return errors(404)
            return answer({"data": versions[n - 1]["data"], "metadata": self.metadata(versions, n)})
        if method in ("POST", "PUT"):
            try:
                request = json.loads(body)
            except ValueError:
                return errors(400, "error parsing JSON")
            if not isinstance(request, dict) or not isinstance(request.get("data"), dict):
                return errors(400, "no data provided")
            options = request.get("options") or {}
            if "cas" not in options:
                if self.args.cas_required:
                    return errors(400, "check-and-set parameter required for this call")
            elif not isinstance(options["cas"], int) or options["cas"] != len(versions):
                return errors(400, CAS_MISMATCH)
            n = self.write(mount, secret, request["data"])
            return answer(self.metadata(self.secrets[(mount, secret)], n))
        return errors(405, "unsupported operation")

    def login(self, method, body):
        if method not in ("POST", "PUT"):
            return errors(405, "unsupported operation")
        try:
            request = json.loads(body)
        except ValueError:
            return errors(400, "error parsing JSON")
        role = self.approles.get(request.get("role_id"))
        if role is None:
            return errors(400, "invalid role ID")
        if request.get("secret_id") != role[0]:
            return errors(400, "invalid secret id")
        self.tokens.add(role[1])
        return 200, "application/json", json.dumps({
            "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": None, "wrap_info": None, "warnings": None,
            "auth": {"client_token": role[1], "accessor": str(uuid.uuid4()), "policies": ["default", "credrot"],
                     "token_policies": ["default", "credrot"], "metadata": {"role_name": "credrot"},
                     "lease_duration": 2764800, "renewable": True, "entity_id": str(uuid.uuid4()),
                     "token_type": "service", "orphan": True}}).encode()

    def seed(self, spec):
        return {"version": self.write(spec.get("mount", "secret"), spec["path"], spec["data"])}

    def interfere(self, spec):
        mount, path = spec.get("mount", "secret"), spec["path"]
        versions = self.secrets.get((mount, path), [])
        data = dict(versions[-1]["data"]) if versions else {}
        data.update(spec.get("set") or {})
        self.write(mount, path, data)

    def state(self):
        return {f"{m}/{p}": v for (m, p), v in self.secrets.items()}


def main():
    parser = fake_http.base_arguments(__doc__)
    parser.add_argument("--token", action="append", help="a token the server accepts")
    parser.add_argument("--approle", action="append", help="ROLE_ID:SECRET_ID:TOKEN that login accepts")
    parser.add_argument("--mount", action="append", help="a KV v2 mount (default: secret)")
    parser.add_argument("--namespace", help="the Enterprise namespace requests must name")
    parser.add_argument("--cas-required", action="store_true", help="refuse writes without cas")
    fake_http.serve(Vault(parser.parse_args()))


if __name__ == "__main__":
    main()
