"""Narrated scenarios on a running lab: the demo and the steps it shares with the e2e tests."""
