"""Analytics agents: engagement (sessions, time on task) and assignment status, from LMS activity."""
