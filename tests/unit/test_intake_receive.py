"""The intake's direct delivery parses message headers as nats-py does."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from hub.adapters.nats import parse_headers as _parse_headers


@pytest.mark.parametrize(
    "block",
    [
        b"Nats-Msg-Id: citymgmt-dcm:B1:reported:0\r\n\r\n",
        b"Nats-Msg-Id: x\r\nHub-Replay-Of: 12\r\n\r\n",
        b"Nats-Msg-Id:compact\r\nName: value: with colon \r\n\r\n",
        "Hub-Dlq-Detail: 非法 \u00e9\r\n\r\n".encode(),
    ],
)
def test_headers_parse_like_nats_py(block: bytes) -> None:
    assert _parse_headers(b"NATS/1.0\r\n" + block) == Client._parse_header_lines(block)


def test_status_lines_become_status_and_description() -> None:
    assert _parse_headers(b"NATS/1.0 408 Request Timeout\r\n\r\n") == {
        "Status": "408",
        "Description": "Request Timeout",
    }
    assert (
        _parse_headers(b"NATS/1.0 409 Leadership Change\r\nNats-Pending-Messages: 5\r\n\r\n")["Status"]
        == "409"
    )
