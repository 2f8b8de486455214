"""Configuration helpers shared by extractors, matchers and the localizer (glue-factory style:
a class ``default_conf`` overridden key by key, and registries of named configurations)."""

from __future__ import annotations


def merge_conf(default_conf: dict, conf: dict | None, owner: str) -> dict:
    """``default_conf`` updated with ``conf`` (its optional ``name`` key ignored); unknown keys are
    rejected so that typos in config files fail loudly."""
    conf = dict(conf or {})
    conf.pop("name", None)
    unknown = set(conf) - set(default_conf)
    if unknown:
        raise ValueError(f"{owner}: unknown configuration keys {sorted(unknown)}")
    return {**default_conf, **conf}


class Configurable:
    """Base for components with a ``default_conf``; ``self.conf`` is the merged configuration."""

    default_conf: dict = {}

    def __init__(self, conf: dict | None = None):
        self.conf = merge_conf(self.default_conf, conf, type(self).__name__)


def resolve_conf(conf: str | dict, registry: dict[str, dict], kind: str) -> dict:
    """Turn a registry name or a dict into a full configuration dict with a ``name`` key."""
    if isinstance(conf, str):
        if conf not in registry:
            raise KeyError(f"unknown {kind} configuration {conf!r}; known: {sorted(registry)}")
        return dict(registry[conf])
    if not isinstance(conf, dict) or "name" not in conf:
        raise ValueError(f"{kind} configuration must be a registry name or a dict with a 'name'")
    return dict(conf)


def instantiate(conf: str | dict, registry: dict[str, dict], classes: dict[str, type], kind: str):
    """Create the component a registry name or configuration dict describes."""
    conf = resolve_conf(conf, registry, kind)
    name = conf.pop("name")
    if name not in classes:
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(classes)}")
    return classes[name](conf)
