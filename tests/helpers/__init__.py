"""Shared test helpers: plain functions and classes several test modules use.

Conftest files hold only fixtures; anything a test module needs to import lives here.
"""
