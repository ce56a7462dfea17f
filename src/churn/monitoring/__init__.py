"""Watching the champion: drift against the training reference, performance estimated before
labels mature (confidence-based), realized performance once they do, and the status rules.

A library (frames and config in, frames and records out, no disk): the ``monitor`` stage reads
and writes, these modules compute. See docs/monitoring.md for the formulas.
"""
