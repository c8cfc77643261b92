"""`iotrace report` over a fleet: three nodes' traces recorded on this host
(the bundled iowait reproduction under `iotrace diagnose`, and `nstrace
ip6mr`) in the DaemonSet's node=NODE/TOOL/START layout; read from local
disk, from a real S3-compatible server (moto, its own process) through
DuckDB's httpfs, and by Spark in local mode."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from iowait_repro import build_repro, make_data_file, repro_argv
from kerntrace.analysis.findings import SEVERITIES

FILE_MIB = 32
READ_SIZE = 16 << 10
# node -> (children of the reproduction, buffered: the fixed program)
NODES = {"a": (4, False), "b": (4, True), "c": (3, False)}
START = "20261203T090000Z"
BUCKET = "kerntrace-traces"
PREFIX = "prod"


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _run(*argv, env=None):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A fleet root holding node=a, node=b, node=c: a and c run the bug
    (O_DIRECT readers, unreaped children), b the fixed program; c also
    has an ip6mr trace."""
    workdir = tempfile.mkdtemp(prefix="kerntrace-test-", dir=os.environ.get("KERNTRACE_DATA_DIR", "/var/tmp"))
    root = tmp_path_factory.mktemp("fleet")
    try:
        binary, data = build_repro(workdir), make_data_file(workdir, FILE_MIB)
        for node, (children, fixed) in NODES.items():
            out = root / f"node={node}" / "diagnose"
            out.mkdir(parents=True)
            command = " ".join(repro_argv(binary, data, fixed, children=children, read_size=READ_SIZE, hold_s=1.0))
            _run(_bin("iotrace"), "diagnose", "-o", str(out / START), "-c", command)
        (root / "node=c" / "ip6mr").mkdir()
        _run(_bin("nstrace"), "ip6mr", "-d", "1", "-o", str(root / "node=c" / "ip6mr" / START))
        yield root
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_s3():
    """moto's S3 server as a process of its own; its endpoint URL."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e '.[test]')")
    port = _free_port()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:   # serving once it answers a request
            try:
                urllib.request.urlopen(endpoint + "/", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _s3_env():
    return {**os.environ, "AWS_ACCESS_KEY_ID": "kerntrace-test", "AWS_SECRET_ACCESS_KEY": "kerntrace-test",
            "AWS_REGION": "us-east-1"}


def _bucket(endpoint):
    """A client of moto's server, with the test's bucket made."""
    import boto3

    env = _s3_env()
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return s3


def _upload(fleet, endpoint):
    s3 = _bucket(endpoint)
    for path in sorted(p for p in fleet.rglob("*") if p.is_file()):
        s3.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(fleet)}")
    return f"s3://{BUCKET}/{PREFIX}"


def _per_node(report, root):
    """Each trace's node, tool, place under the root and findings."""
    return [(t["node"], t["tool"], os.path.relpath(t["trace"], root) if not root.startswith("s3://")
             else t["trace"][len(root) + 1:], t["complete"], t["findings"]) for t in report["traces"]]


def test_fleet_report_from_s3_equals_local(fleet, moto_s3):
    url = _upload(fleet, moto_s3)
    local = json.loads(_run(_bin("iotrace"), "report", str(fleet), "--json"))
    remote = json.loads(_run(_bin("iotrace"), "report", url, "--s3-endpoint", moto_s3, "--json", env=_s3_env()))
    assert _per_node(remote, url) == _per_node(local, str(fleet))
    assert remote["summary"] == [{**row, "worst": {**row["worst"], "trace": row["worst"]["trace"].replace(
        str(fleet), url)}} for row in local["summary"]]

    # the fleet summary: a and c show the bug, b (the fixed program) nothing
    assert remote["fleet"] == {"sources": [url], "nodes": ["a", "b", "c"], "traces": 4}
    by_id = {row["id"]: row for row in remote["summary"]}
    figures = {(t["node"], f["id"]): f["figure"] for t in remote["traces"] for f in t["findings"]}
    rank = {(t["node"], f["id"]): (SEVERITIES.index(f["severity"]), f["figure"])
            for t in remote["traces"] for f in t["findings"]}
    for rule in ("odirect-bypass", "iowait-cause", "dstate-io", "unreaped-children"):
        assert by_id[rule]["nodes"] == ["a", "c"], rule
        # the more severe, then the larger figure (seconds of iowait are
        # measured: either node may have more)
        assert by_id[rule]["worst"]["node"] == max("ac", key=lambda node: rank[(node, rule)]), rule
    assert by_id["odirect-bypass"]["worst"]["node"] == by_id["unreaped-children"]["worst"]["node"] == "a"
    assert by_id["ip6mr-crash-risk"]["nodes"] == ["c"]
    # every child reads the whole file with O_DIRECT; the parent reaps one
    assert figures[("a", "odirect-bypass")] == NODES["a"][0] * FILE_MIB
    assert figures[("c", "odirect-bypass")] == NODES["c"][0] * FILE_MIB
    assert figures[("a", "unreaped-children")] == NODES["a"][0] - 1
    assert figures[("c", "unreaped-children")] == NODES["c"][0] - 1
    assert figures[("a", "iowait-cause")] > 0 and figures[("c", "iowait-cause")] > 0
    assert [t["findings"] for t in remote["traces"] if t["node"] == "b"] == [[]]
    assert remote["worst"] == {"node": "a", "severity": "warning",
                               "findings": ["odirect-bypass", "iowait-cause", "dstate-io", "unreaped-children"]}

    text = _run(_bin("iotrace"), "report", url, "--s3-endpoint", moto_s3, env=_s3_env())
    assert text.splitlines()[0] == f"Fleet: 3 nodes, 4 traces ({url})."
    assert "  odirect-bypass: 2 of 3 nodes (a, c); worst on a (warning, 128 MiB read with O_DIRECT)" in text
    assert text.splitlines()[-1] == ("Worst node: a, 4 warning findings "
                                     "(odirect-bypass, iowait-cause, dstate-io, unreaped-children).")


def test_s3_errors_are_one_line(moto_s3):
    _bucket(moto_s3).put_object(Bucket=BUCKET, Key="not-traces/meta.json", Body=b'{"format": "other"}')
    cases = [
        ([f"s3://{BUCKET}/not-traces", "--s3-endpoint", moto_s3], "no kerntrace trace directory in it"),
        ([f"s3://{BUCKET}/nothing-here", "--s3-endpoint", moto_s3], "no kerntrace trace directory in it"),
        (["s3://no-such-bucket/x", "--s3-endpoint", moto_s3], "cannot read from S3"),
        # a closed port: S3 unreachable
        ([f"s3://{BUCKET}/{PREFIX}", "--s3-endpoint", f"http://127.0.0.1:{_free_port()}"], "cannot read from S3"),
    ]
    for args, message in cases:
        done = subprocess.run([_bin("iotrace"), "report", *args], capture_output=True, text=True, timeout=120,
                              env=_s3_env())
        assert done.returncode == 2 and done.stdout == "", (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, (args, done.stderr)


def test_spark_reads_the_fleet(fleet):
    """Spark in local mode counts each node's O_DIRECT reads and bytes as
    kerntrace's finding does, and reads the UTC time column (Parquet
    TIMESTAMP(MICROS)) to the microsecond."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[test]')")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java: apt-get install default-jre-headless (make deps)")
    import pyarrow.compute as pc
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from kerntrace.tracers.engine.tracedir import TraceReader
    from kerntrace.tracers.report import report_trace

    expected = {}
    for node in ("a", "c"):
        path = str(fleet / f"node={node}" / "diagnose" / START)
        _tool, _envelope, findings = report_trace(path)
        (bypass,) = [f for f in findings if f.id == "odirect-bypass"]
        reader = TraceReader(path)
        reads = reader.table("read").filter(pc.field("direct"))
        first_us = (pc.min(reads["ts_ns"]).as_py() + reader.meta["clock"]["offset_ns"]) // 1000
        expected[node] = (sum(r["odirect_reads"] for r in bypass.evidence), sum(r["bytes"] for r in bypass.evidence),
                          first_us)

    spark = (SparkSession.builder.master("local[1]").appName("kerntrace-test")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        where = str(fleet / "node=*" / "diagnose" / "*" / "read")
        reads = (spark.read.option("recursiveFileLookup", "true").parquet(where)
                 .withColumn("node", F.regexp_extract(F.input_file_name(), "node=([^/]+)/", 1)))
        assert dict(reads.dtypes)["time"] == "timestamp"
        rows = (reads.where("direct").groupBy("node")
                .agg(F.count("*").alias("reads"), F.sum("bytes").alias("bytes"),
                     F.min(F.unix_micros("time")).alias("first_us")).collect())
    finally:
        spark.stop()
    got = {r["node"]: (r["reads"], r["bytes"], r["first_us"]) for r in rows}
    assert got == expected
    # each child reads the file in READ_SIZE reads, then one read at its end
    for node, (reads_n, nbytes, _first) in got.items():
        children = NODES[node][0]
        assert (reads_n, nbytes) == (children * ((FILE_MIB << 20) // READ_SIZE + 1), children * (FILE_MIB << 20))
