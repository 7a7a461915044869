"""Feed serving throughput: wrk against calbridge's feed listener (the daemon's WebServer, one
process) serving a 2,000-event feed, beside nginx serving the same bytes, in the same run.
200s and 304s (If-None-Match), as ratios to nginx (goals: 200s >= 0.8, 304s >= 0.3).

Before anything is timed, both servers are checked to do the same work: 200 with exactly the
same bytes, and 304 with no body to a conditional request. During the run, wrk must report no
errors and no non-2xx/3xx answers, and every answer must have been the expected one (wrk's
transferred bytes agree with the count of requests). Otherwise the script stops with an error:
a ratio against a reference that answered 403 (nginx in a mode-0700 temp dir) means nothing.

Everything binds to 127.0.0.1 on free ports and is stopped by PID at the end.
Usage: .venv/bin/python bench/serve.py [--duration 5] [--access-log]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"200": 0.8, "304": 0.3}


class BenchError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"bench/serve.py: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(cmd: list[str], **kwargs: object) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise BenchError(f"{url} never answered")


def nginx_conf(work: Path, port: int, access_log: bool) -> Path:
    log = f"access_log {work / 'nginx-access.log'};" if access_log else "access_log off;"
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {work / "nginx.pid"};
error_log {work / "nginx-error.log"};
events {{ worker_connections 256; }}
http {{
  {log}
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  types {{ text/calendar ics; }}
  server {{ listen 127.0.0.1:{port}; root {work / "www"}; etag on; }}
}}
""")
    return conf


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    etag: str
    pid: int


def check(target: Target, body: bytes) -> None:
    """The server answers what the benchmark will count: the same bytes, then a bodiless 304."""
    full = httpx.get(target.url, headers={"Accept-Encoding": "identity"})
    if full.status_code != 200:
        raise BenchError(f"{target.name} answered {full.status_code} to GET {target.url}")
    if full.content != body:
        raise BenchError(
            f"{target.name} served {len(full.content)} bytes that differ from the feed "
            f"({len(body)} bytes)"
        )
    again = httpx.get(target.url, headers={"If-None-Match": target.etag})
    if again.status_code != 304 or again.content:
        raise BenchError(
            f"{target.name} answered {again.status_code} with {len(again.content)} bytes to "
            "If-None-Match with its own ETag; expected 304 without a body"
        )


@dataclass(frozen=True)
class Rate:
    per_second: float
    requests: int
    bytes_read: int
    cpu: float = 0.0  # CPU seconds the server's processes used during the run

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / self.requests


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children alive now (nginx's worker)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    total = 0
    for p in pids:
        try:
            fields = (Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def wrk(url: str, duration: int, headers: list[str], expect_body: int, pid: int) -> Rate:
    cmd = ["wrk", "-t2", "-c10", f"-d{duration}s"]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    cpu = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    cpu = cpu_seconds(pid) - cpu
    if out.returncode:
        raise BenchError(f"wrk failed: {out.stderr[-500:]}")
    text = out.stdout
    if "Non-2xx or 3xx" in text or "Socket errors" in text:
        raise BenchError(f"wrk saw errors against {url}:\n{text}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    done = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(\w+) read", text)
    if rate is None or done is None:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    requests = int(done.group(1))
    read = int(float(done.group(2)) * SIZE_UNITS[done.group(3)])
    # Each answer carries the body (200) or none (304): the bytes read say which it was.
    low, high = requests * expect_body, requests * (expect_body + 1200)
    if not low * 0.99 <= read <= high * 1.01:
        raise BenchError(
            f"{url}: {requests} answers but {read} bytes read; expected about "
            f"{expect_body} body bytes each plus headers"
        )
    return Rate(float(rate.group(1)), requests, read, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server and status")
    parser.add_argument("--access-log", action="store_true", help="both servers log each request")
    parser.add_argument(
        "--secrets", type=int, default=0, help="secrets the daemon redacts (10,000 people: 20000)"
    )
    parser.add_argument("--parser", choices=["httptools", "h11"], default="httptools")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (see /work/shared/TESTING.md)")
    with tempfile.TemporaryDirectory(prefix="calbridge-serve-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's worker runs as another user: a 0700 dir answers 403
        (work / "www").mkdir(mode=0o755)
        (work / "tmp").mkdir()
        feed = work / "www" / "feed.ics"
        fixture = [sys.executable, str(ROOT / "bench" / "serve_fixture.py"), str(feed)]
        fixture += ["--parser", args.parser, "--loop", args.loop, "--secrets", str(args.secrets)]
        if args.access_log:
            fixture += ["--access-log", str(work / "calbridge-access.log")]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with process(fixture, stdout=subprocess.PIPE, env=env, cwd=ROOT) as app:
            assert app.stdout is not None
            line = app.stdout.readline().split()
            if len(line) != 4:
                raise BenchError("the calbridge fixture did not start")
            port, secret, etag, events = line
            feed.chmod(0o644)
            ngx_port = free_port()
            conf = nginx_conf(work, ngx_port, args.access_log)
            with process(["nginx", "-c", str(conf)]) as ngx:
                ngx_url = f"http://127.0.0.1:{ngx_port}/feed.ics"
                wait_up(ngx_url)
                ngx_etag = httpx.get(ngx_url).headers["etag"]
                body = feed.read_bytes()
                app_url = f"http://127.0.0.1:{port}/feeds/bench/{secret}.ics"
                ours = Target("calbridge", app_url, etag, app.pid)
                theirs = Target("nginx", ngx_url, ngx_etag, ngx.pid)
                for target in (ours, theirs):
                    check(target, body)
                rates: dict[tuple[str, str], list[Rate]] = {}
                for code, expect in (("200", len(body)), ("304", 0)):
                    for _ in range(args.rounds):  # alternating, so both meet the same load
                        for target in (ours, theirs):
                            headers = [f"If-None-Match: {target.etag}"] if code == "304" else []
                            rates.setdefault((code, target.name), []).append(
                                wrk(target.url, args.duration, headers, expect, target.pid)
                            )
    print(
        f"feed: {events} events, {len(body)} bytes; wrk -t2 -c10, {args.rounds} x "
        f"{args.duration}s per server and status, alternating, on loopback; access log "
        f"{'on' if args.access_log else 'off'} on both; {args.parser} on {args.loop}; "
        f"{args.secrets} secrets to redact; "
        f"{os.cpu_count()} cores shared with wrk (and whatever else runs)"
    )
    print(
        f"{'':4} {'calbridge r/s':>13} {'nginx r/s':>10} {'ratio':>6} {'goal':>5}"
        f" | {'CPU us/request: calbridge':>25} {'nginx':>6} {'ratio':>6}"
    )
    for code, goal in GOALS.items():
        app_runs, ngx_runs = rates[code, "calbridge"], rates[code, "nginx"]
        app_rate = max(r.per_second for r in app_runs)  # best of: the least disturbed run
        ngx_rate = max(r.per_second for r in ngx_runs)
        app_cpu = min(r.cpu_per_request for r in app_runs) * 1e6
        ngx_cpu = min(r.cpu_per_request for r in ngx_runs) * 1e6
        ratio = app_rate / ngx_rate
        print(
            f"{code:4} {app_rate:13.0f} {ngx_rate:10.0f} {ratio:6.3f} {goal:5} {'ok' if ratio >= goal else 'BELOW':5}"
            f" | {app_cpu:25.0f} {ngx_cpu:6.0f} {ngx_cpu / app_cpu:6.3f}"
        )


if __name__ == "__main__":
    main()
