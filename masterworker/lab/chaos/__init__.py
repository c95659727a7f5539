"""Fault injection: a reply-dropping proxy (ch. 5), and later nemesis schedules and a checker."""
