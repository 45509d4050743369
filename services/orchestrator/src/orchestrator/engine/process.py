"""Run one CLI invocation: argv list (never a shell), a clean environment, its own
process group, output captured with a cap (tail kept), ``::progress`` lines parsed,
timeout and cancellation by SIGTERM to the group then SIGKILL after a grace period."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

PROGRESS_RE = re.compile(r"^::progress\s+(\d+(?:\.\d+)?)\s*(.*)$")
_MAX_LINE = 64 * 1024

LineCallback = Callable[[str], None]
ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    spawn_error: str | None
    stderr_tail: str


class TailBuffer:
    """Keeps at most ``cap`` bytes of text, dropping the oldest; counts what it dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._parts: list[str] = []
        self._size = 0
        self.dropped = 0

    def append(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > self.cap * 2:
            self._compact()

    def _compact(self) -> None:
        joined = "".join(self._parts)
        if len(joined) > self.cap:
            self.dropped += len(joined) - self.cap
            joined = joined[-self.cap :]
        self._parts = [joined]
        self._size = len(joined)

    def text(self) -> str:
        self._compact()
        body = self._parts[0] if self._parts else ""
        if self.dropped:
            return f"[... {self.dropped} earlier characters truncated ...]\n{body}"
        return body


def clean_env(
    source: Mapping[str, str], allowlist: Sequence[str], prefixes: Sequence[str]
) -> dict[str, str]:
    """Only allow-listed variables reach the CLI: no database URLs or secrets leak."""
    env = {k: v for k, v in source.items() if k in allowlist}
    env.update({k: v for k, v in source.items() if any(k.startswith(p) for p in prefixes)})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def _die_with_parent() -> None:
    """Child-side (between fork and exec): SIGKILL us if the orchestrator dies
    (kill -9 included), so a crashed replica leaves no orphan behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# With util-linux ``setpriv`` the death signal is set by a tiny exec in between, so
# the spawn needs no ``preexec_fn``: Python can then vfork instead of forking the
# whole orchestrator (which blocks the event loop for milliseconds per task).
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _spawn_error(argv0: str, env: Mapping[str, str]) -> str | None:
    """The error a direct exec of ``argv0`` would give (checked up front, because
    behind ``setpriv`` it would only show as exit code 127)."""
    path = argv0 if "/" in argv0 else shutil.which(argv0, path=env.get("PATH"))
    if path is None or not os.path.exists(path):
        return "not found"
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        return "not executable"
    return None


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _pump(stream: asyncio.StreamReader, on_line: LineCallback) -> None:
    pending = b""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        pending += chunk
        while True:
            idx = pending.find(b"\n")
            if idx < 0:
                break
            line, pending = pending[:idx], pending[idx + 1 :]
            on_line(line[:_MAX_LINE].decode("utf-8", "replace").rstrip("\r"))
        if len(pending) > _MAX_LINE:
            on_line(pending[:_MAX_LINE].decode("utf-8", "replace"))
            pending = b""
    if pending:
        on_line(pending[:_MAX_LINE].decode("utf-8", "replace").rstrip("\r"))


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - the CLI's own time limit, enforced here
    kill_grace: float,
    stop: asyncio.Event,
    on_output: LineCallback,
    on_progress: ProgressCallback,
    on_started: Callable[[int], Awaitable[None]] | None = None,
) -> ProcessResult:
    """Run ``argv``; ``stop`` set from outside means cancel (SIGTERM, then SIGKILL)."""
    stderr_tail = TailBuffer(4096)
    if _SETPRIV is not None:
        problem = _spawn_error(argv[0], env)
        if problem is not None:
            return ProcessResult(None, False, False, f"Provisioning CLI {problem}: {argv[0]}", "")
    command = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else list(argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,  # own process group: signals reach every child
            preexec_fn=None if _SETPRIV is not None else _die_with_parent,
            close_fds=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else "not executable"
        return ProcessResult(None, False, False, f"Provisioning CLI {reason}: {argv[0]}", "")
    except OSError as exc:
        return ProcessResult(
            None, False, False, f"Cannot start provisioning CLI: {exc.strerror}", ""
        )
    if on_started is not None:
        await on_started(proc.pid)

    def stdout_line(line: str) -> None:
        match = PROGRESS_RE.match(line)
        if match:
            on_progress(min(100.0, float(match.group(1))), match.group(2).strip())
        else:
            on_output(line + "\n")

    def stderr_line(line: str) -> None:
        stderr_tail.append(line + "\n")
        on_output(line + "\n")

    assert proc.stdout is not None
    assert proc.stderr is not None
    pumps = asyncio.gather(_pump(proc.stdout, stdout_line), _pump(proc.stderr, stderr_line))
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait())
    timed_out = cancelled = False
    try:
        done, _ = await asyncio.wait(
            {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            timed_out = not done
            cancelled = not timed_out
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(kill_grace):
                    await asyncio.shield(waiter)
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                await waiter
    except asyncio.CancelledError:
        _kill_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        stopper.cancel()
        # Whatever the CLI left in its group (background children) goes too.
        _kill_group(proc.pid, signal.SIGKILL)
        if not waiter.done():
            await asyncio.shield(waiter)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await pumps
    return ProcessResult(proc.returncode, timed_out, cancelled, None, stderr_tail.text())
