"""Figures and the HTML report (reads results files only)."""
