"""Sources and sinks, one folder per system, on one small base (see ``connectors/base.py``)."""
