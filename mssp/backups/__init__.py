"""Backups: restic commands and their parsed outputs, verification evidence and the pure verdict.

"The backup job ran" is not evidence; a restore is. ``verify.decide`` turns the evidence a
verification gathered on a host (mssp.tasks.backups) into VERIFIED, STALE, CORRUPT, UNVERIFIABLE
or NOT_RUN, with the reason in words (DESIGN.md §5).
"""
