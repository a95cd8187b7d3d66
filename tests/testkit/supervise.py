"""Runs a command in a process group of its own and stops the whole group when this
process's standard input closes (the test process ended or was killed) or on SIGTERM
or SIGINT. A group that ignores SIGTERM for 3 s (LocalStack 2026.3 sometimes does) is
killed.

usage: python3 supervise.py LOGFILE COMMAND [ARG...]

With SUPERVISE_REMOVE_DIR set, that directory (the command's state) is deleted once
the command has stopped: a test harness that never drops its shared emulator leaves
nothing behind. With SUPERVISE_PRINT_PID set, the command's process id is the first
line on standard output, so the caller can signal the command itself; when the command
exits on its own, this exits with its status (128 + the signal, if one ended it).
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

# Set from the signal handler and the stdin thread; only read by the main loop, so no
# lock is ever taken inside a signal handler.
stop_requested = False


def request_stop(*_: object) -> None:
    global stop_requested
    stop_requested = True


def stop_at_stdin_eof() -> None:
    sys.stdin.buffer.read()
    request_stop()


def main() -> None:
    log_path, command = sys.argv[1], sys.argv[2:]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    if os.environ.get("SUPERVISE_PRINT_PID"):
        print(child.pid, flush=True)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    threading.Thread(target=stop_at_stdin_eof, daemon=True).start()

    while child.poll() is None and not stop_requested:
        time.sleep(0.1)
    if child.returncode is not None:
        status = child.returncode
        exit_after_cleanup(status if status >= 0 else 128 - status)
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except ProcessLookupError:
        pass
    exit_after_cleanup(0)


def exit_after_cleanup(status: int) -> None:
    state_dir = os.environ.get("SUPERVISE_REMOVE_DIR")
    if state_dir:
        shutil.rmtree(state_dir, ignore_errors=True)
    os._exit(status)


if __name__ == "__main__":
    main()
