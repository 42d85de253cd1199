"""Outcomes: what the user decided about a touch (done, move, snooze, next, skip).

Every source (an SMS reply, an edit on the calendar, the command line)
records its outcome through `apply.record_outcome`; the state store keeps
them, `overlay` lays them over the commitments as the files say them, and
`writeback` writes them into YAML files.
"""
