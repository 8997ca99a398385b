"""Pure decisions: allocation, election, wire formats.

Nothing in here does I/O, starts threads, reads the clock or imports an adapter library. Every
function takes values and returns values, so it is tested with plain tables and Hypothesis, and
the same inputs give the same outputs on every machine.
"""
