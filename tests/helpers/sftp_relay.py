"""sshfs's ``ssh_command`` for the store-fault tests: no sshd, no keys, only a relay.

sshfs runs ``ssh_command ARGS... -s sftp``; this script ignores the arguments and
relays its stdin and stdout to the real OpenSSH ``sftp-server``, so the mount is a
real sshfs mount of a local directory. Its directory ``CONTROL`` (argv[1]) steers it:

- ``rate``: bytes per second allowed from the client to the server (uploads); absent
  or ``0``, no limit. Read again before each chunk, so a test can slow an upload down
  to watch it happen and let it go afterwards.
- ``down``: while it exists a new connection is refused at once (the master is
  unreachable); sshfs's ``reconnect`` keeps failing until it is removed.
- ``relay-PID.pid``: one per live relay (sshfs's connection): the test kills them
  (SIGKILL) to cut the connection, as a network that drops does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
CHUNK = 32 << 10


def _rate(control: Path) -> float:
    try:
        return float((control / "rate").read_text() or 0)
    except (OSError, ValueError):
        return 0.0


def _pump(src: int, dst: int, control: Path | None) -> None:
    """Copy src to dst until EOF; ``control`` given: limited to its ``rate``."""
    while True:
        data = os.read(src, CHUNK)
        if not data:
            break
        view = memoryview(data)
        while view:
            rate = _rate(control) if control else 0.0
            piece = view[:max(1, int(rate / 20))] if rate else view
            written = os.write(dst, piece)
            view = view[written:]
            if rate:
                time.sleep(written / rate)


def main() -> None:
    control = Path(sys.argv[1])
    if (control / "down").exists():
        sys.exit(255)  # as ssh does when it cannot connect
    mark = control / f"relay-{os.getpid()}.pid"
    mark.touch()
    server = subprocess.Popen([SFTP_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    def upload() -> None:
        _pump(0, server.stdin.fileno(), control)
        server.stdin.close()  # sshfs hung up: the server sees EOF and ends

    threading.Thread(target=upload, daemon=True).start()
    _pump(server.stdout.fileno(), 1, None)
    server.wait()
    mark.unlink()


if __name__ == "__main__":
    main()
