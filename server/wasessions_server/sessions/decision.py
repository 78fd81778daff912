"""What one close leads to, decided once, and the tenacity strategies that read it."""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from wasessions_server.engines import Closed
from wasessions_server.policy import Action, Backoff, CodeRule, ReconnectPolicy


@dataclass(frozen=True, slots=True)
class Decision:
    """One close and the policy rule for it: computed when the close arrives, then it travels
    with the close (retry loop, wait and stop strategies, the final state)."""

    close: Closed
    rule: CodeRule

    @classmethod
    def of(cls, policy: ReconnectPolicy, close: Closed) -> Decision:
        return cls(close, policy.rule_for(close.code, close.message))

    @property
    def retries(self) -> bool:
        """Whether the session connects again after this close."""
        return self.rule.action in (Action.RECONNECT, Action.RESTART)


@dataclass(frozen=True, slots=True)
class ConnectionEnd:
    """How one connection ended: the decision on its close, and whether it had stayed up long
    enough to reset the retry attempts."""

    decision: Decision
    stable: bool


class ConnectionClosed(Exception):
    """A failed attempt, as tenacity sees it."""

    def __init__(self, end: ConnectionEnd) -> None:
        close = end.decision.close
        super().__init__(f"closed with {close.code}: {close.message}")
        self.end = end


def _rule_of(retry_state: RetryCallState) -> CodeRule:
    assert retry_state.outcome is not None
    error = retry_state.outcome.exception()
    assert isinstance(error, ConnectionClosed)
    return error.end.decision.rule


class _WaitForCode(wait_base):
    """Waits as the rule for the last close says (exponential, capped, jittered)."""

    def __init__(self) -> None:
        # NOTE: built once per rule, not on every retry (a storm retries thousands at once).
        self._waits: dict[Backoff, wait_base] = {}

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = _rule_of(retry_state).backoff
        wait = self._waits.get(backoff)
        if wait is None:
            wait = self._waits[backoff] = backoff.wait()
        return wait(retry_state)


class _StopForCode(stop_base):
    """Stops after the number of retries the rule for the last close allows.

    NOTE: the close that began the sequence counts as tenacity's attempt 1, so retry n is
    attempt n + 1.
    """

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.attempt_number > _rule_of(retry_state).backoff.max_attempts


def retrying() -> AsyncRetrying:
    """The retry configuration: waits and stops as each close's rule says."""
    return AsyncRetrying(wait=_WaitForCode(), stop=_StopForCode())
