"""Anaconda kickstarts -> the same install plan the CLI builds (kickstart-compat)."""
