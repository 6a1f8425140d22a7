#!/usr/bin/env python3
"""Ask a Cassandra node for its release version over the CQL native protocol (v4).

Readiness means "a CQL query answers", not "the port is open": Cassandra opens the native
port before it can serve queries. The protocol is small enough that the standard library
does this without installing a driver.

usage: cql_ping.py HOST PORT [TIMEOUT_SECONDS]   -> prints the release version, exit 0
"""
import socket
import struct
import sys

VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x07, 0x08
QUERY = "SELECT release_version FROM system.local"


def frame(stream: int, opcode: int, body: bytes) -> bytes:
    return struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def long_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def read_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    _version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", read_exact(sock, 9))
    return opcode, read_exact(sock, length)


def fail_on_error(opcode: int, body: bytes) -> None:
    if opcode == OP_ERROR:
        code = struct.unpack(">i", body[:4])[0]
        (n,) = struct.unpack(">H", body[4:6])
        raise RuntimeError(f"server error 0x{code:04x}: {body[6:6 + n].decode(errors='replace')}")


def release_version(host: str, port: int, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        startup = struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0")
        sock.sendall(frame(0, OP_STARTUP, startup))
        opcode, body = read_frame(sock)
        fail_on_error(opcode, body)
        if opcode != OP_READY:
            raise RuntimeError(f"unexpected opcode {opcode} after STARTUP")
        # consistency ONE, no flags
        sock.sendall(frame(1, OP_QUERY, long_string(QUERY) + struct.pack(">HB", 0x0001, 0)))
        opcode, body = read_frame(sock)
        fail_on_error(opcode, body)
        if opcode != OP_RESULT:
            raise RuntimeError(f"unexpected opcode {opcode} after QUERY")
        kind, flags, columns = struct.unpack(">iii", body[:12])
        if kind != 2:
            raise RuntimeError(f"expected a Rows result, got kind {kind}")
        pos = 12
        if flags & 0x0002:  # has_more_pages: paging state
            (n,) = struct.unpack(">i", body[pos:pos + 4])
            pos += 4 + max(n, 0)
        global_spec = flags & 0x0001
        if global_spec:
            for _ in range(2):
                (n,) = struct.unpack(">H", body[pos:pos + 2])
                pos += 2 + n
        for _ in range(columns):
            if not global_spec:
                for _ in range(2):
                    (n,) = struct.unpack(">H", body[pos:pos + 2])
                    pos += 2 + n
            (n,) = struct.unpack(">H", body[pos:pos + 2])  # column name
            pos += 2 + n
            pos += 2  # type id (varchar, no extra data)
        (rows,) = struct.unpack(">i", body[pos:pos + 4])
        pos += 4
        if rows < 1:
            raise RuntimeError("system.local returned no row")
        (n,) = struct.unpack(">i", body[pos:pos + 4])
        return body[pos + 4:pos + 4 + n].decode()


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    try:
        print(release_version(sys.argv[1], int(sys.argv[2]), timeout))
    except (OSError, RuntimeError, struct.error) as e:
        print(f"cql_ping: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
