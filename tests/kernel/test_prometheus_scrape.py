"""`iotrace diagnose --prometheus` scraped by a real Prometheus (Debian's,
its own process, 1 s scrapes) while a Docker container reads a file on the
disk with O_DIRECT: PromQL returns the reader's iowait and its O_DIRECT bytes
labelled with its container, exactly what dd read."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from runs import wait_ready  # tests/runs.py

BIN = os.path.dirname(sys.executable)
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
READER = "kt-prom-reader"
BLOCK = 4096
READS = 4096                   # 16 MiB: a few seconds of D-state reads on this disk
TOP = 20                       # tracers/engine/metrics.py: TOP_CONTAINERS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Debian's prometheus scraping 127.0.0.1:target every second."""

    def __init__(self, tmp_path, target: int) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{target}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: kerntrace\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n")
        self.log = open(tmp_path / "prometheus.log", "w+")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, ok, timeout: float = 60.0, what: str = "") -> list[dict]:
        """The query's result once ok(result) holds (Prometheus has scraped
        what the exporter had then)."""
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while True:
            if time.monotonic() > deadline:
                with urllib.request.urlopen(f"http://{self.target}/metrics", timeout=5) as r:
                    served = r.read().decode()
                raise AssertionError(f"{what or promql}: still {result} after {timeout} s; the exporter serves:\n"
                                     + "\n".join(line for line in served.splitlines() if not line.startswith("#")))
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise AssertionError(f"prometheus exited: {self.log.read()[-2000:]}")
            try:
                result = self.query(promql)
                if ok(result):
                    return result
            except OSError:
                pass   # not listening yet
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.fixture
def volume(data_dir):
    """A file of READS blocks on the disk (not tmpfs) and a fifo to start dd."""
    data = os.path.join(data_dir, "data.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(READS * BLOCK))
        f.flush()
        os.fsync(f.fileno())
    os.mkfifo(os.path.join(data_dir, "go.fifo"))
    os.chmod(data_dir, 0o755)
    return data_dir


@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK), reason="prometheus is missing (Debian: apt-get install prometheus)")
def test_prometheus_scrapes_the_readers_iowait_and_odirect_bytes(docker_engine, volume, tmp_path):
    docker_engine.rm(READER)
    script = f"read go < /data/go.fifo; dd if=/data/data.bin of=/dev/null bs={BLOCK} iflag=direct"
    started = docker_engine.run(READER, "sh", "-c", script, detach=True, extra=("-v", f"{volume}:/data"))
    assert started.returncode == 0, started.stderr
    exporter = free_port()
    tracer = subprocess.Popen([os.path.join(BIN, "iotrace"), "diagnose", "-d", "300", "--prometheus",
                               f"127.0.0.1:{exporter}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    prom = Prometheus(tmp_path, exporter)
    try:
        wait_ready(tracer, "iotrace diagnose")
        # a first scrape of the exporter, before the reader starts
        prom.wait_for('up{job="kerntrace"}', lambda r: r and value(r) == 1, what="the exporter scraped")
        with open(os.path.join(volume, "go.fifo"), "w") as go:
            go.write("go\n")
        deadline = time.monotonic() + 120
        while docker_engine.inspect(READER)["State"]["Running"]:
            assert time.monotonic() < deadline, "the container's dd did not end"
            time.sleep(0.1)
        logs = docker_engine.docker("logs", READER, timeout=30)
        records = re.search(r"^(\d+)\+0 records in$", logs.stdout + logs.stderr, re.M)
        assert records, logs.stdout + logs.stderr
        dd_bytes = int(records.group(1)) * BLOCK
        assert dd_bytes == READS * BLOCK

        # the exporter's final figures for the reader: every O_DIRECT read (dd's
        # and the one at the end of the file, which returns 0) and its bytes
        sel = f'{{container="{READER}"}}'
        got = prom.wait_for(f"kerntrace_odirect_read_bytes_total{sel}", lambda r: r and value(r) == dd_bytes,
                            what="the reader's O_DIRECT bytes")
        assert got[0]["metric"] == {"__name__": "kerntrace_odirect_read_bytes_total", "container": READER,
                                    "instance": f"127.0.0.1:{exporter}", "job": "kerntrace"}
        assert value(prom.query(f"kerntrace_odirect_reads_total{sel}")) == READS + 1
        # the iowait the reader caused: D-state sleeps in iowait, from the kernel's
        # totals of the tick after they ended
        iowait = prom.wait_for(f"kerntrace_dstate_iowait_seconds_total{sel}", lambda r: r and value(r) > 0,
                               what="the reader's iowait")
        iowait_s = value(iowait)
        sleeps = value(prom.query(f"kerntrace_dstate_sleeps_total{sel}"))
        assert 0 < sleeps <= READS + 1   # an O_DIRECT read sleeps for its bio unless it completed first
        # the host's CPU iowait (/proc/stat) is served, but the reader does not
        # set it: a CPU counts iowait only while idle with a sleeper queued, in
        # 10 ms ticks, and this disk's reads often end before the task sleeps
        # (CI once saw 0 in every second of the run)
        ratio = prom.query("max_over_time(kerntrace_cpu_iowait_ratio[5m])")
        assert 0 <= value(ratio) <= 1
        cpu_iowait = prom.query("kerntrace_cpu_iowait_seconds_total")
        assert cpu_iowait and value(cpu_iowait) >= 0
        assert value(prom.query("min_over_time(kerntrace_cpu_iowait_seconds_total[5m])")) <= value(cpu_iowait)
        info = prom.query("kerntrace_info")
        assert info[0]["metric"]["tool"] == "diagnose" and info[0]["metric"]["backend"] == "libbpf"

        # bounded by design: no pid label anywhere, at most TOP containers + "other" per family
        assert prom.query('{__name__=~"kerntrace_.+", pid!=""}') == []
        per_family = prom.query('count by (__name__) (count by (__name__, container) ({__name__=~"kerntrace_.+"}))')
        assert per_family and all(float(r["value"][1]) <= TOP + 1 for r in per_family), per_family
        series = value(prom.query('count({__name__=~"kerntrace_.+"})'))
        print(f"\nreader: {dd_bytes} O_DIRECT bytes, {iowait_s:.3f} s iowait in {sleeps:.0f} D sleeps; "
              f"the exporter serves {series:.0f} series")
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(timeout=120)
        finally:
            prom.stop()
            docker_engine.rm(READER)
    assert tracer.returncode == 0, tracer.stderr.read()


def test_ip6mr_exporter_counts_namespaces_and_serves_its_alert_series():
    """`nstrace ip6mr --prometheus -c` on a command that creates three
    network namespaces and fails a fourth (EPERM: unshare as nobody): the
    exact counters, once the command has done so."""
    parser = pytest.importorskip("prometheus_client.parser", reason="pip install -e '.[test]' installs prometheus_client")
    port = free_port()
    script = "for i in 1 2 3; do unshare -n true; done; setpriv --reuid=65534 --clear-groups unshare -n true; sleep 30"
    tracer = subprocess.Popen([os.path.join(BIN, "nstrace"), "ip6mr", "--prometheus", f"127.0.0.1:{port}",
                               "-c", f"sh -c '{script}'"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_ready(tracer, "nstrace ip6mr")
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                families = {f.name: f for f in parser.text_string_to_metric_families(r.read().decode())}
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for f in families.values() for s in f.samples}
            if samples.get(("kerntrace_netns_failures_total", (("container", ""), ("errno", "EPERM")))) == 1:
                break
            assert time.monotonic() < deadline, samples
            time.sleep(0.2)
        assert samples[("kerntrace_netns_creations_total", (("container", ""),))] == 3
        assert families["kerntrace_netns_oom_kills"].type == "counter"
        assert families["kerntrace_ip6mr_kernel_at_risk"].samples[0].value in (0, 1)
        assert [s.labels for s in families["kerntrace_lost_events"].samples] == [{"object": "ip6mr"}]
        assert families["kerntrace_info"].samples[0].labels["tool"] == "ip6mr"
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=120)


def test_the_daemonsets_diagnose_serves_metrics_again_in_its_next_run(tmp_path):
    """deploy/kerntrace.yaml's diagnose command, runs of 3 s instead of an
    hour, on a loopback port: each run is a new process, and the next one
    binds the port again and serves (no "Address already in use")."""
    import yaml

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    docs = [d for d in yaml.safe_load_all(open(os.path.join(root, "deploy", "kerntrace.yaml"))) if d]
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    (c,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "diagnose"]
    cmd = list(c["command"])
    assert cmd[:2] == ["kerntrace-fleet", "record"] and cmd[-2:] == ["--prometheus", ":9436"]
    port, rec = free_port(), tmp_path / "rec"
    argv = [sys.executable, os.path.join(root, "deploy", "fleet.py"), "record", str(rec), "--every", "3",
            *cmd[3:-1], f"127.0.0.1:{port}"]
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    recorder = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def runs():
        return sorted(p for p in rec.iterdir() if (p / "meta.json").exists()) if rec.is_dir() else []

    try:
        deadline = time.monotonic() + 90
        while len(runs()) < 2:   # the second run has attached: the first process is gone
            assert recorder.poll() is None and time.monotonic() < deadline, recorder.stderr.read()
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'kerntrace_info{tool="diagnose"' in text
    finally:
        recorder.send_signal(signal.SIGTERM)
        _out, err = recorder.communicate(timeout=120)
    assert recorder.returncode == 0, err
    assert "Address already in use" not in err
