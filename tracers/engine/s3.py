"""Trace directories in S3 (``s3://bucket/prefix``), read through DuckDB's
httpfs extension: listing with glob(), bytes with read_blob().  pyarrow
decodes the parts, as it does local ones, so a trace read from S3 gives the
tool the very tables a local copy gives.

Where and as whom, from the environment as the AWS tools read it:
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (an S3-compatible server such as
MinIO or moto; ``--s3-endpoint`` takes precedence), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION or AWS_DEFAULT_REGION.
The extension comes from the duckdb-extension-httpfs wheel (the ``fleet``
extra): installing it from DuckDB's own site needs a network tracing hosts
and CI may not have.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Optional
from urllib.parse import urlsplit

from .environment import UsageProblem

if TYPE_CHECKING:
    import duckdb

__all__ = ["S3Store", "is_s3_url", "s3_store"]

_STORES: dict[Optional[str], "S3Store"] = {}


def is_s3_url(path: str) -> bool:
    return path.startswith("s3://")


def check_s3_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise UsageProblem(f"{url}: not an S3 URL (s3://bucket/prefix)")


def _httpfs_path(version: str) -> Optional[str]:
    """The extension file of the duckdb-extension-httpfs wheel built for
    this DuckDB (an extension loads only into its own DuckDB version)."""
    try:
        import duckdb_extension_httpfs
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", f"v{version}",
                        "httpfs.duckdb_extension")
    return path if os.path.isfile(path) else None


def _connect() -> "duckdb.DuckDBPyConnection":
    try:
        import duckdb
    except ImportError:
        raise UsageProblem("reading S3 needs DuckDB and its httpfs extension: pip install 'kerntrace[fleet]'") from None
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    path = _httpfs_path(duckdb.__version__)
    try:
        con.execute(f"LOAD '{path}'" if path else "LOAD httpfs")
    except duckdb.Error:
        raise UsageProblem(f"reading S3 needs DuckDB's httpfs extension for DuckDB {duckdb.__version__}: "
                           f"pip install 'kerntrace[fleet]' (duckdb-extension-httpfs=={duckdb.__version__})") from None
    return con


def secret_options(env: Mapping[str, str], endpoint: Optional[str]) -> dict[str, str]:
    """The S3 secret's options from the AWS variables and --s3-endpoint."""
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    out = {"REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    for option, name in (("KEY_ID", "AWS_ACCESS_KEY_ID"), ("SECRET", "AWS_SECRET_ACCESS_KEY"),
                         ("SESSION_TOKEN", "AWS_SESSION_TOKEN")):
        if env.get(name):
            out[option] = env[name]
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise UsageProblem(f"S3 endpoint {endpoint}: not an http(s)://host[:port] URL")
        out.update(ENDPOINT=parts.netloc, USE_SSL="true" if parts.scheme == "https" else "false",
                   # S3-compatible servers (MinIO, moto) take the bucket in the path
                   URL_STYLE="path")
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class S3Store:
    """One DuckDB connection with an S3 secret; objects by s3:// URL."""

    def __init__(self, endpoint: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> None:
        options = secret_options(os.environ if env is None else env, endpoint)
        self.endpoint = options.get("ENDPOINT", "AWS")
        self.con = _connect()
        spec = ", ".join(f"{k} {v if k == 'USE_SSL' else _quote(v)}" for k, v in options.items())
        self.con.execute(f"CREATE SECRET kerntrace_s3 (TYPE s3, {spec})")

    def _problem(self, url: str, exc: Exception) -> UsageProblem:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return UsageProblem(f"{url}: cannot read from S3 (endpoint {self.endpoint}): {first}")

    def list(self, url: str) -> list[str]:
        """Every object's URL under url/, at any depth, sorted."""
        import duckdb

        prefix = url.rstrip("/") + "/"
        try:
            rows = self.con.execute("SELECT file FROM glob(?) ORDER BY file", [prefix + "**"]).fetchall()
        except duckdb.Error as exc:
            raise self._problem(url, exc) from None
        return [row[0] for row in rows]

    def read(self, url: str) -> bytes:
        import duckdb

        try:
            rows = self.con.execute("SELECT content FROM read_blob(?)", [url]).fetchall()
        except duckdb.Error as exc:
            raise self._problem(url, exc) from None
        if not rows:
            raise UsageProblem(f"{url}: no such object in S3")
        return bytes(rows[0][0])


def s3_store(endpoint: Optional[str] = None) -> S3Store:
    """One store per endpoint for the process (a fleet's traces share it)."""
    if endpoint not in _STORES:
        _STORES[endpoint] = S3Store(endpoint)
    return _STORES[endpoint]
