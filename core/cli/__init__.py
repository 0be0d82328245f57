"""Command-line commands, one module per area (registered in core.__main__)."""
