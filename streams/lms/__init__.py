"""The LMS side's processing: reading Canvas Live Events and Caliper events, and the events
processor that deduplicates and orders them into the typed ``lms.*`` topics."""
