"""The two-way sync core of one CalDAV calendar, in three steps.

* :mod:`bridge.sync.plan` — pure: desired (Canvas) × actual (server) × status (what we wrote)
  → CalDAV actions for Canvas's changes, and *observations* of what the person did;
* :mod:`bridge.sync.decide` — pure: observations → Canvas commands (cancel, rebook, reserve)
  and the CalDAV actions that follow each possible outcome, with the write-back rules, the
  mass-change safety stop and per-object error containment;
* :mod:`bridge.sync.execute` — the only step with I/O: Canvas commands through the journal,
  then CalDAV actions, then the sync token — advanced only past what was completely handled.

:mod:`bridge.model.outcomes` holds the typed results every caller reads (exit codes,
``/healthz``, metrics, logs). ``--dry-run`` stops after *decide* and prints the decision.
"""
