#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and answer its prompts, as a person would.

Usage: pty_drive.py PROMPT=ANSWER [PROMPT=ANSWER ...] -- COMMAND [ARGS...]
Each ANSWER (plus Enter) is typed once PROMPT has appeared in the output. Everything the
command printed is copied to stdout; the exit code is the command's.
"""

import os
import pty
import select
import sys
import time


def main():
    split = sys.argv.index("--")
    answers = [a.split("=", 1) for a in sys.argv[1:split]]
    command = sys.argv[split + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            sys.stdout.buffer.write(chunk)
        if answers and answers[0][0].encode() in seen:
            prompt, answer = answers.pop(0)
            seen = seen[seen.index(prompt.encode()) + len(prompt):]
            time.sleep(0.1)
            os.write(fd, answer.encode() + b"\r")
    _, status = os.waitpid(pid, 0)
    sys.stdout.flush()
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
