"""Runs: the page server's shared runs and their queue (manager), and where they train (the seam)."""
