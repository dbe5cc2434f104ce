"""Key quotas: an atomic reservation before the upstream is called, the exact charge after.

A request is admitted only if `spent + reserved + estimate <= quota` for its key, and the estimate
is reserved in the same step (no await between the check and the reservation, so concurrent
requests cannot overspend under asyncio). When the response ends the reservation is released and
the exact cost added to `spent`; failed attempts cost nothing. Spending reaches the database through
a background batch writer (one `spent = spent + delta` per key per batch), never on the request path.

The estimate is an upper bound of the cost: every request byte as an input token (a token is at least
one byte) and the declared maximum output (`max_tokens` and its spellings, else
`billing.default_max_output_tokens`) at the model's dearest rates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from omnirelay.errors import GatewayError
from omnirelay.storage.records import KeyRecord


@dataclass(slots=True)
class _Account:
    spent: int
    reserved: int = 0


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


def _credits(micro: int) -> str:
    return f"{micro / 1_000_000:.6f}".rstrip("0").rstrip(".")


class QuotaBook:
    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def _account(self, key: KeyRecord) -> _Account:
        account = self._accounts.get(key.id)
        if account is None:
            account = self._accounts[key.id] = _Account(spent=key.spent)
        return account

    def spent(self, key: KeyRecord) -> int:
        return self._account(key).spent

    def reserve(self, key: KeyRecord, estimate: int) -> None:
        if key.quota is None:
            return
        account = self._account(key)
        if account.spent + account.reserved + estimate > key.quota:
            raise QuotaExceeded(
                f"This API key has used its quota: {_credits(account.spent)} of {_credits(key.quota)} "
                f"credits spent, {_credits(account.reserved)} reserved by requests in flight, and this "
                f"request may cost up to {_credits(estimate)}.",
            )
        account.reserved += estimate

    def settle(self, key: KeyRecord, reserved: int, cost: int) -> None:
        account = self._account(key)
        if key.quota is not None:
            account.reserved = max(account.reserved - reserved, 0)
        account.spent += cost


def spending_batches(entries: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Sum queued (key id, cost) entries per key, for one UPDATE per key."""
    totals: dict[str, int] = defaultdict(int)
    for key_id, cost in entries:
        totals[key_id] += cost
    return dict(totals)


class Wallets:
    """Users' balances for admission: the same reserve-then-settle as key quotas, against the balance
    the ledger keeps (loaded once per user, then moved here and in the ledger together)."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def known(self, user_id: str) -> bool:
        return user_id in self._accounts

    def load(self, user_id: str, balance: int) -> None:
        self._accounts.setdefault(user_id, _Account(spent=balance))

    def balance(self, user_id: str) -> int | None:
        account = self._accounts.get(user_id)
        return None if account is None else account.spent

    def reserve(self, user_id: str, estimate: int) -> None:
        account = self._accounts.get(user_id)
        if account is None:
            return
        if account.spent - account.reserved < estimate:
            raise QuotaExceeded(
                f"The account's balance is too low: {_credits(account.spent)} credits, "
                f"{_credits(account.reserved)} reserved by requests in flight, and this request may cost "
                f"up to {_credits(estimate)}. Top up to continue."
            )
        account.reserved += estimate

    def settle(self, user_id: str, reserved: int, cost: int) -> None:
        account = self._accounts.get(user_id)
        if account is not None:
            account.reserved = max(account.reserved - reserved, 0)
            account.spent -= cost

    def credit(self, user_id: str, amount: int) -> None:
        account = self._accounts.get(user_id)
        if account is not None:
            account.spent += amount
