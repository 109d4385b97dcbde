#!/usr/bin/env python3
"""A fake Kubernetes API server for credrot's tests: the calls credrot makes, as the
published API reference describes them (core/v1 Secret, apps/v1 Deployment, StatefulSet,
DaemonSet).

  GET    /api/v1/namespaces/{ns}/secrets/{name}
  POST   /api/v1/namespaces/{ns}/secrets                 201, 409 AlreadyExists
  PUT    /api/v1/namespaces/{ns}/secrets/{name}          metadata.resourceVersion required
                                                         (422), stale -> 409 Conflict
  DELETE /api/v1/namespaces/{ns}/secrets/{name}          DeleteOptions.preconditions
  PATCH  /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets|daemonsets}/{name}
         with Content-Type application/strategic-merge-patch+json or merge-patch+json

Errors are `kind: Status` bodies (status Failure, message, reason, details, code): 401
Unauthorized without a known bearer token (or client certificate, with --client-ca and
--client-cn), 403 Forbidden, 404 NotFound, 409 Conflict/AlreadyExists, 415, 422 Invalid.
Every write bumps one cluster-wide resourceVersion counter. Paths the API does not have
answer `404 page not found` (text/plain), as the real server does.

Control (see tests/support/fake_http.py): seed {"secret": OBJ} or {"workload": {"kind":
"deployments", "namespace": NS, "name": N}}; interfere {"namespace": NS, "name": N,
"set": {KEY: plaintext}, "remove": [KEY], "annotate": {K: V}} changes a Secret as another
writer would.
"""

import base64
import binascii
import copy
import json
import os
import re
import sys
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import fake_http  # noqa: E402

SECRET = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
WORKLOAD = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets|daemonsets)/([^/]+)$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")
KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return code, "application/json", json.dumps(body).encode()


def merge(target, patch):
    """A strategic merge patch of maps (what the restart annotation needs)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Kube(fake_http.App):
    def __init__(self, args):
        super().__init__(args)
        self.tokens = set(args.token or [])
        self.client_cns = set(args.client_cn or [])
        self.version = 100
        self.secrets = {}
        self.workloads = {}

    def bump(self):
        self.version += 1
        return str(self.version)

    def error(self, code, method, path):
        m = SECRET.match(path)
        ns, name = (m.group(1), m.group(2) or "") if m else ("default", "")
        verb = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}[method]
        if code == 401:
            return status(401, "Unauthorized", "Unauthorized")[1:]
        if code == 403:
            return status(403, "Forbidden", f'secrets "{name}" is forbidden: User "system:serviceaccount:credrot:credrot" cannot {verb} resource "secrets" in API group "" in the namespace "{ns}"',
                          {"name": name, "kind": "secrets"})[1:]
        if code == 404:
            return status(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})[1:]
        if code == 409:
            return status(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; please apply your changes to the latest version and try again',
                          {"name": name, "kind": "secrets"})[1:]
        if code == 500:
            return status(500, "InternalError", "Internal error occurred: etcdserver: request timed out")[1:]
        return status(code, "", "fault injected")[1:]

    def authenticated(self, headers, peer_cert):
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.tokens:
            return True
        if peer_cert:
            subject = dict(x[0] for x in peer_cert.get("subject", ()))
            return subject.get("commonName") in self.client_cns
        return False

    def handle(self, method, path, query, headers, body, peer_cert):
        m, w = SECRET.match(path), WORKLOAD.match(path)
        if not m and not w:
            return 404, "text/plain; charset=utf-8", b"404 page not found\n"
        if not self.authenticated(headers, peer_cert):
            return status(401, "Unauthorized", "Unauthorized")
        if w:
            return self.patch_workload(method, w.group(1), w.group(2), w.group(3), headers, body)
        ns, name = m.group(1), m.group(2)
        if method in ("POST", "PUT") and headers.get("content-type", "").split(";")[0] != "application/json":
            return status(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf')
        if name is None:
            if method != "POST":
                return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self.create(ns, body)
        if method == "GET":
            obj = self.secrets.get((ns, name))
            if obj is None:
                return status(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
            return 200, "application/json", json.dumps(obj).encode()
        if method == "PUT":
            return self.update(ns, name, body)
        if method == "DELETE":
            return self.delete(ns, name, body)
        return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def parse_secret(self, ns, body):
        """The Secret in a request body, or an error answer."""
        try:
            obj = json.loads(body)
        except ValueError:
            return None, status(400, "BadRequest", "the object provided is unrecognized (must be of type Secret): couldn't get version/kind; json parse error")
        if not isinstance(obj, dict) or obj.get("apiVersion") != "v1" or obj.get("kind") != "Secret":
            return None, status(400, "BadRequest", "the object provided is unrecognized (must be of type Secret)")
        meta = obj.get("metadata") or {}
        if meta.get("namespace") not in (None, ns):
            return None, status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        name = meta.get("name", "")
        if not DNS_SUBDOMAIN.match(name):
            return None, status(422, "Invalid", f'Secret "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters')
        if "stringData" in obj:
            return None, status(400, "BadRequest", "credrot's fake refuses stringData: credrot writes data")
        for key, value in (obj.get("data") or {}).items():
            if not DATA_KEY.match(key):
                return None, status(422, "Invalid", f'Secret "{name}" is invalid: data[{key}]: Invalid value: "{key}": a valid config key must consist of alphanumeric characters, \'-\', \'_\' or \'.\'')
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError):
                return None, status(400, "BadRequest", "illegal base64 data in the object's data")
        for field in ("labels", "annotations"):
            if not isinstance(meta.get(field, {}), dict) or not all(isinstance(v, str) for v in meta.get(field, {}).values()):
                return None, status(400, "BadRequest", f"metadata.{field} must map strings to strings")
        for key, value in (meta.get("labels") or {}).items():
            if len(value) > 63 or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value):
                return None, status(422, "Invalid", f'Secret "{name}" is invalid: metadata.labels: Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric characters, \'-\', \'_\' or \'.\'')
        return obj, None

    def create(self, ns, body):
        obj, err = self.parse_secret(ns, body)
        if err:
            return err
        meta = obj.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            return status(500, "InternalError", "resourceVersion should not be set on objects to be created")
        name = meta["name"]
        if (ns, name) in self.secrets:
            return status(409, "AlreadyExists", f'secrets "{name}" already exists', {"name": name, "kind": "secrets"})
        meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": self.bump(),
                     "creationTimestamp": now()})
        obj.setdefault("type", "Opaque")
        self.secrets[(ns, name)] = obj
        return 201, "application/json", json.dumps(obj).encode()

    def update(self, ns, name, body):
        obj, err = self.parse_secret(ns, body)
        if err:
            return err
        meta = obj.setdefault("metadata", {})
        if meta["name"] != name:
            return status(400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        current = self.secrets.get((ns, name))
        if current is None:
            return status(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
        if not meta.get("resourceVersion"):
            return status(422, "Invalid", f'Secret "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update')
        if meta["resourceVersion"] != current["metadata"]["resourceVersion"]:
            return status(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; please apply your changes to the latest version and try again',
                          {"name": name, "kind": "secrets"})
        if current.get("immutable") and current.get("data") != obj.get("data"):
            return status(422, "Invalid", f'Secret "{name}" is invalid: data: Forbidden: field is immutable when `immutable` is set')
        for keep in ("uid", "creationTimestamp"):
            meta[keep] = current["metadata"].get(keep)
        meta["namespace"] = ns
        meta["resourceVersion"] = self.bump()
        self.secrets[(ns, name)] = obj
        return 200, "application/json", json.dumps(obj).encode()

    def delete(self, ns, name, body):
        current = self.secrets.get((ns, name))
        if current is None:
            return status(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
        if body:
            try:
                options = json.loads(body)
            except ValueError:
                return status(400, "BadRequest", "the body of the request was in an unknown format")
            want = ((options.get("preconditions") or {}).get("resourceVersion"))
            have = current["metadata"]["resourceVersion"]
            if want is not None and want != have:
                return status(409, "Conflict", f"Operation cannot be fulfilled on secrets \"{name}\": Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {have}",
                              {"name": name, "kind": "secrets"})
        del self.secrets[(ns, name)]
        self.bump()
        answer = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                  "details": {"name": name, "kind": "secrets", "uid": current["metadata"]["uid"]}}
        return 200, "application/json", json.dumps(answer).encode()

    def patch_workload(self, method, ns, resource, name, headers, body):
        if method != "PATCH":
            return status(405, "MethodNotAllowed", "credrot's fake serves only PATCH on workloads")
        content_type = headers.get("content-type", "").split(";")[0]
        if content_type not in PATCH_TYPES:
            return status(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json')
        obj = self.workloads.get((resource, ns, name))
        if obj is None:
            return status(404, "NotFound", f'{resource}.apps "{name}" not found', {"name": name, "group": "apps", "kind": resource})
        try:
            patch = json.loads(body)
        except ValueError:
            return status(400, "BadRequest", "error decoding patch: invalid character")
        if not isinstance(patch, dict):
            return status(400, "BadRequest", "error decoding patch: not an object")
        merge(obj, patch)
        obj["metadata"]["resourceVersion"] = self.bump()
        obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        obj.setdefault("patches", 0)
        obj["patches"] += 1
        return 200, "application/json", json.dumps(obj).encode()

    def seed(self, spec):
        if "secret" in spec:
            obj = spec["secret"]
            meta = obj["metadata"]
            meta.update({"uid": str(uuid.uuid4()), "resourceVersion": self.bump(), "creationTimestamp": now()})
            obj.setdefault("apiVersion", "v1")
            obj.setdefault("kind", "Secret")
            obj.setdefault("type", "Opaque")
            self.secrets[(meta["namespace"], meta["name"])] = obj
            return obj
        w = spec["workload"]
        obj = {"apiVersion": "apps/v1", "kind": KINDS[w["kind"]],
               "metadata": {"name": w["name"], "namespace": w["namespace"], "resourceVersion": self.bump(), "generation": 1},
               "spec": {"template": {"metadata": {"labels": {"app": w["name"]}}, "spec": {"containers": []}}}}
        self.workloads[(w["kind"], w["namespace"], w["name"])] = obj
        return obj

    def interfere(self, spec):
        obj = self.secrets[(spec["namespace"], spec["name"])]
        data = obj.setdefault("data", {})
        for key, value in (spec.get("set") or {}).items():
            data[key] = base64.b64encode(value.encode()).decode()
        for key in spec.get("remove") or []:
            data.pop(key, None)
        obj["metadata"].setdefault("annotations", {}).update(spec.get("annotate") or {})
        obj["metadata"]["resourceVersion"] = self.bump()

    def state(self):
        return {"secrets": {f"{ns}/{name}": obj for (ns, name), obj in self.secrets.items()},
                "workloads": {f"{kind}/{ns}/{name}": obj for (kind, ns, name), obj in self.workloads.items()},
                "resourceVersion": self.version}


def main():
    parser = fake_http.base_arguments(__doc__)
    parser.add_argument("--token", action="append", help="a bearer token the server accepts")
    parser.add_argument("--client-cn", action="append", help="a client certificate CN the server accepts")
    fake_http.serve(Kube(parser.parse_args()))


if __name__ == "__main__":
    main()
