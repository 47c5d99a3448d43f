"""mfm-tui: the Textual workbench (see the TUI issue). Imports no torch."""
