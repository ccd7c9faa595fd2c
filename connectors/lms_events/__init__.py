"""LMS events in: the HTTP receiver for Canvas Live Events and Caliper envelopes."""
