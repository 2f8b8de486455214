"""Registry of named matcher configurations (like hloc's ``match_features.confs``)."""

from __future__ import annotations

from ..features import resolve_conf
from .base import Matcher, Matches
from .nearest_neighbor import NearestNeighbor, nearest_neighbor_match

MATCHERS: dict[str, type[Matcher]] = {"nearest_neighbor": NearestNeighbor}

confs: dict[str, dict] = {
    "mnn_ratio": {"name": "nearest_neighbor", "ratio_threshold": 0.8, "mutual_check": True},
    "mnn": {"name": "nearest_neighbor", "ratio_threshold": 0.0, "mutual_check": True},
}


def create_matcher(conf: str | dict) -> Matcher:
    conf = resolve_conf(conf, confs, "matcher")
    name = conf.pop("name")
    if name not in MATCHERS:
        raise KeyError(f"unknown matcher {name!r}; known: {sorted(MATCHERS)}")
    return MATCHERS[name](conf)


__all__ = ["Matcher", "Matches", "confs", "create_matcher", "nearest_neighbor_match", "MATCHERS"]
