"""The records every layer shares: Canvas objects, calendar events, sync status, actions, outcomes.

Plain data, no I/O; everything else in calbridge may import it, it imports nothing of calbridge
but :mod:`bridge.errors`.
"""
