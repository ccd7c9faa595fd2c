"""Errors of the CSV binding.

Bad rows are not exceptions: the reader yields them as
:class:`~connectors.oneroster.csv.reader.RowError` values and goes on. Only a path that is no
bundle at all raises::

    SislmsError
    └── ConfigError
        └── InvalidBundle    not a folder or a zip, or no OneRoster CSV file in it
"""

from __future__ import annotations

from streams.errors import ConfigError

__all__ = ["InvalidBundle"]


class InvalidBundle(ConfigError):
    """The path is not a OneRoster CSV bundle: fix the path (or the export); nothing was read."""
