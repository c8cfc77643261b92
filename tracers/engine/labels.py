"""Container labels on records: every event struct carries its task's cgroup
ids (``cgroup_id``, ``cgroup_v1_id``: see kerntrace.bpf.h), resolved here,
once per distinct pair, to the ``container`` and ``pod`` columns of live
lines, JSON lines and trace files.  One resolver per process
(containers.Containers), shared by every tool and sink of the run."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    import numpy as np

    from .containers import ContainerLabel, Containers

__all__ = ["CGROUP_FIELDS", "add_label_columns", "has_cgroups", "json_labels", "label_of", "labels_of",
           "resolver", "runtime_present", "show_column"]

CGROUP_FIELDS = ("cgroup_id", "cgroup_v1_id")

# top-level cgroup directories of container runtimes (cgroupfs drivers, Kubernetes, podman)
_RUNTIME_DIRS = ("docker", "kubepods", "kubepods.slice", "machine.slice", "libpod_parent")

_resolver: Optional["Containers"] = None
_show: Optional[bool] = None


def resolver() -> "Containers":
    global _resolver
    if _resolver is None:
        from .containers import Containers

        _resolver = Containers()
    return _resolver


def label_of(cgroup_id: int, cgroup_v1_id: int) -> "ContainerLabel":
    return resolver().label(int(cgroup_id), int(cgroup_v1_id))


def labels_of(cgroup_ids: Sequence[int], v1_ids: Sequence[int]) -> "list[ContainerLabel]":
    return resolver().labels([int(i) for i in cgroup_ids], [int(i) for i in v1_ids])


def runtime_present() -> bool:
    """A container runtime on this host: its engine answers, or container
    cgroups exist (Docker, Kubernetes, podman)."""
    from .containers import DockerClient

    import glob
    import os

    if DockerClient().available():
        return True
    for root in resolver().index.mounts().values():
        if any(os.path.isdir(os.path.join(root, d)) for d in _RUNTIME_DIRS):
            return True
        if glob.glob(os.path.join(root, "system.slice", "docker-*.scope")):
            return True
    return False


def show_column(filtered: bool = False) -> bool:
    """Whether live lines carry a CONTAINER column: on hosts that run
    containers, or when the run is filtered by container."""
    global _show
    if filtered:
        _show = True
    if _show is None:
        _show = runtime_present()
    return _show


def has_cgroups(names: Sequence[str]) -> bool:
    return all(f in names for f in CGROUP_FIELDS)


def json_labels(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON record with cgroup ids gets its container (and pod, when
    there is one) beside them."""
    if "cgroup_id" in record and "container" not in record:
        label = label_of(record["cgroup_id"] or 0, record.get("cgroup_v1_id") or 0)
        record["container"] = label.container
        if label.pod:
            record["pod"] = label.pod
    return record


def add_label_columns(table: Any) -> Any:
    """A trace table (Records or a pyarrow Table) with the cgroup columns
    gets ``container`` and ``pod`` string columns, resolved per distinct
    pair of ids."""
    names = table.column_names
    if not has_cgroups(names) or "container" in names:
        return table
    import numpy as np

    if hasattr(table, "numbers"):   # Records
        v2 = np.asarray(table.column("cgroup_id"), dtype=np.uint64)
        v1 = np.asarray(table.column("cgroup_v1_id"), dtype=np.uint64)
    else:
        v2 = table.column("cgroup_id").to_numpy(zero_copy_only=False).astype(np.uint64)
        v1 = table.column("cgroup_v1_id").to_numpy(zero_copy_only=False).astype(np.uint64)
    if "cgroup_name" in names:   # small tables (ip6mr's): names help where ids no longer resolve
        leaf, parent = _string_column(table, "cgroup_name"), _string_column(table, "cgroup_parent")
        keys: dict[tuple[int, int, str, str], int] = {}
        found = []
        codes = np.empty(len(v2), dtype=np.int64)
        for i, key in enumerate(zip(v2.tolist(), v1.tolist(), leaf, parent)):
            code = keys.get(key)
            if code is None:
                code = keys[key] = len(found)
                found.append(label_with_names(*key))
            codes[i] = code
    else:
        codes, firsts = _pair_codes(v2, v1)
        found = labels_of(v2[firsts].tolist(), v1[firsts].tolist())
    containers = [label.container for label in found]
    pods = [label.pod for label in found]
    if hasattr(table, "numbers"):
        table.add_strings("container", codes, containers)
        table.add_strings("pod", codes, pods)
        return table
    import pyarrow as pa

    codes_arr = pa.array(codes.astype(np.int32))
    table = table.append_column("container", pa.DictionaryArray.from_arrays(codes_arr, pa.array(containers, pa.string())))
    return table.append_column("pod", pa.DictionaryArray.from_arrays(codes_arr, pa.array(pods, pa.string())))


def _string_column(table: Any, name: str) -> list[str]:
    if hasattr(table, "numbers"):
        return [str(v) for v in table.column(name).tolist()]
    return [str(v or "") for v in table.column(name).to_pylist()]


def _pair_codes(a: "np.ndarray[Any, Any]", b: "np.ndarray[Any, Any]") -> tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]:
    """(a code per row for its distinct (a, b) pair, the first row of each
    code), by a stable sort: exact, vectorized."""
    import numpy as np

    n = len(a)
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    new = np.r_[True, (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])]
    codes = np.empty(n, dtype=np.int64)
    codes[order] = np.cumsum(new) - 1
    return codes, order[new]


def batch_labels(batch: "np.ndarray[Any, Any]") -> "list[ContainerLabel]":
    """One label per record of a ring batch (a structured array with the
    cgroup fields, and the cgroup's names where the records carry them)."""
    if "cgroup_name" not in (batch.dtype.names or ()):
        return labels_of(batch["cgroup_id"].tolist(), batch["cgroup_v1_id"].tolist())
    cache: dict[tuple[int, int, bytes, bytes], "ContainerLabel"] = {}
    out = []
    for key in zip(batch["cgroup_id"].tolist(), batch["cgroup_v1_id"].tolist(), batch["cgroup_name"].tolist(),
                   batch["cgroup_parent"].tolist()):
        label = cache.get(key)
        if label is None:
            label = cache[key] = label_with_names(key[0], key[1], _cstr(key[2]), _cstr(key[3]))
        out.append(label)
    return out


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


CONTAINER_WIDTH = 16


def container_header() -> str:
    """The CONTAINER column's header cell (with its separator), or ""."""
    return f"{'CONTAINER':<{CONTAINER_WIDTH}} " if show_column() else ""


def container_cells(batch: "np.ndarray[Any, Any]") -> "Optional[list[str]]":
    """The CONTAINER cell of each record of a batch (with its separator:
    "-" for the host), or None when live lines have no such column."""
    if not show_column() or not has_cgroups(batch.dtype.names or ()):
        return None
    return [f"{label.container or '-':<{CONTAINER_WIDTH}} " for label in batch_labels(batch)]


def label_with_names(cgroup_id: int, cgroup_v1_id: int, name: str, parent: str) -> "ContainerLabel":
    """The label of a record that also carries its cgroup directory's name
    and its parent's, as the kernel saw them: a short container's cgroup
    may be gone before its ids are looked up, while the names still say
    which container it was."""
    label = label_of(cgroup_id, cgroup_v1_id)
    if label.container_id or not name:
        return label
    from .containers import ContainerLabel, parse_cgroup_path

    ref = parse_cgroup_path(f"/{parent}/{name}" if parent else f"/{name}")
    if not ref.container_id:
        return label
    names = resolver().names
    return ContainerLabel(names.name(ref) or ref.container_id[:12], names.pod_name(ref) or ref.pod_uid,
                          ref.runtime, ref.container_id)


def label_of_pid(pid: int) -> "ContainerLabel":
    """A live process's container, from /proc/PID/cgroup (its v2 cgroup,
    else its v1 memory one): for inventories read from /proc, not events."""
    from .containers import HOST, ContainerLabel, parse_cgroup_path

    paths: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _num, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":
                    paths["v2"] = path
                elif "memory" in controllers.split(","):
                    paths["v1"] = path
    except (OSError, ValueError):
        return ContainerLabel("", "", "", "")
    ref = HOST
    for hierarchy in ("v2", "v1"):
        if paths.get(hierarchy, "/") != "/":
            ref = parse_cgroup_path(paths[hierarchy])
            if ref.container_id or ref.pod_uid:
                break
    if not (ref.container_id or ref.pod_uid):
        return ContainerLabel(ref.unit, "", ref.runtime, "")
    names = resolver().names
    return ContainerLabel(names.name(ref) or ref.container_id[:12], names.pod_name(ref) or ref.pod_uid,
                          ref.runtime, ref.container_id)
