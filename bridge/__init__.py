"""calbridge: Canvas LMS conferences and Scheduler bookings in the calendars people use."""

__version__ = "0.1.0"
