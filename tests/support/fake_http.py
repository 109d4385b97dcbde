"""What the fake REST services of credrot's tests share (tests/fake-kube, tests/fake-vault).

A fake is an in-memory, stateful server on a free loopback port, optionally on HTTPS (a
certificate and key given by the test, and a CA for client certificates). Its API port
serves only the service's API; a second, plain-HTTP control port serves the test:

  POST /__fake/fail      a fault rule (JSON), applied to the next matching API requests:
      {"method": "PUT", "path": "regex", "skip": 0, "count": 1,
       "status": 409 | "hang": "before" | "after" | "garble": true | "interfere": {...}}
      status     answer with that status and the service's real error body, change nothing
      hang       "before": never answer and change nothing; "after": do the request, then
                 never answer (the client times out; the change was made)
      garble     do the request, answer 200 with a body that is not JSON
      interfere  before the request, another writer changes the state (service-specific),
                 then the request is handled normally (a real conflict, if it leads to one)
      skip lets that many matching requests through first; count is how many are faulted.
  POST /__fake/seed      service-specific: put objects in the state
  GET  /__fake/state     the state, as JSON
  GET  /__fake/requests  every API request: method, path, headers (lower-case), body

The port file (--port-file) receives "API_PORT CONTROL_PORT" once both listen.
"""

import argparse
import json
import re
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HANG_SECONDS = 120


class Fault:
    def __init__(self, spec):
        self.method = spec.get("method")
        self.path = re.compile(spec.get("path", ".*"))
        self.skip = int(spec.get("skip", 0))
        self.count = int(spec.get("count", 1))
        self.spec = spec

    def matches(self, method, path):
        return (self.method is None or self.method == method) and self.path.search(path)


class App:
    """A service: subclasses implement handle() and error()."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.faults = []
        self.requests = []

    # -- to implement -------------------------------------------------------------------
    def handle(self, method, path, query, headers, body, peer_cert):
        """Return (status, content_type, body_bytes)."""
        raise NotImplementedError

    def error(self, status, method, path):
        """The real error answer for `status`: (content_type, body_bytes)."""
        raise NotImplementedError

    def interfere(self, spec):
        raise NotImplementedError

    def seed(self, spec):
        raise NotImplementedError

    def state(self):
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def take_fault(self, method, path):
        with self.lock:
            for fault in self.faults:
                if fault.count <= 0 or not fault.matches(method, path):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.count -= 1
                return fault.spec
        return None


def json_body(value):
    return "application/json", json.dumps(value).encode()


def make_handler(app, control):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def read_body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def dispatch(self, method):
            url = urlsplit(self.path)
            body = self.read_body()
            if control:
                return self.control(method, url.path, body)
            if url.path.startswith("/__fake/"):
                return self.send(404, "text/plain", b"404 page not found")
            headers = {k.lower(): v for k, v in self.headers.items()}
            with app.lock:
                app.requests.append({"method": method, "path": url.path, "query": url.query,
                                     "headers": headers, "body": body.decode("utf-8", "replace")})
            fault = app.take_fault(method, url.path)
            if fault and "interfere" in fault:
                with app.lock:
                    app.interfere(fault["interfere"])
            if fault and "status" in fault:
                return self.send(int(fault["status"]), *app.error(int(fault["status"]), method, url.path))
            if fault and fault.get("hang") == "before":
                time.sleep(HANG_SECONDS)
                self.close_connection = True
                return
            peer = None
            if isinstance(self.connection, ssl.SSLSocket):
                peer = self.connection.getpeercert()
            with app.lock:
                status, content_type, answer = app.handle(method, url.path, url.query, headers, body, peer)
            if fault and fault.get("hang") == "after":
                time.sleep(HANG_SECONDS)
                self.close_connection = True
                return
            if fault and fault.get("garble"):
                return self.send(200, "text/html", b"<html><body>502 Bad Gateway</body>")
            self.send(status, content_type, answer)

        def control(self, method, path, body):
            try:
                spec = json.loads(body) if body else None
            except ValueError:
                return self.send(400, "text/plain", b"control bodies are JSON")
            with app.lock:
                if method == "POST" and path == "/__fake/fail":
                    app.faults.append(Fault(spec))
                    return self.send(200, *json_body({"ok": True}))
                if method == "POST" and path == "/__fake/seed":
                    return self.send(200, *json_body(app.seed(spec)))
                if method == "GET" and path == "/__fake/state":
                    return self.send(200, *json_body(app.state()))
                if method == "GET" and path == "/__fake/requests":
                    return self.send(200, *json_body(app.requests))
            self.send(404, "text/plain", b"unknown control path")

        def do_GET(self):
            self.dispatch("GET")

        def do_POST(self):
            self.dispatch("POST")

        def do_PUT(self):
            self.dispatch("PUT")

        def do_PATCH(self):
            self.dispatch("PATCH")

        def do_DELETE(self):
            self.dispatch("DELETE")

    return Handler


def base_arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--tls-cert", help="serve the API on HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="ask for client certificates signed by this CA")
    return parser


def serve(app):
    args = app.args
    api = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(app, control=False))
    api.daemon_threads = True
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
        api.socket = context.wrap_socket(api.socket, server_side=True)
    ctl = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(app, control=True))
    ctl.daemon_threads = True
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{api.server_address[1]} {ctl.server_address[1]}\n")
    import os
    os.rename(tmp, args.port_file)
    api.serve_forever()
