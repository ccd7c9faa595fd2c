"""The OneRoster CSV binding (1.2, and 1.1, which many SIS products still export), pure protocol
code: :func:`open_bundle` reads a bundle (folder or zip) into OneRoster 1.2 REST JSON objects,
every bad row reported as a :class:`RowError` naming file, line, field and reason;
:func:`write_bundle` writes such objects as a bundle.

Modules: :mod:`.binding` (the files and columns of both versions, as data), :mod:`.bundle`
(opening, manifest), :mod:`.reader` (rows and their validation), :mod:`.writer`, and two private
helpers, ``_records`` (bytes to CSV records) and ``_values`` (cells to JSON values).
"""

from connectors.oneroster.csv.bundle import Bundle, open_bundle
from connectors.oneroster.csv.errors import InvalidBundle
from connectors.oneroster.csv.reader import Problem, Row, RowError
from connectors.oneroster.csv.writer import write_bundle

__all__ = ["Bundle", "InvalidBundle", "Problem", "Row", "RowError", "open_bundle", "write_bundle"]
