"""The use cases: what a person, a run or a program asks stoic to do (DESIGN §2).

Services take a workspace (the store) and return values; they print nothing and never exit.
Every interface — the CLI, the Python API, and later the server, the gate and the workers —
calls only these.
"""
