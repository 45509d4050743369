#!/usr/bin/env python3
"""Local stack for development, tests and CI (stdlib only: it runs before the venv exists).

    python3 deploy/local/devstack.py setup      # .venv with every package editable + dev deps,
                                                # redis-server and a MongoDB-compatible server
    python3 deploy/local/devstack.py setup --group bench  # ... and the bench group (make bench)
    python3 deploy/local/devstack.py servers    # start Redis + MongoDB/FerretDB, print URLs, wait
    python3 deploy/local/devstack.py run        # servers + control center + orchestrator

MongoDB: ``mongod`` from PATH when present, otherwise FerretDB v1.24.2 built with Go
from the wrapper in ``deploy/local/ferretdb`` into ``~/.cache/provisioning`` (reused).
``MONGODB_URL`` / ``REDIS_URL`` given: those are used and nothing is started.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_SRC = Path(__file__).resolve().parent / "ferretdb"
CACHE = Path(os.environ.get("PROVISIONING_CACHE", Path.home() / ".cache" / "provisioning"))
PACKAGES = ["libs/common", "libs/client", "services/orchestrator", "services/control_center"]
# Exact versions of every third-party package (reproducible installs; `make lint` audits it).
CONSTRAINTS = ROOT / "constraints.txt"


def log(msg: str) -> None:
    print(f"[devstack] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Install (again) when a pyproject.toml or constraints.txt is newer than the stamp.
    Every install is constrained to the exact versions of ``constraints.txt``."""
    stamp = VENV / ".provisioning-installed"
    inputs = [ROOT / "pyproject.toml", CONSTRAINTS]
    inputs += [ROOT / p / "pyproject.toml" for p in PACKAGES]
    newest = max(p.stat().st_mtime for p in inputs)
    if stamp.exists() and stamp.stat().st_mtime >= newest:
        return
    if not venv_python().exists():
        log("creating .venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-U", "pip>=25.1"], check=True)
    args = [*pip, "install"]
    for pkg in PACKAGES:
        args += ["-e", str(ROOT / pkg)]
    args += ["--group", f"{ROOT / 'pyproject.toml'}:dev", "-c", str(CONSTRAINTS)]
    log("installing packages (editable) and dev dependencies, pinned by constraints.txt")
    subprocess.run(args, check=True, cwd=ROOT)
    stamp.touch()


def ensure_group(name: str) -> None:
    """Install one more dependency group of the root pyproject.toml into .venv (e.g.
    ``bench``: Celery for the storage bench), pinned by constraints.txt; again whenever
    either changes."""
    ensure_venv()
    stamp = VENV / f".provisioning-group-{name}"
    newest = max(p.stat().st_mtime for p in (ROOT / "pyproject.toml", CONSTRAINTS))
    if stamp.exists() and stamp.stat().st_mtime >= newest:
        return
    log(f"installing the {name} dependency group, pinned by constraints.txt")
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    group = f"{ROOT / 'pyproject.toml'}:{name}"
    subprocess.run([*pip, "--group", group, "-c", str(CONSTRAINTS)], check=True, cwd=ROOT)
    stamp.touch()


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_install(*packages: str) -> None:
    names = " ".join(packages)
    if not _can_apt():
        raise SystemExit(f"{names} is missing and cannot be installed here: install it first")
    log(f"installing Debian package(s) {names}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ensure_redis() -> str:
    path = shutil.which("redis-server")
    if path is None:
        _apt_install("redis-server")
        path = shutil.which("redis-server") or "/usr/bin/redis-server"
    return path


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def ensure_node() -> tuple[str, str] | None:
    """``(node, npm)`` paths; Debian's ``nodejs``/``npm`` installed when missing. None
    (the console is not built) when they cannot be installed here, outside CI."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    if not _can_apt():
        if _in_ci():
            raise SystemExit("node and npm are missing and cannot be installed here")
        log("node/npm missing and not installable here: the console is not built")
        return None
    _apt_install(*[pkg for pkg, have in (("nodejs", node), ("npm", npm)) if not have])
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        raise SystemExit("node/npm still missing after installing Debian's nodejs and npm")
    return node, npm


CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_binary() -> str | None:
    given = os.environ.get("CHROMIUM_PATH")
    if given and Path(given).exists():
        return given
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def ensure_chromium() -> str | None:
    """Debian's Chromium for the browser tests (Playwright's own download is not used)."""
    found = chromium_binary()
    if found:
        return found
    if not _can_apt():
        if _in_ci():
            raise SystemExit("chromium is missing and cannot be installed here")
        log("chromium missing and not installable here: the browser tests will skip")
        return None
    _apt_install("chromium", "chromium-driver")
    return chromium_binary()


CONSOLE = ROOT / "console"
CONSOLE_INPUTS = (
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
    "index.html",
)


def _console_digest(names: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(names):
        digest.update(str(path.relative_to(CONSOLE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_console() -> Path | None:
    """``npm ci`` (when the lockfile changed) and ``npm run build`` (when any input
    changed) into ``console/dist``; each step skipped while its stamp matches."""
    tools = ensure_node()
    if tools is None:
        return None
    _, npm = tools
    dist = CONSOLE / "dist"
    lock_hash = _console_digest([CONSOLE / "package.json", CONSOLE / "package-lock.json"])
    lock_stamp = CONSOLE / "node_modules" / ".provisioning-lock"
    if not lock_stamp.exists() or lock_stamp.read_text() != lock_hash:
        log("installing the console's npm packages (npm ci)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], check=True, cwd=CONSOLE
        )
        lock_stamp.write_text(lock_hash)
    inputs = [CONSOLE / name for name in CONSOLE_INPUTS]
    inputs += [p for p in (CONSOLE / "src").rglob("*") if p.is_file()]
    build_hash = _console_digest(inputs)
    build_stamp = dist / ".provisioning-build"
    built = (dist / "index.html").exists() and build_stamp.exists()
    if built and build_stamp.read_text() == build_hash:
        return dist
    log("building the console (npm run build)")
    started = time.monotonic()
    subprocess.run([npm, "run", "build", "--silent"], check=True, cwd=CONSOLE)
    build_stamp.write_text(build_hash)
    log(f"console built in {time.monotonic() - started:.1f}s")
    return dist


def ferretdb_binary() -> Path:
    """Named by the wrapper's source, so a change to it builds a new binary."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((FERRETDB_SRC / name).read_bytes())
    return CACHE / f"ferretdb-{FERRETDB_VERSION}-{digest.hexdigest()[:12]}"


def ensure_mongo() -> tuple[str, str]:
    """``("mongod", path)`` when on PATH, else ``("ferretdb", path)`` (built once)."""
    mongod = shutil.which("mongod")
    if mongod:
        return "mongod", mongod
    binary = ferretdb_binary()
    if binary.exists():
        return "ferretdb", str(binary)
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise SystemExit("neither mongod nor Go is available: install one of them")
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"building FerretDB {FERRETDB_VERSION} into {binary} (once)")
    started = time.monotonic()
    # A name of its own, so two setups building at once (two checkouts) do not collide.
    tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], check=True, cwd=FERRETDB_SRC)
    tmp.replace(binary)
    log(f"FerretDB built in {time.monotonic() - started:.1f}s")
    return "ferretdb", str(binary)


KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.8.2"  # v5.8.3 needs Go >= 1.27


def _go() -> str | None:
    local = Path("/usr/local/go/bin/go")
    return shutil.which("go") or (str(local) if local.exists() else None)


def kustomize_binary() -> Path:
    return CACHE / f"kustomize-{KUSTOMIZE_VERSION}"


def ensure_kustomize() -> Path:
    """kustomize built from its Go module at a pinned version into the cache, once
    (1-2.5 minutes on 2 cores with empty Go caches), then reused."""
    binary = kustomize_binary()
    if binary.exists():
        return binary
    go = _go()
    if go is None:
        raise SystemExit("kustomize is built with Go, and Go is not available: install it")
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"building kustomize {KUSTOMIZE_VERSION} into {binary} (once)")
    started = time.monotonic()
    gobin = Path(tempfile.mkdtemp(prefix="kustomize-", dir=CACHE))
    try:
        env = {**os.environ, "GOBIN": str(gobin), "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
        subprocess.run(
            [go, "install", "-trimpath", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
            check=True,
            env=env,
            cwd=gobin,
        )
        (gobin / "kustomize").replace(binary)  # atomic: parallel builders both succeed
    finally:
        shutil.rmtree(gobin, ignore_errors=True)
    log(f"kustomize built in {time.monotonic() - started:.1f}s")
    return binary


# ------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _bson_ping() -> bytes:
    # {"ping": 1, "$db": "admin"} encoded by hand: stdlib only.
    body = (
        b"\x10ping\x00"
        + struct.pack("<i", 1)
        + b"\x02$db\x00"
        + struct.pack("<i", 6)
        + b"admin\x00"
    )
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def mongo_ping(port: int) -> bool:
    """A real ``ping`` command over OP_MSG; true when the server answers ok."""
    doc = _bson_ping()
    payload = struct.pack("<I", 0) + b"\x00" + doc
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(header + payload)
            data = b""
            while len(data) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            total = struct.unpack("<i", data[:4])[0]
            while len(data) < total:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return b"ok\x00" in data and b"\x00\x00\x00\x00\x00\x00\xf0?" in data
    except OSError:
        return False


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f}s")


@dataclass
class Stack:
    """Servers started (or given) for one run; ``stop()`` ends what it started."""

    workdir: Path
    mongodb_url: str = ""
    redis_url: str = ""
    mongo_kind: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    mongo_process: subprocess.Popen[bytes] | None = None
    mongo_port: int = 0
    redis_process: subprocess.Popen[bytes] | None = None
    redis_port: int = 0

    def env(self) -> dict[str, str]:
        return {"MONGODB_URL": self.mongodb_url, "REDIS_URL": self.redis_url}

    def stop(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()

    def stop_redis(self) -> None:
        if self.redis_process is not None:
            stop_process(self.redis_process)
            self.processes.remove(self.redis_process)
            self.redis_process = None

    def start_redis(self) -> None:
        """(Re)start Redis on the same port (empty: it persists nothing)."""
        binary = ensure_redis()
        port = self.redis_port or free_port()
        self.redis_port = port
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--protected-mode",
            "yes",
        ]
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.processes.append(proc)
        self.redis_process = proc
        wait_until(lambda: redis_ping(port), f"redis-server on port {port}")
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    def stop_mongo(self) -> None:
        if self.mongo_process is not None:
            stop_process(self.mongo_process)
            self.processes.remove(self.mongo_process)
            self.mongo_process = None

    def start_mongo(self) -> None:
        """(Re)start the MongoDB-compatible server on the same port and data."""
        kind, binary = ensure_mongo()
        port = self.mongo_port or free_port()
        self.mongo_port = port
        data = self.workdir / "mongo"
        data.mkdir(parents=True, exist_ok=True)
        if kind == "mongod":
            argv = [
                binary,
                "--bind_ip",
                "127.0.0.1",
                "--port",
                str(port),
                "--dbpath",
                str(data),
                "--quiet",
            ]
        else:
            argv = [binary, "--listen-addr", f"127.0.0.1:{port}", "--data-dir", str(data)]
        with (self.workdir / "mongo.log").open("ab") as logf:  # the child keeps its own fd
            proc = subprocess.Popen(
                argv, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(proc)
        self.mongo_process = proc
        self.mongo_kind = kind
        wait_until(lambda: mongo_ping(port), f"{kind} on port {port}")
        # FerretDB v1.24 runs an update (or upsert) with a read cursor open while it takes a
        # second SQLite connection to write, from a pool of 100: a hundred concurrent
        # writes hold every connection and wait for one more, forever (reproduced with
        # 200 concurrent update_one by _id). Each client therefore keeps at most 16
        # operations in flight, so the few processes of a local stack stay far below it.
        options = "?maxPoolSize=16" if kind == "ferretdb" else ""
        self.mongodb_url = f"mongodb://127.0.0.1:{port}/{options}"


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_servers(workdir: Path | None = None) -> Stack:
    """Start Redis and the MongoDB-compatible server unless URLs are given."""
    stack = Stack(workdir=workdir or Path(tempfile.mkdtemp(prefix="provisioning-stack-")))
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        given_redis = os.environ.get("REDIS_URL")
        if given_redis:
            stack.redis_url = given_redis
        else:
            stack.start_redis()
        given_mongo = os.environ.get("MONGODB_URL")
        if given_mongo:
            stack.mongodb_url = given_mongo
            stack.mongo_kind = "given"
        else:
            stack.start_mongo()
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running_servers(workdir: Path | None = None) -> Iterator[Stack]:
    stack = start_servers(workdir)
    try:
        yield stack
    finally:
        stack.stop()


# ----------------------------------------------------------------------- commands


def cmd_setup(args: argparse.Namespace) -> None:
    ensure_venv()
    for group in args.group:
        ensure_group(group)
    ensure_redis()
    kind, path = ensure_mongo()
    kustomize = ensure_kustomize()  # renders deploy/k8s in the deploy tests
    console = build_console()  # served by the orchestrator under /ui/
    chromium = ensure_chromium()  # the browser tests (tests/browser)
    log(
        f"ready: redis-server, {kind} ({path}), kustomize ({kustomize}), "
        f"console ({console or 'not built'}), chromium ({chromium or 'missing'}), {VENV}"
    )


def _wait_for_signal() -> None:
    stop = {"flag": False}

    def handler(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["flag"]:
        time.sleep(0.2)


def cmd_servers(args: argparse.Namespace) -> None:
    with running_servers(Path(args.dir) if args.dir else None) as stack:
        print(f"MONGODB_URL={stack.mongodb_url}\nREDIS_URL={stack.redis_url}", flush=True)
        _wait_for_signal()


def cmd_run(args: argparse.Namespace) -> None:
    ensure_venv()
    workdir = Path(args.dir or ROOT / ".local-stack")
    with running_servers(workdir) as stack:
        password = os.environ.get("BOOTSTRAP_ADMIN_PASSWORD") or _stored_password(workdir)
        cli = os.environ.get("PROVISIONING_CLI") or str(
            ROOT / "deploy/local/provisioning_simulator.py"
        )
        service_secret = _stored_secret(workdir, "service-secret")
        base = {
            **os.environ,
            **stack.env(),
            "BOOTSTRAP_ADMIN_PASSWORD": password,
            "SERVICE_CLIENT_SECRET": service_secret,
            "SERVICE_CLIENTS": f"orchestrator:{service_secret}",
        }
        cc_port = int(os.environ.get("CONTROL_CENTER_PORT", "9080"))
        orch_port = int(os.environ.get("ORCHESTRATOR_PORT", "9090"))
        py = str(venv_python())
        # The console (served by the orchestrator) calls the control center from the browser.
        console_origins = f"http://localhost:{orch_port},http://127.0.0.1:{orch_port}"
        cc = subprocess.Popen(
            [py, "-m", "control_center"],
            env={
                **base,
                "PORT": str(cc_port),
                "CORS_ORIGINS": os.environ.get("CORS_ORIGINS") or console_origins,
            },
            start_new_session=True,
        )
        stack.processes.append(cc)
        orch = subprocess.Popen(
            [py, "-m", "orchestrator"],
            env={
                **base,
                "PORT": str(orch_port),
                "PROVISIONING_CLI": cli,
                "CONTROL_CENTER_URL": f"http://127.0.0.1:{cc_port}",
                "CONTROL_CENTER_PUBLIC_URL": os.environ.get("CONTROL_CENTER_PUBLIC_URL")
                or f"http://localhost:{cc_port}",
            },
            start_new_session=True,
        )
        stack.processes.append(orch)
        print(
            f"\n  console         http://localhost:{orch_port}/ui/\n"
            f"  control center  http://localhost:{cc_port}\n"
            f"  orchestrator    http://localhost:{orch_port}\n"
            f"  admin user      admin / {password}\n"
            f"  MongoDB ({stack.mongo_kind}) {stack.mongodb_url}\n  Redis {stack.redis_url}\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        _wait_for_signal()
    log("stopped")


def _stored_secret(workdir: Path, name: str) -> str:
    path = workdir / name
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _stored_password(workdir: Path) -> str:
    return _stored_secret(workdir, "admin-password")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup")
    p.add_argument(
        "--group", action="append", default=[], help="also install this dependency group"
    )
    p.set_defaults(func=cmd_setup)
    p = sub.add_parser("servers")
    p.add_argument("--dir")
    p.set_defaults(func=cmd_servers)
    p = sub.add_parser("run")
    p.add_argument("--dir")
    p.set_defaults(func=cmd_run)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
