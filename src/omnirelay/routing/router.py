"""Model names → routes → deployments.

A deployment is one (provider, key, upstream model): the unit that rate limits, cool-downs and
circuit breakers apply to. A route is what a request names: a model served by one or several
providers, `provider/model`, or a configured virtual model (`routes:` in the config, e.g. `auto`)
whose targets form an ordered fallback chain. The dispatcher (`routing.dispatch`) decides the
order to try a route's deployments in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omnirelay.config import DEFAULT_TRIGGERS, Config, ConfigError, ModelEntry, ProviderConfig, RouteConfig
from omnirelay.errors import NotFound
from omnirelay.providers.catalog import Provider
from omnirelay.state.base import Limits


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: Provider
    model: str  # the public name it serves
    upstream_model: str
    key: str | None = field(default=None, repr=False)
    key_index: int = 0
    priority: int = 0
    weight: float = 1.0
    limits: Limits = field(default_factory=Limits)
    id: str = ""  # `<provider>/<key index>/<upstream model>`: never holds a secret

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    # Fallback chain: tiers tried in order; a tier is one chain position's deployments of one priority.
    tiers: tuple[tuple[Deployment, ...], ...]
    strategy: str = "priority"
    fallback_on: tuple[str, ...] = tuple(DEFAULT_TRIGGERS)
    max_attempts: int | None = None
    deadline_seconds: float | None = None

    @property
    def deployments(self) -> list[Deployment]:
        return [dep for tier in self.tiers for dep in tier]


def _caps(*sources: ProviderConfig | ModelEntry | None) -> Limits:
    """The first source that sets a cap wins (model entry before provider)."""
    values = {}
    for name in ("rpm", "rpd", "tpm", "tpd"):
        values[name] = next((getattr(s, name) for s in sources if s is not None and getattr(s, name)), None)
    return Limits(**values)


def _deployments(provider: Provider) -> dict[str, list[Deployment]]:
    """Public model name → one deployment per key (a keyless provider has one)."""
    cfg = provider.config
    entries: dict[str, ModelEntry | None] = {}
    for raw in cfg.models if cfg else []:
        if isinstance(raw, ModelEntry):
            entries[raw.name] = raw
    out: dict[str, list[Deployment]] = {}
    keys: list[str | None] = list(provider.keys) or [None]
    for public, upstream in provider.models.items():
        entry = entries.get(public)
        priority = entry.priority if entry and entry.priority is not None else (cfg.priority if cfg else 0)
        weight = entry.weight if entry and entry.weight is not None else (cfg.weight if cfg else 1.0)
        limits = _caps(entry, cfg)
        out[public] = [
            Deployment(
                provider,
                public,
                upstream,
                key,
                i,
                priority,
                weight,
                limits,
                id=f"{provider.name}/{i}/{upstream}",
            )
            for i, key in enumerate(keys)
        ]
    return out


def _tiers(chain: list[list[Deployment]]) -> tuple[tuple[Deployment, ...], ...]:
    tiers: list[tuple[Deployment, ...]] = []
    for position in chain:
        for priority in sorted({d.priority for d in position}):
            tiers.append(tuple(d for d in position if d.priority == priority))
    return tuple(tiers)


class Router:
    def __init__(self, providers: list[Provider], config: Config | None = None) -> None:
        self.providers = providers
        self._by_model: dict[str, list[Deployment]] = {}
        self._by_provider: dict[str, list[Deployment]] = {}
        self._qualified: dict[str, list[Deployment]] = {}
        for provider in providers:
            for public, deps in _deployments(provider).items():
                self._by_model.setdefault(public, []).extend(deps)
                self._by_provider.setdefault(provider.name, []).extend(deps)
                self._qualified[f"{provider.name}/{public}"] = deps
        self.all: list[Deployment] = [d for deps in self._by_provider.values() for d in deps]
        routing = config.routing if config else None
        self._default_strategy = routing.strategy if routing else "priority"
        self._default_triggers = tuple(routing.fallback_on) if routing else tuple(DEFAULT_TRIGGERS)
        self._resolved: dict[str, Route] = {}  # plain models and provider/model, built on first use
        self._routes = {
            name: self._route(name, spec) for name, spec in (config.routes if config else {}).items()
        }

    def _target(self, route: str, target: str) -> list[Deployment]:
        deps = self._by_model.get(target) or self._qualified.get(target) or self._by_provider.get(target)
        if not deps:
            raise ConfigError(f"routes.{route}: target {target!r} is neither a model nor a provider")
        return deps

    def _route(self, name: str, spec: RouteConfig) -> Route:
        chain = [self._target(name, target) for target in spec.targets]
        return Route(
            name,
            _tiers(chain),
            spec.strategy,
            tuple(spec.fallback_on),
            spec.max_attempts,
            spec.deadline_seconds,
        )

    def models(self) -> list[tuple[str, str]]:
        """(model id, owner) for every public model and route, in config order."""
        listed = [(name, deps[0].provider.name) for name, deps in self._by_model.items()]
        return listed + [(name, "omnirelay") for name in self._routes if name not in self._by_model]

    def resolve(self, model: str) -> Route:
        route = self._routes.get(model) or self._resolved.get(model)
        if route is not None:
            return route
        deps = self._by_model.get(model) or self._qualified.get(model)
        if deps:
            route = Route(model, _tiers([deps]), self._default_strategy, self._default_triggers)
            self._resolved[model] = route
            return route
        names = [name for name, _ in self.models()]
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        raise NotFound(
            f"The model {model!r} does not exist on this gateway. Available models: {shown or 'none'}.",
            param="model",
        )
