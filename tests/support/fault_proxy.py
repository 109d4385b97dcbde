#!/usr/bin/env python3
"""An HTTP proxy for credrot's tests and benchmark: it sits between credrot and the moto
emulator and injects faults at a set rate (HTTP 500, AWS Throttling errors, connection
resets before or after the request reached the emulator), adds latency, and can throttle
as real AWS endpoints do: above a request rate (--max-rps), or by count (--throttle-every),
which throttles the same requests however fast or slow the machine is.

--lose-answer ACTION:N forwards the Nth request of ACTION and then resets the connection
instead of answering: the emulator did the work and the client never hears of it.
--deny ACTION:TEXT answers every request of ACTION whose body contains TEXT with HTTP 403
AccessDenied, as AWS does for what moto does not check (a role's trust policy refusing a
cross-account AssumeRole: --deny AssumeRole:444444444444).
It can also hold requests (--hold-nth, --hold-action): from the Nth matching request on,
requests are not forwarded (or, with --hold-after-forward, forwarded but not answered); the
first held one writes --hold-file, so a test can wait for that file and kill the client at
an exact point (between two PutParameter calls, or after exactly K requests reached the
emulator). GET /__proxy/release lets the held requests go on and stops holding. The stats'
"in_flight" counts requests the emulator has not answered yet: a test waits for 0 before it
looks at the emulator's state.

GET /__proxy/stats returns the counts as JSON, with the requests received per AWS action
under "by_action" (the `Action=` of a query-protocol body such as IAM's and STS's, or the
operation in a JSON protocol's X-Amz-Target header), and the requests throttled by count
per action under "throttled_by_action". The proxy prints "listening on PORT" once it
accepts connections.
"""

import argparse
import http.client
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "forwarded": 0, "error_500": 0, "throttled": 0,
                       "reset_before": 0, "reset_after": 0, "rate_limited": 0,
                       "throttled_every": 0, "held": 0, "in_flight": 0, "denied": 0}
        self.by_action = {}
        self.throttled_by_action = {}

    def bump(self, name):
        with self.lock:
            self.counts[name] += 1

    def add_in_flight(self, delta):
        """Requests sent to the emulator and not yet answered by it."""
        with self.lock:
            self.counts["in_flight"] += delta

    def throttled_by_count(self, action):
        with self.lock:
            self.counts["throttled_every"] += 1
            self.throttled_by_action[action] = self.throttled_by_action.get(action, 0) + 1

    def request(self, action):
        """Count one received request, and which AWS action it asked for."""
        with self.lock:
            self.counts["requests"] += 1
            self.by_action[action] = self.by_action.get(action, 0) + 1

    def snapshot(self):
        with self.lock:
            counts = dict(self.counts)
            counts["by_action"] = dict(self.by_action)
            counts["throttled_by_action"] = dict(self.throttled_by_action)
        counts["faults"] = sum(counts[k] for k in ("error_500", "throttled", "reset_before",
                                                   "reset_after", "rate_limited", "throttled_every"))
        return counts


def action_of(headers, body):
    """The AWS operation a request asks for, or "other" when it names none."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if b"Action=" in body:
        try:
            values = parse_qs(body.decode("utf-8", "replace")).get("Action")
        except ValueError:
            values = None
        if values:
            return values[0]
    return "other"


class RateLimiter:
    """A token bucket: above `rate` requests per second, requests are throttled."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def allow(self):
        if self.rate <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


def first_attempt(headers):
    """Whether the SDK sends this request for the first time: its `amz-sdk-request` header
    says `attempt=1` (a client without the header counts every request as a first one)."""
    for pair in (headers.get("amz-sdk-request") or "").split(";"):
        name, _, value = pair.strip().partition("=")
        if name == "attempt" and value.isdigit():
            return int(value) <= 1
    return True


class CountThrottle:
    """Throttles every Nth first attempt, counted over all requests or per action.

    Only first attempts count and are throttled, so the SDK's retry of a throttled request
    always goes through: each throttle costs the client exactly one retry, whatever the
    interleaving of concurrent requests.
    """

    def __init__(self, every, per_action):
        self.every = every
        self.per_action = per_action
        self.seen = {}
        self.lock = threading.Lock()

    def throttle(self, action, headers):
        if self.every <= 0 or not first_attempt(headers):
            return False
        key = action if self.per_action else ""
        with self.lock:
            self.seen[key] = self.seen.get(key, 0) + 1
            return self.seen[key] % self.every == 0


class Hold:
    """Holds the Nth request matching an action (any action when none is given) and every
    matching request after it, until released. The first held request writes the hold file
    (atomically: a reader never sees it half written)."""

    def __init__(self, nth, action, path):
        self.nth = nth
        self.action = action
        self.path = path
        self.seen = 0
        self.lock = threading.Lock()
        self.released = threading.Event()

    def should_hold(self, action):
        if self.nth <= 0 or self.released.is_set() or (self.action and action != self.action):
            return False
        with self.lock:
            self.seen += 1
            if self.seen < self.nth:
                return False
            if self.seen == self.nth and self.path:
                temp = self.path + ".tmp"
                with open(temp, "w") as f:
                    json.dump({"action": action, "nth": self.seen}, f)
                os.rename(temp, self.path)
            return True

    def wait(self):
        self.released.wait()


class LoseAnswers:
    """--lose-answer ACTION:N: which requests are forwarded and then left unanswered."""

    def __init__(self, specs):
        self.wanted = {}
        for spec in specs:
            action, _, nth = spec.rpartition(":")
            if not action or not nth.isdigit() or int(nth) < 1:
                raise SystemExit("--lose-answer takes ACTION:N with N >= 1, not %r" % spec)
            self.wanted.setdefault(action, set()).add(int(nth))
        self.seen = {}
        self.lock = threading.Lock()

    def lose(self, action):
        if action not in self.wanted:
            return False
        with self.lock:
            self.seen[action] = self.seen.get(action, 0) + 1
            return self.seen[action] in self.wanted[action]


def make_handler(args, stats, limiter, rng, rng_lock):
    throttle = CountThrottle(args.throttle_every, args.throttle_per_action)
    lose_answers = LoseAnswers(args.lose_answer)
    denials = [tuple(d.split(":", 1)) for d in args.deny]
    hold = Hold(args.hold_nth, args.hold_action, args.hold_file)
    upstream = urlparse(args.upstream)
    local = threading.local()

    def upstream_connection():
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            local.conn = conn
        return conn

    def draw():
        with rng_lock:
            return rng.random(), rng.random()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle's algorithm on, the body
        # waits for the client's delayed ACK of the headers (about 40 ms per response).
        disable_nagle_algorithm = True

        def log_message(self, *_):
            pass

        def reset(self):
            # SO_LINGER 0 makes close() send a TCP RST: the client sees a reset connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def reply(self, status, body, content_type, extra=None):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def aws_error(self, status, code, message):
            if "json" in (self.headers.get("Content-Type") or ""):
                body = json.dumps({"__type": code, "message": message})
                self.reply(status, body, "application/x-amz-json-1.1", {"x-amzn-ErrorType": code})
            else:
                body = ("<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message>"
                        "</Error><RequestId>fault-proxy</RequestId></ErrorResponse>" % (code, message))
                self.reply(status, body, "text/xml")

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/__proxy/stats":
                self.reply(200, json.dumps(stats.snapshot()), "application/json")
                return
            if self.path == "/__proxy/release":
                hold.released.set()
                self.reply(200, "{}", "application/json")
                return
            action = action_of(self.headers, body)
            stats.request(action)
            held = hold.should_hold(action)
            if held:
                stats.bump("held")
                if not args.hold_after_forward:
                    hold.wait()
            if args.latency_ms:
                time.sleep(args.latency_ms / 1000.0)
            if not limiter.allow():
                stats.bump("rate_limited")
                self.aws_error(400, "Throttling", "Rate exceeded")
                return
            denied = [text for (act, text) in denials if act == action and text.encode() in body]
            if denied:
                stats.bump("denied")
                self.aws_error(403, "AccessDenied",
                               "User is not authorized to perform: sts:AssumeRole (denied by the fault proxy for %s)" % denied[0])
                return
            if throttle.throttle(action, self.headers):
                stats.throttled_by_count(action)
                self.aws_error(400, "Throttling", "Rate exceeded (every Nth request)")
                return
            roll, kind = draw()
            fault = roll < args.fault_rate
            lost = lose_answers.lose(action)
            if fault and kind < 0.3:
                stats.bump("error_500")
                self.aws_error(500, "InternalFailure", "injected by fault proxy")
                return
            if fault and kind < 0.6:
                stats.bump("throttled")
                self.aws_error(400, "Throttling", "Rate exceeded (injected)")
                return
            if fault and kind < 0.8:
                stats.bump("reset_before")
                self.reset()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = self.headers.get("Host", "")
            conn = upstream_connection()
            stats.add_in_flight(1)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                local.conn = None
                conn.close()
                self.aws_error(502, "InternalFailure", "upstream failed")
                return
            finally:
                stats.add_in_flight(-1)
            stats.bump("forwarded")
            if held and args.hold_after_forward:
                # The emulator did the work; the client waits for an answer that is held.
                hold.wait()
            if fault or lost:
                # The emulator did the work, but the answer is lost on the way back: the
                # hardest case for a client that must not orphan what it created.
                stats.bump("reset_after")
                self.reset()
                return
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away (killed by a test, or timed out) is no proxy error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="the emulator, e.g. http://127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--max-rps", type=float, default=0.0, help="throttle above this rate (0: off)")
    parser.add_argument("--throttle-every", type=int, default=0, metavar="N",
                        help="throttle every Nth first attempt (0: off); retries always pass")
    parser.add_argument("--throttle-per-action", action="store_true",
                        help="count --throttle-every per AWS action instead of over all requests")
    parser.add_argument("--hold-nth", type=int, default=0, metavar="N",
                        help="hold the Nth matching request and every later one (0: off)")
    parser.add_argument("--hold-action", default="", metavar="ACTION",
                        help="only requests of this AWS action match --hold-nth (default: any)")
    parser.add_argument("--hold-file", default="", metavar="PATH",
                        help="written when the first request is held")
    parser.add_argument("--hold-after-forward", action="store_true",
                        help="forward held requests to the emulator and hold their answers")
    parser.add_argument("--lose-answer", action="append", default=[], metavar="ACTION:N",
                        help="forward the Nth request of ACTION, then reset instead of answering")
    parser.add_argument("--deny", action="append", default=[], metavar="ACTION:TEXT",
                        help="answer ACTION requests whose body contains TEXT with 403 AccessDenied")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stats = Stats()
    handler = make_handler(args, stats, RateLimiter(args.max_rps), random.Random(args.seed), threading.Lock())
    server = Server(("127.0.0.1", args.port), handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
