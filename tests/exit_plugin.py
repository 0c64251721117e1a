"""A plugin that ends the process on import, as a careless script would (bad-input corpus)."""

import sys

sys.exit(0)
