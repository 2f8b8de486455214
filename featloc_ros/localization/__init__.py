"""Localize a camera image in a VisualMap (no ROS)."""

from .localizer import InvalidInputError, LocalizationResult, Localizer

__all__ = ["InvalidInputError", "LocalizationResult", "Localizer"]
