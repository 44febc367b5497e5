"""The `dealreg` command: runs, inspects and maintains the three services."""
