"""Backend providers by name, imported lazily (the Metaflow plugin-table style).

``PROVIDERS`` maps a ``tune.backend`` name to ``"module:attribute"``, the dotted path of an object
implementing :class:`tuneline.backends.provider.BackendProvider`. Nothing is imported until a
provider is asked for, so resolving ``"bedrock"`` never imports torch and resolving ``"local"``
never imports the Bedrock clients (``tests/backends/test_provider_registry.py`` checks both in a fresh
interpreter).

Each provider's package exposes ``PROVIDER``, a ``BackendProvider`` whose ``name`` is the key it
is registered under: ``tuneline.backends.local:PROVIDER`` (TRL) and
``tuneline.backends.bedrock:PROVIDER`` (Bedrock, issue 17).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from tuneline.errors import ConfigError

if TYPE_CHECKING:
    from tuneline.backends.provider import BackendProvider
    from tuneline.config import RunConfig

__all__ = ["PROVIDERS", "provider", "provider_for"]

PROVIDERS: dict[str, str] = {
    "local": "tuneline.backends.local:PROVIDER",
    "bedrock": "tuneline.backends.bedrock:PROVIDER",
}


@cache
def provider(name: str) -> BackendProvider:
    """The provider registered under ``name``; a clear error for a name with none."""
    try:
        path = PROVIDERS[name]
    except KeyError:
        raise ConfigError(
            f"no tuning backend named {name!r}; tune.backend must be one of: {', '.join(sorted(PROVIDERS))}"
        ) from None
    module_name, _, attribute = path.partition(":")
    found = getattr(importlib.import_module(module_name), attribute)
    if getattr(found, "name", None) != name:
        raise TypeError(f"{path} serves backend {getattr(found, 'name', None)!r}, registered as {name!r}")
    return found


def provider_for(config: RunConfig) -> BackendProvider:
    """The provider of the run config's ``tune.backend``."""
    return provider(config.tune.backend)
