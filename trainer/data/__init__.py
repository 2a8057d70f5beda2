"""Data sources and the labelled-example format the trainer reads and writes."""
