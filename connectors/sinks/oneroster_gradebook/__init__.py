"""The OneRoster gradebook sink: LMS grades passed back to the SIS."""
