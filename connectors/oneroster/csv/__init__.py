"""The OneRoster CSV binding (1.2, and 1.1 where districts still send it): read a bundle into
OneRoster 1.2 JSON objects with every bad row reported, and write one from such objects."""

from connectors.oneroster.csv.reader import Bundle, Row, RowError, open_bundle
from connectors.oneroster.csv.writer import write_bundle

__all__ = ["Bundle", "Row", "RowError", "open_bundle", "write_bundle"]
