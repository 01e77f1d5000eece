"""`stoic serve`: the long-running control plane of a workspace, its web console and JSON API.

An interface like the CLI: each route parses, calls one service and renders. The server holds no
use case of its own, and every decision it records is a person's (`human:<logged-in name>`) or
the control plane's own, through the same services the CLI calls.
"""
