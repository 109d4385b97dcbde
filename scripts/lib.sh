# Shared by scripts/test and scripts/sandbox (sourced, not run).
# shellcheck shell=bash

# The repository root, whatever directory the script was started from.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Check that a command exists; say how to get it when it does not.
need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"
}

# Install requirements-test.txt (moto_server, task) with pip. pip returns at once when the
# pinned versions are already installed. The interpreter's scripts directory goes first on
# PATH, so what pip just installed is found even where it is not on PATH yet.
install_test_requirements() {
    need python3 "install Python 3 (with pip)"
    PYTHON="${PYTHON:-python3}"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        -r "$REPO_ROOT/requirements-test.txt" ||
        die "pip could not install requirements-test.txt"
    local scripts user_scripts
    scripts="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    user_scripts="$("$PYTHON" -c 'import site, os; print(os.path.join(site.getuserbase(), "bin"))')"
    export PATH="$scripts:$user_scripts:$PATH"
    # ssh-keygen and ssh-agent make the keys the encrypted-profile tests use.
    if ! command -v ssh-keygen >/dev/null 2>&1 || ! command -v ssh-agent >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "ssh-keygen/ssh-agent missing: install OpenSSH's client"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client; } >/dev/null ||
            die "apt-get could not install openssh-client"
    fi
    need moto_server "pip install -r requirements-test.txt should have installed it"
    need task "pip install -r requirements-test.txt should have installed it"
}
