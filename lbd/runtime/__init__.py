"""Timing and scheduling primitives shared by the controller and the speaker.

Everything timed takes a :class:`lbd.runtime.clock.Clock`, so tests drive it with a fake clock
instead of sleeping.
"""
