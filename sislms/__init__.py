"""The composition root: command line and process supervision. Nothing imports it."""
