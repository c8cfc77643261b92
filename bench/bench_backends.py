"""The record rate each backend sustains without loss, with the records of a
real tool: ``nstrace ip6mr --json -c GENERATOR`` under each backend and
transport this kernel allows (libbpf with the ring buffer, libbpf with the
perf buffer, BCC).

The generator opens and closes raw ICMPv6 sockets at rising rates, one thread
per step, with a pause between steps.  A pair makes two 296-byte records (the
open and the close), three where the ip6mr_sk_done hook attaches.  Every
record carries its thread: a step is lossless when the tracer printed exactly
its records.  The figure is the rate of the last step before the first that
lost one, in records a second, as the generator reached it (under TCG it
cannot reach the highest steps).

Development tooling, not installed: run as root from the source tree,
``.venv/bin/python bench/bench_backends.py [--rates R,R,..] [--seconds S]``;
``--vm`` runs it in the ``make vmtest`` guest (Debian's 6.1 under QEMU/TCG),
where BCC can run.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main", "measure", "run"]

TREE = Path(__file__).resolve().parent.parent
DEFAULT_RATES = (250, 500, 750, 1000, 1500, 2000, 3000, 4000, 8000, 16000, 32000, 64000)  # pairs a second
# (name, --backend, environment): the ways this kernel may carry records
WAYS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("libbpf, ring buffer", "libbpf", {"KERNTRACE_TRANSPORT": "ring"}),
    ("libbpf, perf buffer", "libbpf", {"KERNTRACE_TRANSPORT": "perf"}),
    ("bcc, perf buffer", "bcc", {}),
)

# One thread per step, started after the previous one ended and a pause let
# the tracer drain; each makes `rate` socket()+close() pairs a second, in
# bursts every millisecond, and says its thread id and how many it made.
_GENERATOR = r"""
import json, socket, sys, threading, time
rates = [int(r) for r in sys.argv[1].split(",")]
seconds, pause, out = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
steps = []

def step(rate):
    tid = threading.get_native_id()
    start = time.monotonic()
    made = 0
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        due = int(now * rate) - made
        if due <= 0:
            time.sleep(0.001)
            continue
        for _ in range(due):
            socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6).close()
        made += due
    steps.append({"rate": rate, "tid": tid, "pairs": made, "seconds": time.monotonic() - start})

time.sleep(pause)
for rate in rates:
    t = threading.Thread(target=step, args=(rate,))
    t.start()
    t.join()
    time.sleep(pause)
with open(out, "w") as f:
    json.dump(steps, f)
"""


def measure(backend: str, env: dict[str, str], rates: Sequence[int], seconds: float,
            pause: float = 1.0) -> dict[str, Any]:
    """One tracer run over every step: per step the pairs made, the records
    printed for its thread, and the tracer's lost count at the end."""
    with tempfile.TemporaryDirectory(prefix="kt-bench-backends-") as tmp:
        gen, steps_file, out_file = Path(tmp, "gen.py"), Path(tmp, "steps.json"), Path(tmp, "out.jsonl")
        gen.write_text(_GENERATOR)
        command = shlex.join([sys.executable, str(gen), ",".join(map(str, rates)), f"{seconds:g}", f"{pause:g}",
                              str(steps_file)])
        nstrace = Path(sys.executable).with_name("nstrace")
        started = time.monotonic()
        with open(out_file, "w") as out:
            run = subprocess.run([str(nstrace), "ip6mr", "--backend", backend, "--json", "-c", command],
                                 stdout=out, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env))
        wall = time.monotonic() - started
        if run.returncode != 0:
            return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"}
        per_tid: dict[int, int] = {}
        kinds: set[str] = set()
        summary: dict[str, Any] = {}
        with open(out_file) as f:
            for line in f:
                record = json.loads(line)
                if record["type"] == "summary":
                    summary = record
                elif "tid" in record:
                    per_tid[record["tid"]] = per_tid.get(record["tid"], 0) + 1
                    kinds.add(record["type"])
        steps = json.loads(steps_file.read_text())
    hooks = next((line for line in run.stderr.splitlines() if line.startswith("hooks: ")), "")
    # A pair makes an open and a close record, and one more where the
    # ip6mr_sk_done hook attached (the kernel closing a raw ICMPv6 socket):
    # the first, slowest step says how many.
    first = steps[0]
    per_pair = per_tid.get(first["tid"], 0) / first["pairs"] if first["pairs"] else 0
    if per_pair != int(per_pair) or per_pair < 2:
        return {"error": f"the slowest step lost records ({per_tid.get(first['tid'], 0)} for {first['pairs']} "
                         "pairs): start lower"}
    rows = []
    for step in steps:
        records = int(per_pair) * step["pairs"]
        rows.append({"target_records_per_s": int(per_pair) * step["rate"], "made_records": records,
                     "made_records_per_s": records / step["seconds"],
                     "printed_records": per_tid.get(step["tid"], 0)})
    first_loss = next((i for i, r in enumerate(rows) if r["printed_records"] != r["made_records"]), len(rows))
    sustained = rows[first_loss - 1]["made_records_per_s"] if first_loss else 0.0
    return {"steps": rows, "lost_events": summary.get("lost_events"), "records_per_pair": int(per_pair),
            "kinds": sorted(kinds), "missing": sum(r["made_records"] - r["printed_records"] for r in rows),
            "sustained_records_per_s": sustained, "all_lossless": first_loss == len(rows),
            "transport": "perf buffer" if "perf buffer" in hooks else "ring buffer" if "ring buffer" in hooks else "?",
            "wall_s": wall}


def print_result(way: str, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{way}: not measured: {result['error']}")
        return
    print(f"{way} (transport {result['transport']}; {result['records_per_pair']} records a pair: "
          f"{', '.join(result['kinds'])}; run {result['wall_s']:.0f} s):")
    for row in result["steps"]:
        lost = row["made_records"] - row["printed_records"]
        print(f"  target {row['target_records_per_s']:>7,}/s  made {row['made_records_per_s']:>9,.0f}/s  "
              f"records {row['made_records']:>8,}  printed {row['printed_records']:>8,}  "
              f"{'lossless' if not lost else f'{lost:,} missing'}")
    verdict = "every step" if result["all_lossless"] else "up to"
    print(f"  sustained without loss: {verdict} {result['sustained_records_per_s']:,.0f} records/s; "
          f"missing {result['missing']:,}, the kernel's lost count {result['lost_events']:,}")


def run(rates: Sequence[int] = DEFAULT_RATES, seconds: float = 3.0, backends: Sequence[str] = ()) -> dict[str, Any]:
    """make bench's step: every way this kernel allows (or those of the
    backends named), printed; ok when at least one could be measured (bcc
    needs the kernel's headers)."""
    results = {}
    for way, backend, env in WAYS:
        if backends and backend not in backends:
            continue
        results[way] = measure(backend, env, rates, seconds)
        print_result(way, results[way])
        sys.stdout.flush()
    return {"ok": any("error" not in r for r in results.values()), "results": results}


def run_here(rates: Sequence[int], seconds: float, backends: Sequence[str], out: Optional[Path]) -> int:
    result = run(rates, seconds, backends)
    if out is not None:
        out.write_text(json.dumps({"kernel": os.uname().release, "results": result["results"]}, indent=1))
    return 0 if result["ok"] else 1


def run_in_vm(rates: Sequence[int], seconds: float, backends: Sequence[str], timeout_s: float) -> int:
    """Boot the vmtest guest with this script as its command."""
    sys.path.insert(0, str(TREE / "tests" / "vm"))
    import vmtest  # tests/vm: the VM runner

    release = vmtest.distro_kernel()
    image = vmtest.check_kernel(release)
    vmtest.ensure_packages(vmtest.bcc_packages(release))
    vng = vmtest.ensure_virtme(Path(sys.executable).parent)
    with tempfile.TemporaryDirectory(prefix="kt-bench-vm-", dir="/tmp") as workdir:
        out = Path(workdir, "bench.json")
        guest_cmd = shlex.join([sys.executable, str(Path(__file__).resolve()), "--rates", ",".join(map(str, rates)),
                                "--seconds", f"{seconds:g}", "--out", str(out)]
                               + (["--backends", ",".join(backends)] if backends else []))
        argv, env = vmtest.vng_command(vng, image, TREE, Path(workdir), guest_cmd, 2, "2G")
        print(f"booting {image} under QEMU/TCG", flush=True)
        try:
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            print(f"the guest did not finish in {timeout_s:.0f} s", file=sys.stderr)
            return 1
        if not out.exists():
            print("the guest wrote no result", file=sys.stderr)
            return 1
        print(f"guest kernel {json.loads(out.read_text())['kernel']}: results above")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_backends.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                        help="socket pairs a second per step, comma-separated (2 records a pair)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each step")
    parser.add_argument("--backends", default="", help="only these backends, comma-separated (libbpf, bcc)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--vm", action="store_true", help="run in the make vmtest guest (6.1 under QEMU/TCG)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the guest run (--vm)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/bench_backends.py needs root (it loads BPF programs)", file=sys.stderr)
        return 2
    try:
        rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        print(f"--rates: not a list of integers: {args.rates!r}", file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - {backend for _way, backend, _env in WAYS}
    if unknown:
        print(f"--backends: no backend {', '.join(sorted(unknown))} (libbpf, bcc)", file=sys.stderr)
        return 2
    if args.vm:
        return run_in_vm(rates, args.seconds, backends, args.timeout)
    return run_here(rates, args.seconds, backends, args.out)


if __name__ == "__main__":
    sys.exit(main())
