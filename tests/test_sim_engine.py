"""The sim engine on its own (without a server): its credentials answer."""

from __future__ import annotations

from pathlib import Path

from wasessions_server.engines.base import Closed, ConnectTarget, PairSuccess, Qr
from wasessions_server.engines.sim import SimEngine
from wasessions_server.policy import QrSchedule
from wasessions_server.store import FileCredentialVault


async def test_has_credentials_and_refresh_agree(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path / "sim", QrSchedule(5, 5, 2))
    vault = FileCredentialVault(tmp_path / "creds" / "s1")
    assert not engine.has_credentials(vault)
    assert not await engine.refresh_credentials(vault)
    connection = await engine.connect(ConnectTarget("s1", vault))
    events = connection.events()
    assert isinstance(await anext(events), Qr)
    engine.scan_qr("s1")
    assert isinstance(await anext(events), PairSuccess)
    assert engine.has_credentials(vault) and await engine.refresh_credentials(vault)
    closed = await anext(events)
    assert isinstance(closed, Closed) and closed.code == 515
    vault.wipe()
    assert not engine.has_credentials(vault)
    assert not await engine.refresh_credentials(vault)
    await engine.aclose()
