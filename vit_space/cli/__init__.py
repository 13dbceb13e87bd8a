"""The `autoprox` command line: the parser (`parser`), thin handlers over the library (`commands`),
and the entry point (`main`)."""

from vit_space.cli.main import main

__all__ = ["main"]
