"""Runs a command in a process group of its own and stops the whole group when this
process's standard input closes (the test process ended or was killed) or on SIGTERM.
A group that ignores SIGTERM for 3 s (LocalStack 2026.3 sometimes does) is killed.

usage: python3 supervise.py LOGFILE COMMAND [ARG...]
"""

import os
import signal
import subprocess
import sys
import threading


def main() -> None:
    log_path, command = sys.argv[1], sys.argv[2:]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

    def stop(*_: object) -> None:
        try:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        except ProcessLookupError:
            pass
        os._exit(0)

    def stop_at_stdin_eof() -> None:
        sys.stdin.buffer.read()
        stop()

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=stop_at_stdin_eof, daemon=True).start()
    code = child.wait()
    os._exit(code)


if __name__ == "__main__":
    main()
