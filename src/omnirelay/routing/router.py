"""Model name → the deployments that can serve it, in the order to try them.

A deployment is (provider, public model, upstream model). A model may be served by several providers
(tried in config order); `provider/model` addresses one provider explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnirelay.errors import NotFound
from omnirelay.providers.catalog import Provider


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: Provider
    model: str
    upstream_model: str

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


class Router:
    def __init__(self, providers: list[Provider]) -> None:
        self.providers = providers
        self._by_model: dict[str, list[Deployment]] = {}
        self._qualified: dict[str, list[Deployment]] = {}
        for provider in providers:
            for public, upstream in provider.models.items():
                dep = Deployment(provider, public, upstream)
                self._by_model.setdefault(public, []).append(dep)
                self._qualified[f"{provider.name}/{public}"] = [dep]

    def models(self) -> list[tuple[str, str]]:
        """(model id, owner) for every public model, in config order."""
        return [(name, deps[0].provider.name) for name, deps in self._by_model.items()]

    def resolve(self, model: str) -> list[Deployment]:
        deps = self._by_model.get(model) or self._qualified.get(model)
        if deps:
            return deps
        names = list(self._by_model)
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        raise NotFound(
            f"The model {model!r} does not exist on this gateway. Available models: {shown or 'none'}.",
            param="model",
        )
