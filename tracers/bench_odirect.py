"""Benchmark of ``iotrace odirect``: what tracing costs a process that reads
with O_DIRECT as fast as the disk lets it.

fio does 4 KiB O_DIRECT random reads (psync engine, one job) of a file under
/var/tmp for a fixed time, four ways: untraced, under ``iotrace odirect -c``,
under ``strace -f``, and under a bpftrace script that records the same
syscalls and block requests.  The IOPS fio reports for each, and each as a
share of untraced, are printed and returned.  The untraced case runs first
and last; the baseline is their mean, and both are reported so drift shows.

Run as root: ``python -m kerntrace.tracers.bench_odirect [SECONDS]``.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Optional

__all__ = ["BPFTRACE_SCRIPT", "run"]

FILE_SIZE = "256M"

# The same observation iotrace odirect makes, written as a bpftrace user
# would: read-family syscalls of fio with fd, O_DIRECT from the open file,
# bytes and latency, and block requests with their latency, one line each.
BPFTRACE_SCRIPT = r"""
tracepoint:syscalls:sys_enter_read, tracepoint:syscalls:sys_enter_pread64,
tracepoint:syscalls:sys_enter_readv, tracepoint:syscalls:sys_enter_preadv,
tracepoint:syscalls:sys_enter_preadv2
/comm == "fio"/
{
  @start[tid] = nsecs;
  @fd[tid] = args->fd;
  @flags[tid] = (*(curtask->files->fdt->fd + args->fd))->f_flags;
}
tracepoint:syscalls:sys_exit_read, tracepoint:syscalls:sys_exit_pread64,
tracepoint:syscalls:sys_exit_readv, tracepoint:syscalls:sys_exit_preadv,
tracepoint:syscalls:sys_exit_preadv2
/@start[tid]/
{
  printf("%d %d %s fd=%d direct=%d ret=%d lat=%d\n", pid, tid, comm, @fd[tid],
         (@flags[tid] & 040000) != 0, args->ret, nsecs - @start[tid]);
  delete(@start[tid]); delete(@fd[tid]); delete(@flags[tid]);
}
tracepoint:block:block_bio_queue /comm == "fio"/
{
  @queued[args->dev, args->sector] = nsecs;
  @who[args->dev, args->sector] = pid;
}
tracepoint:block:block_rq_complete /@queued[args->dev, args->sector]/
{
  printf("block pid=%d sector=%d bytes=%d lat=%d\n", @who[args->dev, args->sector], args->sector,
         args->nr_sector * 512, nsecs - @queued[args->dev, args->sector]);
  delete(@queued[args->dev, args->sector]); delete(@who[args->dev, args->sector]);
}
"""


def _fio_argv(path: str, seconds: float, output: str) -> list[str]:
    # absolute: bpftrace -c refuses a name that /bin and /usr/bin both match
    return [
        shutil.which("fio") or "fio", "--name=odirect-bench", f"--filename={path}", f"--size={FILE_SIZE}", "--rw=randread",
        "--bs=4k", "--direct=1", "--ioengine=psync", "--iodepth=1", "--numjobs=1",
        f"--runtime={seconds:g}", "--time_based", "--output-format=json", f"--output={output}",
    ]


def _fio_result(output: str) -> dict[str, Any]:
    with open(output) as f:
        job = json.load(f)["jobs"][0]["read"]
    return {"iops": float(job["iops"]), "ios": int(job["total_ios"]), "bytes": int(job["io_bytes"])}


def _run(argv: list[str], *, stdout: Any = subprocess.DEVNULL) -> None:
    subprocess.run(argv, check=True, stdout=stdout, stderr=subprocess.PIPE, timeout=600)


def _iotrace_exe() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "iotrace")
    return exe if os.path.exists(exe) else shutil.which("iotrace") or "iotrace"


def _iotrace_counts(parquet: str, fio_file: str) -> dict[str, int]:
    import pyarrow.parquet as pq

    t = pq.read_table(parquet).to_pandas()
    reads = t[(t["type"] == "read") & (t["path"] == fio_file)]
    direct = reads[reads["direct"].astype(bool)]
    blocks = t[(t["type"] == "block") & (t["path"] == fio_file)]
    return {"odirect_reads": int(len(direct)), "odirect_bytes": int(direct["bytes"].sum()),
            "block_bytes": int(blocks["bytes"].sum())}


def run(seconds: float = 10.0, directory: str = "/var/tmp", out: Any = None) -> dict[str, Any]:
    """Run the four cases; print a table and return the figures."""
    out = out or sys.stdout
    if os.geteuid() != 0:
        raise SystemExit("bench_odirect needs root (it traces)")
    for tool in ("fio", "strace", "bpftrace"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_odirect needs {tool}")
    work = tempfile.mkdtemp(prefix="kerntrace-bench-", dir=directory)
    fio_file = os.path.join(work, "fio.dat")
    result_file = os.path.join(work, "fio.json")
    results: dict[str, Any] = {"seconds": seconds, "workload": "fio randread 4k O_DIRECT psync, 1 job",
                               "file": fio_file}
    try:
        # Lay the file out once, outside any measurement.
        _run(_fio_argv(fio_file, 1, result_file))

        def fio_case(name: str, wrapper: Optional[list[str]] = None, command_string: bool = False) -> dict[str, Any]:
            argv = _fio_argv(fio_file, seconds, result_file)
            if command_string:
                assert wrapper is not None
                full = [*wrapper, shlex.join(argv)]
            else:
                full = [*(wrapper or []), *argv]
            # A case that did not run fio must not report the previous case's file.
            if os.path.exists(result_file):
                os.unlink(result_file)
            _run(full)
            r = _fio_result(result_file)
            results[name] = r
            out.write(f"  {name:<10} {r['iops']:>10.0f} IOPS\n")
            out.flush()
            return r

        out.write(f"fio 4k O_DIRECT random reads (psync), {seconds:g} s per case, file {fio_file}\n")
        fio_case("untraced")
        parquet = os.path.join(work, "trace.parquet")
        fio_case("iotrace", [_iotrace_exe(), "odirect", "-o", parquet, "-c"], command_string=True)
        results["iotrace_counts"] = _iotrace_counts(parquet, fio_file)
        fio_case("strace", ["strace", "-f", "-qq", "-o", "/dev/null"])
        script = os.path.join(work, "odirect.bt")
        with open(script, "w") as f:
            f.write(BPFTRACE_SCRIPT)
        fio_case("bpftrace", ["bpftrace", "-o", "/dev/null", script, "-c"], command_string=True)
        fio_case("untraced2")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = (results["untraced"]["iops"] + results["untraced2"]["iops"]) / 2
    results["baseline_iops"] = base
    for name in ("iotrace", "strace", "bpftrace"):
        results[f"{name}_ratio"] = results[name]["iops"] / base
    counts = results["iotrace_counts"]
    results["iotrace_matches_fio"] = (counts["odirect_reads"] == results["iotrace"]["ios"]
                                      and counts["odirect_bytes"] == results["iotrace"]["bytes"])
    out.write(f"\n  {'case':<10} {'IOPS':>10} {'of untraced':>12}\n")
    out.write(f"  {'untraced':<10} {base:>10.0f} {'100.0 %':>12}   (runs: {results['untraced']['iops']:.0f}, "
              f"{results['untraced2']['iops']:.0f})\n")
    for name in ("iotrace", "strace", "bpftrace"):
        out.write(f"  {name:<10} {results[name]['iops']:>10.0f} {results[name + '_ratio'] * 100:>10.1f} %\n")
    out.write(f"\n  iotrace odirect counted {counts['odirect_reads']} O_DIRECT reads, {counts['odirect_bytes']} bytes "
              f"(block I/O {counts['block_bytes']} bytes); fio reported {results['iotrace']['ios']} reads, "
              f"{results['iotrace']['bytes']} bytes: {'match' if results['iotrace_matches_fio'] else 'MISMATCH'}\n")
    out.flush()
    return results


if __name__ == "__main__":
    run(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
