"""--prometheus ADDR without root: the exposition text read back by the
reference parser (prometheus_client), the top-N + "other" bounding of the
container label, ADDR parsing, and the server's answer."""
from __future__ import annotations

import socket
import urllib.request

import pytest

from kerntrace.tracers.cli import iotrace_main, nstrace_main
from kerntrace.tracers.engine.environment import UsageProblem
from kerntrace.tracers.engine.metrics import (CONTENT_TYPE, OTHER, Exporter, Family, Series, TopContainers,
                                              parse_address, render)

parser = pytest.importorskip("prometheus_client.parser", reason="pip install -e '.[test]' installs prometheus_client")


def parse(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    return {f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
            for f in parser.text_string_to_metric_families(text)}


def test_exposition_reads_back_strictly():
    families = [
        Family("kerntrace_info", "gauge", "The run.").add(1, tool="diagnose", version="0.1.0", kernel="6.1.0-18-amd64",
                                                          backend="libbpf"),
        Family("kerntrace_odirect_read_bytes_total", "counter", "Bytes\nread \\ back.")
        .add(4096 * 300, container="kt-prom-reader").add(0, container=""),
        Family("kerntrace_cpu_iowait_ratio", "gauge", "Share.").add(0.125),
        Family("kerntrace_zombies", "gauge", "None yet."),
        Family("kerntrace_netns_failures_total", "counter", "By errno.").add(3, container='we"ird\\name\n', errno="ENOMEM"),
    ]
    text = render(families)
    got = parse(text)
    assert got["kerntrace_info"] == ("gauge", [("kerntrace_info", {"tool": "diagnose", "version": "0.1.0",
                                                                    "kernel": "6.1.0-18-amd64", "backend": "libbpf"}, 1.0)])
    # the reference parser names a counter family without _total, its samples with it
    assert got["kerntrace_odirect_read_bytes"] == ("counter", [
        ("kerntrace_odirect_read_bytes_total", {"container": "kt-prom-reader"}, 1228800.0),
        ("kerntrace_odirect_read_bytes_total", {"container": ""}, 0.0)])
    assert got["kerntrace_cpu_iowait_ratio"] == ("gauge", [("kerntrace_cpu_iowait_ratio", {}, 0.125)])
    assert got["kerntrace_zombies"] == ("gauge", [])
    assert got["kerntrace_netns_failures"][1] == [("kerntrace_netns_failures_total",
                                                   {"container": 'we"ird\\name\n', "errno": "ENOMEM"}, 3.0)]
    # integers stay integers in the text (no 1.2288e+06)
    assert 'kerntrace_odirect_read_bytes_total{container="kt-prom-reader"} 1228800\n' in text
    assert text.endswith("\n") and "# TYPE kerntrace_odirect_read_bytes_total counter" in text


def test_top_n_plus_other_keeps_the_sum_and_the_bound():
    top = TopContainers(counter=False, n=3)
    values = {(f"c{i}",): float(i) for i in range(10)}
    out = top.bucket(values)
    assert out == {("c9",): 9.0, ("c8",): 8.0, ("c7",): 7.0, (OTHER,): float(sum(range(7)))}
    # with more labels: containers ranked on their sum over the other labels
    out = TopContainers(counter=False, n=1).bucket({("a", "ENOMEM"): 1, ("a", "EPERM"): 5, ("b", "ENOMEM"): 4})
    assert out == {("a", "ENOMEM"): 1, ("a", "EPERM"): 5, (OTHER, "ENOMEM"): 4}


def test_a_counters_chosen_containers_stay_so_no_series_goes_down():
    top = TopContainers(counter=True, n=2)
    assert top.bucket({("a",): 10, ("b",): 5, ("c",): 1}) == {("a",): 10, ("b",): 5, (OTHER,): 1}
    # c overtakes b: b keeps its own series (its counter must not fall to 0),
    # c stays in "other", which only grows
    assert top.bucket({("a",): 10, ("b",): 5, ("c",): 50}) == {("a",): 10, ("b",): 5, (OTHER,): 50}
    # a gauge follows the value
    gauge = TopContainers(counter=False, n=2)
    gauge.bucket({("a",): 10, ("b",): 5, ("c",): 1})
    assert gauge.bucket({("a",): 10, ("b",): 5, ("c",): 50}) == {("c",): 50, ("a",): 10, (OTHER,): 5}


def test_series_bounds_every_family_at_n_plus_one_container_values():
    series = Series(n=20)
    values = {(f"c{i:02d}",): float(i) for i in range(50)}
    family = series.per_container("kerntrace_dstate_tasks", "gauge", "D now.", values)
    containers = {labels["container"] for labels, _v in family.samples}
    assert len(containers) == 21 and OTHER in containers
    assert sum(v for _l, v in family.samples) == sum(values.values())
    assert not any("pid" in labels for labels, _v in family.samples)


@pytest.mark.parametrize("text,want", [
    ("127.0.0.1:9435", ("127.0.0.1", 9435)),
    (":9435", ("", 9435)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:9435", ("::1", 9435)),
])
def test_addresses(text, want):
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["9435", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", ":65536", "host:port",
                                  "::1:9435", "[nothost]:9435", "a b:9435"])
def test_bad_addresses(text):
    with pytest.raises(UsageProblem, match="expected HOST:PORT"):
        parse_address(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_address_and_port_in_use_stop_the_command_with_one_line(capsys):
    """Before anything is attached (no root needed to see it)."""
    assert iotrace_main(["diagnose", "--prometheus", "nonsense", "-d", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "iotrace: error: --prometheus 'nonsense': expected HOST:PORT" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert nstrace_main(["ip6mr", "--prometheus", f"127.0.0.1:{port}", "-d", "1"]) == 2
        err = capsys.readouterr().err
        assert err == f"nstrace: error: --prometheus 127.0.0.1:{port}: Address already in use\n"


def test_the_server_answers_with_the_last_rendering():
    exporter = Exporter(f"127.0.0.1:{_free_port()}")
    try:
        exporter.publish(render([Family("kerntrace_zombies", "gauge", "Z.").add(2, container="web")]))
        exporter.start()
        url = f"http://127.0.0.1:{exporter.port}"
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert r.headers["Content-Type"] == CONTENT_TYPE
            assert parse(r.read().decode())["kerntrace_zombies"][1] == [("kerntrace_zombies", {"container": "web"}, 2.0)]
        exporter.publish(render([Family("kerntrace_zombies", "gauge", "Z.").add(0, container="web")]))
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert parse(r.read().decode())["kerntrace_zombies"][1][0][2] == 0.0
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/nothing", timeout=5)
        assert e.value.code == 404
    finally:
        exporter.close()
