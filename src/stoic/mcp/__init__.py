"""`stoic mcp`: a stdio MCP server with which an agent proposes, escalates, reads decisions and
asks the gate — an interface like the CLI and `stoic serve`, with no tool that decides."""
