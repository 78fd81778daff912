"""Prometheus metrics, tested by scraping them; JSON state-change logs."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from wasessions.v1 import session_service_pb2 as svc
from wasessions_server.logfmt import JsonFormatter

from tests.conftest import ServerFactory
from tests.helpers import S, next_message, spawn_server, write_config
from tests.security_helpers import SIM_FAST, sample, scrape, terminate

SVC = "/wasessions.v1.SessionService"


async def _scrape(port: int) -> str:
    # NOTE: the metrics endpoint runs in this event loop: scrape from a thread.
    return await asyncio.to_thread(scrape, port)


async def test_metrics_are_off_unless_asked(srv: object) -> None:
    assert getattr(srv, "server").metrics_port == 0  # noqa: B009


async def test_scraped_metrics_tell_what_happened(make_server: ServerFactory) -> None:
    running = await make_server({"metrics_listen": "127.0.0.1:0"})
    port = running.server.metrics_port
    assert port > 0
    text = await _scrape(port)
    assert sample(text, "wasessions_sessions", state="CONNECTED", engine="sim") == 0
    await running.linked("m1")
    await running.create("m2", skip_start=True)
    await running.inject("m1", 428)
    await running.wait_state("m1", S.CONNECTED, last_disconnect__code=428)
    with pytest.raises(grpc.aio.AioRpcError):
        await running.get("missing")
    watch = running.sessions.WatchSessions(svc.WatchSessionsRequest())
    assert (await next_message(watch)).HasField("snapshot")
    text = await _scrape(port)
    assert sample(text, "wasessions_sessions", state="CONNECTED", engine="sim") == 1
    assert sample(text, "wasessions_sessions", state="STOPPED", engine="sim") == 1
    assert sample(text, "wasessions_disconnects_total", code="428") == 1
    assert (sample(text, "wasessions_disconnects_total", code="515") or 0) >= 1
    assert (sample(text, "wasessions_reconnect_attempts_total") or 0) >= 1
    assert (sample(text, "wasessions_reconnect_seconds_count") or 0) >= 1
    assert (sample(text, "wasessions_qr_codes_issued_total") or 0) >= 1
    assert sample(text, "wasessions_watch_streams") == 1
    assert sample(text, "wasessions_active_streams", method=f"{SVC}/WatchSessions") == 1
    head = sample(text, "wasessions_journal_head_sequence")
    assert head is not None and head >= 6
    assert (sample(text, "wasessions_journal_entries") or 0) >= 6
    assert sample(text, "wasessions_journal_lag_entries") == 0
    # m1: the QR connect, the restart after pairing (515), the reconnect after 428
    connects = sample(text, "wasessions_connects_total")
    assert connects is not None and connects >= 3
    assert 1 <= (sample(text, "wasessions_connects_peak_per_second") or 0) <= connects
    assert sample(text, "wasessions_rpcs_total", method=f"{SVC}/CreateSession", code="OK") == 2
    assert sample(text, "wasessions_rpcs_total", method=f"{SVC}/GetSession", code="NOT_FOUND") == 1
    watch.cancel()
    await running.sessions.DeleteSession(svc.DeleteSessionRequest(name="sessions/m2"))
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        text = await _scrape(port)
        if sample(text, "wasessions_active_streams", method=f"{SVC}/WatchSessions") == 0:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert sample(text, "wasessions_sessions", state="STOPPED", engine="sim") == 0
    assert (
        sample(text, "wasessions_rpcs_total", method=f"{SVC}/WatchSessions", code="CANCELLED") == 1
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/other", None, 10)
    assert raised.value.code == 404


def test_metrics_flag_and_json_logs_in_a_real_process(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", SIM_FAST)
    server = spawn_server(
        tmp_path / "data", config, "--metrics-listen", "127.0.0.1:0", "--log-format", "json"
    )
    try:
        lines = [json.loads(line) for line in server.log if line.strip()]
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
        urls = [m for line in lines if (m := re.search(r"http://\S+/metrics", line["message"]))]
        assert urls, lines
        with urllib.request.urlopen(urls[0].group(0), timeout=10) as response:
            text = response.read().decode()
        assert "wasessions_sessions" in text and "wasessions_rpcs_total" in text
    finally:
        assert terminate(server.process, server.target) == 0


async def test_state_changes_are_logged_one_line_each(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wasessions_server.sessions")
    running = await make_server()
    await running.linked("lg")
    await running.inject("lg", 503)
    await running.wait_state("lg", S.CONNECTED, last_disconnect__code=503)
    records = [r for r in caplog.records if r.name == "wasessions_server.sessions"]
    states = [getattr(r, "state") for r in records]  # noqa: B009
    assert states[:4] == ["CONNECTING", "QR_PENDING", "PAIRING", "CONNECTING"]
    assert "RECONNECTING" in states and states[-1] == "CONNECTED"
    # One line per change: consecutive lines never repeat a state.
    assert all(a != b for a, b in itertools.pairwise(states))
    retry = next(r for r in records if getattr(r, "state") == "RECONNECTING")  # noqa: B009
    formatted = json.loads(JsonFormatter().format(retry))
    assert formatted["session"] == "lg"
    assert formatted["code"] == 503
    assert formatted["reason"]
    assert formatted["attempt"] >= 1
    assert formatted["cause"] in ("CLOSED", "RETRY_STARTED")
