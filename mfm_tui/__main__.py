"""``python -m mfm_tui`` = ``mfm-tui``."""

from mfm_tui.app import main

main()
