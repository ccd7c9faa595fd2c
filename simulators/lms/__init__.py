"""The simulated LMS: the subset of the Canvas REST API the provisioning sink uses (``app``),
over an in-memory Canvas root account (``store``), run by ``sislms lms serve`` (``server``)."""
