"""A wall-clock bound on math-verify/sympy that also holds off the main thread.

math-verify's own timeouts use SIGALRM, which only the main thread may arm (TRL calls rewards from
other threads), and no in-process timeout stops sympy inside one C call (the bigint power of
((9^{999})^{999})^{999}). So the parse runs in a child process, `python -m
reasoning_rl.grading.bounded`, killed when an answer runs past the bound; the next call starts a new
one. Requests and replies are JSON lines (nothing is unpickled); one child per process, one request
at a time, as graders are called from several threads.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SECONDS = 2.0  # per answer; ordinary answers take milliseconds
_START_SECONDS = 300.0  # importing sympy on a loaded machine: not part of any answer's bound
_MEMORY_BYTES = 4 << 30  # a parse that would fill the machine's memory fails with MemoryError instead


class BoundExceeded(Exception):
    """The parse ran past its bound, or its process died: the answer counts as unreadable."""


class _Child:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self.warmups: list[tuple[str, tuple]] = []  # run by every new child before its first bounded request

    def call(self, op: str, *args: Any, seconds: float) -> Any:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            try:
                self._proc.stdin.write((json.dumps({"op": op, "args": args, "seconds": seconds}) + "\n").encode())
                reply = json.loads(self._read_line(time.monotonic() + seconds))
            except (OSError, ValueError, BoundExceeded) as exc:
                self.stop()
                raise BoundExceeded(f"{op} ran past {seconds:g} s") from exc
        return reply.get("result")  # an error inside the child (MemoryError, a sympy bug): no value

    def _read_line(self, deadline: float) -> bytes:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._proc.stdout.fileno(), 1 << 16) if ready else None
            if not chunk:  # None: past the deadline; b"": the child died
                raise BoundExceeded
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the child imports this package, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._buffer = b""
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, bufsize=0, env=env)
        try:
            ready = self._read_line(time.monotonic() + _START_SECONDS)
        except BoundExceeded:
            ready = b""
        if ready != b"ready":
            self.stop()
            raise RuntimeError(f"the math-verify worker ({sys.executable} -m {__name__}) did not start")
        # What a grader must import or build first (a reasoning-gym task) runs under the start bound, so a
        # child restarted after a timeout doesn't spend the next answer's seconds on it.
        for op, args in self.warmups:
            self._proc.stdin.write((json.dumps({"op": op, "args": args, "seconds": _START_SECONDS}) + "\n").encode())
            self._read_line(time.monotonic() + _START_SECONDS)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                pipe.close()
            self._proc = None

    def forget(self) -> None:
        """In a forked process: the child and the lock belong to the parent; close our copies only."""
        self._lock = threading.Lock()
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                pipe.close()
            self._proc = None


_CHILD = _Child()
atexit.register(_CHILD.stop)
os.register_at_fork(after_in_child=_CHILD.forget)


def warm(op: str, *args: Any) -> None:
    """Run `op` on args in this child and in every later one, before its bounded requests."""
    with _CHILD._lock:
        if (op, args) not in _CHILD.warmups:
            _CHILD.warmups.append((op, args))
            _CHILD.stop()  # the next call starts a child that runs it, under the start bound


def call(op: str, *args: Any, seconds: float | None = None) -> Any:
    """`op` ("value" or "verify", see graders.UNBOUNDED) on args in the child, or BoundExceeded."""
    return _CHILD.call(op, *args, seconds=SECONDS if seconds is None else seconds)


def _serve() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the replies
    from reasoning_rl.grading.graders import UNBOUNDED

    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS,
                       (_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(hard, _MEMORY_BYTES), hard))
    # Warm latex2sympy, equations and verify up before the first answer's bound starts: their first call
    # imports and compiles for ~1 s, which on a loaded machine alone ran past SECONDS.
    UNBOUNDED["value"]("\\frac{1}{2}")
    UNBOUNDED["value"]("9 * 2 = 18")
    UNBOUNDED["verify"]("\\frac{1}{2}", "0.5")
    protocol.write("ready\n")
    protocol.flush()
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    for line in sys.stdin:
        request = json.loads(line)
        # Killed by SIGXCPU should the parent die mid-answer and never kill this process itself.
        limit = int(sum(os.times()[:2]) + 3 * request["seconds"]) + 5
        resource.setrlimit(resource.RLIMIT_CPU,
                           (limit if cpu_hard == resource.RLIM_INFINITY else min(limit, cpu_hard), cpu_hard))
        try:
            reply = {"result": UNBOUNDED[request["op"]](*request["args"])}
        except Exception as exc:  # noqa: BLE001 - any failure is an unreadable answer, reported as such
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    _serve()
