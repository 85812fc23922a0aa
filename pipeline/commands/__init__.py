"""Subcommands of ``python -m pipeline``.

Each module here defines ``register(subparsers)``; it adds one subparser and sets its
``handler`` default to a function taking the parsed arguments and returning an exit status.
The CLI discovers the modules, so a new command never has to edit a shared list.
"""
