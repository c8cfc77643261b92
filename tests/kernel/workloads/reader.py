"""A reader whose every syscall the odirect tests know in advance.

    reader.py PATH MODE N [SECONDS]

MODE: direct (opened with O_DIRECT), buffered (page cache dropped first so
reads reach the disk), fcntl (opened buffered, one pread64, then
fcntl(F_SETFL, O_DIRECT), then the reads), decoy (O_DIRECT preads in a loop
for SECONDS).  Reads go through raw syscalls so the syscall kind is exact:
N x read(4096), N x pread64(4096), N x readv(2 x 4096), N x preadv2(2 x 4096).
Prints one JSON line: what it did (decoy: a line as its loop starts, first).
"""
import ctypes
import fcntl
import json
import mmap
import os
import sys
import time

SYS_read, SYS_pread64, SYS_readv, SYS_preadv2 = 0, 17, 19, 327
BLOCK = 4096

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]



def say(summary):
    """One line in one write: the tracer writes JSON Lines to the same pipe,
    and print() under PYTHONUNBUFFERED writes the text and its newline apart."""
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()

def check(ret):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def main():
    path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    buf = mmap.mmap(-1, 2 * BLOCK)  # page-aligned, as O_DIRECT wants
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    iov = (IoVec * 2)((addr, BLOCK), (addr + BLOCK, BLOCK))
    flags = os.O_RDONLY | (os.O_DIRECT if mode in ("direct", "decoy") else 0)
    fd = os.open(path, flags)
    done = {"pid": os.getpid(), "fd": fd, "mode": mode}
    if mode == "decoy":
        say({"pid": os.getpid(), "reading": True})   # a line first: the loop starts now
        seconds = float(sys.argv[4])
        end = time.monotonic() + seconds
        count = 0
        while time.monotonic() < end:
            check(libc.syscall(SYS_pread64, fd, ctypes.c_void_p(addr), BLOCK, (count % n) * BLOCK))
            count += 1
        done["preads"] = count
        say(done)
        return
    if mode == "buffered":
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if mode == "fcntl":
        check(libc.syscall(SYS_pread64, fd, ctypes.c_void_p(addr), BLOCK, 0))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
    got = {"read": 0, "pread64": 0, "readv": 0, "preadv2": 0}
    # read and readv advance the file position: read covers blocks [0, n),
    # readv [n, 3n); pread64 reads blocks [3n, 4n), preadv2 [4n, 6n).
    for i in range(n):
        got["read"] += check(libc.syscall(SYS_read, fd, ctypes.c_void_p(addr), BLOCK))
    for i in range(n):
        got["readv"] += check(libc.syscall(SYS_readv, fd, iov, 2))
    for i in range(n):
        got["pread64"] += check(libc.syscall(SYS_pread64, fd, ctypes.c_void_p(addr), BLOCK, (3 * n + i) * BLOCK))
    for i in range(n):
        pos = (4 * n + 2 * i) * BLOCK
        got["preadv2"] += check(libc.syscall(SYS_preadv2, fd, iov, 2, pos, 0, 0))
    done["bytes"] = got
    os.close(fd)
    say(done)


if __name__ == "__main__":
    main()
