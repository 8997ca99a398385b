"""Clients that vanish mid-request (a killed speaker) are normal: no traceback, server goes on."""

from __future__ import annotations

import logging
import socket
import struct
import time
import urllib.request

import pytest

from lbd.lab.apiserver import LabApiServer


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as the kernel does for a killed process with unread data."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _disconnects(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "disconnected" in r.getMessage()]


def test_reset_mid_request_is_a_debug_line_not_a_traceback(
    lab_api: LabApiServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="lbd.lab.apiserver")
    for _ in range(3):
        sock = socket.create_connection((lab_api.host, lab_api.port))
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")  # headers not finished
        _reset(sock)
    deadline = time.monotonic() + 5
    while len(_disconnects(caplog)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_disconnects(caplog)) == 3
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in _disconnects(caplog))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
    assert lab_api.internal_errors == []
    # and the server still serves
    with urllib.request.urlopen(f"http://{lab_api.host}:{lab_api.port}/version") as resp:
        assert resp.status == 200
