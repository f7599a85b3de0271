"""One adapter per tool: how to launch it and where its cost signals are. Adapters never decide."""
