"""Data files shipped inside the package (package data, never pickles)."""
