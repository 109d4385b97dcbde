#!/usr/bin/env python3
"""credrot's benchmark: credrot side by side with the tool it replaces, and against the
emulator's own floor, on identical fleets of IAM users in the moto emulator (IAM auth on).

Each measured run gets a fresh emulator seeded with the same fleet, so every figure is read
against an emulator in the same state. Usually started through `bench/run`, which builds
credrot in release mode first. Secrets never leave the run's temporary directory.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials

REPO = Path(__file__).resolve().parent.parent
PROXY_SCRIPT = REPO / "tests" / "support" / "fault_proxy.py"
REGION = "us-east-1"
PATH_NAME = "BenchFleet"
IAM_PATH = "/%s/" % PATH_NAME
# The moto requests allowed before authentication is enforced: the admin bootstrap.
BOOTSTRAP_REQUESTS = 3
PYTHON_TOOL = "iam-credential-rotation==0.2.2"
PYTHON_TOOL_CAP = 20
KEY_STATES = ("no key", "one active", "two active", "inactive + active")
# Many accounts (--accounts): the member accounts' role, and what creating it costs in
# unauthenticated requests (CreateRole, PutRolePolicy).
MANAGEMENT_ACCOUNT = "123456789012"  # moto's default account: the admin's
MEMBER_ROLE = "credrot-bench"
MEMBER_BOOTSTRAP_REQUESTS = 2
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# Seeding threads: enough to keep the emulator busy, few enough not to starve it.
SEED_WORKERS = 8


def log(message):
    """Progress on stderr, so stdout carries only the final table."""
    print("[bench] %s" % message, file=sys.stderr, flush=True)


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, what, timeout=30.0):
    """Block until something accepts connections on `port`, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not start on port %d" % (what, port))
            time.sleep(0.05)


def client(service, endpoint, key, pool=10):
    """A boto3 client for `service` at `endpoint`, signing with `key` (id, secret, and the
    session token of an assumed role's credentials)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        aws_session_token=key[2] if len(key) > 2 else None,
        config=botocore.config.Config(
            max_pool_connections=pool,
            retries={"mode": "standard", "max_attempts": 5},
        ),
    )


class Emulator:
    """A moto server on a free loopback port with IAM auth on and an admin identity; with
    `member_accounts`, also the role credrot assumes in each of those accounts."""

    def __init__(self, workdir, member_accounts=()):
        """Start moto, wait for it, and bootstrap the admin (and the member accounts' roles)
        in the unauthenticated requests."""
        self.port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(workdir, "moto-%d.log" % self.port), "wb")
        unauthenticated = BOOTSTRAP_REQUESTS + MEMBER_BOOTSTRAP_REQUESTS * len(member_accounts)
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(unauthenticated))
        self.proc = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        try:
            wait_for_port(self.port, "moto_server")
            self.admin = self._bootstrap()
            for account in member_accounts:
                self._bootstrap_member(account)
        except BaseException:
            self.stop()
            raise

    def _bootstrap(self):
        """Create the allow-all admin and its key: exactly the unauthenticated requests."""
        iam = client("iam", self.endpoint, ("bootstrap", "bootstrap"))
        iam.create_user(UserName="bench-admin")
        iam.put_user_policy(
            UserName="bench-admin", PolicyName="allow-all",
            PolicyDocument=json.dumps(ALLOW_ALL))
        key = iam.create_access_key(UserName="bench-admin")["AccessKey"]
        return (key["AccessKeyId"], key["SecretAccessKey"])

    def _bootstrap_member(self, account):
        """Create MEMBER_ROLE in `account`, trusting the management account: the
        MEMBER_BOOTSTRAP_REQUESTS unauthenticated requests, acting in that account through
        moto's `x-moto-account-id` header (authentication would refuse them: the admin has no
        identity there yet)."""
        iam = client("iam", self.endpoint, ("bootstrap", "bootstrap"))

        def in_account(request, **_):
            request.headers["x-moto-account-id"] = account

        iam.meta.events.register("before-sign.iam.*", in_account)
        iam.create_role(RoleName=MEMBER_ROLE, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root"
                                                        % MANAGEMENT_ACCOUNT},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]}]}))
        iam.put_role_policy(RoleName=MEMBER_ROLE, PolicyName="allow-all",
                            PolicyDocument=json.dumps(ALLOW_ALL))

    def member_credentials(self, account):
        """Credentials of MEMBER_ROLE in `account`, assumed by the admin (auth is on by now)."""
        sts = client("sts", self.endpoint, self.admin)
        creds = sts.assume_role(RoleArn=member_role_arn(account),
                                RoleSessionName="bench-seed")["Credentials"]
        return (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])

    def stop(self):
        """Stop moto (the process this object started) and close its log."""
        stop_process(self.proc)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


class Proxy:
    """tests/support/fault_proxy.py in front of an emulator: latency and request counts."""

    def __init__(self, upstream, latency_ms, max_rps=0):
        """Start the proxy on a free port, adding `latency_ms` to every request, and
        answering Throttling above `max_rps` requests per second (0: never)."""
        self.port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen(
            [sys.executable, str(PROXY_SCRIPT), "--upstream", upstream,
             "--port", str(self.port), "--latency-ms", str(latency_ms),
             "--max-rps", str(max_rps)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, "fault proxy")
        except BaseException:
            self.stop()
            raise

    def stats(self):
        """The proxy's counters, with requests per AWS action under "by_action"."""
        with urllib.request.urlopen(self.endpoint + "/__proxy/stats", timeout=10) as reply:
            return json.load(reply)

    def stop(self):
        """Stop the proxy process this object started."""
        stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


def stop_process(proc):
    """Terminate `proc` if it still runs, killing it after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def user_names(count):
    """The fleet's user names, in creation order."""
    return ["bench-%05d" % i for i in range(count)]


def seed_fleet(emulator, count, credentials=None, report=True):
    """Create `count` users under IAM_PATH in mixed key states, round robin over KEY_STATES
    (user i gets state i % 4; for "inactive + active" the older key is the Inactive one), in
    the account of `credentials` (default: the admin's)."""
    iam = client("iam", emulator.endpoint, credentials or emulator.admin, pool=SEED_WORKERS)

    def seed(index_name):
        index, name = index_name
        iam.create_user(UserName=name, Path=IAM_PATH)
        state = index % len(KEY_STATES)
        keys = [iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
                for _ in range({0: 0, 1: 1, 2: 2, 3: 2}[state])]
        if state == 3:
            iam.update_access_key(UserName=name, AccessKeyId=keys[0], Status="Inactive")

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(SEED_WORKERS) as pool:
        list(pool.map(seed, enumerate(user_names(count))))
    if report:
        log("seeded %d users in %.1f s" % (count, time.perf_counter() - started))


def clean_aws_env(workdir, endpoint, key):
    """The environment of a tool under test: the admin key, the endpoint, and nothing of the
    machine's own AWS configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("CREDROT_CONFIG", "RUST_LOG")}
    env.update({
        "AWS_ACCESS_KEY_ID": key[0],
        "AWS_SECRET_ACCESS_KEY": key[1],
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.path.join(workdir, ".no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(workdir, ".no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        open(env[name], "w", encoding="utf-8").close()
    return env


GNU_TIME = "/usr/bin/time"


def run_measured(argv, cwd, env):
    """Run a process to completion; return (exit code, wall s, peak RSS KiB, CPU s or None,
    stdout, stderr).
    stdout and stderr go to files in `cwd` (they may name keys, never print them here).

    The peak RSS comes from GNU time when it is installed: rusage taken from here would
    count the memory of this Python process, which the child shares between fork and exec.
    Without GNU time, VmHWM is polled from /proc every few milliseconds."""
    out_path = os.path.join(cwd, "stdout.txt")
    err_path = os.path.join(cwd, "stderr.txt")
    rss_path = os.path.join(cwd, "rss.txt")
    gnu_time = os.access(GNU_TIME, os.X_OK)
    command = [GNU_TIME, "-f", "%M %U %S", "-o", rss_path] + argv if gnu_time else argv
    cpu_s = None
    peak_kib = 0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
        while not gnu_time and proc.poll() is None:
            peak_kib = max(peak_kib, vm_hwm_kib(proc.pid))
            time.sleep(0.005)
        proc.wait()
        wall = time.perf_counter() - started
    if gnu_time:
        with open(rss_path, encoding="utf-8") as rss:
            # GNU time prints "Command exited with non-zero status N" before the figures.
            figures = rss.read().split()[-3:]
            peak_kib = int(figures[0])
            cpu_s = round(float(figures[1]) + float(figures[2]), 2)
    with open(out_path, encoding="utf-8", errors="replace") as out, \
            open(err_path, encoding="utf-8", errors="replace") as err:
        return proc.returncode, wall, peak_kib, cpu_s, out.read(), err.read()


def vm_hwm_kib(pid):
    """The peak resident set of a running process, in KiB (0 once it is gone)."""
    try:
        with open("/proc/%d/status" % pid, encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def calls_from(stats, rotated, setup_actions):
    """Requests per rotated user from proxy stats, leaving out the once-per-run calls in
    `setup_actions` (action -> count); also the per-action breakdown per rotated user."""
    by_action = dict(stats.get("by_action", {}))
    for action, count in setup_actions.items():
        if action in by_action:
            by_action[action] -= count
    total = sum(by_action.values())
    per_user = total / rotated if rotated else None
    breakdown = ({a: round(c / rotated, 3) for a, c in sorted(by_action.items()) if c}
                 if rotated else {})
    return {"requests": stats.get("requests"), "per_rotated_user": per_user,
            "per_rotated_user_by_action": breakdown, "by_action": stats.get("by_action"),
            "throttled_by_proxy": sum(stats.get(kind, 0) for kind in
                                      ("rate_limited", "throttled", "throttled_every"))}


def default_concurrency(credrot):
    """credrot's default --concurrency for `rotate`, as its --help states it."""
    text = subprocess.run([credrot, "rotate", "--help"], capture_output=True, text=True,
                          check=True).stdout
    match = re.search(r"--concurrency <\w+>\s+[^[]*\[default: (\d+)\]", text)
    if not match:
        sys.exit("bench: cannot read the default --concurrency from credrot rotate --help")
    return int(match.group(1))


def run_credrot(args, workroot, users, concurrency, lock, latency_ms, via_proxy):
    """One credrot `rotate --path` run on a fresh, seeded emulator; the figures as a dict."""
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, Emulator(workdir) as emu:
        seed_fleet(emu, users)
        proxy = Proxy(emu.endpoint, latency_ms) if via_proxy else None
        try:
            endpoint = proxy.endpoint if proxy else emu.endpoint
            argv = [args.credrot, "--output", "json", "--quiet", "rotate", "--path", IAM_PATH,
                    "--concurrency", str(concurrency), "-o", "keys.json"]
            if not lock:
                argv.append("--no-lock")
            load = os.getloadavg()[0]
            code, wall, rss_kib, cpu_s, out, err = run_measured(
                argv, workdir, clean_aws_env(workdir, endpoint, emu.admin))
            stats = proxy.stats() if proxy else None
        finally:
            if proxy:
                proxy.stop()
    summary = {}
    try:
        summary = json.loads(out)
    except ValueError:
        pass
    rotated = summary.get("rotated", 0)
    failed = summary.get("failed", 0)
    errors = [u.get("error") or "" for u in summary.get("users", []) if u.get("error")]
    result = {
        "tool": "credrot", "users": users, "concurrency": concurrency,
        "default_concurrency": concurrency == args.default_width, "lock": lock,
        "latency_ms": latency_ms, "via_proxy": via_proxy, "exit_code": code,
        "wall_s": round(wall, 3), "rotated": rotated, "failed": failed,
        "users_per_s": round(rotated / wall, 1) if wall else None,
        "ms_per_user": round(1000 * wall / users, 2),
        "peak_rss_mb": round(rss_kib / 1024, 1), "cpu_s": cpu_s,
        "loadavg_1m_before": round(load, 2),
        "throttling_errors_shown": sum("hrottl" in e for e in errors) + err.count("hrottl"),
        # credrot counts its own requests (SDK interceptor); the proxy's count checks it.
        "aws_calls_reported": summary.get("aws_calls"),
        "stderr_tail": err.strip().splitlines()[-3:],
    }
    if stats:
        result["calls"] = calls_from(stats, rotated, {"ListUsers": 1})
    if code != 0 or rotated != users:
        log("credrot run incomplete: exit %d, %d/%d rotated; %s"
            % (code, rotated, users, " | ".join(result["stderr_tail"])))
    return result


def count_instructions(args, workroot, users):
    """Instructions credrot executes for one `rotate --path` over `users` freshly seeded users,
    counted by callgrind: unlike CPU seconds, the same for the same binary and fleet whatever
    else the machine is doing, so two builds can be compared on a busy machine."""
    if not shutil.which("valgrind"):
        sys.exit("bench: --instructions needs valgrind (Debian package valgrind)")
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, Emulator(workdir) as emu:
        seed_fleet(emu, users, report=False)
        counts = os.path.join(workdir, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + counts, args.credrot,
                "--output", "json", "--quiet", "rotate", "--path", IAM_PATH, "-o", "keys.json"]
        code, wall, _, _, out, err = run_measured(
            argv, workdir, clean_aws_env(workdir, emu.endpoint, emu.admin))
        rotated = json.loads(out).get("rotated", 0) if out.strip() else 0
        if code != 0 or rotated != users:
            sys.exit("bench: credrot under callgrind: exit %d, %d/%d rotated; %s"
                     % (code, rotated, users, " | ".join(err.strip().splitlines()[-3:])))
        with open(counts, encoding="utf-8") as lines:
            total = next(int(line.split()[1]) for line in lines
                         if line.startswith(("summary:", "totals:")))
    return {"users": users, "total": total, "per_user": total // users,
            "wall_s_under_callgrind": round(wall, 1),
            "note": "valgrind --tool=callgrind, one rotate --path run at 0 ms, no proxy; "
                    "per user includes the start-up"}


def member_accounts(count):
    """The member account ids of an --accounts run: 200000000001, 200000000002, ..."""
    return ["2%011d" % (i + 1) for i in range(count)]


def member_role_arn(account):
    """The role credrot assumes in a member account."""
    return "arn:aws:iam::%s:role/%s" % (account, MEMBER_ROLE)


def seeded_accounts_emulator(workdir, accounts, users):
    """A fresh emulator with MEMBER_ROLE and `users` users under IAM_PATH (the usual key
    states) in each member account, seeded through the role once authentication is on; the
    management account itself holds no fleet user, so every user is a member account's."""
    emu = Emulator(workdir, accounts)
    try:
        started = time.perf_counter()
        for account in accounts:
            seed_fleet(emu, users, emu.member_credentials(account), report=False)
        log("seeded %d accounts x %d users in %.1f s"
            % (len(accounts), users, time.perf_counter() - started))
    except BaseException:
        emu.stop()
        raise
    return emu


def accounts_calls(stats, rotated, accounts, caller_checks):
    """The proxy's request counts of a many-accounts run: all requests per rotated user, and
    per rotated user without the once-per-account calls (AssumeRole, ListUsers) and the
    `caller_checks` GetCallerIdentity calls that are not a new key's verification."""
    calls = calls_from(stats, rotated, {"AssumeRole": len(accounts), "ListUsers": len(accounts),
                                        "GetCallerIdentity": caller_checks})
    calls["all_per_rotated_user"] = (round(stats.get("requests", 0) / rotated, 3)
                                     if rotated else None)
    return calls


def credrot_accounts_config(accounts, settings):
    """services.toml of a many-accounts credrot run: `[accounts]` over `accounts` with
    `settings` (name -> value) on top of credrot's defaults."""
    lines = ["[accounts]", "ids = [%s]" % ", ".join('"%s"' % a for a in accounts),
             'role_name = "%s"' % MEMBER_ROLE]
    lines += ["%s = %s" % (name, value) for name, value in sorted(settings.items())]
    return "\n".join(lines) + "\n"


def run_credrot_accounts(args, workroot, accounts, settings):
    """One `credrot rotate --path` over every member account (`[accounts]` with `settings`,
    {} for credrot's defaults) on a fresh seeded emulator behind the latency proxy."""
    users = args.users * len(accounts)
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, \
            seeded_accounts_emulator(workdir, accounts, args.users) as emu, \
            Proxy(emu.endpoint, args.latency_ms, args.max_rps) as proxy:
        with open(os.path.join(workdir, "services.toml"), "w", encoding="utf-8") as config:
            config.write(credrot_accounts_config(accounts, settings))
        argv = [args.credrot, "--output", "json", "--quiet", "rotate", "--path", IAM_PATH,
                "-o", "keys.json"]
        load = os.getloadavg()[0]
        code, wall, rss_kib, cpu_s, out, err = run_measured(
            argv, workdir, clean_aws_env(workdir, proxy.endpoint, emu.admin))
        stats = proxy.stats()
    summary = {}
    try:
        summary = json.loads(out)
    except ValueError:
        pass
    rotated = summary.get("rotated", 0)
    failed_accounts = [a["id"] for a in summary.get("accounts", []) if a.get("error")]
    reported = summary.get("aws_calls") or {}
    result = {
        "tool": "credrot", "mode": "accounts", "settings": settings or "default",
        "accounts": len(accounts), "users": users, "latency_ms": args.latency_ms,
        "exit_code": code, "wall_s": round(wall, 3), "rotated": rotated,
        "failed": summary.get("failed", 0), "failed_accounts": failed_accounts,
        "users_per_s": round(rotated / wall, 1) if wall else None,
        "ms_per_user": round(1000 * wall / users, 2),
        "peak_rss_mb": round(rss_kib / 1024, 1), "cpu_s": cpu_s,
        "loadavg_1m_before": round(load, 2),
        "aws_calls_reported": reported, "retries_reported": reported.get("retries"),
        "throttling_errors_shown": throttling_errors(summary, err),
        "user_errors": error_sample([summary]),
        # credrot checks who it runs as once, before it selects the accounts.
        "calls": accounts_calls(stats, rotated, accounts, caller_checks=1),
        "stderr_tail": err.strip().splitlines()[-3:],
    }
    if code != 0 or rotated != users:
        log("credrot run incomplete: exit %d, %d/%d rotated; %s"
            % (code, rotated, users, " | ".join(result["stderr_tail"])))
    return result


def throttling_errors(summary, stderr):
    """Throttling errors that reached the output: in the users' errors or on stderr."""
    return sum("hrottl" in e for e in user_errors(summary)) + stderr.count("hrottl")


def user_errors(summary):
    """The errors of the users a run's JSON summary reports failed."""
    return [u.get("error") or "" for u in summary.get("users", []) if u.get("error")]


def error_sample(summaries):
    """Up to 5 distinct user errors over `summaries`, with how often each occurred, so a
    failed run's JSON says why (errors name users and actions, never a secret)."""
    counts = {}
    for summary in summaries:
        for error in user_errors(summary):
            counts[error] = counts.get(error, 0) + 1
    return [{"error": e, "users": n} for e, n in sorted(counts.items(), key=lambda i: -i[1])[:5]]


SEQUENTIAL_LOOP = """#!/usr/bin/env bash
# The loop a user writes today without [accounts]: one credrot run per account, each under
# that account's role (credrot exec assumes it and runs the rotation with its credentials).
status=0
for account in {accounts}; do
    {credrot} exec --role-arn "arn:aws:iam::$account:role/{role}" -- \\
        {credrot} --output json --quiet rotate --path {path} -o "keys-$account.json" \\
        > "summary-$account.json" || status=1
done
exit $status
"""


def run_sequential_loop(args, workroot, accounts):
    """The per-account shell loop (SEQUENTIAL_LOOP) on a fresh seeded emulator behind the
    latency proxy, credrot at its defaults in each account; no services.toml, as today."""
    users = args.users * len(accounts)
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, \
            seeded_accounts_emulator(workdir, accounts, args.users) as emu, \
            Proxy(emu.endpoint, args.latency_ms, args.max_rps) as proxy:
        script = os.path.join(workdir, "loop.sh")
        with open(script, "w", encoding="utf-8") as loop:
            loop.write(SEQUENTIAL_LOOP.format(accounts=" ".join(accounts), role=MEMBER_ROLE,
                                              credrot=args.credrot, path=IAM_PATH))
        env = clean_aws_env(workdir, proxy.endpoint, emu.admin)
        # exec caches sessions under the user's cache directory: a fresh one per run.
        env["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")
        load = os.getloadavg()[0]
        code, wall, rss_kib, cpu_s, _, err = run_measured(["bash", script], workdir, env)
        stats = proxy.stats()
        summaries = {}
        for account in accounts:
            try:
                with open(os.path.join(workdir, "summary-%s.json" % account),
                          encoding="utf-8") as summary:
                    summaries[account] = json.load(summary)
            except (OSError, ValueError):
                summaries[account] = {}
    rotated = sum(s.get("rotated", 0) for s in summaries.values())
    calls = sum((s.get("aws_calls") or {}).get("calls", 0) for s in summaries.values())
    retries = sum((s.get("aws_calls") or {}).get("retries", 0) for s in summaries.values())
    result = {
        "tool": "sequential loop (credrot exec --role-arn ... -- credrot rotate, per account)",
        "mode": "accounts", "accounts": len(accounts), "users": users,
        "latency_ms": args.latency_ms, "exit_code": code, "wall_s": round(wall, 3),
        "rotated": rotated, "failed": sum(s.get("failed", 0) for s in summaries.values()),
        "failed_accounts": [a for a, s in summaries.items() if not s],
        "users_per_s": round(rotated / wall, 1) if wall else None,
        "ms_per_user": round(1000 * wall / users, 2),
        "peak_rss_mb": round(rss_kib / 1024, 1), "cpu_s": cpu_s,
        "loadavg_1m_before": round(load, 2),
        # The rotations' own counts, summed over the accounts; exec's AssumeRole is not in
        # them (exec prints no summary), the proxy sees it.
        "aws_calls_reported": {"calls": calls, "retries": retries,
                               "runs": len([s for s in summaries.values() if s])},
        "retries_reported": retries,
        "throttling_errors_shown": sum(throttling_errors(s, "") for s in summaries.values())
                                   + err.count("hrottl"),
        "user_errors": error_sample(summaries.values()),
        "calls": accounts_calls(stats, rotated, accounts, caller_checks=0),
        "stderr_tail": err.strip().splitlines()[-3:],
    }
    if code != 0 or rotated != users:
        log("sequential loop incomplete: exit %d, %d/%d rotated; %s"
            % (code, rotated, users, " | ".join(result["stderr_tail"])))
    return result


def parse_account_settings(text):
    """--account-settings: variants separated by ';', each 'default' or 'name=value' pairs
    separated by ','; e.g. "default;concurrency=20,max_in_flight=640"."""
    variants = []
    for variant in text.split(";"):
        variant = variant.strip()
        if variant in ("", "default"):
            variants.append({})
            continue
        settings = {}
        for pair in variant.split(","):
            name, sep, value = pair.partition("=")
            if not sep or not value.strip().isdigit():
                sys.exit("bench: --account-settings: '%s' is not name=number" % pair)
            settings[name.strip()] = int(value)
        variants.append(settings)
    return variants


def accounts_table(results):
    """The human-readable summary of a many-accounts run."""
    loop = results["sequential_loop"]
    rows = [("run", "accounts", "users", "wall s", "users/s", "x loop", "calls/user (all)",
             "calls/user (rotation)", "aws_calls", "retries", "throttled (proxy)", "CPU s",
             "RSS MB")]
    for run in results["credrot"] + [loop]:
        calls = run["calls"]
        name = ("sequential loop (exec + rotate per account)" if run is loop else
                "credrot [accounts] %s" % (
                    "defaults" if run["settings"] == "default" else
                    ", ".join("%s=%s" % kv for kv in sorted(run["settings"].items()))))
        rows.append((
            name, run["accounts"], run["users"], run["wall_s"], run["users_per_s"],
            "%.2fx" % ratio(loop["wall_s"], run["wall_s"]) if run is not loop else "1x",
            "%.2f" % calls["all_per_rotated_user"] if calls["all_per_rotated_user"] else "-",
            "%.2f" % calls["per_rotated_user"] if calls["per_rotated_user"] else "-",
            run["aws_calls_reported"].get("calls"), run["retries_reported"],
            calls["throttled_by_proxy"], run["cpu_s"], run["peak_rss_mb"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_accounts(args, results):
    """The many-accounts benchmark: credrot over `[accounts]` (each --account-settings
    variant) and the sequential per-account loop, each on a fresh identical fleet."""
    accounts = member_accounts(args.accounts)
    results.update({"mode": "accounts", "accounts": args.accounts, "max_rps": args.max_rps,
                    "users_per_account": args.users, "users": args.users * args.accounts,
                    "member_role": MEMBER_ROLE, "credrot": []})
    workroot = tempfile.mkdtemp(prefix="credrot-bench-")
    try:
        for settings in parse_account_settings(args.account_settings):
            log("credrot [accounts] %s: %d accounts x %d users, latency %g ms"
                % (settings or "defaults", args.accounts, args.users, args.latency_ms))
            results["credrot"].append(run_credrot_accounts(args, workroot, accounts, settings))
        log("sequential loop: %d accounts x %d users, latency %g ms"
            % (args.accounts, args.users, args.latency_ms))
        results["sequential_loop"] = run_sequential_loop(args, workroot, accounts)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    for run in results["credrot"]:
        run["speedup_vs_loop"] = ratio(results["sequential_loop"]["wall_s"], run["wall_s"])
    return accounts_table(results)


class CallerIdentity:
    """STS GetCallerIdentity signed with a given key, over one keep-alive connection per
    thread: what the floor's verify step costs without building a boto3 client per key."""

    BODY = "Action=GetCallerIdentity&Version=2011-06-15"

    def __init__(self, endpoint):
        """Send to `endpoint` (http://host:port)."""
        self.endpoint = endpoint
        self.host_port = endpoint.split("://", 1)[1]
        self.local = threading.local()

    def arn(self, key_id, secret):
        """The ARN the key authenticates as; raises on any refusal."""
        request = botocore.awsrequest.AWSRequest(
            method="POST", url=self.endpoint + "/", data=self.BODY,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(key_id, secret), "sts",
                                REGION).add_auth(request)
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host_port, timeout=60)
        try:
            conn.request("POST", "/", body=self.BODY, headers=dict(request.headers.items()))
            reply = conn.getresponse()
            text = reply.read().decode()
        except (OSError, http.client.HTTPException):
            self.local.conn = None
            conn.close()
            raise
        if reply.status != 200 or "<Arn>" not in text:
            raise RuntimeError("GetCallerIdentity refused the new key: HTTP %d" % reply.status)
        return text.split("<Arn>", 1)[1].split("</Arn>", 1)[0]


def floor_run(workroot, users, width, latency_ms, verify=False):
    """The emulator's floor: on a fresh fleet, the minimal request sequence per user
    (ListAccessKeys, DeleteAccessKey of the oldest key when there are two, CreateAccessKey;
    with `verify`, also GetCallerIdentity signed with the new key, as credrot does), from
    `width` threads with boto3, as fast as the emulator (and proxy, if any) accepts it."""
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, Emulator(workdir) as emu:
        seed_fleet(emu, users)
        proxy = Proxy(emu.endpoint, latency_ms) if latency_ms else None
        try:
            endpoint = proxy.endpoint if proxy else emu.endpoint
            iam = client("iam", endpoint, emu.admin, pool=width)
            sts = CallerIdentity(endpoint)

            def rotate(name):
                keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
                if len(keys) > 1:
                    oldest = min(keys, key=lambda k: k["CreateDate"])
                    iam.delete_access_key(UserName=name, AccessKeyId=oldest["AccessKeyId"])
                new = iam.create_access_key(UserName=name)["AccessKey"]
                if verify and not sts.arn(new["AccessKeyId"], new["SecretAccessKey"]) \
                        .endswith("/" + name):
                    raise RuntimeError("the new key of %s is someone else's" % name)

            # Warm up: botocore builds an operation's model and endpoint rules on first use.
            iam.list_access_keys(UserName="bench-admin")
            load = os.getloadavg()[0]
            started = time.perf_counter()
            names = [u["UserName"] for page in iam.get_paginator("list_users").paginate(
                PathPrefix=IAM_PATH) for u in page["Users"]]
            with concurrent.futures.ThreadPoolExecutor(width) as pool:
                list(pool.map(rotate, names))
            wall = time.perf_counter() - started
        finally:
            if proxy:
                proxy.stop()
    return {"users": users, "width": width, "latency_ms": latency_ms, "verify": verify,
            "wall_s": round(wall, 3), "users_per_s": round(users / wall, 1),
            "ms_per_user": round(1000 * wall / users, 2),
            "loadavg_1m_before": round(load, 2)}


def action_costs(workroot, users, samples=250):
    """What the emulator spends on each action credrot makes, one request at a time (no
    concurrency, no proxy) on a seeded fleet of `users`, over `samples` users spread across
    the fleet: the cost of one call, to read the floor ratios by. The IAM calls go through
    boto3 and GetCallerIdentity through a bare signed request, so the client's own share is,
    if anything, larger for the IAM calls."""
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, Emulator(workdir) as emu:
        seed_fleet(emu, users)
        iam = client("iam", emu.endpoint, emu.admin, pool=1)
        sts = CallerIdentity(emu.endpoint)
        keyless = [n for i, n in enumerate(user_names(users)) if i % len(KEY_STATES) == 0]
        names = keyless[::max(1, len(keyless) // samples)][:samples]
        iam.list_access_keys(UserName=names[0])  # warm up, as the floor does
        per_call = {}

        def timed(action, call, items):
            started = time.perf_counter()
            results = [call(item) for item in items]
            per_call[action] = round(1000 * (time.perf_counter() - started) / len(items), 3)
            return results

        timed("ListAccessKeys", lambda n: iam.list_access_keys(UserName=n), names)
        keys = timed("CreateAccessKey",
                     lambda n: iam.create_access_key(UserName=n)["AccessKey"], names)
        timed("GetCallerIdentity", lambda k: sts.arn(k["AccessKeyId"], k["SecretAccessKey"]),
              keys)
        timed("DeleteAccessKey", lambda k: iam.delete_access_key(
            UserName=k["UserName"], AccessKeyId=k["AccessKeyId"]), keys)
    return {"users": users, "samples": len(names), "ms_per_call": per_call,
            "note": "one request at a time, no proxy; each action over the same users"}


def python_tool_venv(workroot):
    """The tool credrot replaces: from this Python's environment when it holds the pinned
    version (requirements-test.txt puts it in .venv), else a throwaway venv from PyPI."""
    try:
        from importlib.metadata import version, PackageNotFoundError
        name, wanted = PYTHON_TOOL.split("==")
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if version(name) == wanted and os.access(beside, os.X_OK):
            return beside
    except PackageNotFoundError:
        pass
    venv = os.path.join(workroot, "venv")
    log("installing %s into a throwaway venv" % PYTHON_TOOL)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet",
                    "--disable-pip-version-check", PYTHON_TOOL], check=True)
    return os.path.join(venv, "bin", "iam-credential-rotation")


def run_python_tool(program, workroot, users, latency_ms):
    """One run of iam-credential-rotation over a fresh fleet of `users` (it refuses more than
    20): sequential list/delete/create per user, keys written to a file in the temp dir."""
    with tempfile.TemporaryDirectory(dir=workroot) as workdir, Emulator(workdir) as emu:
        seed_fleet(emu, users)
        proxy = Proxy(emu.endpoint, latency_ms) if latency_ms else None
        try:
            endpoint = proxy.endpoint if proxy else emu.endpoint
            # Its PATH argument is the bare name; -o must be a plain file name (in cwd).
            code, wall, rss_kib, _, _, err = run_measured(
                [program, PATH_NAME, "-o", "keys.json"], workdir,
                clean_aws_env(workdir, endpoint, emu.admin))
            stats = proxy.stats() if proxy else None
            rotated = 0
            if code == 0:
                with open(os.path.join(workdir, "keys.json"), encoding="utf-8") as keys:
                    rotated = len(json.load(keys))
        finally:
            if proxy:
                proxy.stop()
    if code != 0:
        raise RuntimeError("iam-credential-rotation failed (exit %d): %s"
                           % (code, err.strip().splitlines()[-1:]))
    result = {"tool": "iam-credential-rotation", "users": users, "latency_ms": latency_ms,
              "wall_s": round(wall, 3), "rotated": rotated,
              "ms_per_user": round(1000 * wall / users, 2),
              "peak_rss_mb": round(rss_kib / 1024, 1)}
    if stats:
        result["calls"] = calls_from(stats, rotated, {"GetCallerIdentity": 1, "ListUsers": 1})
    return result


def measure_startup(credrot, workroot, runs=50):
    """Median and best wall time of `credrot list` over `runs` runs (a small services.toml),
    next to the same for /bin/true, the cost of spawning any process from here."""
    with tempfile.TemporaryDirectory(dir=workroot) as workdir:
        with open(os.path.join(workdir, "services.toml"), "w", encoding="utf-8") as config:
            for name in ("postgresql", "longhorn", "grafana"):
                config.write('[services.%s]\niam_user = "%s-bot"\n[[services.%s.stores]]\n'
                             'kind = "file"\npath = "secrets/%s.json"\n\n'
                             % (name, name, name, name))

        def timings(argv):
            """Wall times (ms) of `runs` runs of argv in the temp dir."""
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                subprocess.run(argv, cwd=workdir, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                samples.append(1000 * (time.perf_counter() - started))
            return samples

        subprocess.run([credrot, "list"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
        listed = timings([credrot, "list"])
        spawn = timings(["/bin/true"])
    return {"runs": runs, "median_ms": round(statistics.median(listed), 2),
            "min_ms": round(min(listed), 2),
            "spawn_baseline_median_ms": round(statistics.median(spawn), 2)}


def machine():
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            mem_gib = round(int(info.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    moto = subprocess.run([sys.executable, "-c", "import moto; print(moto.__version__)"],
                          capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem_gib,
            "kernel": platform.release(), "python": platform.python_version(),
            "moto": moto}


def ratio(numerator, denominator):
    """numerator / denominator rounded, or None when either is missing."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def matching_floor(results, run, verify):
    """The floor a credrot run is read against: at 0 latency the best width (the emulator's
    limit); with latency, the same width as the run's concurrency."""
    floors = [f for f in results.get("floor", {}).get("runs", [])
              if f["verify"] == verify and f["users"] == run["users"]]
    if results["latency_ms"]:
        floors = [f for f in floors if f["width"] == run["concurrency"]]
    return min(floors, key=lambda f: f["wall_s"]) if floors else None


def table(results):
    """The human-readable summary of one benchmark run."""
    rows = [("run", "users", "conc", "wall s", "users/s", "ms/user", "calls/user", "CPU s",
             "RSS MB", "x python/user", "x floor", "x floor+verify")]
    dash = "-"
    for run in results["credrot"]:
        calls = run.get("calls", {}).get("per_rotated_user")
        timed = not run.get("counting_only")
        rows.append((
            "credrot %s%s%s" % ("lock" if run["lock"] else "no-lock",
                                " (default conc)" if run.get("default_concurrency") else "",
                                " (counting proxy)" if not timed else ""),
            run["users"], run["concurrency"], run["wall_s"], run["users_per_s"],
            run["ms_per_user"], "%.2f" % calls if calls else dash, run["cpu_s"],
            run["peak_rss_mb"],
            "%.1fx" % run["speedup_vs_python_per_user"]
            if timed and run.get("speedup_vs_python_per_user") else dash,
            "%.2f" % run["ratio_to_floor"] if timed and run.get("ratio_to_floor") else dash,
            "%.2f" % run["ratio_to_floor_with_verify"]
            if timed and run.get("ratio_to_floor_with_verify") else dash))
    for floor in results.get("floor", {}).get("runs", []):
        rows.append(("floor%s, boto3 %d threads" % ("+verify" if floor["verify"] else "",
                                                    floor["width"]),
                     floor["users"], floor["width"], floor["wall_s"], floor["users_per_s"],
                     floor["ms_per_user"], dash, dash, dash, dash, dash, dash))
    for run in results.get("python_tool", {}).get("runs", []):
        calls = run.get("calls", {}).get("per_rotated_user")
        rows.append(("iam-credential-rotation", run["users"], 1, run["wall_s"],
                     round(run["users"] / run["wall_s"], 1), run["ms_per_user"],
                     "%.2f" % calls if calls else dash, dash, run["peak_rss_mb"], dash,
                     dash, dash))
    for run in results.get("credrot_at_python_n", []):
        calls = run.get("calls", {}).get("per_rotated_user")
        rows.append(("credrot %s at the tool's N" % ("lock" if run["lock"] else "no-lock"),
                     run["users"], run["concurrency"], run["wall_s"], run["users_per_s"],
                     run["ms_per_user"], "%.2f" % calls if calls else dash, run["cpu_s"],
                     run["peak_rss_mb"], dash, dash, dash))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main():
    """Parse the options, run the requested measurements, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000, help="fleet size (default 1000)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="latency the proxy adds to every request (default 0: no proxy)")
    parser.add_argument("--concurrency", default="default",
                        help="credrot --concurrency, comma-separated for a sweep; 'default' is "
                             "credrot's own default, read from its --help (default: default)")
    parser.add_argument("--lock-modes", default="lock",
                        help="credrot runs with the per-user lock (its default), without "
                             "(--no-lock), or both: lock,no-lock (default: lock)")
    parser.add_argument("--floor-widths", default="8,16,32",
                        help="thread pool widths for the emulator floor; the best is kept")
    parser.add_argument("--only", choices=("all", "credrot"), default="all",
                        help="credrot alone: no floor, no Python tool, no startup timing")
    parser.add_argument("--no-count", action="store_true",
                        help="at 0 latency, skip the extra runs through the counting proxy")
    parser.add_argument("--accounts", type=int, default=0,
                        help="many accounts: N member accounts with --users users each; "
                             "credrot over [accounts] against the sequential per-account "
                             "loop (credrot exec --role-arn ... -- credrot rotate), always "
                             "through the proxy (default 0: one account)")
    parser.add_argument("--account-settings", default="default",
                        help="with --accounts: the [accounts] settings of each credrot run, "
                             "';'-separated, each 'default' or name=value pairs, e.g. "
                             "'default;concurrency=20,max_in_flight=640' (default: default)")
    parser.add_argument("--max-rps", type=float, default=0,
                        help="with --accounts: the proxy answers Throttling above this many "
                             "requests per second, over all accounts together (default 0: "
                             "never)")
    parser.add_argument("--instructions", type=int, default=0, metavar="N",
                        help="also count the instructions of one credrot run over N users "
                             "under callgrind (repeatable on a busy machine; default 0: no)")
    parser.add_argument("--credrot", default=str(REPO / "target" / "release" / "credrot"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    # Absolute: the runs start in their own temporary directories.
    args.credrot = os.path.abspath(args.credrot)
    if not os.access(args.credrot, os.X_OK):
        parser.error("%s is not built: cargo build --release" % args.credrot)
    args.default_width = default_concurrency(args.credrot)
    concurrencies = [args.default_width if c == "default" else int(c)
                     for c in args.concurrency.split(",")]
    locks = [{"lock": True, "no-lock": False}[m] for m in args.lock_modes.split(",")]
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "command": "bash bench/run " + " ".join(sys.argv[1:]),
               "machine": machine(), "users": args.users, "latency_ms": args.latency_ms,
               "fleet": "users under %s, key states round robin: %s"
                        % (IAM_PATH, ", ".join(KEY_STATES)),
               "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
               "credrot": []}
    if args.accounts:
        summary = run_accounts(args, results)
        save(results, args.out)
        print(summary)
        print("calls/user (all): every request the proxy saw per rotated user; (rotation): "
              "without the once-per-account AssumeRole and ListUsers and credrot's one "
              "caller check; aws_calls: credrot's own count (the loop's: its %d rotations "
              "summed, exec's AssumeRole not included)" % args.accounts)
        print_machine(results)
        return
    workroot = tempfile.mkdtemp(prefix="credrot-bench-")
    try:
        if args.only == "all":
            log("timing credrot list (start-up)")
            results["startup"] = measure_startup(args.credrot, workroot)
        for concurrency in concurrencies:
            for lock in locks:
                log("credrot: %d users, concurrency %d, %s, latency %g ms"
                    % (args.users, concurrency, "lock" if lock else "no lock", args.latency_ms))
                run = run_credrot(args, workroot, args.users, concurrency, lock,
                                  args.latency_ms, via_proxy=args.latency_ms > 0)
                results["credrot"].append(run)
                if args.latency_ms == 0 and not args.no_count:
                    log("credrot again through the counting proxy (0 ms)")
                    counted = run_credrot(args, workroot, args.users, concurrency, lock, 0,
                                          via_proxy=True)
                    counted["counting_only"] = True
                    run["calls"] = counted["calls"]
                    results["credrot"].append(counted)
        if args.only == "all":
            floors = []
            widths = [int(w) for w in args.floor_widths.split(",")]
            if args.latency_ms:
                widths = sorted(set(concurrencies))
            for width in widths:
                log("emulator floor: %d users, %d threads" % (args.users, width))
                floors.append(floor_run(workroot, args.users, width, args.latency_ms))
            best = min(floors, key=lambda f: f["wall_s"])
            for width in widths if args.latency_ms else [best["width"]]:
                log("emulator floor with verify: %d users, %d threads" % (args.users, width))
                floors.append(floor_run(workroot, args.users, width, args.latency_ms, True))
            results["floor"] = {
                "note": "minimal sequence per user: ListAccessKeys, DeleteAccessKey when the "
                        "user has two keys, CreateAccessKey (+verify: GetCallerIdentity with "
                        "the new key); boto3 thread pool; at 0 latency the best width counts",
                "runs": floors}
            if not args.latency_ms:
                log("emulator cost per action, one request at a time")
                results["action_costs"] = action_costs(workroot, args.users)
            program = python_tool_venv(workroot)
            small = 4  # one user of each key state: the tool's fixed cost, to subtract
            runs = []
            for users in (PYTHON_TOOL_CAP, small):
                log("iam-credential-rotation: %d users, latency %g ms" % (users, args.latency_ms))
                runs.append(run_python_tool(program, workroot, users, args.latency_ms))
            marginal = 1000 * (runs[0]["wall_s"] - runs[1]["wall_s"]) / (PYTHON_TOOL_CAP - small)
            results["python_tool"] = {
                "note": "iam-credential-rotation refuses more than %d users, so it runs at "
                        "N=%d; its per-user time is the marginal (wall(20)-wall(4))/16, "
                        "without its start-up" % (PYTHON_TOOL_CAP, PYTHON_TOOL_CAP),
                "runs": runs, "marginal_ms_per_user": round(marginal, 2)}
            for run in results["credrot"]:
                if run.get("counting_only"):
                    continue
                run["speedup_vs_python_per_user"] = ratio(marginal, run["ms_per_user"])
                for key, verify in (("ratio_to_floor", False),
                                    ("ratio_to_floor_with_verify", True)):
                    floor = matching_floor(results, run, verify)
                    run[key] = ratio(run["wall_s"], floor["wall_s"]) if floor else None
            log("credrot at the Python tool's own N=%d, for reference" % PYTHON_TOOL_CAP)
            results["credrot_at_python_n"] = [
                run_credrot(args, workroot, PYTHON_TOOL_CAP, concurrencies[0], lock,
                            args.latency_ms, via_proxy=args.latency_ms > 0) for lock in locks]
        if args.instructions:
            log("credrot under callgrind: %d users" % args.instructions)
            results["instructions"] = count_instructions(args, workroot, args.instructions)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    save(results, args.out)
    print(table(results))
    if "instructions" in results:
        counted = results["instructions"]
        print("credrot instructions (callgrind), %d users: %d in all, %d per user"
              % (counted["users"], counted["total"], counted["per_user"]))
    if "startup" in results:
        s = results["startup"]
        print("\ncredrot list start-up: median %.2f ms, best %.2f ms over %d runs "
              "(spawning /bin/true from here: %.2f ms)"
              % (s["median_ms"], s["min_ms"], s["runs"], s["spawn_baseline_median_ms"]))
    if "python_tool" in results:
        print("iam-credential-rotation per user: %.2f ms (%s)"
              % (results["python_tool"]["marginal_ms_per_user"], results["python_tool"]["note"]))
        for run in results["credrot_at_python_n"]:
            print("credrot at N=%d (%s): %.3f s, %.2f ms/user"
                  % (run["users"], "lock" if run["lock"] else "no-lock", run["wall_s"],
                     run["ms_per_user"]))
    if "action_costs" in results:
        costs = results["action_costs"]
        print("emulator ms per call, one at a time, %d users: %s"
              % (costs["users"], ", ".join("%s %.2f" % kv for kv in costs["ms_per_call"].items())))
    print("calls/user: requests per rotated user seen by the proxy, less the run's one "
          "ListUsers; by action in %s" % args.out)
    print_machine(results)


def save(results, path):
    """Write the figures (with the load average now) to the JSON file at `path`."""
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=2)
        out.write("\n")


def print_machine(results):
    """The line naming the machine and its load, under every table."""
    m = results["machine"]
    print("machine: %s cores, %s, %s GiB, moto %s; load average %s at start, %s at end"
          % (m["nproc"], m["cpu"], m["mem_gib"], m["moto"], results["loadavg_at_start"][0],
             results["loadavg_at_end"][0]))


if __name__ == "__main__":
    main()
