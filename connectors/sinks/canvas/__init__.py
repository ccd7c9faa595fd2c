"""The Canvas provisioning sink: ``lms.provisioning.v1`` applied through the Canvas REST API."""
