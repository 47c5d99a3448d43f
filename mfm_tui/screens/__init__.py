"""The screens of mfm-tui, one module each."""
