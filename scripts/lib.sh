# Shared by scripts/test, scripts/sandbox and .ci/run (sourced, not run).
# shellcheck shell=bash

# The repository root, whatever directory the script was started from.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The test tools (moto_server, task, aws) live in this virtual environment (git-ignored),
# so the Python you use for anything else is left alone.
VENV="$REPO_ROOT/.venv"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Check that a command exists; say how to get it when it does not.
need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"
}

# Say what is about to take a while, and roughly how long.
note() {
    echo "$(basename "$0"): $*" >&2
}

# Make .venv (once) and install requirements-test.txt into it (again only when that file
# changed), then put .venv/bin first on PATH: every moto_server, task and aws the tests and
# the sandbox start is the venv's.
install_test_requirements() {
    need python3 "install Python 3 (with its venv module: apt-get install python3-venv)"
    local requirements="$REPO_ROOT/requirements-test.txt" stamp="$VENV/.requirements-test.sha256"
    if [[ ! -x "$VENV/bin/python" ]]; then
        note "creating the virtual environment $VENV (python3 -m venv)"
        python3 -m venv "$VENV" ||
            die "python3 -m venv failed: install the venv module (apt-get install python3-venv) and remove $VENV"
    fi
    PYTHON="$VENV/bin/python"
    local wanted
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        note "installing requirements-test.txt (moto, go-task, awscli, cargo-lambda) into .venv: about 30 s the first time"
        # Every package is pinned in the file: --no-deps skips pip's resolver (over a minute of
        # CPU). The .pyc files pip compiles stay: where PYTHONDONTWRITEBYTECODE is set, as on
        # this project's machines, every moto_server and aws start would compile them again.
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps \
            -r "$requirements" </dev/null ||
            die "pip could not install requirements-test.txt into $VENV"
        # --no-deps trusts the file to list every dependency: pip check says when it does not
        # (ziglang, left out on purpose, aside).
        local broken
        broken="$("$PYTHON" -m pip check --disable-pip-version-check 2>&1 |
            grep -v -e '^No broken requirements found\.$' -e '^cargo-lambda .* requires ziglang, which is not installed\.$' || true)"
        [[ -z "$broken" ]] || die "requirements-test.txt misses dependencies (add them, pinned): $broken"
        echo "$wanted" >"$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
    # ssh-keygen and ssh-agent make the keys the encrypted-profile tests use.
    if ! command -v ssh-keygen >/dev/null 2>&1 || ! command -v ssh-agent >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "ssh-keygen/ssh-agent missing: install OpenSSH's client"
        note "installing openssh-client (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client; } >/dev/null ||
            die "apt-get could not install openssh-client"
    fi
    [[ -x "$VENV/bin/moto_server" ]] || die "moto_server is not in $VENV/bin: remove $VENV and run again"
    [[ -x "$VENV/bin/task" ]] || die "task is not in $VENV/bin: remove $VENV and run again"
}

# Build credrot's debug binary, saying how long a first build takes.
build_credrot() {
    if [[ -x "$REPO_ROOT/target/debug/credrot" ]]; then
        note "building credrot (cargo build --locked; only what changed)"
    else
        note "building credrot (cargo build --locked): the first build compiles about 390 crates, 3-5 minutes on 2 cores; later builds take seconds"
    fi
    cargo build --locked "$@"
}
