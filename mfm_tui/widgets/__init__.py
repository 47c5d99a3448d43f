"""Widgets of mfm-tui: charts, schema-driven form fields, status and key bars."""
