"""One module per command group; each parses options and calls library code."""
