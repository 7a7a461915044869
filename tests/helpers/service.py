"""The systemd unit and the README's install steps, carried out without systemd.

PID 1 is not systemd on the machines these tests run on, so a unit cannot be started. What can
be checked is what the unit would do: ``ServiceTree`` lays out exactly the directories, owners
and modes that the README's ``install`` lines and the unit's ``ConfigurationDirectory=``,
``StateDirectory=``, ``LoadCredential=`` and ``UMask=`` produce, under a scratch root, and runs
the unit's ``ExecStart=`` as an unprivileged user (``nobody`` stands in for the dynamic user)
with the environment systemd would give it, a notify socket and a journald-like stderr.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.servers import free_port

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "calbridge.service"
README = REPO / "README.md"
SERVICE_USER = "nobody"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unit_directives(path: Path = UNIT) -> dict[str, list[str]]:
    """Each ``Key=value`` of a unit file, in order; repeated keys keep every value."""
    out: dict[str, list[str]] = defaultdict(list)
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out[key.strip()].append(value.strip())
    return out


@dataclass(frozen=True)
class Install:
    """One ``install`` command of the README: a directory or a file, with its mode."""

    directory: bool
    mode: int
    source: str | None
    dest: str


def readme_install_steps(readme: Path = README) -> list[Install]:
    """The ``install …`` commands of the README's service section, in order."""
    text = readme.read_text()
    section = text.split("## Running as a service", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    steps = []
    for raw in block.splitlines():
        command = raw.split(" #", 1)[0].rsplit("|", 1)[-1].strip()
        if not command.startswith("install "):
            continue
        args = shlex.split(command)[1:]
        directory, mode, paths = False, 0o755, []
        while args:
            arg = args.pop(0)
            if arg == "-d":
                directory = True
            elif arg == "-m":
                mode = int(args.pop(0), 8)
            elif arg in ("-o", "-g"):
                assert args.pop(0) == "root", raw  # everything the README installs is root's
            else:
                paths.append(arg)
        if directory:
            steps.extend(Install(True, mode, None, p) for p in paths)
        else:
            steps.append(Install(False, mode, paths[0], paths[1]))
    return steps


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    stderr_read: int
    messages: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in m for m in self.messages):
                return
            if self.proc.poll() is not None:
                break
            self.notify.settimeout(0.2)
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(
            f"no {text!r} from the service (exit {self.proc.poll()}); got {self.messages}; "
            f"stderr: {self.stop_and_read()[1][-3000:]}"
        )

    def stop_and_read(self, timeout: float = 30, *, terminate: bool = True) -> tuple[int, str]:
        """SIGTERM (as systemctl stop) unless told to wait for the service to exit by itself,
        then everything the service wrote to stderr."""
        if terminate and self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        chunks = []
        while chunk := os.read(self.stderr_read, 65536):
            chunks.append(chunk)
        return code, b"".join(chunks).decode(errors="replace")


class ServiceTree:
    """A scratch root holding /etc/calbridge, /var/lib/calbridge and /run/credentials/…"""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.admin_port: int | None = None  # set by install_example
        self.unit = unit_directives()
        user = pwd.getpwnam(SERVICE_USER)
        self.uid, self.gid = user.pw_uid, user.pw_gid

    def path(self, absolute: str) -> Path:
        """Where an absolute path of the real install lives under the scratch root."""
        return self.root / absolute.lstrip("/")

    # -- what the README's install steps do (as root) --------------------------------------

    def install(self, secrets: dict[str, str], edit_config: dict[str, str]) -> None:
        """Carry out the README's ``install`` lines: the config copied from
        config.example.toml (then "edited" by exact replacements, each of which must match),
        credentials from ``secrets`` (name → value, the ``/dev/stdin`` of the README)."""
        for step in readme_install_steps():
            if step.dest.startswith("/etc/systemd/") or step.dest.startswith("/opt/"):
                continue
            target = self.path(step.dest)
            if step.directory:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if step.source == "/dev/stdin":
                    target.write_text(secrets[target.name] + "\n")
                else:
                    assert step.source is not None
                    shutil.copyfile(REPO / step.source, target)
                if target.name == "config.toml":
                    text = target.read_text()
                    for old, new in edit_config.items():
                        assert old in text, f"config.example.toml no longer has {old!r}"
                        text = text.replace(old, new)
                    target.write_text(text)
            os.chown(target, 0, 0)
            target.chmod(step.mode)

    def install_example(
        self, canvas_url: str, port: int, dav_url: str, secrets: dict[str, str]
    ) -> Path:
        """The README's install with config.example.toml edited to point at the given Canvas,
        listen port and CalDAV server (its state URL moved under the scratch root). The admin
        listener stays on loopback as the example has it, on a free port (``admin_url``)."""
        state = "sqlite:////var/lib/calbridge/state.sqlite3"
        self.admin_port = free_port()
        self.install(
            secrets,
            {
                'canvas_url = "https://canvas.example.edu"': f'canvas_url = "{canvas_url}"',
                'listen = "127.0.0.1:8765"': f'listen = "127.0.0.1:{port}"',
                'admin_listen = "127.0.0.1:8766"': f'admin_listen = "127.0.0.1:{self.admin_port}"',
                'url = "https://dav.example.com/"': f'url = "{dav_url}"',
                f'url = "{state}"': f'url = "sqlite:///{self.path("/var/lib/calbridge")}/state.sqlite3"',
            },
        )
        return self.path("/etc/calbridge/config.toml")

    @property
    def admin_url(self) -> str:
        """/healthz and /metrics of the installed service (the admin listener)."""
        assert self.admin_port is not None, "install_example() sets the admin port"
        return f"http://127.0.0.1:{self.admin_port}"

    def feed_path(self, config: Path, feed_id: str = "alice") -> str:
        """The secret path of a feed, from `calbridge feeds --json` run as the service user."""
        out = self.run_as_service_user("feeds", "-c", str(config), "--json")
        assert out.returncode == 0, out.stderr
        (row,) = [r for r in json.loads(out.stdout) if r["id"] == feed_id]
        assert row["https"].startswith(f"https://calendar.example.edu/feeds/{feed_id}/")
        return str(row["https"]).removeprefix("https://calendar.example.edu")

    # -- what systemd does when it starts the unit -------------------------------------------

    def _configuration_directory(self) -> Path:
        (name,) = self.unit["ConfigurationDirectory"]
        path = self.path(f"/etc/{name}")
        if not path.exists():  # systemd creates it root-owned, 0755, never chowned
            path.mkdir(parents=True, mode=0o755)
        return path

    def _state_directory(self) -> Path:
        (name,) = self.unit["StateDirectory"]
        mode = int(self.unit.get("StateDirectoryMode", ["0755"])[0], 8)
        path = self.path(f"/var/lib/{name}")
        path.mkdir(parents=True, exist_ok=True)
        # An existing state directory not owned by the service user (e.g. restored by root) is
        # chowned recursively at start (systemd.exec(5), StateDirectory=).
        for item in [path, *path.rglob("*")]:
            os.chown(item, self.uid, self.gid)
        path.chmod(mode)
        return path

    def _credentials(self) -> Path:
        """LoadCredential=ID:PATH copies PATH (read as root) to $CREDENTIALS_DIRECTORY/ID,
        owned by the service user, 0400, in a 0500 directory; a missing source fails the start."""
        directory = self.path("/run/credentials/calbridge.service")
        directory.mkdir(parents=True, exist_ok=True)
        for spec in self.unit["LoadCredential"]:
            name, _, source = spec.partition(":")
            copy = directory / name
            shutil.copyfile(self.path(source), copy)
            os.chown(copy, self.uid, self.gid)
            copy.chmod(0o400)
        os.chown(directory, self.uid, self.gid)
        directory.chmod(0o500)
        return directory

    def exec_start(self) -> list[str]:
        """The unit's ExecStart=, the venv and /etc paths mapped to this checkout and root."""
        (line,) = self.unit["ExecStart"]
        argv = shlex.split(line)
        assert argv[0] == "/opt/calbridge/.venv/bin/calbridge", argv
        argv[0] = str(REPO / ".venv" / "bin" / "calbridge")
        return [str(self.path(a)) if a.startswith("/etc/") else a for a in argv]

    def as_service_user(self) -> list[str]:
        """The command prefix that drops to the service user: no supplementary groups, no
        capabilities (CapabilityBoundingSet= is empty), as systemd does for DynamicUser=."""
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]

    def environment(self) -> dict[str, str]:
        env = {"PATH": PATH, "HOME": "/", "LANG": "C.UTF-8"}
        for assignment in self.unit.get("Environment", []):
            for pair in shlex.split(assignment):
                key, _, value = pair.partition("=")
                env[key] = value
        return env

    @contextmanager
    def start(self, extra_env: dict[str, str] | None = None) -> Iterator[Service]:
        config_dir = self._configuration_directory()
        env = self.environment() | {
            "CONFIGURATION_DIRECTORY": str(config_dir),
            "STATE_DIRECTORY": str(self._state_directory()),
            "CREDENTIALS_DIRECTORY": str(self._credentials()),
        }
        watchdog = self.unit["WatchdogSec"][0].removesuffix("s")
        env["WATCHDOG_USEC"] = str(int(watchdog) * 1_000_000)
        sock_path = self.path("/run/systemd/notify")
        sock_path.parent.mkdir(parents=True, exist_ok=True)
        sock_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_path))
        os.chown(sock_path, self.uid, self.gid)
        env["NOTIFY_SOCKET"] = str(sock_path)
        # StandardError=journal: a stream whose device and inode are in $JOURNAL_STREAM.
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, True)
        st = os.fstat(write_end)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        env |= extra_env or {}
        umask = int(self.unit["UMask"][0], 8)
        proc = subprocess.Popen(
            [*self.as_service_user(), *self.exec_start()],
            env=env,
            cwd="/",
            umask=umask,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
        )
        os.close(write_end)
        service = Service(proc, notify, read_end)
        try:
            yield service
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            notify.close()
            os.close(read_end)

    def run_as_service_user(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another calbridge command as the service user, with the service's environment."""
        env = self.environment() | {
            "STATE_DIRECTORY": str(self.path("/var/lib/calbridge")),
            "CREDENTIALS_DIRECTORY": str(self.path("/run/credentials/calbridge.service")),
        }
        return subprocess.run(
            [*self.as_service_user(), str(REPO / ".venv" / "bin" / "calbridge"), *args],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )


@contextmanager
def service_tree() -> Iterator[ServiceTree]:
    """A scratch root every user can traverse (pytest's tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="calbridge-unit-"))
    root.chmod(0o755)
    try:
        yield ServiceTree(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


PRIORITY_LINE = re.compile(r"^<([0-7])>")
