"""Measuring students and the teacher on the test split, and the comparison table."""
