"""The `josh` command line: argument parsing, progress display and files; no computation of its own."""
