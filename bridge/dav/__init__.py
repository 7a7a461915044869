"""The CalDAV side: a pure sync planner and the adapter that talks to CalDAV servers."""
