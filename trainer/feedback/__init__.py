"""Agents' corrections from ``support.feedback``, joined with the routed results they
correct, as a labeled data set (``support-trainer feedback collect | forget``)."""
