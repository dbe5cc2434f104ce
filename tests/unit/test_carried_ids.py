from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from omnirelay.canonical.ids import carry, uncarry


@given(
    call_id=st.from_regex(r"call_[a-f0-9]{6,24}", fullmatch=True), signature=st.text(min_size=1, max_size=300)
)
def test_round_trip_and_pattern_safe(call_id: str, signature: str) -> None:
    wire = carry(call_id, {"gemini": {"thoughtSignature": signature}})
    assert all(c.isalnum() or c in "_-" for c in wire)
    assert uncarry(wire) == (call_id, {"gemini": {"thoughtSignature": signature}})


def test_ids_without_data_are_untouched() -> None:
    assert carry("toolu_01", None) == "toolu_01"
    assert carry("call_1", {"anthropic": {}}) == "call_1"
    assert uncarry("call_abc") == ("call_abc", None)
    assert uncarry("Bash:12") == ("Bash:12", None)
