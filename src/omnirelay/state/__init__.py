"""Fast shared routing state (counters, cool-downs, breakers, sticky sessions): one interface in
`base`, an in-process implementation in `memory`; a Redis one implements the same interface."""

from omnirelay.state.base import (
    Admission,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    Cooldown,
    DeploymentState,
    LimitName,
    Limits,
    LoadStats,
    RoutingState,
    WindowUsage,
)
from omnirelay.state.memory import MemoryRoutingState

__all__ = [
    "Admission",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatus",
    "Cooldown",
    "DeploymentState",
    "LimitName",
    "Limits",
    "LoadStats",
    "MemoryRoutingState",
    "RoutingState",
    "WindowUsage",
]
