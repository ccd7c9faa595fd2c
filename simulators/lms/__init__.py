"""The simulated LMS: the subset of the Canvas REST API the provisioning sink uses (``app``),
over an in-memory Canvas root account (``store``), run by ``sislms lms serve`` (``server``);
the Canvas Live Events its changes make (``live_events``), sent to a webhook (``webhook``), and
simulated classroom activity with its ground truth (``activity``)."""
