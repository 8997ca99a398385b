from __future__ import annotations

import io
import json
import logging

from lbd import log


def test_records_are_json_with_domain_fields() -> None:
    buf = io.StringIO()
    log.setup("debug", stream=buf)
    logging.getLogger("lbd.test").info(
        "assigned", extra={"service": "ns/web", "address": "198.18.100.7", "other": "x"}
    )
    obj = json.loads(buf.getvalue().strip())
    assert obj["msg"] == "assigned"
    assert obj["service"] == "ns/web"
    assert obj["address"] == "198.18.100.7"
    assert "other" not in obj
    assert obj["level"] == "info"
