"""multiflexi-tui: the admin's terminal UI over the multiflexid socket (Textual)."""
